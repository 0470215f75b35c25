package abi

// Go forms of the messages in wasmlet_abi.proto. Field numbers are the
// schema's; the tests in internal/abipb (in the repository's main module)
// check every type against the protoc-generated code so that the two cannot
// drift apart.
//
// Every message has AppendTo, which appends its encoding to b, and Unmarshal,
// which replaces the receiver's contents with the decoded bytes. Unknown
// fields are skipped, as the compatibility rules require. Unmarshal copies b
// once and its strings share that copy, so b may be reused afterwards, and a
// string kept from a message keeps the whole message's bytes alive.

// Message is implemented by every ABI message.
type Message interface {
	AppendTo(b []byte) []byte
	Unmarshal(b []byte) error
}

// Kind says what a module is for.
type Kind int32

const (
	KindUnspecified  Kind = 0
	KindHandler      Kind = 1
	KindDeviceSource Kind = 2
)

func (k Kind) String() string {
	switch k {
	case KindHandler:
		return "handler"
	case KindDeviceSource:
		return "device-source"
	}
	return "unspecified(" + itoa(int64(k)) + ")"
}

// Code classifies a module's error reply.
type Code int32

const (
	CodeUnknown            Code = 0
	CodeInvalidArgument    Code = 1
	CodeNotFound           Code = 2
	CodeFailedPrecondition Code = 3
	CodeResourceExhausted  Code = 4
	CodeUnavailable        Code = 5
	CodeInternal           Code = 6
	CodeUnimplemented      Code = 7
)

var codeNames = [...]string{"unknown", "invalid argument", "not found", "failed precondition",
	"resource exhausted", "unavailable", "internal", "unimplemented"}

func (c Code) String() string {
	if c >= 0 && int(c) < len(codeNames) {
		return codeNames[c]
	}
	return "code(" + itoa(int64(c)) + ")"
}

// Health of a device.
type Health int32

const (
	Healthy   Health = 0
	Unhealthy Health = 1
)

func (h Health) String() string {
	if h == Healthy {
		return "Healthy"
	}
	return "Unhealthy"
}

// Action tells the host what to do with a plugin a handler registered.
type Action int32

const (
	ActionRecord       Action = 0
	ActionDevicePlugin Action = 1
	ActionCSIDriver    Action = 2
)

func (a Action) String() string {
	switch a {
	case ActionRecord:
		return "record"
	case ActionDevicePlugin:
		return "device-plugin"
	case ActionCSIDriver:
		return "csi-driver"
	}
	return "action(" + itoa(int64(a)) + ")"
}

// ---- Error -------------------------------------------------------------------

// Error is a module's error reply. It implements error.
type Error struct {
	Code    Code
	Message string
}

func (e *Error) Error() string { return e.Code.String() + ": " + e.Message }

func (e *Error) AppendTo(b []byte) []byte {
	b = appendInt(b, 1, int64(e.Code))
	return appendString(b, 2, e.Message)
}

func (e *Error) Unmarshal(b []byte) error { return e.unmarshal(own(b)) }

func (e *Error) unmarshal(b []byte) error {
	*e = Error{}
	return decode("Error", "vb", b, func(d *decoder) (err error) {
		switch d.num {
		case 1:
			var v int32
			v, err = d.int32()
			e.Code = Code(v)
		case 2:
			e.Message, err = d.str()
		}
		return err
	})
}

// ---- describe ----------------------------------------------------------------

type DescribeRequest struct {
	HostABIVersion uint32
	HostVersion    string
	ModuleName     string
}

func (m *DescribeRequest) AppendTo(b []byte) []byte {
	b = appendUint(b, 1, uint64(m.HostABIVersion))
	b = appendString(b, 2, m.HostVersion)
	return appendString(b, 3, m.ModuleName)
}

func (m *DescribeRequest) Unmarshal(b []byte) error { return m.unmarshal(own(b)) }

func (m *DescribeRequest) unmarshal(b []byte) error {
	*m = DescribeRequest{}
	return decode("DescribeRequest", "vbb", b, func(d *decoder) (err error) {
		switch d.num {
		case 1:
			var v uint64
			v, err = d.uint()
			m.HostABIVersion = uint32(v)
		case 2:
			m.HostVersion, err = d.str()
		case 3:
			m.ModuleName, err = d.str()
		}
		return err
	})
}

