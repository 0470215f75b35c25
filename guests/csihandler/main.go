// Command csihandler is the wasmlet handler for plugins of type CSIPlugin:
// CSI drivers, announced by their node-driver-registrar sidecar through the
// plugin registry, as they announce themselves to the kubelet.
//
// validate accepts a driver as the kubelet's CSI plugin handler does, plus
// the node's policy:
//   - its name is a valid CSI driver name (abi.ValidCSIDriverName), and, when
//     the configuration restricts them, one of the allowed drivers or under
//     one of the allowed domains;
//   - the versions it offers include a CSI spec version this node supports:
//     the kubelet takes the highest version whose major is at most 1 and
//     requires it to be 1.x; this handler also requires it to be at least
//     min_version;
//   - its endpoint (the driver's CSI socket) is an absolute, clean path
//     inside one of the allowed directories.
//
// A refusal says what the driver offered and what the node accepts.
// register applies the same checks (it may run in another instance than
// validate) and tells the host to register the CSI driver
// (abi.ActionCSIDriver) at its endpoint with the chosen version; the host
// then asks the driver for its node facts (NodeGetInfo, NodeGetCapabilities).
// deregister accepts: the host forgets the driver.
//
// Configuration keys:
//
//	allowed_drivers  comma-separated driver names allowed (default: empty)
//	allowed_domains  comma-separated domains whose drivers are allowed: a
//	                 domain allows itself and every name under it (default:
//	                 empty). With both empty, any valid name is allowed.
//	min_version      the lowest CSI spec version accepted (default "1.0.0")
//	endpoint_dirs    comma-separated directories a driver's CSI socket must
//	                 be in (default "/var/lib/kubelet/plugins", where the
//	                 kubelet's drivers put theirs); empty allows any
//	                 absolute path
package main

import (
	"path"
	"strconv"
	"strings"

	"github.com/wasmlet/wasmlet/abi"
	"github.com/wasmlet/wasmlet/guests/sdk"
	"github.com/wasmlet/wasmlet/guests/sdk/handler"
)

// PluginType is the plugin type served.
const PluginType = "CSIPlugin"

// DefaultEndpointDir is where the kubelet's CSI drivers put their sockets.
const DefaultEndpointDir = "/var/lib/kubelet/plugins"

func init() {
	handler.ServePolicy(handler.Handler{
		Type:    PluginType,
		Name:    "csihandler",
		Version: "1.0.0",
		Summary: "CSI drivers, validated as the kubelet does (name, CSI 1.x version, endpoint) under a node policy",
	}, loadPolicy)
}

func main() {}

// policy is the configuration, loaded afresh for every call
// (handler.ServePolicy).
type policy struct {
	drivers      []string
	domains      []string
	minVersion   string
	endpointDirs []string
}

func loadPolicy() policy {
	return policy{
		drivers:      sdk.ConfigList("allowed_drivers", ""),
		domains:      sdk.ConfigList("allowed_domains", ""),
		minVersion:   strings.TrimSpace(sdk.ConfigOr("min_version", "1.0.0")),
		endpointDirs: sdk.ConfigList("endpoint_dirs", DefaultEndpointDir),
	}
}

// Check validates p and returns the CSI spec version to use with it.
func (pol policy) Check(p *abi.Plugin) (string, error) {
	who := "CSI driver " + quote(p.Name)
	if p.Type != "" && p.Type != PluginType {
		return "", sdk.Refuse(who + " has type " + quote(p.Type) + "; this handler serves " + PluginType)
	}
	if err := abi.ValidCSIDriverName(p.Name); err != nil {
		return "", sdk.Refuse(err.Error())
	}
	if !pol.nameAllowed(p.Name) {
		var allowed []string
		if len(pol.drivers) > 0 {
			allowed = append(allowed, "drivers "+strings.Join(pol.drivers, ", "))
		}
		if len(pol.domains) > 0 {
			allowed = append(allowed, "domains (and names under them) "+strings.Join(pol.domains, ", "))
		}
		return "", sdk.Refuse(who + " is not allowed on this node; allowed are " + strings.Join(allowed, "; "))
	}
	min, ok := parseVersion(pol.minVersion)
	if !ok || min.major() != 1 {
		return "", sdk.Fail(abi.CodeFailedPrecondition, "handler configuration: min_version "+quote(pol.minVersion)+
			" is not a CSI spec 1.x version such as 1.5.0")
	}
	version, problem := highestVersion(p.SupportedVersions)
	if problem != "" {
		return "", sdk.Refuse(who + " at endpoint " + quote(p.Endpoint) + ": " + problem)
	}
	if v, _ := parseVersion(version); v.less(min) {
		return "", sdk.Refuse(who + " supports CSI spec versions up to " + version + "; this node requires at least " + pol.minVersion)
	}
	if problem := pol.checkEndpoint(p.Endpoint); problem != "" {
		return "", sdk.Refuse(who + ": " + problem)
	}
	return version, nil
}

