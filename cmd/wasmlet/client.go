package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"io/fs"
	"maps"
	"net"
	"os"
	"slices"
	"strconv"
	"strings"
	"text/tabwriter"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	"github.com/wasmlet/wasmlet/host/api"
	"github.com/wasmlet/wasmlet/host/api/adminpb"
	"github.com/wasmlet/wasmlet/host/config"
)

// socketPath is the API socket to use: --socket, else the --config file's
// host.api_socket, else $WASMLET_SOCKET, else the built-in default.
func (c *cli) socketPath() (string, error) {
	switch {
	case c.socket != "":
		return c.socket, nil
	case c.config != "":
		cfg, err := config.Load(c.config)
		if err != nil {
			return "", failf(exitFailed, "reading --config %s to find the API socket: %v\n(give the socket with --socket to skip reading it)", c.config, err)
		}
		return cfg.Host.APISocket, nil
	case os.Getenv(socketEnv) != "":
		return os.Getenv(socketEnv), nil
	}
	return config.Default().Host.APISocket, nil
}

// call connects to the host and runs f with a context bounded by
// --timeout, turning failures into exit codes.
func (c *cli) call(f func(ctx context.Context, cl *api.Client) error) error {
	sock, err := c.socketPath()
	if err != nil {
		return err
	}
	cl, err := api.Dial(sock)
	if err != nil {
		return failf(exitUnreachable, "%v", err)
	}
	defer cl.Close()
	ctx, cancel := context.WithTimeout(context.Background(), c.timeout)
	defer cancel()
	return c.apiError(ctx, sock, f(ctx, cl))
}

// callAndPrint calls the host's method rpc with req (see call) and prints
// the answer: as JSON with -o json, else with text.
func callAndPrint[Q, R proto.Message](c *cli, rpc func(*api.Client, context.Context, Q, ...grpc.CallOption) (R, error),
	req Q, text func(R) error) error {
	return c.call(func(ctx context.Context, cl *api.Client) error {
		resp, err := rpc(cl, ctx, req)
		if err != nil {
			return err
		}
		if c.json() {
			return c.printProto(resp)
		}
		return text(resp)
	})
}

// apiError maps an API failure to an exit code and a message that says what
// failed and where. The host's own answers carry a reason (api.ReasonOf);
// a failure without one is the connection's, or this command's --timeout.
func (c *cli) apiError(ctx context.Context, sock string, err error) error {
	if err == nil {
		return nil
	}
	var ee *exitError
	if errors.As(err, &ee) {
		return err
	}
	var ue *api.UnreachableError
	if errors.As(err, &ue) {
		cause := ue.Err
		var op *net.OpError
		if errors.As(cause, &op) {
			cause = op.Err
		}
		hint := "is `wasmlet run` running, and is this its socket? Set it with --socket, --config or $" + socketEnv
		if errors.Is(cause, fs.ErrPermission) {
			hint = "the socket is only for the user wasmlet runs as (mode 0600); run this command as that user"
		}
		return failf(exitUnreachable, "cannot reach the wasmlet host at %s: %v (%s)", ue.Socket, cause, hint)
	}
	st := status.Convert(err)
	msg := st.Message()
	switch api.ReasonOf(err) {
	case api.ReasonNotFound:
		return failf(exitNotFound, "%s", msg)
	case api.ReasonInvalid:
		return failf(exitUsage, "%s", msg)
	case api.ReasonBusy:
		return failf(exitFailed, "the host is busy, nothing was changed: %s (try again)", msg)
	case api.ReasonTimeout:
		return failf(exitFailed, "the host gave up, nothing was changed: %s", msg)
	case api.ReasonProviderUnavailable, api.ReasonNotDurable:
		return failf(exitFailed, "%s (nothing was changed; try again later)", msg)
	case "":
		// Not the host's answer.
		switch {
		case errors.Is(ctx.Err(), context.DeadlineExceeded):
			// --timeout ran out. gRPC says so as DeadlineExceeded, or, when
			// the reset of the stream wins the race, as the stream's
			// cancellation (RST_STREAM CANCEL): the cause is the same.
			return failf(exitFailed, "the host at %s did not answer within %v (--timeout); it may still complete the request", sock, c.timeout)
		case st.Code() == codes.Unavailable:
			return failf(exitUnreachable, "lost the connection to the wasmlet host at %s: %s", sock, msg)
		case st.Code() == codes.Unimplemented:
			return failf(exitFailed, "the host at %s does not implement this call (an older wasmlet?): %s", sock, msg)
		}
	}
	return failf(exitFailed, "%s", msg)
}