// Description is what a module says about itself.
type Description struct {
	Kind               Kind
	Name               string
	Version            string
	PluginType         string
	Resource           string // ValidResourceName; ABI.md, "String formats"
	Operations         []string
	PreStartRequired   bool
	Summary            string
	DiscoverIntervalMS uint32
	Driver             string // ValidDriverName, or "" for DefaultDriver(Resource)
}

func (m *Description) AppendTo(b []byte) []byte {
	b = appendInt(b, 1, int64(m.Kind))
	b = appendString(b, 2, m.Name)
	b = appendString(b, 3, m.Version)
	b = appendString(b, 4, m.PluginType)
	b = appendString(b, 5, m.Resource)
	b = appendStrings(b, 6, m.Operations)
	b = appendBool(b, 7, m.PreStartRequired)
	b = appendString(b, 8, m.Summary)
	b = appendUint(b, 9, uint64(m.DiscoverIntervalMS))
	return appendString(b, 10, m.Driver)
}

func (m *Description) Unmarshal(b []byte) error { return m.unmarshal(own(b)) }

func (m *Description) unmarshal(b []byte) error {
	*m = Description{}
	return decode("Description", "vbbbbbvbvb", b, func(d *decoder) (err error) {
		switch d.num {
		case 1:
			var v int32
			v, err = d.int32()
			m.Kind = Kind(v)
		case 2:
			m.Name, err = d.str()
		case 3:
			m.Version, err = d.str()
		case 4:
			m.PluginType, err = d.str()
		case 5:
			m.Resource, err = d.str()
		case 6:
			var s string
			s, err = d.str()
			m.Operations = append(m.Operations, s)
		case 7:
			m.PreStartRequired, err = d.bool()
		case 8:
			m.Summary, err = d.str()
		case 9:
			var v uint64
			v, err = d.uint()
			m.DiscoverIntervalMS = uint32(v)
		case 10:
			m.Driver, err = d.str()
		}
		return err
	})
}

// Implements reports whether op is listed in m.Operations.
func (m *Description) Implements(op string) bool {
	for _, o := range m.Operations {
		if o == op {
			return true
		}
	}
	return false
}

// ---- handlers ----------------------------------------------------------------

// Plugin is what a plugin said about itself, plus where its socket is.
type Plugin struct {
	Type              string
	Name              string
	Endpoint          string
	SupportedVersions []string
	SocketPath        string
}

func (m *Plugin) AppendTo(b []byte) []byte {
	b = appendString(b, 1, m.Type)
	b = appendString(b, 2, m.Name)
	b = appendString(b, 3, m.Endpoint)
	b = appendStrings(b, 4, m.SupportedVersions)
	return appendString(b, 5, m.SocketPath)
}

func (m *Plugin) Unmarshal(b []byte) error {
	*m = Plugin{}
	return m.merge(own(b))
}

func (m *Plugin) merge(b []byte) error {
	return decode("Plugin", "bbbbb", b, func(d *decoder) (err error) {
		switch d.num {
		case 1:
			m.Type, err = d.str()
		case 2:
			m.Name, err = d.str()
		case 3:
			m.Endpoint, err = d.str()
		case 4:
			var s string
			s, err = d.str()
			m.SupportedVersions = append(m.SupportedVersions, s)
		case 5:
			m.SocketPath, err = d.str()
		}
		return err
	})
}

// pluginRequest is the shape shared by validate, register and deregister
// requests: one Plugin in field 1.
func appendPluginRequest(b []byte, p *Plugin) []byte {
	if p.Type == "" && p.Name == "" && p.Endpoint == "" && len(p.SupportedVersions) == 0 && p.SocketPath == "" {
		return b
	}
	return appendMessage(b, 1, p.AppendTo)
}

func unmarshalPluginRequest(name string, b []byte, p *Plugin) error {
	*p = Plugin{}
	return decode(name, "b", b, func(d *decoder) error {
		if d.num != 1 {
			return nil
		}
		body, err := d.bytes()
		if err != nil {
			return err
		}
		return p.merge(body)
	})
}

type ValidateRequest struct{ Plugin Plugin }

