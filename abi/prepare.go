package abi

// Go forms of the messages of the prepare and unprepare operations of
// device sources (ABI.md, "Device sources").

// Claim names the ResourceClaim devices were allocated to.
type Claim struct {
	UID       string
	Namespace string
	Name      string
}

func (c *Claim) AppendTo(b []byte) []byte {
	b = appendString(b, 1, c.UID)
	b = appendString(b, 2, c.Namespace)
	return appendString(b, 3, c.Name)
}

func (c *Claim) Unmarshal(b []byte) error {
	*c = Claim{}
	return c.merge(own(b))
}

func (c *Claim) merge(b []byte) error {
	return decode("Claim", "bbb", b, func(d *decoder) (err error) {
		switch d.num {
		case 1:
			c.UID, err = d.str()
		case 2:
			c.Namespace, err = d.str()
		case 3:
			c.Name, err = d.str()
		}
		return err
	})
}

// appendClaim writes c as field num, unless it is empty.
func appendClaim(b []byte, num int, c *Claim) []byte {
	if *c == (Claim{}) {
		return b
	}
	return appendMessage(b, num, c.AppendTo)
}

// AllocatedDevice is one device of an allocation: resource.k8s.io/v1
// DeviceRequestAllocationResult, for this source.
type AllocatedDevice struct {
	Request          string // "<request>" or "<request>/<subrequest>"
	DeviceID         string
	ConsumedCapacity map[string]string // capacity name -> quantity
	ShareID          string
}

func (a *AllocatedDevice) AppendTo(b []byte) []byte {
	b = appendString(b, 1, a.Request)
	b = appendString(b, 2, a.DeviceID)
	b = appendStringMap(b, 3, a.ConsumedCapacity)
	return appendString(b, 4, a.ShareID)
}

func (a *AllocatedDevice) Unmarshal(b []byte) error { return a.unmarshal(own(b)) }

func (a *AllocatedDevice) unmarshal(b []byte) error {
	*a = AllocatedDevice{}
	return decode("AllocatedDevice", "bbbb", b, func(d *decoder) (err error) {
		switch d.num {
		case 1:
			a.Request, err = d.str()
		case 2:
			a.DeviceID, err = d.str()
		case 3:
			a.ConsumedCapacity, err = d.mapEntry(a.ConsumedCapacity)
		case 4:
			a.ShareID, err = d.str()
		}
		return err
	})
}

// Sources of a DeviceConfig.
const (
	ConfigFromClass = "class"
	ConfigFromClaim = "claim"
)

// DeviceConfig is one opaque configuration for this source's driver.
type DeviceConfig struct {
	Requests   []string // empty: every request of the claim
	Source     string   // ConfigFromClass or ConfigFromClaim
	Parameters []byte   // JSON
}

func (c *DeviceConfig) AppendTo(b []byte) []byte {
	b = appendStrings(b, 1, c.Requests)
	b = appendString(b, 2, c.Source)
	return appendBytes(b, 3, c.Parameters)
}

func (c *DeviceConfig) Unmarshal(b []byte) error { return c.unmarshal(own(b)) }

func (c *DeviceConfig) unmarshal(b []byte) error {
	*c = DeviceConfig{}
	return decode("DeviceConfig", "bbb", b, func(d *decoder) (err error) {
		switch d.num {
		case 1:
			var s string
			s, err = d.str()
			c.Requests = append(c.Requests, s)
		case 2:
			c.Source, err = d.str()
		case 3:
			c.Parameters, err = d.bytes()
		}
		return err
	})
}

// PrepareRequest asks a source to prepare the devices allocated to a claim.
type PrepareRequest struct {
	Claim    Claim
	Results  []AllocatedDevice
	Configs  []DeviceConfig // lowest precedence first
	Workload string         // as in AllocateRequest
}

func (m *PrepareRequest) AppendTo(b []byte) []byte {
	b = appendClaim(b, 1, &m.Claim)
	for i := range m.Results {
		b = appendMessage(b, 2, m.Results[i].AppendTo)
	}
	for i := range m.Configs {
		b = appendMessage(b, 3, m.Configs[i].AppendTo)
	}
	return appendString(b, 4, m.Workload)
}

