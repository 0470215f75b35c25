package device

// Prepared is what a container needs for one device of a claim: what a
// device source's prepare answered for it (its CDI device names in
// Edits.CDIDevices), or what the host derived from the device.
type Prepared struct {
	// Request names the claim's request (or "request/subrequest") the device
	// was allocated for.
	Request string
	// Device is the device's id.
	Device string
	Edits  Edits
}
