package csi

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"math"
	"slices"
	"sort"
	"strings"
	"sync"
	"time"

	csipb "github.com/container-storage-interface/spec/lib/go/csi"
	"github.com/hashicorp/go-hclog"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"
	"k8s.io/apimachinery/pkg/util/validation"
	utilversion "k8s.io/apimachinery/pkg/util/version"

	"github.com/wasmlet/wasmlet/abi"
)

// MaxNodeIDLength is the longest node id a CSINode object accepts
// (k8s.io/kubernetes/pkg/apis/storage/validation, csiNodeIDMaxLength).
const MaxNodeIDLength = 256

// Registration is a CSIPlugin handler's decision to register a driver.
type Registration struct {
	Name       string   // the driver's name, as its registrar announced it
	Endpoint   string   // absolute path of the driver's CSI socket
	Version    string   // the CSI spec version the handler chose; empty: the highest 1.x offered
	Offered    []string // the versions the registrar announced
	SocketPath string   // the registration socket it came from
}

// Driver is a registered CSI driver and its node facts.
type Driver struct {
	Name       string
	Version    string // the CSI spec version used with it
	Endpoint   string
	SocketPath string // the registration socket
	// From NodeGetInfo.
	NodeID     string
	MaxVolumes int64             // the most volumes the node may publish; 0: no limit given
	Topology   map[string]string // accessible topology segments; nil: none
	// From NodeGetCapabilities: the node service's RPC capabilities, by
	// their CSI names (STAGE_UNSTAGE_VOLUME, GET_VOLUME_STATS...).
	Capabilities []string
	Registered   time.Time
}

// Config configures a driver registry.
type Config struct {
	Logger hclog.Logger
	// Observe is told the number of drivers whenever it changes (metrics).
	Observe func(n int)
}

// Drivers is the node's registry of CSI drivers. It is safe for concurrent
// use.
type Drivers struct {
	log     hclog.Logger
	observe func(int)

	mu     sync.Mutex
	byName map[string]Driver
}

// New returns an empty registry.
func New(cfg Config) *Drivers {
	if cfg.Logger == nil {
		cfg.Logger = hclog.NewNullLogger()
	}
	if cfg.Observe == nil {
		cfg.Observe = func(int) {}
	}
	return &Drivers{log: cfg.Logger, observe: cfg.Observe, byName: map[string]Driver{}}
}

// Register asks the driver r names for its node facts and records it (see
// the package comment). Its error, if any, is the reason the driver is
// refused, for its registrar.
func (ds *Drivers) Register(ctx context.Context, r Registration) (Driver, error) {
	who := fmt.Sprintf("CSI driver %q at %s", r.Name, r.Endpoint)
	if err := abi.ValidCSIDriverName(r.Name); err != nil {
		return Driver{}, err
	}
	version, err := chooseVersion(r)
	if err != nil {
		return Driver{}, fmt.Errorf("%s: %w", who, err)
	}
	ds.mu.Lock()
	err = ds.supersedes(r, version)
	ds.mu.Unlock()
	if err != nil {
		return Driver{}, err
	}

	d := Driver{Name: r.Name, Version: version.s, Endpoint: r.Endpoint, SocketPath: r.SocketPath}
	if err := ds.askNode(ctx, who, &d); err != nil {
		return Driver{}, err
	}

	ds.mu.Lock()
	if err = ds.supersedes(r, version); err == nil {
		err = ds.collides(d)
	}
	if err == nil {
		d.Registered = time.Now()
		ds.byName[d.Name] = d
	}
	n := len(ds.byName)
	ds.mu.Unlock()
	if err != nil {
		return Driver{}, err
	}
	ds.observe(n)
	ds.log.Info("CSI driver registered", "driver", d.Name, "version", d.Version, "endpoint", d.Endpoint,
		"node_id", d.NodeID, "max_volumes", d.MaxVolumes, "topology", d.Topology, "capabilities", d.Capabilities)
	return d, nil
}