func statusCmd() *command {
	return &command{
		name: "status", group: groupClient, summary: "the host: version, uptime, readiness, counts",
		help: `Show the running host: its version and uptime, whether it is ready, the
configuration and directories it uses, and how many modules, plugins,
resources, devices and allocations it has.

Examples:
  wasmlet status
  wasmlet --config plugins.toml status -o json`,
		run: func(c *cli, _ []string) error {
			return callAndPrint(c, (*api.Client).Status, &adminpb.StatusRequest{}, func(st *adminpb.StatusResponse) error {
				printStatus(c.stdout, st)
				return nil
			})
		},
	}
}

func printStatus(w io.Writer, st *adminpb.StatusResponse) {
	t := newTableNoHeader(w)
	ready := "yes"
	if !st.Ready {
		ready = "no"
		if st.NotReady != "" {
			ready += ": " + st.NotReady
		}
	}
	t.row("Version:", st.Version)
	t.row("Started:", fmt.Sprintf("%s (up %s)", stamp(st.Started), human(durationOf(st.Uptime))))
	t.row("Ready:", ready)
	t.row("PID:", strconv.Itoa(int(st.Pid)))
	config := st.ConfigFile
	if config == "" {
		config = "(none: built-in defaults)"
	}
	t.row("Config:", config)
	t.row("API socket:", st.ApiSocket)
	t.row("Pod resources:", st.PodResourcesSocket+" (read-only: kubelet pod resources v1, v1alpha1)")
	metrics := "(disabled)"
	if st.MetricsAddress != "" {
		metrics = "http://" + st.MetricsAddress + "/metrics"
	}
	t.row("Metrics:", metrics)
	t.row("Grace period:", human(durationOf(st.GracePeriod)))
	t.flush()
	if d := st.Directories; d != nil {
		fmt.Fprintln(w, "\nDirectories:")
		t = newTableNoHeader(w)
		t.row("  state", d.State)
		t.row("  modules", d.Modules)
		t.row("  plugin registry", d.PluginRegistry)
		t.row("  device plugins", d.DevicePlugins)
		t.row("  checkpoint", d.Checkpoint)
		t.flush()
	}
	n := st.Counts
	if n == nil {
		n = &adminpb.Counts{}
	}
	fmt.Fprintln(w)
	t = newTableNoHeader(w)
	t.row("Modules:", fmt.Sprintf("%d running, %d loading, %d quarantined, %d in conflict, %d failing, %d refused",
		n.ModulesRunning, n.ModulesLoading, n.ModulesQuarantined, n.ModulesConflicting, n.ModulesFailing, n.ModulesRefused))
	t.row("Plugins:", fmt.Sprintf("%d seen: %d registered, %d waiting for a handler, %d failing",
		n.Plugins, n.PluginsRegistered, n.PluginsWaiting, n.PluginsFailing))
	resources := fmt.Sprintf("%d, with %s (%d healthy, %d allocated)", n.Resources,
		plural(int(n.Devices), "device", "devices"), n.DevicesHealthy, n.DevicesAllocated)
	if n.ResourcesConflicting > 0 {
		resources += fmt.Sprintf("; %d refused to a device plugin (wasmlet resources)", n.ResourcesConflicting)
	}
	t.row("Resources:", resources)
	t.row("Allocations:", strconv.Itoa(int(n.Allocations)))
	t.row("Claims:", strconv.Itoa(int(n.Claims)))
	t.row("CSI drivers:", strconv.Itoa(int(n.CsiDrivers)))
	t.flush()
	if len(st.Bridged) > 0 {
		fmt.Fprintln(w, "\nBridged to the kubelet:")
		t = newTable(w, "  RESOURCE", "STATE", "MODE", "DEVICES", "STREAMS", "SOCKET", "LAST ERROR")
		for _, b := range st.Bridged {
			t.row("  "+b.Resource, b.State, b.Mode, fmt.Sprintf("%d/%d healthy", b.Healthy, b.Devices),
				strconv.Itoa(int(b.Streams)), b.Socket, b.LastError)
		}
		t.flush()
	}
	if len(st.DraDrivers) > 0 {
		fmt.Fprintln(w, "\nDRA drivers:")
		t = newTable(w, "  DRIVER", "RESOURCE", "STATE", "SLICES", "DEVICES", "PREPARED", "POOL")
		for _, d := range st.DraDrivers {
			t.row("  "+d.Driver, d.Resource, d.State, d.Slices, fmt.Sprintf("%d/%d healthy", d.Healthy, d.Devices),
				strconv.Itoa(int(d.Prepared)), d.Pool)
		}
		t.flush()
		for _, d := range st.DraDrivers {
			if d.SlicesError != "" {
				fmt.Fprintf(w, "\n%s: ResourceSlices %s for %s:\n  %s\n", d.Driver, d.Slices, ago(d.SlicesSince), d.SlicesError)
			}
			if d.LastError != "" {
				fmt.Fprintf(w, "\n%s: %s:\n  %s\n", d.Driver, d.State, d.LastError)
			}
			if d.LeftOut > 0 {
				fmt.Fprintf(w, "\n%s: %s left out of the slices:\n  %s\n", d.Driver,
					plural(int(d.LeftOut), "device", "devices"), d.LeftOutReason)
			}
		}
	}
	if len(st.CdiSpecs) > 0 {
		fmt.Fprintln(w, "\nCDI specs:")
		t = newTable(w, "  RESOURCE", "DEVICES", "FILE", "ERROR")
		for _, sp := range st.CdiSpecs {
			note := sp.Error
			if sp.RemoveAt != nil {
				note = "no source: removed in " + until(sp.RemoveAt) + " unless one comes back"
			}
			t.row("  "+sp.Resource, strconv.Itoa(len(sp.Devices)), sp.Path, note)
		}
		t.flush()
	}
}

