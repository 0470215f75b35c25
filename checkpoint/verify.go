package checkpoint

import (
	"bufio"
	"fmt"
	"io"
	"maps"
	"slices"
	"strconv"
	"strings"
	"time"
	"unicode"
)

// Summary describes a checkpoint file; it is what `wasmlet checkpoint verify`
// prints.
type Summary struct {
	Path string
	// Size is the file's size in bytes; 0 if it could not be read.
	Size int64
	// Version is the file's format version; 0 if the frame is unreadable.
	// A version-1 file reads fine and is upgraded by the next write.
	Version uint32
	// Checksum is the CRC-32C the file records, when Version is not 0.
	Checksum uint32

	Generation  uint64
	Written     time.Time // zero if the file records no time
	Allocations int
	Resources   int
	Devices     int // the devices of all resources
	Plugins     int
	Claims      int
}

// String returns the summary on one line.
func (s Summary) String() string {
	var b strings.Builder
	fmt.Fprintf(&b, "%s: format version %d", s.Path, s.Version)
	if s.Version != 0 && s.Version < FormatVersion {
		fmt.Fprintf(&b, " (the next write upgrades it to %d)", FormatVersion)
	}
	fmt.Fprintf(&b, ", %d bytes, CRC-32C %#08x; generation %d, written %s; %d allocations, %d resources with %d devices, %d plugins",
		s.Size, s.Checksum, s.Generation, formatTime(s.Written), s.Allocations, s.Resources, s.Devices, s.Plugins)
	if s.Claims > 0 {
		fmt.Fprintf(&b, ", %d claims", s.Claims)
	}
	return b.String()
}

// Verify reads the checkpoint at path as [Read] does, then checks that the
// state it holds is consistent: every allocation names a workload and a
// resource, no workload holds the same resource twice, no device is
// allocated to two pods (the containers of one pod may share a device, as
// an init container's devices are reused by the pod's later containers),
// and resources and their devices are not listed twice.
//
// It returns the file's summary and nil if all is well. Otherwise it returns
// the error — a [*CorruptError] for a file that cannot be read, an error
// listing the inconsistencies for one that can — and as much of the summary
// as it could fill. Verify never modifies the file.
func Verify(path string) (Summary, error) {
	st, f, size, err := readFile(path)
	s := Summary{Path: path, Size: size, Version: f.version, Checksum: f.checksum}
	if err != nil {
		return s, err
	}
	s.Generation = st.GetGeneration()
	if ns := st.GetWrittenUnixNano(); ns != 0 {
		s.Written = time.Unix(0, ns).UTC()
	}
	s.Allocations = len(st.GetAllocations())
	s.Claims = len(st.GetClaims())
	s.Resources = len(st.GetResources())
	for _, r := range st.GetResources() {
		s.Devices += len(r.GetDevices())
	}
	s.Plugins = len(st.GetPlugins())
	if problems := inconsistencies(st); len(problems) > 0 {
		const shown = 10
		msg := strings.Join(problems[:min(len(problems), shown)], "; ")
		if len(problems) > shown {
			msg += fmt.Sprintf("; and %d more", len(problems)-shown)
		}
		return s, fmt.Errorf("checkpoint %s is intact but the state it holds is inconsistent: %s", path, msg)
	}
	return s, nil
}

// inconsistencies lists what is wrong with st, in file order.
func inconsistencies(st *State) []string {
	var problems []string
	type holding struct{ workload, resource string }
	type device struct{ resource, id string }
	type holder struct{ workload, pod string }
	held := make(map[holding]int)      // -> allocation index
	devices := make(map[device]holder) // -> who holds it
	for i, a := range st.GetAllocations() {
		w, r := a.GetWorkload(), a.GetResource()
		if w == "" || r == "" {
			problems = append(problems, fmt.Sprintf("allocation %d has no workload or no resource (workload %q, resource %q)", i, w, r))
			continue
		}
		if j, dup := held[holding{w, r}]; dup {
			problems = append(problems, fmt.Sprintf("workload %s holds resource %s twice (allocations %d and %d)", w, r, j, i))
			continue
		}
		held[holding{w, r}] = i
		me := holder{w, podOf(a)}
		for _, id := range a.GetDeviceIds() {
			k := device{r, id}
			if other, dup := devices[k]; dup && other.pod != me.pod {
				problems = append(problems, fmt.Sprintf("device %s of resource %s is allocated to both %s and %s", id, r, other.workload, w))
				continue
			}
			devices[k] = me
		}
	}
	resources := make(map[string]bool)
	for i, r := range st.GetResources() {
		if resources[r.GetName()] {
			problems = append(problems, fmt.Sprintf("resource %q is listed twice (the second time as resource %d)", r.GetName(), i))
		}
		resources[r.GetName()] = true
		ids := make(map[string]bool)
		for _, d := range r.GetDevices() {
			if ids[d.GetId()] {
				problems = append(problems, fmt.Sprintf("resource %s lists device %q twice", r.GetName(), d.GetId()))
			}
			ids[d.GetId()] = true
		}
	}
	return problems
}

// podOf identifies the pod of an allocation: its UID, or else the
// "namespace/pod" part of its workload key.
func podOf(a *Allocation) string {
	if uid := a.GetPodUid(); uid != "" {
		return "uid:" + uid
	}
	w := a.GetWorkload()
	if i := strings.LastIndexByte(w, '/'); i >= 0 {
		return w[:i]
	}
	return w
}

