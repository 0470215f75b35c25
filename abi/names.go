package abi

import "errors"

// The naming rules both sides apply: a module checks the names it is given
// or reports with the same code the host uses to check them.

// ValidResourceName checks an extended resource name as the kubelet does:
// "<domain>/<name>", the domain a DNS subdomain not ending in kubernetes.io
// (the kubelet takes any name containing "kubernetes.io/" for a native
// resource, so "foo.kubernetes.io/x" and "mykubernetes.io/x" alike), the
// name 1 to 63 characters of [A-Za-z0-9._-] beginning and ending with a
// letter or digit.
func ValidResourceName(s string) error {
	slash := -1
	for i := 0; i < len(s); i++ {
		if s[i] == '/' {
			if slash >= 0 {
				slash = -2
				break
			}
			slash = i
		}
	}
	if slash <= 0 || slash == len(s)-1 {
		return errors.New(quote(s) + " is not of the form <domain>/<name>, e.g. vendor.com/gpu")
	}
	domain, name := s[:slash], s[slash+1:]
	if hasSuffix(domain, "kubernetes.io") {
		return errors.New("domain " + quote(domain) + " is reserved for Kubernetes; use your own domain")
	}
	if len(domain) > 253 {
		return errors.New("domain " + quote(domain) + " is longer than 253 characters")
	}
	for start := 0; start <= len(domain); {
		end := start
		for end < len(domain) && domain[end] != '.' {
			end++
		}
		if label := domain[start:end]; !dnsLabel(label) {
			return errors.New("domain " + quote(domain) + " is not a DNS subdomain: label " + quote(label) +
				" must be 1 to 63 characters of [a-z0-9-], beginning and ending with a letter or digit")
		}
		start = end + 1
	}
	if len(name) > 63 || !qualifiedName(name) {
		return errors.New("name " + quote(name) +
			" must be 1 to 63 characters of [A-Za-z0-9._-], beginning and ending with a letter or digit")
	}
	return nil
}

// ValidCSIDriverName checks a CSI driver's name as Kubernetes does before
// it enters a node's CSINode object, and as the CSI spec defines it: 1 to 63
// characters, a DNS subdomain once lower-cased (dot-separated labels of
// [a-z0-9-], each beginning and ending with a letter or digit). Example:
// hostpath.csi.k8s.io.
func ValidCSIDriverName(s string) error { return domainName("CSI driver name", s) }

// ValidDeviceID checks a device id: 1 to 63 bytes of [A-Za-z0-9._:-] (a PCI
// address such as 0000:00:1f.6 is valid), as device plugins and CDI accept.
func ValidDeviceID(id string) error {
	if id == "" || len(id) > 63 {
		shown := id
		if len(shown) > 80 {
			shown = shown[:77] + "..."
		}
		return errors.New("device id " + quote(shown) + " must be 1 to 63 bytes long (it is " + itoa(int64(len(id))) + ")")
	}
	for i := 0; i < len(id); i++ {
		c := id[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '.' || c == '_' || c == '-' || c == ':') {
			return errors.New("device id " + quote(id) + " contains " + quoteByte(c) + "; allowed are [A-Za-z0-9._:-]")
		}
	}
	return nil
}

func hasSuffix(s, suffix string) bool {
	return len(s) >= len(suffix) && s[len(s)-len(suffix):] == suffix
}

// lower is strings.ToLower for ASCII.
func lower(s string) string {
	for i := 0; i < len(s); i++ {
		if c := s[i]; c >= 'A' && c <= 'Z' {
			b := []byte(s)
			for j := i; j < len(b); j++ {
				if b[j] >= 'A' && b[j] <= 'Z' {
					b[j] += 'a' - 'A'
				}
			}
			return string(b)
		}
	}
	return s
}

func dnsLabel(s string) bool {
	if s == "" || len(s) > 63 {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '-' && i > 0 && i < len(s)-1) {
			return false
		}
	}
	return true
}

func qualifiedName(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		alnum := c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9'
		if !alnum && (i == 0 || i == len(s)-1 || c != '-' && c != '_' && c != '.') {
			return false
		}
	}
	return true
}

const hexDigits = "0123456789abcdef"

// quote is strconv.Quote for the ASCII that names are made of, without
// pulling strconv into guests: printable ASCII as is, the rest as \xNN.
func quote(s string) string {
	b := make([]byte, 0, len(s)+2)
	b = append(b, '"')
	for i := 0; i < len(s); i++ {
		b = appendQuoted(b, s[i], '"')
	}
	return string(append(b, '"'))
}

func quoteByte(c byte) string { return string(append(appendQuoted([]byte{'\''}, c, '\''), '\'')) }