// newTableNoHeader is a "Key:  value" layout.
func newTableNoHeader(w io.Writer) *table {
	return &table{tw: tabwriter.NewWriter(w, 0, 8, 1, ' ', 0)}
}

func pluginsCmd() *command {
	return &command{
		name: "plugins", group: groupClient, summary: "plugin sockets and their registration",
		help: `List the plugin sockets found in the plugin registry directory: the plugin's
type and name (from its GetInfo answer), its state (registered,
registering, failing, waiting for a handler module, deregistering), the
handler module that registered it and what it decided. Failing plugins are
listed with their last error and next retry.

Examples:
  wasmlet plugins
  wasmlet plugins -o json`,
		run: func(c *cli, _ []string) error {
			return callAndPrint(c, (*api.Client).ListPlugins, &adminpb.ListPluginsRequest{}, func(resp *adminpb.ListPluginsResponse) error {
				if len(resp.Plugins) == 0 {
					fmt.Fprintln(c.stderr, "No plugin sockets in the registry directory.")
					return nil
				}
				t := newTable(c.stdout, "NAME", "TYPE", "STATE", "HANDLER", "ACTION", "RESOURCE", "AGE", "SOCKET")
				for _, p := range resp.Plugins {
					age := ago(p.Registered)
					if age == "" {
						age = ago(p.Seen)
					}
					t.row(p.Name, p.Type, p.State, p.Handler, p.Action, p.Resource, age, p.SocketPath)
				}
				t.flush()
				for _, p := range resp.Plugins {
					switch {
					case p.WaitingFor != "":
						fmt.Fprintf(c.stdout, "\n%s: waiting for %s\n", p.SocketPath, p.WaitingFor)
					case p.LastError != "":
						fmt.Fprintf(c.stdout, "\n%s: %s after %s", p.SocketPath, p.State, plural(int(p.Failures), "failure", "failures"))
						if p.NextRetry != nil {
							fmt.Fprintf(c.stdout, ", next retry in %s", until(p.NextRetry))
						}
						fmt.Fprintf(c.stdout, ":\n  %s\n", p.LastError)
					}
				}
				return nil
			})
		},
	}
}

