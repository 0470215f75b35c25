// Command devicepluginhandler is the wasmlet handler for plugins of type
// DevicePlugin: device plugins that announce themselves through the plugin
// registration directory instead of calling the device manager's
// Registration service, as the kubelet allows. The semantics are the
// kubelet's: the plugin's name is the extended resource it serves
// (vendor.com/gpu) and its endpoint is its device plugin socket.
//
// validate accepts a plugin when
//   - it supports one of the device plugin API versions this node accepts;
//   - its name is a valid extended resource name: <domain>/<name>, the domain
//     a DNS subdomain outside kubernetes.io, the name at most 63 characters of
//     [A-Za-z0-9._-] beginning and ending with a letter or digit;
//   - the resource's domain is allowed and its name matches the pattern, when
//     the configuration restricts them.
//
// A refusal says what the plugin offered and what the node accepts, so that
// the plugin's author can fix it. register tells the host to connect to the
// plugin as a device plugin (abi.ActionDevicePlugin) serving the resource at
// the plugin's endpoint (empty: its registration socket) with the first
// accepted version the plugin supports. deregister accepts.
//
// Configuration keys:
//
//	versions         comma-separated device plugin API versions accepted, in
//	                 order of preference (default "v1beta1")
//	allowed_domains  comma-separated resource domains allowed; a domain also
//	                 allows its subdomains (default: empty, any domain)
//	name_pattern     a path.Match pattern the resource's name part (after the
//	                 "/") must match (default: empty, any name)
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
const PluginType = "DevicePlugin"

func init() {
	handler.ServePolicy(handler.Handler{
		Type:    PluginType,
		Name:    "devicepluginhandler",
		Version: "1.0.0",
		Summary: "device plugins registered through the plugin watcher, with a version and resource-name policy",
	}, loadPolicy)
}

func main() {}

// policy is the configuration, loaded afresh for every call
// (handler.ServePolicy).
type policy struct {
	versions    []string
	domains     []string
	namePattern string
}

func loadPolicy() policy {
	return policy{
		versions:    sdk.ConfigList("versions", "v1beta1"),
		domains:     sdk.ConfigList("allowed_domains", ""),
		namePattern: strings.TrimSpace(sdk.ConfigOr("name_pattern", "")),
	}
}

// Check validates p and returns the API version to use with it.
func (pol policy) Check(p *abi.Plugin) (string, error) {
	who := "device plugin " + quote(p.Name)
	if p.Type != "" && p.Type != PluginType {
		return "", sdk.Refuse(who + " has type " + quote(p.Type) + "; this handler serves " + PluginType)
	}
	if len(pol.versions) == 0 {
		return "", sdk.Fail(abi.CodeFailedPrecondition, "handler configuration: versions is empty; the node accepts no device plugin API version")
	}
	version := chooseVersion(pol.versions, p.SupportedVersions)
	if version == "" {
		offered := "no versions"
		if len(p.SupportedVersions) > 0 {
			offered = "versions " + strings.Join(p.SupportedVersions, ", ")
		}
		return "", sdk.Refuse(who + " offered device plugin API " + offered +
			"; this node accepts " + strings.Join(pol.versions, ", "))
	}
	domain, name, problem := splitResourceName(p.Name)
	if problem != "" {
		return "", sdk.Refuse(who + ": the plugin's name must be the extended resource it serves: " + problem)
	}
	if len(pol.domains) > 0 && !domainAllowed(domain, pol.domains) {
		return "", sdk.Refuse(who + ": resource domain " + quote(domain) +
			" is not allowed on this node; allowed domains (and their subdomains): " + strings.Join(pol.domains, ", "))
	}
	if pol.namePattern != "" {
		ok, err := path.Match(pol.namePattern, name)
		if err != nil {
			return "", sdk.Fail(abi.CodeFailedPrecondition, "handler configuration: name_pattern "+quote(pol.namePattern)+" is not a valid pattern")
		}
		if !ok {
			return "", sdk.Refuse(who + ": resource name " + quote(name) + " does not match the pattern " +
				quote(pol.namePattern) + " this node requires")
		}
	}
	return version, nil
}

// Accept tells the host to connect to p as a device plugin.
func (pol policy) Accept(p *abi.Plugin, version string) *abi.RegisterResponse {
	endpoint := p.Endpoint
	attrs := map[string]string{
		"resource":            p.Name,
		"api_version":         version,
		"offered_versions":    strings.Join(p.SupportedVersions, ","),
		"registration_socket": p.SocketPath,
	}
	if endpoint != "" {
		attrs["endpoint"] = endpoint
	} else {
		attrs["endpoint"] = p.SocketPath
	}
	return &abi.RegisterResponse{
		Action:       abi.ActionDevicePlugin,
		ResourceName: p.Name,
		Endpoint:     endpoint,
		Version:      version,
		Attributes:   attrs,
	}
}

// chooseVersion returns the first accepted version the plugin supports.
func chooseVersion(accepted, offered []string) string {
	for _, a := range accepted {
		for _, o := range offered {
			if strings.TrimSpace(o) == a {
				return a
			}
		}
	}
	return ""
}

// domainAllowed reports whether domain is one of allowed or a subdomain of
// one.
func domainAllowed(domain string, allowed []string) bool {
	for _, a := range allowed {
		a = strings.ToLower(strings.TrimPrefix(a, "."))
		if domain == a || strings.HasSuffix(domain, "."+a) {
			return true
		}
	}
	return false
}

// splitResourceName checks that s is a valid extended resource name, as the
// kubelet (and the host) require of a device plugin's resource, and splits
// it. problem is empty when s is valid.
func splitResourceName(s string) (domain, name, problem string) {
	if err := abi.ValidResourceName(s); err != nil {
		return "", "", err.Error()
	}
	domain, name, _ = strings.Cut(s, "/")
	return domain, name, ""
}

func quote(s string) string { return strconv.Quote(s) }