func appendQuoted(b []byte, c, delim byte) []byte {
	switch {
	case c == delim || c == '\\':
		return append(b, '\\', c)
	case c >= 0x20 && c < 0x7f:
		return append(b, c)
	}
	return append(b, '\\', 'x', hexDigits[c>>4], hexDigits[c&15])
}

// Names of structured devices (ABI.md, "Structured devices"), checked as
// Kubernetes checks them in resource.k8s.io/v1 objects.

// ValidDriverName checks a DRA driver name (Description.driver) as
// Kubernetes checks ResourceSlice.spec.driver: by the rule of a CSI driver
// name (ValidCSIDriverName), which Kubernetes reuses, e.g. gpu.example.com.
// Kubernetes advises lower case only.
func ValidDriverName(s string) error { return domainName("driver name", s) }

// domainName checks s, a what, as a DNS subdomain of at most 63 characters
// once lower-cased: Kubernetes' rule for CSI and DRA driver names, and for
// the domain of a qualified name, which it checks as a driver name.
func domainName(what, s string) error {
	if s == "" || len(s) > 63 {
		return errors.New(what + " " + quote(s) + " must be 1 to 63 characters long (it is " + itoa(int64(len(s))) + ")")
	}
	for start := 0; start <= len(s); {
		end := start
		for end < len(s) && s[end] != '.' {
			end++
		}
		if label := lower(s[start:end]); !dnsLabel(label) {
			return errors.New(what + " " + quote(s) + " is not a domain name: label " + quote(s[start:end]) +
				" must be 1 or more of [A-Za-z0-9-], beginning and ending with a letter or digit")
		}
		start = end + 1
	}
	return nil
}

// DefaultDriver is the driver of a device source that declares none: the
// name of its resource, lower-cased, with "." and "_" turned into "-",
// followed by "." and the resource's domain. example.com/nic is served by
// driver nic.example.com. The result is not a valid driver name when it is
// longer than 63 characters; such a source must declare its driver.
func DefaultDriver(resource string) string {
	slash := -1
	for i := 0; i < len(resource); i++ {
		if resource[i] == '/' {
			slash = i
			break
		}
	}
	if slash < 0 {
		return ""
	}
	name := []byte(lower(resource[slash+1:]))
	for i, c := range name {
		if c == '.' || c == '_' {
			name[i] = '-'
		}
	}
	return string(name) + "." + resource[:slash]
}

// DriverOf is the driver a device source's description names: its driver,
// or DefaultDriver of its resource.
func DriverOf(d *Description) string {
	if d.Driver != "" {
		return d.Driver
	}
	return DefaultDriver(d.Resource)
}

// ValidQualifiedName checks the name of a typed attribute or a capacity as
// Kubernetes checks a resource.k8s.io/v1 QualifiedName: a C identifier of
// at most 32 characters ([A-Za-z_][A-Za-z0-9_]*), optionally preceded by a
// domain (as ValidDriverName) and "/". Without a domain the name is the
// driver's own; model and gpu.example.com/model are then the same.
// (Kubernetes also lets through names with a second "/", by an oversight
// its code notes; wasmlet refuses them.)
func ValidQualifiedName(s string) error {
	id := s
	for i := 0; i < len(s); i++ {
		if s[i] == '/' {
			if i == 0 {
				return errors.New("qualified name " + quote(s) + ": the domain before \"/\" is empty")
			}
			if err := domainName("domain", s[:i]); err != nil {
				return errors.New("qualified name " + quote(s) + ": " + err.Error())
			}
			id = s[i+1:]
			break
		}
	}
	if len(id) == 0 || len(id) > 32 || !cIdentifier(id) {
		return errors.New("qualified name " + quote(s) + ": " + quote(id) +
			" must be a C identifier of 1 to 32 characters ([A-Za-z_][A-Za-z0-9_]*), optionally after a domain and \"/\"")
	}
	return nil
}

func cIdentifier(s string) bool {
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c == '_' || c >= '0' && c <= '9' && i > 0) {
			return false
		}
	}
	return s != ""
}

// ValidCounterName checks the name of a counter set or of a counter as
// Kubernetes does: a DNS label, 1 to 63 characters of [a-z0-9-] beginning
// and ending with a letter or digit.
func ValidCounterName(s string) error {
	if !dnsLabel(s) {
		return errors.New("counter name " + quote(s) +
			" must be a DNS label: 1 to 63 characters of [a-z0-9-], beginning and ending with a letter or digit")
	}
	return nil
}