// Deregister forgets the driver called name, with its facts, if the
// registration socket at socketPath registered it (a driver registered
// since through another socket stays). It reports whether it did.
func (ds *Drivers) Deregister(name, socketPath string) bool {
	ds.mu.Lock()
	d, ok := ds.byName[name]
	ok = ok && d.SocketPath == socketPath
	if ok {
		delete(ds.byName, name)
	}
	n := len(ds.byName)
	ds.mu.Unlock()
	if ok {
		ds.observe(n)
		ds.log.Info("CSI driver deregistered", "driver", name, "registration_socket", socketPath)
	}
	return ok
}

// List returns every registered driver, by name. The caller may keep and
// modify what it gets.
func (ds *Drivers) List() []Driver {
	ds.mu.Lock()
	out := make([]Driver, 0, len(ds.byName))
	for _, d := range ds.byName {
		d.Topology = maps.Clone(d.Topology)
		d.Capabilities = slices.Clone(d.Capabilities)
		out = append(out, d)
	}
	ds.mu.Unlock()
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out
}

// Len is the number of registered drivers.
func (ds *Drivers) Len() int {
	ds.mu.Lock()
	defer ds.mu.Unlock()
	return len(ds.byName)
}

// version is a CSI spec version as the driver wrote it, and parsed.
type version struct {
	s string
	v *utilversion.Version
}

// chooseVersion checks the handler's choice: one of the versions the driver
// offered, and 1.x; without a choice, the kubelet's (the highest 1.x).
func chooseVersion(r Registration) (version, error) {
	if r.Version == "" {
		best, err := utilversion.HighestSupportedVersion(r.Offered)
		if err != nil {
			return version{}, fmt.Errorf("none of the versions offered (%s) is a supported CSI spec version: %v",
				strings.Join(r.Offered, ", "), err)
		}
		for _, s := range r.Offered {
			if v, err := utilversion.ParseGeneric(s); err == nil && v.EqualTo(best) {
				return version{s, v}, nil
			}
		}
	}
	if !slices.Contains(r.Offered, r.Version) {
		return version{}, fmt.Errorf("the handler chose CSI spec version %q, which the driver did not offer (it offered %s)",
			r.Version, strings.Join(r.Offered, ", "))
	}
	v, err := utilversion.ParseGeneric(r.Version)
	if err != nil || v.Major() != 1 {
		return version{}, fmt.Errorf("the handler chose %q, which is not a CSI spec 1.x version", r.Version)
	}
	return version{r.Version, v}, nil
}

// supersedes refuses r if another registration socket serves the driver at
// the same or a higher version, as the kubelet does. A newer socket with a
// higher version takes the driver over. Called with ds.mu held.
func (ds *Drivers) supersedes(r Registration, v version) error {
	old, ok := ds.byName[r.Name]
	if !ok || old.SocketPath == r.SocketPath {
		return nil
	}
	if ov, err := utilversion.ParseGeneric(old.Version); err == nil && !ov.LessThan(v.v) {
		return fmt.Errorf("CSI driver %q is already registered, through %s, with the same or a higher supported version (%s); not registering it again at version %s",
			r.Name, old.SocketPath, old.Version, v.s)
	}
	return nil
}

// collides refuses topology that contradicts another driver's: the kubelet
// makes each segment a label of the node, and refuses a driver whose
// segment would change another's value. Called with ds.mu held.
func (ds *Drivers) collides(d Driver) error {
	for _, o := range ds.byName {
		if o.Name == d.Name {
			continue
		}
		for k, v := range d.Topology {
			if ov, ok := o.Topology[k]; ok && ov != v {
				return fmt.Errorf("CSI driver %q at %s reported topology %s=%q, but CSI driver %q has %s=%q: a node label has one value",
					d.Name, d.Endpoint, k, v, o.Name, k, ov)
			}
		}
	}
	return nil
}