func modulesCmd() *command {
	var verbose bool
	return &command{
		name: "modules", group: groupClient, summary: "loaded and refused modules",
		help: `List the WebAssembly modules the host knows, each in one state: running;
loading (its file is being compiled and checked, or waits to stop changing
while it is still being copied in); quarantined (calls refused after
repeated faults, until the module is reloaded or its file replaced);
conflict (it runs but is not used: another module already serves its
resource or plugin type); failing (a device source whose discovery
fails: it keeps trying, and its devices are unhealthy after a few
failures in a row); refused (the file did not pass the load-time
checks). Every refusal, quarantine, conflict and failure is explained
below the table. With -v, every module's declared operations, exports, limits,
mounts and counters.

Examples:
  wasmlet modules
  wasmlet modules -v
  wasmlet modules -o json | jq '.modules[] | select(.state != "running")'`,
		flags: func(fs *flag.FlagSet) {
			fs.BoolVar(&verbose, "v", false, "show every module in detail")
		},
		run: func(c *cli, _ []string) error {
			return callAndPrint(c, (*api.Client).ListModules, &adminpb.ListModulesRequest{}, func(resp *adminpb.ListModulesResponse) error {
				if len(resp.Modules) == 0 {
					fmt.Fprintln(c.stderr, "No modules in the module directory.")
					return nil
				}
				if verbose {
					for i, m := range resp.Modules {
						if i > 0 {
							fmt.Fprintln(c.stdout)
						}
						printModule(c.stdout, m)
					}
					return nil
				}
				t := newTable(c.stdout, "NAME", "STATE", "KIND", "SERVES", "VERSION", "INSTANCES", "CALLS", "FAULTS", "SHA256", "AGE")
				for _, m := range resp.Modules {
					if m.Sha256 == "" { // nothing running
						age := ago(m.RefusedAt)
						if m.State == api.ModuleLoading {
							age = ago(m.LoadingSince)
						}
						t.row(m.Name, m.State, "", "", "", "", "", "", "", age)
						continue
					}
					t.row(m.Name, m.State, m.Kind, m.Serves, m.Version,
						fmt.Sprintf("%d/%d", m.Instances, m.GetLimits().GetPoolSize()),
						strconv.FormatUint(m.Calls, 10), strconv.FormatUint(m.Faults, 10), short(m.Sha256), ago(m.Loaded))
				}
				t.flush()
				for _, m := range resp.Modules {
					printModuleNotes(c.stdout, m)
				}
				return nil
			})
		},
	}
}

// printModuleNotes explains a load under way, a conflict, a quarantine or a
// refusal.
func printModuleNotes(w io.Writer, m *adminpb.Module) {
	if m.LoadingPath != "" {
		what := "loading"
		if m.Sha256 != "" {
			what = "loading a new file; the running version serves until it is accepted"
		}
		fmt.Fprintf(w, "\n%s: %s for %s: %s\n", m.Name, what, ago(m.LoadingSince), m.LoadingPath)
	}
	if m.Conflict != "" {
		fmt.Fprintf(w, "\n%s: conflict: %s\n", m.Name, m.Conflict)
	}
	if m.PluginConflict != "" {
		fmt.Fprintf(w, "\n%s: conflict: %s\n", m.Name, m.PluginConflict)
	}
	switch m.DiscoveryState {
	case "failing":
		fmt.Fprintf(w, "\n%s: discovery failing (%s in a row), next try in %s: %s\n", m.Name,
			plural(int(m.DiscoveryFailures), "failure", "failures"), until(m.NextDiscovery), m.DiscoveryError)
	case "stopped":
		fmt.Fprintf(w, "\n%s: discovery stopped: %s\n", m.Name, m.DiscoveryError)
	}
	if m.Quarantined {
		fmt.Fprintf(w, "\n%s: quarantined %s ago: %s\n  (wasmlet module reload %s, or replace %s)\n",
			m.Name, ago(m.QuarantinedAt), m.QuarantineReason, m.Name, m.Path)
	}
	if m.Refused != "" {
		what := "refused"
		if m.Sha256 != "" {
			what = "a new file was refused; the previous version keeps running"
		}
		fmt.Fprintf(w, "\n%s: %s %s ago, %s:\n", m.Name, what, ago(m.RefusedAt), m.RefusedPath)
		for _, p := range m.RefusedProblems {
			fmt.Fprintf(w, "  - %s\n", p)
		}
	}
}