// Accept tells the host to register the CSI driver p at its endpoint.
func (pol policy) Accept(p *abi.Plugin, version string) *abi.RegisterResponse {
	return &abi.RegisterResponse{
		Action:   abi.ActionCSIDriver,
		Endpoint: p.Endpoint,
		Version:  version,
		Attributes: map[string]string{
			"driver":              p.Name,
			"csi_version":         version,
			"offered_versions":    strings.Join(p.SupportedVersions, ","),
			"endpoint":            p.Endpoint,
			"registration_socket": p.SocketPath,
		},
	}
}

// nameAllowed applies allowed_drivers and allowed_domains. DNS names
// compare without regard to case.
func (pol policy) nameAllowed(name string) bool {
	if len(pol.drivers) == 0 && len(pol.domains) == 0 {
		return true
	}
	lower := strings.ToLower(name)
	for _, d := range pol.drivers {
		if strings.ToLower(d) == lower {
			return true
		}
	}
	for _, d := range pol.domains {
		d = strings.ToLower(strings.TrimPrefix(d, "."))
		if lower == d || strings.HasSuffix(lower, "."+d) {
			return true
		}
	}
	return false
}

// checkEndpoint says what is wrong with the driver's CSI socket path, if
// anything: the host dials it as it is, so it must be absolute, clean (no
// "..", which could lead out of an allowed directory) and inside one.
func (pol policy) checkEndpoint(ep string) string {
	switch {
	case ep == "":
		return "the registration names no endpoint; a CSI driver's is its CSI socket"
	case !path.IsAbs(ep):
		return "endpoint " + quote(ep) + " is not an absolute path"
	case path.Clean(ep) != ep:
		return "endpoint " + quote(ep) + " is not a clean path (it should be " + quote(path.Clean(ep)) + ")"
	}
	if len(pol.endpointDirs) == 0 {
		return ""
	}
	for _, d := range pol.endpointDirs {
		d = path.Clean(d)
		if d == "/" || strings.HasPrefix(ep, d+"/") {
			return ""
		}
	}
	return "endpoint " + quote(ep) + " is outside the directories this node allows CSI sockets in: " + strings.Join(pol.endpointDirs, ", ")
}

// highestVersion picks the CSI spec version to use, as the kubelet does
// (k8s.io/apimachinery's HighestSupportedVersion): of the versions that
// parse, those with a major version above 1 are skipped, the highest of the
// rest is taken, and it must be 1.x. problem says why none is, if so.
func highestVersion(offered []string) (version, problem string) {
	if len(offered) == 0 {
		return "", "offered no CSI spec version"
	}
	var best specVersion
	found := false
	for i := len(offered) - 1; i >= 0; i-- {
		v, ok := parseVersion(offered[i])
		if !ok || v.major() > 1 {
			continue
		}
		if !found || best.less(v) {
			best, version, found = v, offered[i], true
		}
	}
	list := strings.Join(offered, ", ")
	if !found {
		return "", "offered versions " + list + ", none of which is a CSI spec version this node supports (1.x)"
	}
	if best.major() != 1 {
		return "", "offered CSI spec versions " + list + ": the highest this node could use is " + version +
			", and it must be 1.x (CSI 0.x drivers are not supported, as in Kubernetes since 1.17)"
	}
	return version, ""
}

// specVersion is a parsed version: its numeric components.
type specVersion []uint64

// parseVersion parses a version as k8s.io/apimachinery's ParseGeneric
// does: optional leading blanks and "v", then two or more dot-separated
// numbers (the first without leading zeros), then anything.
func parseVersion(s string) (specVersion, bool) {
	i := 0
	for i < len(s) && strings.IndexByte(" \t\n\f\r", s[i]) >= 0 {
		i++
	}
	if i < len(s) && s[i] == 'v' {
		i++
	}
	var v specVersion
	for {
		start := i
		for i < len(s) && s[i] >= '0' && s[i] <= '9' {
			i++
		}
		if i == start {
			break
		}
		n, err := strconv.ParseUint(s[start:i], 10, 0)
		if err != nil || len(v) == 0 && i-start > 1 && s[start] == '0' {
			return nil, false
		}
		v = append(v, n)
		if i+1 >= len(s) || s[i] != '.' || s[i+1] < '0' || s[i+1] > '9' {
			break
		}
		i++
	}
	return v, len(v) >= 2
}

func (v specVersion) major() uint64 { return v[0] }

// less compares component by component; missing components are zeros.
func (v specVersion) less(o specVersion) bool {
	for i := 0; i < len(v) || i < len(o); i++ {
		var a, b uint64
		if i < len(v) {
			a = v[i]
		}
		if i < len(o) {
			b = o[i]
		}
		if a != b {
			return a < b
		}
	}
	return false
}

func quote(s string) string { return strconv.Quote(s) }
