// Command dirsource is a device source for the tests of host/devicesource.
// It implements discover only, so the host answers allocations by merging
// the devices' container edits. Every regular file in the directory dir
// (default /data, a mount) whose name does not start with "." is a device;
// its id is the file name and its lines describe it:
//
//	unhealthy                     the device is unhealthy
//	numa=<n>                      NUMA node
//	attr.<key>=<value>            attribute
//	env.<NAME>=<value>            environment variable (container edit)
//	annotation.<key>=<value>      annotation (container edit)
//	node=<host>:<container>:<permissions>   device node (container edit)
//	mount=<host>:<container>[:ro]           mount (container edit)
//
// A file named "fail" makes discover fail (code unavailable) with the file's
// content as the message.
//
// Configuration keys: resource (default example.com/dir), dir.
package main

import (
	"os"
	"path"
	"strconv"
	"strings"

	"github.com/wasmlet/wasmlet/abi"
	"github.com/wasmlet/wasmlet/guests/sdk"
	"github.com/wasmlet/wasmlet/guests/sdk/source"
)

func init() {
	source.Serve(source.Source{
		Resource: sdk.ConfigOr("resource", "example.com/dir"),
		Name:     "dirsource",
		Summary:  "one device per file, for tests",
		Discover: discover,
	})
}

func main() {}

func discover() ([]abi.Device, error) {
	dir := sdk.ConfigOr("dir", "/data")
	entries, err := os.ReadDir(dir)
	if err != nil {
		return nil, sdk.Fail(abi.CodeUnavailable, "cannot list "+dir+": "+err.Error())
	}
	devs := []abi.Device{}
	for _, e := range entries {
		name := e.Name()
		if strings.HasPrefix(name, ".") || !e.Type().IsRegular() {
			continue
		}
		b, err := os.ReadFile(path.Join(dir, name))
		if err != nil {
			return nil, sdk.Fail(abi.CodeUnavailable, "cannot read "+name+": "+err.Error())
		}
		if name == "fail" {
			return nil, sdk.Fail(abi.CodeUnavailable, strings.TrimSpace(string(b)))
		}
		devs = append(devs, parse(name, string(b)))
	}
	return devs, nil
}

func parse(id, s string) abi.Device {
	d := abi.Device{ID: id, Edits: &abi.ContainerEdits{}}
	set := func(m *map[string]string, k, v string) {
		if *m == nil {
			*m = map[string]string{}
		}
		(*m)[k] = v
	}
	for _, line := range strings.Split(s, "\n") {
		line = strings.TrimSpace(line)
		key, value, _ := strings.Cut(line, "=")
		switch {
		case line == "unhealthy":
			d.Health = abi.Unhealthy
		case key == "numa":
			n, _ := strconv.Atoi(value)
			d.NUMANodes = append(d.NUMANodes, int64(n))
		case strings.HasPrefix(key, "attr."):
			set(&d.Attributes, key[len("attr."):], value)
		case strings.HasPrefix(key, "env."):
			set(&d.Edits.Envs, key[len("env."):], value)
		case strings.HasPrefix(key, "annotation."):
			set(&d.Edits.Annotations, key[len("annotation."):], value)
		case key == "node":
			f := strings.Split(value, ":")
			for len(f) < 3 {
				f = append(f, "")
			}
			d.Edits.DeviceNodes = append(d.Edits.DeviceNodes, abi.DeviceNode{HostPath: f[0], ContainerPath: f[1], Permissions: f[2]})
		case key == "mount":
			f := strings.Split(value, ":")
			for len(f) < 3 {
				f = append(f, "")
			}
			d.Edits.Mounts = append(d.Edits.Mounts, abi.Mount{HostPath: f[0], ContainerPath: f[1], ReadOnly: f[2] == "ro"})
		}
	}
	return d
}