func printModule(w io.Writer, m *adminpb.Module) {
	t := newTableNoHeader(w)
	t.row("Name:", m.Name)
	t.row("State:", m.State)
	t.row("File:", m.Path)
	if m.Sha256 != "" {
		t.row("SHA-256:", m.Sha256)
		t.row("Size:", size(uint64(m.Size)))
		t.declared(m.Kind, m.Serves, m.Version, m.Summary, m.Operations, m.PrestartRequired)
		t.row("Exports:", strings.Join(m.Exports, ", "))
		if l := m.Limits; l != nil {
			t.row("Limits:", fmt.Sprintf("memory %s, call timeout %s, reply %s, pool %d (up to %d)",
				size(l.MemoryBytes), human(durationOf(l.CallTimeout)), size(uint64(l.MaxReplyBytes)), l.PoolSize, l.PoolMax))
		}
		for _, mt := range m.Mounts {
			mount := mt.Host + " -> " + mt.Guest + " (read-only)"
			if mt.Root != "" {
				mount += ", links may resolve under " + mt.Root
			}
			t.row("Mount:", mount)
		}
		t.row("Loaded:", fmt.Sprintf("%s (%s ago; compiled in %s, started in %s)", stamp(m.Loaded), ago(m.Loaded),
			seconds(durationOf(m.CompileTime)), seconds(durationOf(m.InstantiateTime))))
		t.row("Instances:", fmt.Sprintf("%d (%d idle)", m.Instances, m.Idle))
		t.row("Calls:", fmt.Sprintf("%d, %d faults (%d in a row)", m.Calls, m.Faults, m.ConsecutiveFaults))
		if m.LastFault != "" {
			t.row("Last fault:", fmt.Sprintf("%s ago: %s", ago(m.LastFaultAt), m.LastFault))
		}
	}
	t.flush()
	printModuleNotes(w, m)
}

func moduleReloadCmd() *command {
	return &command{
		name: "module reload", args: "NAME", nargs: [2]int{1, 1}, group: groupClient,
		summary: "load a module again from its file",
		help: `Load the named module again from its file, as if the file had just been
replaced: the way out of quarantine when the file has not changed. The new
instance is checked completely first; if the file is refused, the running
version keeps running and the command fails with the reasons.

Examples:
  wasmlet module reload pcisource`,
		run: func(c *cli, args []string) error {
			return callAndPrint(c, (*api.Client).ReloadModule, &adminpb.ReloadModuleRequest{Name: args[0]}, func(resp *adminpb.ReloadModuleResponse) error {
				m := resp.Module
				fmt.Fprintf(c.stdout, "Reloaded module %s from %s: %s, %s serving %s, sha256 %s\n",
					m.Name, m.Path, m.State, m.Kind, m.Serves, short(m.Sha256))
				return nil
			})
		},
	}
}