func (m *ValidateRequest) AppendTo(b []byte) []byte { return appendPluginRequest(b, &m.Plugin) }
func (m *ValidateRequest) Unmarshal(b []byte) error { return m.unmarshal(own(b)) }

func (m *ValidateRequest) unmarshal(b []byte) error {
	return unmarshalPluginRequest("ValidateRequest", b, &m.Plugin)
}

type ValidateResponse struct{}

func (m *ValidateResponse) AppendTo(b []byte) []byte { return b }
func (m *ValidateResponse) Unmarshal(b []byte) error { return m.unmarshal(own(b)) }

func (m *ValidateResponse) unmarshal(b []byte) error { return decode("ValidateResponse", "", b, skip) }

type RegisterRequest struct{ Plugin Plugin }

func (m *RegisterRequest) AppendTo(b []byte) []byte { return appendPluginRequest(b, &m.Plugin) }
func (m *RegisterRequest) Unmarshal(b []byte) error { return m.unmarshal(own(b)) }

func (m *RegisterRequest) unmarshal(b []byte) error {
	return unmarshalPluginRequest("RegisterRequest", b, &m.Plugin)
}

type RegisterResponse struct {
	Action       Action
	ResourceName string
	Endpoint     string
	Attributes   map[string]string
	Version      string
}

func (m *RegisterResponse) AppendTo(b []byte) []byte {
	b = appendInt(b, 1, int64(m.Action))
	b = appendString(b, 2, m.ResourceName)
	b = appendString(b, 3, m.Endpoint)
	b = appendStringMap(b, 4, m.Attributes)
	return appendString(b, 5, m.Version)
}

func (m *RegisterResponse) Unmarshal(b []byte) error { return m.unmarshal(own(b)) }

func (m *RegisterResponse) unmarshal(b []byte) error {
	*m = RegisterResponse{}
	return decode("RegisterResponse", "vbbbb", b, func(d *decoder) (err error) {
		switch d.num {
		case 1:
			var v int32
			v, err = d.int32()
			m.Action = Action(v)
		case 2:
			m.ResourceName, err = d.str()
		case 3:
			m.Endpoint, err = d.str()
		case 4:
			m.Attributes, err = d.mapEntry(m.Attributes)
		case 5:
			m.Version, err = d.str()
		}
		return err
	})
}

type DeregisterRequest struct{ Plugin Plugin }

func (m *DeregisterRequest) AppendTo(b []byte) []byte { return appendPluginRequest(b, &m.Plugin) }
func (m *DeregisterRequest) Unmarshal(b []byte) error { return m.unmarshal(own(b)) }

func (m *DeregisterRequest) unmarshal(b []byte) error {
	return unmarshalPluginRequest("DeregisterRequest", b, &m.Plugin)
}

type DeregisterResponse struct{}

func (m *DeregisterResponse) AppendTo(b []byte) []byte { return b }
func (m *DeregisterResponse) Unmarshal(b []byte) error { return m.unmarshal(own(b)) }

func (m *DeregisterResponse) unmarshal(b []byte) error {
	return decode("DeregisterResponse", "", b, skip)
}

func skip(*decoder) error { return nil }

// ---- device sources ----------------------------------------------------------

type Mount struct {
	ContainerPath string
	HostPath      string
	ReadOnly      bool
}

func (m *Mount) AppendTo(b []byte) []byte {
	b = appendString(b, 1, m.ContainerPath)
	b = appendString(b, 2, m.HostPath)
	return appendBool(b, 3, m.ReadOnly)
}

func (m *Mount) Unmarshal(b []byte) error { return m.unmarshal(own(b)) }

func (m *Mount) unmarshal(b []byte) error {
	*m = Mount{}
	return decode("Mount", "bbv", b, func(d *decoder) (err error) {
		switch d.num {
		case 1:
			m.ContainerPath, err = d.str()
		case 2:
			m.HostPath, err = d.str()
		case 3:
			m.ReadOnly, err = d.bool()
		}
		return err
	})
}

type DeviceNode struct {
	ContainerPath string
	HostPath      string
	Permissions   string
}

