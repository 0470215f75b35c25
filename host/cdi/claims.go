package cdi

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"

	"tags.cncf.io/container-device-interface/pkg/parser"
	specs "tags.cncf.io/container-device-interface/specs-go"

	"github.com/wasmlet/wasmlet/host/device"
	"github.com/wasmlet/wasmlet/internal/atomicfile"
)

// ClaimClass is the CDI class of claims' devices: a claim's devices of a
// driver are "<driver>/claim=<claim uid>-<device>".
const ClaimClass = "claim"

// ClaimSpecPath is the spec file of a claim's devices of a driver.
func ClaimSpecPath(dir, uid, driver string) string {
	return filepath.Join(dir, FilePrefix+"claim-"+uid+"-"+driver+".yaml")
}

// WriteClaim writes the CDI spec of the devices of one driver prepared for
// the claim uid (named namespace/name), and returns the qualified CDI name
// of each device it holds, by device id: those whose edits CDI can express
// (a device with no edits needs no CDI device). The file is replaced
// atomically; with no such device there is none.
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
		raw.Devices = append(raw.Devices, specs.Device{Name: cdiName, ContainerEdits: edits})
		names[d.Device] = parser.QualifiedName(driver, ClaimClass, cdiName)
	}
	path := ClaimSpecPath(s.dir, uid, driver)
	s.mu.Lock()
	delete(s.stale, path)
	s.mu.Unlock()
	if len(raw.Devices) == 0 {
		if err := removeIfThere(path); err != nil {
			return nil, fmt.Errorf("CDI spec of claim %s: %w", name, err)
		}
		return names, nil
	}
	data, err := render(raw, "claim "+name)
	if err != nil {
		return nil, fmt.Errorf("CDI spec of claim %s: %w", name, err)
	}
	if old, err := os.ReadFile(path); err == nil && string(old) == string(data) {
		return names, nil
	}
	if err := writeSpec(path, data); err != nil {
		return nil, fmt.Errorf("claim %s: %w", name, err)
	}
	return names, nil
}

// RemoveClaim removes the CDI spec of the claim uid's devices of driver.
func (s *Specs) RemoveClaim(uid, driver string) error {
	path := ClaimSpecPath(s.dir, uid, driver)
	s.mu.Lock()
	delete(s.stale, path)
	s.mu.Unlock()
	if err := removeIfThere(path); err != nil {
		return fmt.Errorf("CDI spec %s: %w", path, err)
	}
	return nil
}

func removeIfThere(path string) error {
	if _, err := os.Lstat(path); errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	return atomicfile.Remove(path)
}