func (m *PrepareRequest) Unmarshal(b []byte) error { return m.unmarshal(own(b)) }

func (m *PrepareRequest) unmarshal(b []byte) error {
	*m = PrepareRequest{}
	if n := count(b, 2); n > 0 {
		m.Results = make([]AllocatedDevice, 0, n)
	}
	return decode("PrepareRequest", "bbbb", b, func(d *decoder) (err error) {
		switch d.num {
		case 1:
			err = m.Claim.merge(d.buf)
		case 2:
			m.Results = append(m.Results, AllocatedDevice{})
			err = m.Results[len(m.Results)-1].unmarshal(d.buf)
		case 3:
			m.Configs = append(m.Configs, DeviceConfig{})
			err = m.Configs[len(m.Configs)-1].unmarshal(d.buf)
		case 4:
			m.Workload, err = d.str()
		}
		return err
	})
}

// PreparedDevice is what a container needs to use one allocated device.
type PreparedDevice struct {
	Request      string
	DeviceID     string
	CDIDeviceIDs []string // fully qualified CDI device names
	Edits        *ContainerEdits
}

func (p *PreparedDevice) AppendTo(b []byte) []byte {
	b = appendString(b, 1, p.Request)
	b = appendString(b, 2, p.DeviceID)
	b = appendStrings(b, 3, p.CDIDeviceIDs)
	if p.Edits != nil {
		b = appendMessage(b, 4, p.Edits.AppendTo)
	}
	return b
}

func (p *PreparedDevice) Unmarshal(b []byte) error { return p.unmarshal(own(b)) }

func (p *PreparedDevice) unmarshal(b []byte) error {
	*p = PreparedDevice{}
	return decode("PreparedDevice", "bbbb", b, func(d *decoder) (err error) {
		switch d.num {
		case 1:
			p.Request, err = d.str()
		case 2:
			p.DeviceID, err = d.str()
		case 3:
			var s string
			s, err = d.str()
			p.CDIDeviceIDs = append(p.CDIDeviceIDs, s)
		case 4:
			if p.Edits == nil {
				p.Edits = &ContainerEdits{}
			}
			err = p.Edits.merge(d.buf)
		}
		return err
	})
}

type PrepareResponse struct{ Devices []PreparedDevice }

func (m *PrepareResponse) AppendTo(b []byte) []byte {
	for i := range m.Devices {
		b = appendMessage(b, 1, m.Devices[i].AppendTo)
	}
	return b
}

func (m *PrepareResponse) Unmarshal(b []byte) error { return m.unmarshal(own(b)) }

func (m *PrepareResponse) unmarshal(b []byte) error {
	*m = PrepareResponse{}
	if n := count(b, 1); n > 0 {
		m.Devices = make([]PreparedDevice, 0, n)
	}
	return decode("PrepareResponse", "b", b, func(d *decoder) error {
		m.Devices = append(m.Devices, PreparedDevice{})
		return m.Devices[len(m.Devices)-1].unmarshal(d.buf)
	})
}

// UnprepareRequest tells a source a claim's devices are no longer used.
type UnprepareRequest struct{ Claim Claim }

func (m *UnprepareRequest) AppendTo(b []byte) []byte { return appendClaim(b, 1, &m.Claim) }
func (m *UnprepareRequest) Unmarshal(b []byte) error { return m.unmarshal(own(b)) }

func (m *UnprepareRequest) unmarshal(b []byte) error {
	*m = UnprepareRequest{}
	return decode("UnprepareRequest", "b", b, func(d *decoder) error { return m.Claim.merge(d.buf) })
}

type UnprepareResponse struct{}

func (m *UnprepareResponse) AppendTo(b []byte) []byte { return b }
func (m *UnprepareResponse) Unmarshal(b []byte) error { return m.unmarshal(own(b)) }

func (m *UnprepareResponse) unmarshal(b []byte) error {
	return decode("UnprepareResponse", "", b, skip)
}
