package devicemanager

import (
	"context"
	"fmt"
	"time"

	"github.com/wasmlet/wasmlet/abi"
	"github.com/wasmlet/wasmlet/checkpoint"
	"github.com/wasmlet/wasmlet/host/device"
)

// ProviderOptions are what a provider offers besides devices.
type ProviderOptions struct {
	// PreStartRequired: PreStart must be called before a container starts.
	PreStartRequired bool
	// PreferredAllocation: the provider chooses devices itself.
	PreferredAllocation bool
	// Driver, when set, makes the provider's devices the pool of this
	// resource.k8s.io driver on the node (a Wasm device source): they are
	// allocated by the node's structured allocator (Config.Allocator), for
	// counts and claims alike.
	Driver string
}

// SharedCounters is implemented by a provider with a Driver whose devices
// consume shared counters (a Wasm device source): the counter sets of the
// device set it reports, called from within Watch's update.
type SharedCounters interface {
	SharedCounters() []device.CounterSet
}

// Provider is where a resource's devices come from and who decides what a
// container gets: an external device plugin over gRPC (host/endpoint) or a
// WebAssembly device source (host/devicesource). The device manager runs one
// provider per resource.
type Provider interface {
	// Name identifies the provider in logs and status, e.g.
	// "plugin:/var/lib/kubelet/device-plugins/gpu.sock" or "module:pcisource".
	Name() string
	// Options are fixed for the provider's life.
	Options() ProviderOptions
	// Watch reports the complete device set every time it changes, starting
	// with the current one, until ctx is done (it then returns nil) or the
	// provider is lost (it returns why). update must not be retained.
	Watch(ctx context.Context, update func([]device.Device)) error
	// Allocate returns what a container needs to use devices ids.
	Allocate(ctx context.Context, ids []string, workload string) (device.Edits, error)
	// PreferredAllocation chooses size devices from available, including
	// mustInclude. Only called when Options().PreferredAllocation.
	PreferredAllocation(ctx context.Context, available, mustInclude []string, size int) ([]string, error)
	// PreStart is called before a container with devices ids starts. Only
	// called when Options().PreStartRequired.
	PreStart(ctx context.Context, ids []string, workload string) error
	// Close releases the provider's connections.
	Close() error
}

// AllocateRequest asks for Count devices of Resource for one container.
type AllocateRequest struct {
	Namespace string
	Pod       string
	PodUID    string
	Container string
	Resource  string
	Count     int
}

// Workload is the key allocations are recorded under:
// "namespace/pod/container".
func (r AllocateRequest) Workload() string { return WorkloadKey(r.Namespace, r.Pod, r.Container) }

// WorkloadKey builds the key of a container's allocations.
func WorkloadKey(namespace, pod, container string) string {
	return namespace + "/" + pod + "/" + container
}

// Allocation is devices of one resource handed to one container.
type Allocation struct {
	Workload  string
	Namespace string
	Pod       string
	PodUID    string
	Container string
	Resource  string
	DeviceIDs []string
	// Edits are what the provider answered for the devices.
	Edits device.Edits
	At    time.Time

	record *checkpoint.Allocation // the checkpoint's form, built before it is published
	// pending: recorded, but not yet durable. Nobody is told of it (not a
	// repeated Allocate, not Allocations) until it is.
	pending bool
	// releasing: its release is being made durable. It is left out of the
	// checkpoint, but its devices stay held until the release is durable;
	// if it cannot be, the allocation stays.
	releasing bool
}

// ResourceStatus is a snapshot of one resource.
type ResourceStatus struct {
	Name      string
	Provider  string // empty when the provider is gone
	Connected bool
	// DisconnectedAt is when the provider was lost; the devices go at
	// DisconnectedAt + grace period.
	DisconnectedAt   time.Time
	Options          ProviderOptions
	Capacity         int // all devices
	Healthy          int
	Allocated        int
	Allocatable      int // healthy and not allocated
	Devices          []DeviceStatus
	LastUpdate       time.Time
	LastError        string
	ProviderSwitches int // how many times another provider took over
	// SharedCounters are the counter sets of a driver's pool.
	SharedCounters []device.CounterSet
}

// DeviceStatus is one device and who holds it.
type DeviceStatus struct {
	device.Device
	AllocatedTo string // workload, or ""
}

// ValidDevices checks a device set: valid and unique ids.
func ValidDevices(devs []device.Device) error {
	seen := make(map[string]bool, len(devs))
	for _, d := range devs {
		if err := abi.ValidDeviceID(d.ID); err != nil {
			return err
		}
		if seen[d.ID] {
			return fmt.Errorf("device id %q appears twice", d.ID)
		}
		seen[d.ID] = true
	}
	return nil
}