// askNode fills in d's node facts from its node service.
func (ds *Drivers) askNode(ctx context.Context, who string, d *Driver) error {
	conn, err := grpc.NewClient("unix://"+d.Endpoint, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		return fmt.Errorf("%s: %w", who, err)
	}
	defer conn.Close()
	node := csipb.NewNodeClient(conn)
	info, err := node.NodeGetInfo(ctx, &csipb.NodeGetInfoRequest{})
	if err != nil {
		return fmt.Errorf("%s did not answer NodeGetInfo: %s", who, callError(ctx, err))
	}
	switch id := info.GetNodeId(); {
	case id == "":
		return fmt.Errorf("%s answered NodeGetInfo with an empty node id", who)
	case len(id) > MaxNodeIDLength:
		return fmt.Errorf("%s answered NodeGetInfo with a node id of %d bytes; a CSINode allows at most %d", who, len(id), MaxNodeIDLength)
	}
	d.NodeID = info.GetNodeId()
	d.MaxVolumes = info.GetMaxVolumesPerNode()
	switch {
	case d.MaxVolumes < 0:
		ds.log.Warn("CSI driver reported a negative maximum number of volumes; ignored, as the kubelet ignores it",
			"driver", d.Name, "max_volumes_per_node", d.MaxVolumes)
		d.MaxVolumes = 0
	case d.MaxVolumes > math.MaxInt32:
		ds.log.Warn("CSI driver reported more volumes than a CSINode can hold; truncated, as the kubelet truncates it",
			"driver", d.Name, "max_volumes_per_node", d.MaxVolumes, "truncated_to", math.MaxInt32)
		d.MaxVolumes = math.MaxInt32
	}
	if segs := info.GetAccessibleTopology().GetSegments(); len(segs) > 0 {
		if err := checkTopology(segs); err != nil {
			return fmt.Errorf("%s answered NodeGetInfo with accessible topology the node cannot have as labels: %w", who, err)
		}
		d.Topology = maps.Clone(segs)
	}
	caps, err := node.NodeGetCapabilities(ctx, &csipb.NodeGetCapabilitiesRequest{})
	if err != nil {
		return fmt.Errorf("%s did not answer NodeGetCapabilities: %s", who, callError(ctx, err))
	}
	for _, c := range caps.GetCapabilities() {
		if t := c.GetRpc().GetType(); t != csipb.NodeServiceCapability_RPC_UNKNOWN {
			d.Capabilities = append(d.Capabilities, t.String())
		}
	}
	return nil
}

// checkTopology checks segments as node labels: keys qualified names,
// values label values.
func checkTopology(segs map[string]string) error {
	keys := make([]string, 0, len(segs))
	for k := range segs {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	var errs []error
	for _, k := range keys {
		if msgs := validation.IsQualifiedName(k); len(msgs) > 0 {
			errs = append(errs, fmt.Errorf("key %q: %s", k, strings.Join(msgs, "; ")))
		}
		if msgs := validation.IsValidLabelValue(segs[k]); len(msgs) > 0 {
			errs = append(errs, fmt.Errorf("%s=%q: %s", k, segs[k], strings.Join(msgs, "; ")))
		}
	}
	return errors.Join(errs...)
}

// callError says why a call failed: the operation's time ran out, or what
// gRPC said (for a socket nobody serves, the dial's error).
func callError(ctx context.Context, err error) string {
	if ctx.Err() != nil {
		return fmt.Sprintf("no answer within the registration's time (%v)", ctx.Err())
	}
	// gRPC runs its own timer for the context's deadline, which can fire
	// before the context's: the same event, said the same way.
	if status.Code(err) == codes.DeadlineExceeded {
		return fmt.Sprintf("no answer within the registration's time (%v)", context.DeadlineExceeded)
	}
	if s, ok := status.FromError(err); ok {
		return fmt.Sprintf("%s: %s", s.Code(), s.Message())
	}
	return err.Error()
}
