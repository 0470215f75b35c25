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
func ValidCSIDriverName(s string) error {
	if s == "" || len(s) > 63 {
		return errors.New("CSI driver name " + quote(s) + " must be 1 to 63 characters long (it is " + itoa(int64(len(s))) + ")")
	}
	for start := 0; start <= len(s); {
		end := start
		for end < len(s) && s[end] != '.' {
			end++
		}
		if label := lower(s[start:end]); !dnsLabel(label) {
			return errors.New("CSI driver name " + quote(s) + " is not a domain name: label " + quote(s[start:end]) +
				" must be 1 or more of [A-Za-z0-9-], beginning and ending with a letter or digit")
		}
		start = end + 1
	}
	return nil
}

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