func resourcesCmd(devicesAlias bool) *command {
	var showDevices bool
	cmd := &command{
		name: "resources", args: "[RESOURCE]", nargs: [2]int{0, 1}, group: groupClient,
		summary: "extended resources and their devices",
		help: `List the extended resources of this node: where their devices come from (a
device plugin or a WebAssembly device source), whether that provider is
connected, and how many devices there are, healthy, allocated and free.
When a provider is lost its devices stay, unhealthy, until the grace
period ends; the deadline is shown. With --devices (or as 'wasmlet
devices'), every device: health, NUMA node, attributes, and the workload
holding it.

Examples:
  wasmlet resources
  wasmlet devices example.com/pci
  wasmlet resources -o json | jq '.resources[] | {name, allocatable}'`,
		flags: func(fs *flag.FlagSet) {
			fs.BoolVar(&showDevices, "devices", devicesAlias, "list every device")
			fs.BoolVar(&showDevices, "v", devicesAlias, "the same as --devices")
		},
		run: func(c *cli, args []string) error {
			req := &adminpb.ListResourcesRequest{}
			if len(args) == 1 {
				req.Name = args[0]
			}
			return callAndPrint(c, (*api.Client).ListResources, req, func(resp *adminpb.ListResourcesResponse) error {
				if len(resp.Resources) == 0 {
					fmt.Fprintln(c.stderr, "No resources on this node.")
					return nil
				}
				printResources(c.stdout, resp.Resources, showDevices)
				return nil
			})
		},
	}
	if devicesAlias {
		cmd.name = "devices"
		cmd.summary = "every device, its health and holder (resources --devices)"
	}
	return cmd
}

func printResources(w io.Writer, rs []*adminpb.Resource, devices bool) {
	t := newTable(w, "RESOURCE", "PROVIDER", "STATUS", "CAPACITY", "HEALTHY", "ALLOCATED", "ALLOCATABLE")
	for _, r := range rs {
		state := "connected"
		if !r.Connected {
			state = "lost"
			if r.DisconnectedAt != nil {
				state += " " + ago(r.DisconnectedAt) + " ago"
			}
			if r.GraceDeadline != nil {
				state += ", devices go in " + until(r.GraceDeadline)
			}
		}
		provider := r.Provider
		if provider == "" {
			provider = "(none)"
		}
		t.row(r.Name, provider, state, strconv.Itoa(int(r.Capacity)), strconv.Itoa(int(r.Healthy)),
			strconv.Itoa(int(r.Allocated)), strconv.Itoa(int(r.Allocatable)))
	}
	t.flush()
	for _, r := range rs {
		if r.LastError != "" {
			fmt.Fprintf(w, "\n%s: %s\n", r.Name, r.LastError)
		}
		if r.Conflict != "" {
			fmt.Fprintf(w, "\n%s: conflict: %s\n", r.Name, r.Conflict)
		}
	}
	if !devices {
		return
	}
	fmt.Fprintln(w)
	t = newTable(w, "RESOURCE", "DEVICE", "HEALTH", "NUMA", "ALLOCATED TO", "ATTRIBUTES", "CAPACITY")
	for _, r := range rs {
		for _, d := range r.Devices {
			health := "healthy"
			if !d.Healthy {
				health = "unhealthy"
			}
			if d.Shared {
				health += ", shared"
			}
			t.row(r.Name, d.Id, health, joinInts(d.NumaNodes), d.AllocatedTo, strings.Join(typedKeyValues(d.Attributes, d.AttributeTypes), " "),
				strings.Join(keyValues(d.Capacity), " "))
		}
	}
	t.flush()
	for _, r := range rs {
		if r.Driver == "" {
			continue
		}
		fmt.Fprintf(w, "\n%s: driver %s", r.Name, r.Driver)
		if len(r.SharedCounters) > 0 {
			fmt.Fprintf(w, "; shared counters: %s", strings.Join(r.SharedCounters, "; "))
		}
		fmt.Fprintln(w)
		for _, d := range r.Devices {
			if len(d.ConsumesCounters) > 0 {
				fmt.Fprintf(w, "  %s consumes %s\n", d.Id, strings.Join(d.ConsumesCounters, "; "))
			}
		}
	}
}

// typedKeyValues is keyValues with each non-string value's type:
// "index=0 (int)".
func typedKeyValues(m, types map[string]string) []string {
	out := keyValues(m)
	for i, kv := range out {
		k, _, _ := strings.Cut(kv, "=")
		if t := types[k]; t != "" && t != "string" {
			out[i] = kv + "(" + t + ")"
		}
	}
	return out
}