func (m *DeviceNode) AppendTo(b []byte) []byte {
	b = appendString(b, 1, m.ContainerPath)
	b = appendString(b, 2, m.HostPath)
	return appendString(b, 3, m.Permissions)
}

func (m *DeviceNode) Unmarshal(b []byte) error { return m.unmarshal(own(b)) }

func (m *DeviceNode) unmarshal(b []byte) error {
	*m = DeviceNode{}
	return decode("DeviceNode", "bbb", b, func(d *decoder) (err error) {
		switch d.num {
		case 1:
			m.ContainerPath, err = d.str()
		case 2:
			m.HostPath, err = d.str()
		case 3:
			m.Permissions, err = d.str()
		}
		return err
	})
}

func appendMounts(b []byte, num int, ms []Mount) []byte {
	for i := range ms {
		b = appendMessage(b, num, ms[i].AppendTo)
	}
	return b
}

func appendDeviceNodes(b []byte, num int, ns []DeviceNode) []byte {
	for i := range ns {
		b = appendMessage(b, num, ns[i].AppendTo)
	}
	return b
}

func (d *decoder) mount(dst []Mount) ([]Mount, error) {
	body, err := d.bytes()
	if err != nil {
		return dst, err
	}
	var m Mount
	err = m.unmarshal(body)
	return append(dst, m), err
}

func (d *decoder) deviceNode(dst []DeviceNode) ([]DeviceNode, error) {
	body, err := d.bytes()
	if err != nil {
		return dst, err
	}
	var n DeviceNode
	err = n.unmarshal(body)
	return append(dst, n), err
}

// ContainerEdits are the changes a container needs to use a device.
type ContainerEdits struct {
	Envs        map[string]string
	Mounts      []Mount
	DeviceNodes []DeviceNode
	Annotations map[string]string
}

// Empty reports whether e changes nothing.
func (e *ContainerEdits) Empty() bool {
	return e == nil || len(e.Envs) == 0 && len(e.Mounts) == 0 && len(e.DeviceNodes) == 0 && len(e.Annotations) == 0
}

func (e *ContainerEdits) AppendTo(b []byte) []byte {
	b = appendStringMap(b, 1, e.Envs)
	b = appendMounts(b, 2, e.Mounts)
	b = appendDeviceNodes(b, 3, e.DeviceNodes)
	return appendStringMap(b, 4, e.Annotations)
}

func (e *ContainerEdits) Unmarshal(b []byte) error {
	*e = ContainerEdits{}
	return e.merge(own(b))
}

func (e *ContainerEdits) merge(b []byte) error {
	return decode("ContainerEdits", "bbbb", b, func(d *decoder) (err error) {
		switch d.num {
		case 1:
			e.Envs, err = d.mapEntry(e.Envs)
		case 2:
			e.Mounts, err = d.mount(e.Mounts)
		case 3:
			e.DeviceNodes, err = d.deviceNode(e.DeviceNodes)
		case 4:
			e.Annotations, err = d.mapEntry(e.Annotations)
		}
		return err
	})
}

// Device is one device of a device source's resource. The fields after
// Edits describe it as resource.k8s.io/v1 does (ABI.md, "Structured
// devices"); ValidDiscovery checks them.
type Device struct {
	ID                       string // ValidDeviceID; ABI.md, "String formats"
	Health                   Health
	NUMANodes                []int64
	Attributes               map[string]string // free-form
	Edits                    *ContainerEdits
	TypedAttributes          map[string]Attribute // by ValidQualifiedName
	Capacity                 map[string]Capacity  // by ValidQualifiedName
	ConsumesCounters         []CounterConsumption
	AllowMultipleAllocations bool
}

func (m *Device) AppendTo(b []byte) []byte {
	b = appendString(b, 1, m.ID)
	b = appendInt(b, 2, int64(m.Health))
	b = appendPackedInts(b, 3, m.NUMANodes)
	b = appendStringMap(b, 4, m.Attributes)
	if m.Edits != nil {
		b = appendMessage(b, 5, m.Edits.AppendTo)
	}
	b = appendMessageMap(b, 6, m.TypedAttributes)
	b = appendMessageMap(b, 7, m.Capacity)
	for i := range m.ConsumesCounters {
		b = appendMessage(b, 8, m.ConsumesCounters[i].AppendTo)
	}
	return appendBool(b, 9, m.AllowMultipleAllocations)
}

