package module

import (
	"fmt"
	"sort"
	"strings"

	"github.com/tetratelabs/wazero"
	"github.com/tetratelabs/wazero/api"

	"github.com/wasmlet/wasmlet/abi"
)

var (
	i32 = api.ValueTypeI32
	i64 = api.ValueTypeI64
)

// signature is a function type, written the way ABI.md writes it.
type signature struct {
	params, results []api.ValueType
}

func (s signature) String() string {
	names := func(ts []api.ValueType) string {
		parts := make([]string, len(ts))
		for i, t := range ts {
			parts[i] = api.ValueTypeName(t)
		}
		return strings.Join(parts, ", ")
	}
	out := "(" + names(s.params) + ")"
	if len(s.results) > 0 {
		out += " -> " + names(s.results)
	}
	return out
}

func (s signature) matches(d api.FunctionDefinition) bool {
	return equalTypes(s.params, d.ParamTypes()) && equalTypes(s.results, d.ResultTypes())
}

func sigOf(d api.FunctionDefinition) signature {
	return signature{d.ParamTypes(), d.ResultTypes()}
}

func equalTypes(a, b []api.ValueType) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

var (
	sigVersion = signature{nil, []api.ValueType{i32}}
	sigAlloc   = signature{[]api.ValueType{i32}, []api.ValueType{i32}}
	sigOp      = signature{[]api.ValueType{i32, i32}, []api.ValueType{i64}}
	sigInit    = signature{nil, nil}
)

// requiredExports are the exports every module has, with their types.
var requiredExports = []struct {
	name string
	sig  signature
}{
	{abi.ExportABIVersion, sigVersion},
	{abi.ExportAlloc, sigAlloc},
	{abi.ExportDescribe, sigOp},
}

// checkExports lists what is wrong with a module's exports before it runs.
func checkExports(cm wazero.CompiledModule) []string {
	var problems []string
	exports := cm.ExportedFunctions()
	for _, r := range requiredExports {
		d, ok := exports[r.name]
		switch {
		case !ok:
			problems = append(problems, fmt.Sprintf("missing required export %s%s", r.name, r.sig))
		case !r.sig.matches(d):
			problems = append(problems, fmt.Sprintf("export %s has type %s, want %s", r.name, sigOf(d), r.sig))
		}
	}
	if d, ok := exports[abi.ExportInitialize]; ok && !sigInit.matches(d) {
		problems = append(problems, fmt.Sprintf("export %s has type %s, want ()", abi.ExportInitialize, sigOf(d)))
	}
	if _, ok := cm.ExportedMemories()[abi.ExportMemory]; !ok {
		problems = append(problems, `missing required export "memory" (the module's linear memory)`)
	}
	if len(cm.ImportedMemories()) > 0 {
		problems = append(problems, "imports a memory; a module must define and export its own")
	}
	return problems
}

// checkImports lists the module's function imports that the host does not
// provide with the same type. provided maps import module name to the
// functions the host offers there.
func checkImports(cm wazero.CompiledModule, provided map[string]map[string]api.FunctionDefinition) []string {
	var problems []string
	for _, d := range cm.ImportedFunctions() {
		mod, name, _ := d.Import()
		fns, ok := provided[mod]
		if !ok {
			problems = append(problems, fmt.Sprintf("imports %s.%s, but the host provides only %s", mod, name, providedModules(provided)))
			continue
		}
		have, ok := fns[name]
		if !ok {
			problems = append(problems, fmt.Sprintf("imports %s.%s, which the host does not provide", mod, name))
			continue
		}
		if !sigOf(have).matches(d) {
			problems = append(problems, fmt.Sprintf("imports %s.%s with type %s, but the host's has type %s", mod, name, sigOf(d), sigOf(have)))
		}
	}
	return problems
}

func providedModules(provided map[string]map[string]api.FunctionDefinition) string {
	names := make([]string, 0, len(provided))
	for n := range provided {
		names = append(names, n+".*")
	}
	sort.Strings(names)
	return strings.Join(names, " and ")
}

// checkDescription lists what is wrong with what a module says about itself,
// given its exports.
func checkDescription(d *abi.Description, exports map[string]api.FunctionDefinition) []string {
	var problems []string
	optional, required := abi.OpsFor(d.Kind)
	switch d.Kind {
	case abi.KindHandler:
		if d.PluginType == "" {
			problems = append(problems, "describes itself as a handler but names no plugin_type")
		}
	case abi.KindDeviceSource:
		if d.Resource == "" {
			problems = append(problems, "describes itself as a device source but names no resource")
		} else if err := abi.ValidResourceName(d.Resource); err != nil {
			problems = append(problems, "resource "+err.Error())
		} else if d.Driver == "" {
			if err := abi.ValidDriverName(abi.DefaultDriver(d.Resource)); err != nil {
				problems = append(problems, "declares no driver, and the one derived from its resource is no driver name ("+
					err.Error()+"); declare one")
			}
		} else if err := abi.ValidDriverName(d.Driver); err != nil {
			problems = append(problems, err.Error())
		}
	default:
		problems = append(problems, fmt.Sprintf("describes itself as kind %d; want %d (handler) or %d (device source)",
			d.Kind, abi.KindHandler, abi.KindDeviceSource))
		return problems
	}
	allowed := map[string]bool{}
	for _, op := range optional {
		allowed[string(op)] = true
	}
	for _, op := range d.Operations {
		if !allowed[op] {
			problems = append(problems, fmt.Sprintf("declares operation %q, which a %s cannot implement", op, d.Kind))
			continue
		}
		e := abi.Op(op).Export()
		fn, ok := exports[e]
		switch {
		case !ok:
			problems = append(problems, fmt.Sprintf("declares operation %q but does not export %s%s", op, e, sigOp))
		case !sigOp.matches(fn):
			problems = append(problems, fmt.Sprintf("export %s has type %s, want %s", e, sigOf(fn), sigOp))
		}
	}
	for _, op := range required {
		if !d.Implements(string(op)) {
			problems = append(problems, fmt.Sprintf("a %s must implement %q, and this one does not declare it", d.Kind, op))
		}
	}
	if d.PreStartRequired && !d.Implements(string(abi.OpPreStart)) {
		problems = append(problems, `requires prestart but does not implement "prestart"`)
	}
	return problems
}
