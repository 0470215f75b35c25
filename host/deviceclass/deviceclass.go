// Package deviceclass reads the node operator's device classes:
// resource.k8s.io/v1 DeviceClass objects, in YAML or JSON files in one
// directory (several to a file, separated by "---"), as a cluster's
// administrator writes them. They are read when wasmlet starts; a change
// takes a restart. The allocator (host/allocator) adds a default class per
// driver.
package deviceclass

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"github.com/wasmlet/wasmlet/host/allocator"
	"github.com/wasmlet/wasmlet/internal/regularfile"

	resourceapi "k8s.io/api/resource/v1"
	"k8s.io/apimachinery/pkg/util/validation"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
	"k8s.io/dynamic-resource-allocation/cel"
)

// MaxFileSize bounds a class file.
const MaxFileSize = 1 << 20

// Load reads every *.yaml, *.yml and *.json file of dir, in name order, and
// returns their classes. Every problem is reported, each naming its file and
// document; then no class is returned: a node does not run with half its
// classes. A dir that does not exist holds no classes.
func Load(dir string, cache *cel.Cache) ([]*resourceapi.DeviceClass, error) {
	entries, err := os.ReadDir(dir)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("device class directory: %w", err)
	}
	var out []*resourceapi.DeviceClass
	var errs []error
	seen := map[string]string{}
	for _, e := range entries {
		name := e.Name()
		if e.IsDir() || !slices.Contains([]string{".yaml", ".yml", ".json"}, filepath.Ext(name)) || strings.HasPrefix(name, ".") {
			continue
		}
		path := filepath.Join(dir, name)
		classes, err := loadFile(path, cache)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		for _, c := range classes {
			if other, dup := seen[c.Name]; dup {
				errs = append(errs, fmt.Errorf("%s: device class %q is defined in %s too", path, c.Name, other))
				continue
			}
			seen[c.Name] = path
			out = append(out, c)
		}
	}
	if len(errs) > 0 {
		return nil, errors.Join(errs...)
	}
	return out, nil
}

func loadFile(path string, cache *cel.Cache) ([]*resourceapi.DeviceClass, error) {
	data, err := regularfile.Read(path, MaxFileSize)
	if err != nil {
		return nil, err // names path
	}
	r := utilyaml.NewYAMLReader(bufio.NewReader(bytes.NewReader(data)))
	var out []*resourceapi.DeviceClass
	var errs []error
	for doc := 1; ; doc++ {
		raw, err := r.Read()
		if err == io.EOF {
			break
		}
		if err != nil {
			return nil, fmt.Errorf("%s: document %d: %w", path, doc, err)
		}
		if len(bytes.TrimSpace(raw)) == 0 || isComment(raw) {
			continue
		}
		c, err := Decode(raw, cache)
		if err != nil {
			errs = append(errs, fmt.Errorf("%s: document %d: %w", path, doc, err))
			continue
		}
		out = append(out, c)
	}
	return out, errors.Join(errs...)
}

func isComment(doc []byte) bool {
	for _, l := range strings.Split(string(doc), "\n") {
		if t := strings.TrimSpace(l); t != "" && !strings.HasPrefix(t, "#") {
			return false
		}
	}
	return true
}

// Decode parses one DeviceClass strictly and checks it: its kind, a name
// that is a DNS subdomain, CEL selectors that compile, opaque configuration
// with a driver and JSON parameters.
func Decode(data []byte, cache *cel.Cache) (*resourceapi.DeviceClass, error) {
	var c resourceapi.DeviceClass
	if err := allocator.DecodeStrict(data, &c); err != nil {
		return nil, err
	}
	var problems []string
	if c.APIVersion != resourceapi.SchemeGroupVersion.String() || c.Kind != "DeviceClass" {
		problems = append(problems, fmt.Sprintf("apiVersion and kind must be %s and DeviceClass (got %q and %q)",
			resourceapi.SchemeGroupVersion, c.APIVersion, c.Kind))
	}
	for _, msg := range validation.IsDNS1123Subdomain(c.Name) {
		problems = append(problems, fmt.Sprintf("metadata.name %q: %s", c.Name, msg))
	}
	for i, s := range c.Spec.Selectors {
		if s.CEL == nil || s.CEL.Expression == "" {
			problems = append(problems, fmt.Sprintf("spec.selectors[%d].cel.expression: required", i))
			continue
		}
		if r := cache.GetOrCompile(s.CEL.Expression); r.Error != nil {
			problems = append(problems, fmt.Sprintf("spec.selectors[%d].cel.expression: %v", i, r.Error))
		}
	}
	for i, cfg := range c.Spec.Config {
		if cfg.Opaque == nil || cfg.Opaque.Driver == "" || len(cfg.Opaque.Parameters.Raw) == 0 {
			problems = append(problems, fmt.Sprintf("spec.config[%d]: opaque with a driver and parameters is required", i))
		}
	}
	if len(problems) > 0 {
		return nil, fmt.Errorf("device class %q: %s", c.Name, strings.Join(problems, "; "))
	}
	return &c, nil
}