// Show writes st for a person to read, as `wasmlet checkpoint show` prints
// it: the generation, then every allocation with its response, every
// resource with its devices, and every plugin, in file order, map entries
// sorted by key. Strings that are empty or hold spaces or unprintable
// characters are quoted. For a machine-readable form, marshal the State
// with protojson.
func Show(w io.Writer, st *State) error {
	b := bufio.NewWriter(w)
	written := time.Time{}
	if ns := st.GetWrittenUnixNano(); ns != 0 {
		written = time.Unix(0, ns).UTC()
	}
	fmt.Fprintf(b, "generation %d, written %s\n", st.GetGeneration(), formatTime(written))

	fmt.Fprintf(b, "\nallocations: %d\n", len(st.GetAllocations()))
	for _, a := range st.GetAllocations() {
		fmt.Fprintf(b, "  %s  %s  devices %s\n", q(a.GetWorkload()), q(a.GetResource()), list(a.GetDeviceIds()))
		if a.GetPodUid() != "" {
			fmt.Fprintf(b, "      pod uid     %s\n", q(a.GetPodUid()))
		}
		if ns := a.GetAllocatedUnixNano(); ns != 0 {
			fmt.Fprintf(b, "      allocated   %s\n", formatTime(time.Unix(0, ns).UTC()))
		}
		r := a.GetResponse()
		for _, k := range slices.Sorted(maps.Keys(r.GetEnvs())) {
			fmt.Fprintf(b, "      env         %s=%s\n", q(k), q(r.GetEnvs()[k]))
		}
		for _, m := range r.GetMounts() {
			mode := "rw"
			if m.GetReadOnly() {
				mode = "ro"
			}
			fmt.Fprintf(b, "      mount       %s -> %s (%s)\n", q(m.GetHostPath()), q(m.GetContainerPath()), mode)
		}
		for _, d := range r.GetDevices() {
			fmt.Fprintf(b, "      device      %s -> %s (%s)\n", q(d.GetHostPath()), q(d.GetContainerPath()), q(d.GetPermissions()))
		}
		for _, k := range slices.Sorted(maps.Keys(r.GetAnnotations())) {
			fmt.Fprintf(b, "      annotation  %s=%s\n", q(k), q(r.GetAnnotations()[k]))
		}
		for _, c := range r.GetCdiDevices() {
			fmt.Fprintf(b, "      cdi device  %s\n", q(c.GetName()))
		}
	}

	fmt.Fprintf(b, "\nresources: %d\n", len(st.GetResources()))
	for _, r := range st.GetResources() {
		fmt.Fprintf(b, "  %s  from %s", q(r.GetName()), q(r.GetProvider()))
		if ns := r.GetLastSeenUnixNano(); ns != 0 {
			fmt.Fprintf(b, ", last seen %s", formatTime(time.Unix(0, ns).UTC()))
		}
		if r.GetPreStartRequired() {
			b.WriteString(", pre-start required")
		}
		if r.GetPreferredAllocation() {
			b.WriteString(", preferred allocation")
		}
		fmt.Fprintf(b, ", %d devices\n", len(r.GetDevices()))
		for _, d := range r.GetDevices() {
			health := "unhealthy"
			if d.GetHealthy() {
				health = "healthy"
			}
			fmt.Fprintf(b, "      %s  %s", q(d.GetId()), health)
			if len(d.GetNumaNodes()) > 0 {
				nodes := make([]string, len(d.GetNumaNodes()))
				for i, n := range d.GetNumaNodes() {
					nodes[i] = strconv.FormatInt(n, 10)
				}
				fmt.Fprintf(b, "  numa %s", strings.Join(nodes, ","))
			}
			for _, k := range slices.Sorted(maps.Keys(d.GetAttributes())) {
				fmt.Fprintf(b, "  %s=%s", q(k), q(d.GetAttributes()[k]))
			}
			b.WriteByte('\n')
		}
	}

	if len(st.GetClaims()) > 0 {
		fmt.Fprintf(b, "\nclaims: %d\n", len(st.GetClaims()))
		for _, c := range st.GetClaims() {
			fmt.Fprintf(b, "  %s/%s  uid %s", q(c.GetNamespace()), q(c.GetName()), q(c.GetUid()))
			if c.GetPod() != "" {
				fmt.Fprintf(b, "  for %s/%s", q(c.GetPod()), q(c.GetContainer()))
			}
			b.WriteByte('\n')
			for _, p := range c.GetPrepared() {
				fmt.Fprintf(b, "      %s  %s/%s\n", q(p.GetRequest()), q(p.GetDriver()), q(p.GetDevice()))
			}
			for _, n := range c.GetCdiDevices() {
				fmt.Fprintf(b, "      cdi device  %s\n", q(n))
			}
		}
	}

	fmt.Fprintf(b, "\nplugins: %d\n", len(st.GetPlugins()))
	for _, p := range st.GetPlugins() {
		fmt.Fprintf(b, "  %s  type %s  endpoint %s  socket %s  version %s  resource %s\n",
			q(p.GetName()), q(p.GetType()), q(p.GetEndpoint()), q(p.GetSocketPath()), q(p.GetVersion()), q(p.GetResource()))
	}
	return b.Flush()
}

// q returns s as it is if a reader can tell where it starts and ends and it
// cannot disturb a terminal, else quoted.
func q(s string) string {
	if s == "" {
		return `""`
	}
	for _, r := range s {
		if unicode.IsSpace(r) || !unicode.IsPrint(r) || r == '"' {
			return strconv.Quote(s)
		}
	}
	return s
}

func list(ids []string) string {
	if len(ids) == 0 {
		return "(none)"
	}
	out := make([]string, len(ids))
	for i, id := range ids {
		out[i] = q(id)
	}
	return strings.Join(out, ",")
}

func formatTime(t time.Time) string {
	if t.IsZero() {
		return "(unknown)"
	}
	return t.Format(time.RFC3339Nano)
}
