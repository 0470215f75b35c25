package device

import (
	"fmt"
	"maps"
	"slices"
)

// Merge combines the edits of devs, in order, into what one container
// holding all of them needs. Edits that are the same for several devices
// appear once; CDI device names too. Two devices that disagree — one
// environment variable or annotation with two values, one container path
// with two different mounts or device nodes — are an error naming both,
// because only their provider could say how to combine them.
func Merge(devs []Device) (Edits, error) {
	var out Edits
	envFrom := map[string]string{}        // variable -> id of the device that set it
	annotationFrom := map[string]string{} // annotation -> id
	mounts := byPath[Mount]{what: "mounts"}
	nodes := byPath[Node]{what: "device nodes"}
	cdi := map[string]bool{}
	for _, d := range devs {
		e := &d.Edits
		for _, k := range slices.Sorted(maps.Keys(e.Env)) {
			if err := mergeValue(&out.Env, envFrom, "environment variable", k, e.Env[k], d.ID); err != nil {
				return Edits{}, err
			}
		}
		for _, k := range slices.Sorted(maps.Keys(e.Annotations)) {
			if err := mergeValue(&out.Annotations, annotationFrom, "annotation", k, e.Annotations[k], d.ID); err != nil {
				return Edits{}, err
			}
		}
		for _, m := range e.Mounts {
			if err := mounts.add(m.ContainerPath, m, d.ID); err != nil {
				return Edits{}, err
			}
		}
		for _, n := range e.DeviceNodes {
			if err := nodes.add(n.ContainerPath, n, d.ID); err != nil {
				return Edits{}, err
			}
		}
		for _, name := range e.CDIDevices {
			if !cdi[name] {
				cdi[name] = true
				out.CDIDevices = append(out.CDIDevices, name)
			}
		}
	}
	out.Mounts, out.DeviceNodes = mounts.list, nodes.list
	return out, nil
}

// byPath merges mounts or device nodes by container path: the same one
// twice is kept once, two different ones at one path are a conflict.
type byPath[T interface {
	comparable
	describe() string
}] struct {
	what  string
	list  []T
	at    map[string]int    // container path -> index in list
	owner map[string]string // container path -> id of the device that needs it
}

func (b *byPath[T]) add(path string, v T, id string) error {
	if i, ok := b.at[path]; ok {
		if b.list[i] != v {
			return fmt.Errorf("devices %s and %s need different %s at %s (%s and %s)",
				b.owner[path], id, b.what, path, b.list[i].describe(), v.describe())
		}
		return nil
	}
	if b.at == nil {
		b.at, b.owner = map[string]int{}, map[string]string{}
	}
	b.at[path], b.owner[path] = len(b.list), id
	b.list = append(b.list, v)
	return nil
}

func mergeValue(dst *map[string]string, from map[string]string, what, key, value, id string) error {
	if old, ok := (*dst)[key]; ok {
		if old != value {
			return fmt.Errorf("devices %s and %s set %s %s to different values (%q and %q)", from[key], id, what, key, old, value)
		}
		return nil
	}
	if *dst == nil {
		*dst = map[string]string{}
	}
	(*dst)[key], from[key] = value, id
	return nil
}

func (m Mount) describe() string {
	s := "host " + m.HostPath
	if m.ReadOnly {
		s += " read-only"
	}
	return s
}

func (n Node) describe() string {
	return fmt.Sprintf("host %s, permissions %q", n.HostPath, n.Permissions)
}