func allocationsCmd() *command {
	var resource string
	var verbose bool
	return &command{
		name: "allocations", args: "[WORKLOAD]", nargs: [2]int{0, 1}, group: groupClient,
		summary: "devices handed to containers",
		help: `List the devices handed to containers, by workload (namespace/pod/container)
and resource. With -v, what each container was given to use them:
environment, mounts, device nodes, annotations, CDI devices.

Examples:
  wasmlet allocations
  wasmlet allocations default/train/main -v
  wasmlet allocations --resource example.com/pci -o json`,
		flags: func(fs *flag.FlagSet) {
			fs.StringVar(&resource, "resource", "", "only allocations of `RESOURCE`")
			fs.BoolVar(&verbose, "v", false, "show each container's allocate response")
		},
		run: func(c *cli, args []string) error {
			req := &adminpb.ListAllocationsRequest{Resource: resource}
			if len(args) == 1 {
				req.Workload = args[0]
			}
			return callAndPrint(c, (*api.Client).ListAllocations, req, func(resp *adminpb.ListAllocationsResponse) error {
				if len(resp.Allocations) == 0 {
					if req.Workload != "" || req.Resource != "" {
						return failf(exitNotFound, "no allocations match (workload %q, resource %q)", req.Workload, req.Resource)
					}
					fmt.Fprintln(c.stderr, "No allocations.")
					return nil
				}
				t := newTable(c.stdout, "WORKLOAD", "RESOURCE", "DEVICES", "POD UID", "AGE")
				for _, a := range resp.Allocations {
					t.row(a.Workload, a.Resource, strings.Join(a.DeviceIds, ","), a.PodUid, ago(a.Allocated))
				}
				t.flush()
				if verbose {
					for _, a := range resp.Allocations {
						fmt.Fprintf(c.stdout, "\n%s  %s:\n", a.Workload, a.Resource)
						printResponse(c.stdout, a.Response)
					}
				}
				return nil
			})
		},
	}
}

// printResponse writes what a container needs to use its devices.
func printResponse(w io.Writer, r *adminpb.ContainerResponse) {
	if r == nil {
		r = &adminpb.ContainerResponse{}
	}
	n := 0
	line := func(kind, format string, args ...any) {
		fmt.Fprintf(w, "  %-11s %s\n", kind, fmt.Sprintf(format, args...))
		n++
	}
	for _, k := range slices.Sorted(maps.Keys(r.Envs)) {
		line("env", "%s=%s", k, r.Envs[k])
	}
	for _, m := range r.Mounts {
		mode := "rw"
		if m.ReadOnly {
			mode = "ro"
		}
		line("mount", "%s -> %s (%s)", m.HostPath, m.ContainerPath, mode)
	}
	for _, d := range r.Devices {
		line("device", "%s -> %s (%s)", d.HostPath, d.ContainerPath, d.Permissions)
	}
	for _, k := range slices.Sorted(maps.Keys(r.Annotations)) {
		line("annotation", "%s=%s", k, r.Annotations[k])
	}
	for _, d := range r.CdiDevices {
		line("cdi device", "%s", d)
	}
	if n == 0 {
		fmt.Fprintln(w, "  (nothing: the provider asked for no environment, mounts or devices)")
	}
}

func allocateCmd() *command {
	var namespace, pod, podUID, container string
	return &command{
		name: "allocate", args: "RESOURCE COUNT", nargs: [2]int{2, 2}, group: groupClient,
		summary: "hand devices to a container",
		help: `Allocate COUNT devices of RESOURCE to a container, as the kubelet does
before it starts one, and print the devices and what the container needs
to use them (environment, mounts, device nodes, annotations, CDI devices).
The answer comes once the allocation is durable. Asking again for the same
container, resource and count returns the same devices; asking for a
different count fails until the container's devices are released.

Examples:
  wasmlet allocate --pod train --container main example.com/gpu 2
  wasmlet allocate --namespace ml --pod train --pod-uid 1b2c --container main example.com/pci 1 -o json`,
		flags: func(fs *flag.FlagSet) {
			fs.StringVar(&namespace, "namespace", "default", "the pod's `NAMESPACE`")
			fs.StringVar(&pod, "pod", "", "the pod's `NAME` (required)")
			fs.StringVar(&podUID, "pod-uid", "", "the pod's `UID` (optional)")
			fs.StringVar(&container, "container", "", "the container's `NAME` (required)")
		},
		run: func(c *cli, args []string) error {
			switch {
			case pod == "" && container == "":
				return usagef("--pod and --container are required")
			case pod == "":
				return usagef("--pod is required")
			case container == "":
				return usagef("--container is required")
			}
			count, err := strconv.Atoi(args[1])
			if err != nil || count < 1 {
				return usagef("COUNT must be a whole number of devices, at least 1; got %q", args[1])
			}
			req := &adminpb.AllocateRequest{Namespace: namespace, Pod: pod, PodUid: podUID, Container: container,
				Resource: args[0], Count: int32(min(count, 1<<30))}
			return callAndPrint(c, (*api.Client).Allocate, req, func(resp *adminpb.AllocateResponse) error {
				a := resp.Allocation
				fmt.Fprintf(c.stdout, "Allocated %s of %s to %s: %s\n", plural(len(a.DeviceIds), "device", "devices"),
					a.Resource, a.Workload, strings.Join(a.DeviceIds, ", "))
				fmt.Fprintln(c.stdout, "Container response:")
				printResponse(c.stdout, a.Response)
				return nil
			})
		},
	}
}