func (m *Device) Unmarshal(b []byte) error { return m.unmarshal(own(b)) }

func (m *Device) unmarshal(b []byte) error {
	*m = Device{}
	return decode("Device", "bvibbbbbv", b, func(d *decoder) (err error) {
		switch d.num {
		case 1:
			m.ID, err = d.str()
		case 2:
			var v int32
			v, err = d.int32()
			m.Health = Health(v)
		case 3:
			m.NUMANodes, err = d.ints(m.NUMANodes)
		case 4:
			m.Attributes, err = d.mapEntry(m.Attributes)
		case 5:
			var body []byte
			if body, err = d.bytes(); err != nil {
				return err
			}
			if m.Edits == nil {
				m.Edits = &ContainerEdits{}
			}
			err = m.Edits.merge(body)
		case 6:
			m.TypedAttributes, err = d.attributeEntry(m.TypedAttributes)
		case 7:
			m.Capacity, err = d.capacityEntry(m.Capacity)
		case 8:
			m.ConsumesCounters = append(m.ConsumesCounters, CounterConsumption{})
			err = m.ConsumesCounters[len(m.ConsumesCounters)-1].unmarshal(d.buf)
		case 9:
			m.AllowMultipleAllocations, err = d.bool()
		}
		return err
	})
}

type DiscoverRequest struct{}

func (m *DiscoverRequest) AppendTo(b []byte) []byte { return b }
func (m *DiscoverRequest) Unmarshal(b []byte) error { return m.unmarshal(own(b)) }

func (m *DiscoverRequest) unmarshal(b []byte) error { return decode("DiscoverRequest", "", b, skip) }

type DiscoverResponse struct {
	Devices        []Device
	SharedCounters []CounterSet
}

func (m *DiscoverResponse) AppendTo(b []byte) []byte {
	for i := range m.Devices {
		b = appendMessage(b, 1, m.Devices[i].AppendTo)
	}
	for i := range m.SharedCounters {
		b = appendMessage(b, 2, m.SharedCounters[i].AppendTo)
	}
	return b
}

func (m *DiscoverResponse) Unmarshal(b []byte) error { return m.unmarshal(own(b)) }

func (m *DiscoverResponse) unmarshal(b []byte) error {
	*m = DiscoverResponse{}
	if n := count(b, 1); n > 0 {
		m.Devices = make([]Device, 0, n)
	}
	return decode("DiscoverResponse", "bb", b, func(d *decoder) error {
		if d.num == 2 {
			m.SharedCounters = append(m.SharedCounters, CounterSet{})
			return m.SharedCounters[len(m.SharedCounters)-1].unmarshal(d.buf)
		}
		m.Devices = append(m.Devices, Device{})
		return m.Devices[len(m.Devices)-1].unmarshal(d.buf)
	})
}

// deviceIDsRequest is the shape shared by AllocateRequest and PreStartRequest.
func appendDeviceIDsRequest(b []byte, ids []string, workload string) []byte {
	b = appendStrings(b, 1, ids)
	return appendString(b, 2, workload)
}

func unmarshalDeviceIDsRequest(name string, b []byte, ids *[]string, workload *string) error {
	*ids, *workload = nil, ""
	if n := count(b, 1); n > 0 {
		*ids = make([]string, 0, n)
	}
	return decode(name, "bb", b, func(d *decoder) (err error) {
		switch d.num {
		case 1:
			var s string
			s, err = d.str()
			*ids = append(*ids, s)
		case 2:
			*workload, err = d.str()
		}
		return err
	})
}

type AllocateRequest struct {
	DeviceIDs []string
	Workload  string // "<namespace>/<pod>/<container>" or "": ABI.md, "String formats"
}

func (m *AllocateRequest) AppendTo(b []byte) []byte {
	return appendDeviceIDsRequest(b, m.DeviceIDs, m.Workload)
}

func (m *AllocateRequest) Unmarshal(b []byte) error { return m.unmarshal(own(b)) }

func (m *AllocateRequest) unmarshal(b []byte) error {
	return unmarshalDeviceIDsRequest("AllocateRequest", b, &m.DeviceIDs, &m.Workload)
}

