// Command customhandler is a wasmlet handler for a custom plugin type: the
// starting point for a type the kubelet does not know. It accepts plugins of
// its type that support one of the configured API versions and whose name
// matches a pattern, and records them (abi.ActionRecord): the host keeps them
// in its registered plugins, with the endpoint, the chosen version and the
// time of registration as attributes, and does nothing else with them.
//
// validate refuses, with a message the plugin's author can act on, a plugin of
// another type, one that supports none of the versions, and one whose name is
// empty or does not match name_pattern. register applies the same checks (it
// does not rely on validate having run in the same instance) and answers with
// the record. deregister accepts.
//
// Configuration keys:
//
//	type          the plugin type served (default "ExamplePlugin")
//	versions      comma-separated API versions accepted, in order of
//	              preference (default "v1")
//	name_pattern  a path.Match pattern plugin names must match (default "*")
package main

import (
	"path"
	"strconv"
	"strings"

	"github.com/wasmlet/wasmlet/abi"
	"github.com/wasmlet/wasmlet/guests/sdk"
	"github.com/wasmlet/wasmlet/guests/sdk/handler"
)

// DefaultType is the plugin type served when the configuration names none.
const DefaultType = "ExamplePlugin"

func init() {
	handler.ServePolicy(handler.Handler{
		Type:    sdk.ConfigOr("type", DefaultType),
		Name:    "customhandler",
		Version: "1.0.0",
		Summary: "records plugins of a custom type that pass a version and name policy",
	}, loadPolicy)
}

func main() {}

// policy is the configuration, loaded afresh for every call
// (handler.ServePolicy).
type policy struct {
	typ         string
	versions    []string
	namePattern string
	// now is the wall clock in nanoseconds since the Unix epoch.
	now func() int64
}

func loadPolicy() policy {
	return policy{
		typ:         sdk.ConfigOr("type", DefaultType),
		versions:    sdk.ConfigList("versions", "v1"),
		namePattern: strings.TrimSpace(sdk.ConfigOr("name_pattern", "*")),
		now:         now,
	}
}

// Check validates p and returns the version to use with it.
func (pol policy) Check(p *abi.Plugin) (string, error) {
	who := pol.typ + " plugin " + strconv.Quote(p.Name)
	if p.Type != "" && p.Type != pol.typ {
		return "", sdk.Refuse(who + " has type " + strconv.Quote(p.Type) + "; this handler serves " + pol.typ)
	}
	if len(pol.versions) == 0 {
		return "", sdk.Fail(abi.CodeFailedPrecondition, "handler configuration: versions is empty; the node accepts no "+pol.typ+" version")
	}
	if p.Name == "" {
		return "", sdk.Refuse(pol.typ + " plugin at " + strconv.Quote(p.SocketPath) + " reported an empty name")
	}
	version := ""
	for _, a := range pol.versions {
		for _, o := range p.SupportedVersions {
			if version == "" && strings.TrimSpace(o) == a {
				version = a
			}
		}
	}
	if version == "" {
		offered := "no versions"
		if len(p.SupportedVersions) > 0 {
			offered = "versions " + strings.Join(p.SupportedVersions, ", ")
		}
		return "", sdk.Refuse(who + " offered " + offered + "; this node accepts " + strings.Join(pol.versions, ", "))
	}
	ok, err := path.Match(pol.namePattern, p.Name)
	if err != nil {
		return "", sdk.Fail(abi.CodeFailedPrecondition, "handler configuration: name_pattern "+strconv.Quote(pol.namePattern)+" is not a valid pattern")
	}
	if !ok {
		return "", sdk.Refuse(who + ": the name does not match the pattern " + strconv.Quote(pol.namePattern) + " this node requires")
	}
	return version, nil
}

// Accept records p.
func (pol policy) Accept(p *abi.Plugin, version string) *abi.RegisterResponse {
	endpoint := p.Endpoint
	if endpoint == "" {
		endpoint = p.SocketPath
	}
	return &abi.RegisterResponse{
		Action:   abi.ActionRecord,
		Endpoint: p.Endpoint,
		Version:  version,
		Attributes: map[string]string{
			"type":                pol.typ,
			"endpoint":            endpoint,
			"version":             version,
			"offered_versions":    strings.Join(p.SupportedVersions, ","),
			"registration_socket": p.SocketPath,
			"registered_at":       rfc3339(pol.now()),
		},
	}
}

// rfc3339 formats a time given in nanoseconds since the Unix epoch as UTC in
// the layout of time.RFC3339. The time package would add some 260 KB to the
// module (it brings syscall and godebug with it), for one timestamp.
func rfc3339(unixNano int64) string {
	secs := unixNano / 1e9
	if unixNano < 0 && unixNano%1e9 != 0 {
		secs--
	}
	days, rem := secs/86400, secs%86400
	if rem < 0 {
		days, rem = days-1, rem+86400
	}
	// Civil date from days since 1970-01-01 (Howard Hinnant's algorithm).
	z := days + 719468
	era := z / 146097
	if z < 0 && z%146097 != 0 {
		era--
	}
	doe := z - era*146097
	yoe := (doe - doe/1460 + doe/36524 - doe/146096) / 365
	doy := doe - (365*yoe + yoe/4 - yoe/100)
	mp := (5*doy + 2) / 153
	d := doy - (153*mp+2)/5 + 1
	m := mp + 3
	if m > 12 {
		m -= 12
	}
	y := yoe + era*400
	if m <= 2 {
		y++
	}
	b := make([]byte, 0, 20)
	b = pad(b, y, 4)
	b = pad(append(b, '-'), m, 2)
	b = pad(append(b, '-'), d, 2)
	b = pad(append(b, 'T'), rem/3600, 2)
	b = pad(append(b, ':'), rem/60%60, 2)
	b = pad(append(b, ':'), rem%60, 2)
	return string(append(b, 'Z'))
}

func pad(b []byte, n int64, width int) []byte {
	s := strconv.FormatInt(n, 10)
	for i := len(s); i < width; i++ {
		b = append(b, '0')
	}
	return append(b, s...)
}