func releaseCmd() *command {
	return &command{
		name: "release", args: "WORKLOAD [RESOURCE]", nargs: [2]int{1, 2}, group: groupClient,
		summary: "free a container's devices",
		help: `Release the devices a container holds: of every resource, or of RESOURCE
only. WORKLOAD is namespace/pod/container, as 'wasmlet allocations' lists
it. The answer comes once the release is durable. Releasing what the
container does not hold fails with exit status 4, so a script can tell
"released now" from "already released".

Examples:
  wasmlet release default/train/main
  wasmlet release default/train/main example.com/gpu`,
		run: func(c *cli, args []string) error {
			if err := api.CheckWorkload(args[0]); err != nil {
				return usagef("%v (as 'wasmlet allocations' lists it)", err)
			}
			req := &adminpb.ReleaseRequest{Workload: args[0]}
			if len(args) == 2 {
				req.Resource = args[1]
			}
			return callAndPrint(c, (*api.Client).Release, req, func(resp *adminpb.ReleaseResponse) error {
				for _, a := range resp.Released {
					fmt.Fprintf(c.stdout, "Released %s of %s from %s: %s\n", plural(len(a.DeviceIds), "device", "devices"),
						a.Resource, a.Workload, strings.Join(a.DeviceIds, ", "))
				}
				return nil
			})
		},
	}
}

func csiCmd() *command {
	return &command{
		name: "csi", group: groupClient, summary: "CSI drivers and the node facts they reported",
		help: `List the CSI drivers registered through the plugin registry (plugins of
type CSIPlugin that the CSI handler module accepted), with what each driver
reported when it registered: its node id, the most volumes it may publish
on this node, its accessible topology (NodeGetInfo) and its node service's
capabilities (NodeGetCapabilities). These are the facts the kubelet
publishes as the node's CSINode object. A driver that was refused is not
listed: wasmlet plugins shows why.

Examples:
  wasmlet csi
  wasmlet csi -o json`,
		run: func(c *cli, _ []string) error {
			return callAndPrint(c, (*api.Client).ListCSIDrivers, &adminpb.ListCSIDriversRequest{}, func(resp *adminpb.ListCSIDriversResponse) error {
				if len(resp.Drivers) == 0 {
					fmt.Fprintln(c.stderr, "No CSI drivers registered (wasmlet plugins lists the plugin sockets).")
					return nil
				}
				t := newTable(c.stdout, "DRIVER", "VERSION", "NODE ID", "MAX VOLUMES", "TOPOLOGY", "CAPABILITIES", "AGE", "ENDPOINT")
				for _, d := range resp.Drivers {
					max := "-"
					if d.MaxVolumes > 0 {
						max = strconv.FormatInt(d.MaxVolumes, 10)
					}
					t.row(d.Name, d.Version, d.NodeId, max, strings.Join(keyValues(d.Topology), ","), strings.Join(d.Capabilities, ","),
						ago(d.Registered), d.Endpoint)
				}
				t.flush()
				return nil
			})
		},
	}
}