// AllocateResponse mirrors the device plugin API's ContainerAllocateResponse.
type AllocateResponse struct {
	Envs        map[string]string
	Mounts      []Mount
	DeviceNodes []DeviceNode
	Annotations map[string]string
	CDIDevices  []string
}

func (m *AllocateResponse) AppendTo(b []byte) []byte {
	b = appendStringMap(b, 1, m.Envs)
	b = appendMounts(b, 2, m.Mounts)
	b = appendDeviceNodes(b, 3, m.DeviceNodes)
	b = appendStringMap(b, 4, m.Annotations)
	return appendStrings(b, 5, m.CDIDevices)
}

func (m *AllocateResponse) Unmarshal(b []byte) error { return m.unmarshal(own(b)) }

func (m *AllocateResponse) unmarshal(b []byte) error {
	*m = AllocateResponse{}
	return decode("AllocateResponse", "bbbbb", b, func(d *decoder) (err error) {
		switch d.num {
		case 1:
			m.Envs, err = d.mapEntry(m.Envs)
		case 2:
			m.Mounts, err = d.mount(m.Mounts)
		case 3:
			m.DeviceNodes, err = d.deviceNode(m.DeviceNodes)
		case 4:
			m.Annotations, err = d.mapEntry(m.Annotations)
		case 5:
			var s string
			s, err = d.str()
			m.CDIDevices = append(m.CDIDevices, s)
		}
		return err
	})
}

type PreferredAllocationRequest struct {
	Available   []string
	MustInclude []string
	Size        int32
}

func (m *PreferredAllocationRequest) AppendTo(b []byte) []byte {
	b = appendStrings(b, 1, m.Available)
	b = appendStrings(b, 2, m.MustInclude)
	return appendInt(b, 3, int64(m.Size))
}

func (m *PreferredAllocationRequest) Unmarshal(b []byte) error { return m.unmarshal(own(b)) }

func (m *PreferredAllocationRequest) unmarshal(b []byte) error {
	*m = PreferredAllocationRequest{}
	if n := count(b, 1); n > 0 {
		m.Available = make([]string, 0, n)
	}
	return decode("PreferredAllocationRequest", "bbv", b, func(d *decoder) (err error) {
		var s string
		switch d.num {
		case 1:
			s, err = d.str()
			m.Available = append(m.Available, s)
		case 2:
			s, err = d.str()
			m.MustInclude = append(m.MustInclude, s)
		case 3:
			m.Size, err = d.int32()
		}
		return err
	})
}

type PreferredAllocationResponse struct{ DeviceIDs []string }

func (m *PreferredAllocationResponse) AppendTo(b []byte) []byte {
	return appendStrings(b, 1, m.DeviceIDs)
}

func (m *PreferredAllocationResponse) Unmarshal(b []byte) error { return m.unmarshal(own(b)) }

func (m *PreferredAllocationResponse) unmarshal(b []byte) error {
	*m = PreferredAllocationResponse{}
	if n := count(b, 1); n > 0 {
		m.DeviceIDs = make([]string, 0, n)
	}
	return decode("PreferredAllocationResponse", "b", b, func(d *decoder) (err error) {
		if d.num == 1 {
			var s string
			s, err = d.str()
			m.DeviceIDs = append(m.DeviceIDs, s)
		}
		return err
	})
}

type PreStartRequest struct {
	DeviceIDs []string
	Workload  string // as in AllocateRequest
}

func (m *PreStartRequest) AppendTo(b []byte) []byte {
	return appendDeviceIDsRequest(b, m.DeviceIDs, m.Workload)
}

func (m *PreStartRequest) Unmarshal(b []byte) error { return m.unmarshal(own(b)) }

func (m *PreStartRequest) unmarshal(b []byte) error {
	return unmarshalDeviceIDsRequest("PreStartRequest", b, &m.DeviceIDs, &m.Workload)
}

type PreStartResponse struct{}

func (m *PreStartResponse) AppendTo(b []byte) []byte { return b }
func (m *PreStartResponse) Unmarshal(b []byte) error { return m.unmarshal(own(b)) }

func (m *PreStartResponse) unmarshal(b []byte) error { return decode("PreStartResponse", "", b, skip) }