// ValidQuantity checks a quantity, as Kubernetes writes them ("40Gi",
// "500m", "1.5", "2e3"), at most 64 bytes long:
//
//	quantity  = [sign] number suffix
//	number    = digits | digits "." [digits] | "." digits
//	suffix    = "" | "m" | "k" | "M" | "G" | "T" | "P" | "E"      (powers of 1000)
//	          | "Ki" | "Mi" | "Gi" | "Ti" | "Pi" | "Ei"           (powers of 1024)
//	          | ("e" | "E") [sign] digits                          (powers of 10, from -64 to 64)
//
// Kubernetes' parser accepts everything ValidQuantity does (internal/abipb
// tests it), and more: exponents up to 2^63, say. The bounds are the
// host's: Kubernetes' parser takes time that grows with the square of a
// negative exponent (a day of CPU for "1.5e-2147483648"), so the host parses
// a module's quantity only once ValidQuantity accepts it.
func ValidQuantity(s string) error {
	if len(s) > 64 {
		return errors.New("quantity " + quote(s[:61]+"...") + " is longer than 64 bytes")
	}
	i := 0
	if i < len(s) && (s[i] == '+' || s[i] == '-') {
		i++
	}
	digits := 0
	for ; i < len(s) && s[i] >= '0' && s[i] <= '9'; i++ {
		digits++
	}
	if i < len(s) && s[i] == '.' {
		i++
		for ; i < len(s) && s[i] >= '0' && s[i] <= '9'; i++ {
			digits++
		}
	}
	if digits == 0 {
		return errors.New("quantity " + quote(s) + " has no number; write e.g. 40Gi, 500m or 1.5")
	}
	switch suffix := s[i:]; suffix {
	case "", "m", "k", "M", "G", "T", "P", "E", "Ki", "Mi", "Gi", "Ti", "Pi", "Ei":
		return nil
	default:
		if (suffix[0] == 'e' || suffix[0] == 'E') && exponent(suffix[1:]) {
			return nil
		}
		return errors.New("quantity " + quote(s) + " has suffix " + quote(suffix) +
			"; allowed are m, k, M, G, T, P, E, Ki, Mi, Gi, Ti, Pi, Ei and e<exponent from -64 to 64>")
	}
}

// exponent reports whether s is a decimal exponent from -64 to 64:
// [sign] digits.
func exponent(s string) bool {
	if len(s) > 0 && (s[0] == '+' || s[0] == '-') {
		s = s[1:]
	}
	v := 0
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return false
		}
		if v = v*10 + int(s[i]-'0'); v > 64 {
			return false
		}
	}
	return s != ""
}

// ValidVersion checks a semantic version as Kubernetes checks a version
// attribute: semver.org 2.0.0, MAJOR.MINOR.PATCH with optional -PRERELEASE
// and +BUILD, at most 64 bytes.
func ValidVersion(s string) error {
	bad := func(why string) error {
		return errors.New("version " + quote(s) + " is not a semantic version (semver.org 2.0.0, e.g. 1.2.3-rc.1): " + why)
	}
	if len(s) > 64 {
		return bad("longer than 64 bytes")
	}
	// The core: three numeric identifiers.
	rest := s
	for n := 0; n < 3; n++ {
		end := 0
		for end < len(rest) && rest[end] >= '0' && rest[end] <= '9' {
			end++
		}
		if end == 0 || end > 1 && rest[0] == '0' {
			return bad("MAJOR.MINOR.PATCH must be three numbers without leading zeros")
		}
		rest = rest[end:]
		if n < 2 {
			if rest == "" || rest[0] != '.' {
				return bad("MAJOR.MINOR.PATCH must be three numbers without leading zeros")
			}
			rest = rest[1:]
		}
	}
	pre, build := "", ""
	if plus := indexByte(rest, '+'); plus >= 0 {
		rest, build = rest[:plus], rest[plus+1:]
		if build == "" || !identifiers(build, false) {
			return bad("+BUILD must be dot-separated identifiers of [0-9A-Za-z-]")
		}
	}
	if rest != "" {
		if rest[0] != '-' {
			return bad("MAJOR.MINOR.PATCH must be followed by -PRERELEASE, +BUILD or nothing")
		}
		pre = rest[1:]
		if pre == "" || !identifiers(pre, true) {
			return bad("-PRERELEASE must be dot-separated identifiers of [0-9A-Za-z-], numeric ones without leading zeros")
		}
	}
	return nil
}

// identifiers reports whether s is dot-separated non-empty identifiers of
// [0-9A-Za-z-]; numeric ones without leading zeros when noLeadingZeros.
func identifiers(s string, noLeadingZeros bool) bool {
	for start := 0; start <= len(s); {
		end := start
		numeric := true
		for end < len(s) && s[end] != '.' {
			c := s[end]
			switch {
			case c >= '0' && c <= '9':
			case c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c == '-':
				numeric = false
			default:
				return false
			}
			end++
		}
		if end == start || noLeadingZeros && numeric && end-start > 1 && s[start] == '0' {
			return false
		}
		start = end + 1
	}
	return true
}

func indexByte(s string, c byte) int {
	for i := 0; i < len(s); i++ {
		if s[i] == c {
			return i
		}
	}
	return -1
}
