package cdi

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"

	cdilib "tags.cncf.io/container-device-interface/pkg/cdi"
	"tags.cncf.io/container-device-interface/pkg/parser"
	specs "tags.cncf.io/container-device-interface/specs-go"

	"github.com/wasmlet/wasmlet/host/device"
)

// ClaimClass is the CDI class of claims' devices: a claim's devices of a
// driver are "<driver>/claim=<claim uid>-<device>".
const ClaimClass = "claim"

// ClaimSpecPath is the spec file of a claim's devices of a driver.
func ClaimSpecPath(dir, uid, driver string) string {
	return filepath.Join(dir, FilePrefix+"claim-"+uid+"-"+driver+".json")
}

// WriteClaim writes the CDI spec of the devices of one driver prepared for
// the claim uid (named namespace/name), and returns the qualified CDI name
// of each device it holds, by device id: those whose edits CDI can express
// (a device with no edits needs no CDI device). The file is replaced
// atomically but without an fsync (the claim store writes it again from
// the checkpoint when wasmlet starts); with no such device there is none.
func (s *Specs) WriteClaim(uid, name, driver string, devs []device.Prepared) (map[string]string, error) {
	if err := parser.ValidateVendorName(driver); err != nil {
		return nil, fmt.Errorf("CDI spec of claim %s: driver %q is not a valid CDI vendor: %w", name, driver, err)
	}
	kind := driver + "/" + ClaimClass
	raw := &specs.Spec{Kind: kind}
	names := map[string]string{}
	for _, d := range devs {
		edits := containerEdits(d.Edits)
		if len(edits.Env) == 0 && len(edits.DeviceNodes) == 0 && len(edits.Mounts) == 0 {
			continue
		}
		cdiName := uid + "-" + d.Device
		if err := parser.ValidateDeviceName(cdiName); err != nil {
			return nil, fmt.Errorf("CDI spec of claim %s: device %s: %w", name, d.Device, err)
		}
		if err := (&cdilib.ContainerEdits{ContainerEdits: &edits}).Validate(); err != nil {
			return nil, fmt.Errorf("CDI spec of claim %s: device %s: its edits are not valid in CDI: %w", name, d.Device, err)
		}
		raw.Devices = append(raw.Devices, specs.Device{Name: cdiName, ContainerEdits: edits})
		names[d.Device] = parser.QualifiedName(driver, ClaimClass, cdiName)
	}
	path := ClaimSpecPath(s.dir, uid, driver)
	s.adoptClaim(path)
	if len(raw.Devices) == 0 {
		if err := removeIfThere(path); err != nil {
			return nil, fmt.Errorf("CDI spec of claim %s: %w", name, err)
		}
		return names, nil
	}
	data, err := renderJSON(raw)
	if err != nil {
		return nil, fmt.Errorf("CDI spec of claim %s: %w", name, err)
	}
	if err := writeSpecFile(path, data, false, false); err != nil {
		return nil, fmt.Errorf("claim %s: %w", name, err)
	}
	return names, nil
}

// RemoveClaim removes the CDI spec of the claim uid's devices of driver.
func (s *Specs) RemoveClaim(uid, driver string) error {
	path := ClaimSpecPath(s.dir, uid, driver)
	s.adoptClaim(path)
	if err := removeIfThere(path); err != nil {
		return fmt.Errorf("CDI spec %s: %w", path, err)
	}
	return nil
}

// removeIfThere removes a claim's spec. Without an fsync: a spec that
// comes back after a crash belongs to no claim in the checkpoint, and the
// spec keeper removes it as stale after the grace period.
func removeIfThere(path string) error {
	if err := os.Remove(path); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return err
	}
	return nil
}

// renderJSON encodes a claim's spec as JSON, with the oldest CDI version
// that has every field it uses. JSON, not YAML: a claim's spec is written
// on every apply, and JSON costs a fraction to encode.
func renderJSON(raw *specs.Spec) ([]byte, error) {
	v, err := specs.MinimumRequiredVersion(raw)
	if err != nil {
		return nil, err
	}
	raw.Version = v
	return json.Marshal(raw)
}

// adoptClaim makes the claim spec at path no longer stale: its claim is
// there.
func (s *Specs) adoptClaim(path string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if st, ok := s.stale[path]; ok {
		st.timer.Stop()
		delete(s.stale, path)
	}
}
