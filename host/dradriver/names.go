package dradriver

import (
	"crypto/sha256"
	"encoding/hex"
	"strings"

	"k8s.io/apimachinery/pkg/util/validation"
)

// DeviceName is the name of the device id in the driver's ResourceSlices:
// the id itself when it is a DNS label, as resource.k8s.io/v1 requires
// device names to be. Any other id (pcisource's "0000:00:1f.6") becomes a
// DNS label of its own: the id in lower case, every other character a dash,
// then a dash and 8 hex digits of the id's SHA-256, so that two ids never
// share a name ("0000-00-1f-6-3b1c9e2a").
func DeviceName(id string) string {
	if len(validation.IsDNS1123Label(id)) == 0 {
		return id
	}
	var b strings.Builder
	for _, r := range strings.ToLower(id) {
		if r >= 'a' && r <= 'z' || r >= '0' && r <= '9' {
			b.WriteRune(r)
		} else {
			b.WriteByte('-')
		}
	}
	sum := sha256.Sum256([]byte(id))
	// 63 characters at most: the hash, its dash, and up to 54 of the id.
	base := strings.Trim(b.String(), "-")
	if len(base) > 54 {
		base = strings.TrimRight(base[:54], "-")
	}
	if base == "" {
		return "d-" + hex.EncodeToString(sum[:4])
	}
	return base + "-" + hex.EncodeToString(sum[:4])
}
