package device

import (
	"strings"
)

// Prepared is what a container needs for one device of a claim: what a
// device source's prepare answered for it (its CDI device names in
// Edits.CDIDevices), or what the host derived from the device.
type Prepared struct {
	// Request names the claim's request (or "request/subrequest") the device
	// was allocated for.
	Request string
	// Device is the device's id.
	Device string
	Edits  Edits
}

// DefaultDriver is the driver name of a device source that declares none:
// its resource's name and domain, "example.com/gpu" giving
// "gpu.example.com", made a DNS subdomain (lower case; a character a DNS
// label may not hold becomes "-").
func DefaultDriver(resource string) string {
	domain, name, ok := strings.Cut(resource, "/")
	if !ok {
		domain, name = "", resource
	}
	var b strings.Builder
	for _, label := range strings.Split(strings.Trim(name+"."+domain, "."), ".") {
		label = strings.Map(func(r rune) rune {
			switch {
			case r >= 'a' && r <= 'z', r >= '0' && r <= '9', r == '-':
				return r
			case r >= 'A' && r <= 'Z':
				return r - 'A' + 'a'
			}
			return '-'
		}, label)
		label = strings.Trim(label, "-")
		if label == "" {
			continue
		}
		if len(label) > 63 {
			label = strings.Trim(label[:63], "-")
		}
		if b.Len() > 0 {
			b.WriteByte('.')
		}
		b.WriteString(label)
	}
	s := b.String()
	if len(s) > 253 {
		s = strings.Trim(s[:253], ".-")
	}
	if s == "" {
		s = "driver.wasmlet.dev"
	}
	return s
}
