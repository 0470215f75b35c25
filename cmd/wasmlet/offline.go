package main

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"flag"
	"fmt"
	"io"
	"io/fs"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/wasmlet/wasmlet/checkpoint"
	"github.com/wasmlet/wasmlet/host/config"
	"github.com/wasmlet/wasmlet/host/module"
	"github.com/wasmlet/wasmlet/host/module/conformance"
	"github.com/wasmlet/wasmlet/host/module/wasmbin"
	"github.com/wasmlet/wasmlet/internal/regularfile"
)

func configValidateCmd() *command {
	return &command{
		name: "config validate", args: "[FILE]", nargs: [2]int{0, 1}, group: groupOffline,
		summary: "check a plugins.toml",
		help: `Check a plugins.toml without starting anything, exactly as 'wasmlet run'
would read it: unknown keys, wrong types, bad durations, sizes and
digests, values out of range (memory under one 64KiB page), and modules
the file names that are not in the module directory. Also what 'wasmlet
run' would only find when it loads a module, and refuse the module for: a
mount whose host or root directory does not exist or is not a directory.
Every problem is printed on its own line as FILE:LINE:COLUMN: KEY: what is
wrong, expected what. Warnings, printed the same way after "warning:",
point at grants worth a second look: a mount of the whole of /, /etc,
/proc or /sys, and devices = true; they do not make the file invalid.
Modules are not loaded: whether a [handlers] entry names a handler and not
a device source is the module's own answer when it is loaded ('wasmlet
module inspect FILE' says). The file is FILE, or --config.

Examples:
  wasmlet config validate plugins.toml
  wasmlet config validate --config /etc/wasmlet/plugins.toml -o json`,
		run: func(c *cli, args []string) error {
			file := c.config
			if len(args) == 1 {
				if file != "" && file != args[0] {
					return usagef("two files given (--config %s and %s); give one", file, args[0])
				}
				file = args[0]
			}
			if file == "" {
				return usagef("which file? Give it as an argument or with --config")
			}
			cfg, err := config.Load(file)
			var errs config.Errors
			var warnings config.Errors
			if err == nil {
				// What run refuses at load is a problem here too.
				if errs, warnings = cfg.Problems(), cfg.Warnings(); len(errs) > 0 {
					err = errs
				}
			}
			switch {
			case errors.As(err, &errs):
				if c.json() {
					out := configReport{File: file, Valid: false, Problems: configProblems(errs), Warnings: configProblems(warnings)}
					if err := c.printJSON(out); err != nil {
						return err
					}
				} else {
					for _, e := range errs {
						fmt.Fprintln(c.stderr, e.Error())
					}
					printWarnings(c, warnings)
				}
				return failf(exitFailed, "%s is not valid: %s", file, plural(len(errs), "problem", "problems"))
			case err != nil:
				return failf(exitFailed, "%v", err)
			}
			h := cfg.Host
			handlers := cfg.Handlers()
			if c.json() {
				return c.printJSON(configReport{File: cfg.File, Valid: true, Problems: []configProblem{}, Warnings: configProblems(warnings),
					StateDir: h.StateDir, ModuleDir: h.ModuleDir, RegistryDir: h.RegistryDir,
					DevicePluginDir: h.DevicePluginDir, APISocket: h.APISocket, PodResourcesSocket: h.PodResourcesSocket,
					MetricsAddress: h.MetricsAddress,
					Handlers:       handlers})
			}
			printWarnings(c, warnings)
			fmt.Fprintf(c.stdout, "%s is valid.\n", file)
			t := newTableNoHeader(c.stdout)
			t.row("  State directory:", h.StateDir)
			t.row("  Module directory:", h.ModuleDir)
			t.row("  Plugin registry:", h.RegistryDir)
			t.row("  Device plugins:", h.DevicePluginDir)
			t.row("  API socket:", h.APISocket)
			t.row("  Pod resources:", h.PodResourcesSocket)
			metrics := "(disabled)"
			if h.MetricsAddress != "" {
				metrics = h.MetricsAddress
			}
			t.row("  Metrics:", metrics)
			for _, typ := range slices.Sorted(maps.Keys(handlers)) {
				t.row("  Handler:", typ+" -> "+handlers[typ])
			}
			return t.flush()
		},
	}
}

type configProblem struct {
	File    string `json:"file"`
	Line    int    `json:"line"`
	Column  int    `json:"column"`
	Key     string `json:"key,omitempty"`
	Message string `json:"message"`
}

// configProblems is es as the JSON report lists them.
func configProblems(es config.Errors) []configProblem {
	out := []configProblem{}
	for _, e := range es {
		out = append(out, configProblem{File: e.File, Line: e.Line, Column: e.Column, Key: e.Key, Message: e.Msg})
	}
	return out
}

// printWarnings writes each warning as FILE:LINE:COLUMN: KEY: warning: ...
func printWarnings(c *cli, warnings config.Errors) {
	for _, w := range warnings {
		w := *w
		w.Msg = "warning: " + w.Msg
		fmt.Fprintln(c.stderr, w.Error())
	}
}

type configReport struct {
	File               string            `json:"file"`
	Valid              bool              `json:"valid"`
	Problems           []configProblem   `json:"problems"`
	Warnings           []configProblem   `json:"warnings"`
	StateDir           string            `json:"state_dir,omitempty"`
	ModuleDir          string            `json:"module_dir,omitempty"`
	RegistryDir        string            `json:"registry_dir,omitempty"`
	DevicePluginDir    string            `json:"device_plugin_dir,omitempty"`
	APISocket          string            `json:"api_socket,omitempty"`
	PodResourcesSocket string            `json:"pod_resources_socket,omitempty"`
	MetricsAddress     string            `json:"metrics_address,omitempty"`
	Handlers           map[string]string `json:"handlers,omitempty"`
}

// inspectReport is what module inspect finds.
type inspectReport struct {
	Name     string   `json:"name"`
	Path     string   `json:"path"`
	Size     int64    `json:"size"`
	SHA256   string   `json:"sha256,omitempty"`
	Accepted bool     `json:"accepted"`
	Problems []string `json:"problems"`
	// What the module declares; empty when it was refused before saying.
	Kind             string   `json:"kind,omitempty"`
	Serves           string   `json:"serves,omitempty"`
	Version          string   `json:"version,omitempty"`
	Summary          string   `json:"summary,omitempty"`
	Operations       []string `json:"operations,omitempty"`
	PreStartRequired bool     `json:"prestart_required,omitempty"`

	// The sandbox it was checked against: "default" or the configuration
	// file.
	Sandbox            string       `json:"sandbox"`
	MemoryLimit        uint64       `json:"memory_limit_bytes"`
	CallTimeoutSeconds float64      `json:"call_timeout_seconds"`
	LoadSeconds        float64      `json:"load_seconds"`
	CompileSeconds     float64      `json:"compile_seconds,omitempty"`
	StartSeconds       float64      `json:"instantiate_seconds,omitempty"`
	Exports            []wasmExport `json:"exports"`
	Imports            []wasmImport `json:"imports"`
	// Why the exports and imports could not be read, if they could not.
	InterfaceError string `json:"interface_error,omitempty"`
}

type wasmExport struct {
	Name string `json:"name"`
	Kind string `json:"kind"`
	Type string `json:"type,omitempty"`
}

type wasmImport struct {
	Module string `json:"module"`
	Name   string `json:"name"`
	Kind   string `json:"kind"`
	Type   string `json:"type,omitempty"`
}

func moduleInspectCmd() *command {
	return &command{
		name: "module inspect", args: "FILE.wasm", nargs: [2]int{1, 1}, group: groupOffline,
		summary: "what a module declares; would this host accept it?",
		help: `Load a module file the way the host does — compile it, check its exports
and imports against the ABI, start an instance and ask it to describe
itself — and report what it declares (kind, what it serves, version,
operations), its exports and imports, and whether this host would accept
it, with every reason if not. Nothing is registered and nothing is
written. The module is checked against the default sandbox, or with
--config against the sandbox that file gives a module of that name
(memory limit, mounts, configuration, sha256 pin).

Compiling a large module takes about a second; progress goes to stderr.
Exit status 1 means the host would refuse the module.

Examples:
  wasmlet module inspect build/modules/pcisource.wasm
  wasmlet module inspect --config plugins.toml build/modules/pcisource.wasm
  wasmlet module inspect -o json mymodule.wasm | jq .problems`,
		run: func(c *cli, args []string) error {
			path := args[0]
			fi, err := os.Stat(path)
			if err != nil {
				return failf(exitFailed, "%v", err)
			}
			name := module.NameFromPath(path)
			opts, sandbox, err := c.sandboxFor(name)
			if err != nil {
				return err
			}
			opts.Name = name
			r := &inspectReport{Name: name, Path: path, Size: fi.Size(), Sandbox: sandbox, Problems: []string{},
				Exports: []wasmExport{}, Imports: []wasmImport{}}
			inspectInterface(r, path)

			p := startProgress(c.stderr, fmt.Sprintf("compiling and checking %s (%s)", filepath.Base(path), size(uint64(fi.Size()))))
			m, err := module.Load(context.Background(), path, opts)
			r.LoadSeconds = time.Since(p.start).Seconds()
			if err != nil {
				p.done("refused")
				r.Problems = module.Problems(err)
			} else {
				p.done("accepted")
				st := m.Status()
				d := st.Description
				r.Accepted, r.SHA256 = true, st.Digest
				r.Kind, r.Serves, r.Version, r.Summary = d.Kind.String(), m.Serves(), d.Version, d.Summary
				r.Operations, r.PreStartRequired = d.Operations, d.PreStartRequired
				r.MemoryLimit, r.CallTimeoutSeconds = st.MemoryLimit, st.CallTimeout.Seconds()
				r.CompileSeconds, r.StartSeconds = st.Timing.Compile.Seconds(), st.Timing.Instantiate.Seconds()
				m.Close(context.Background())
			}
			if r.MemoryLimit == 0 { // refused: report the limits it was checked against
				r.MemoryLimit, r.CallTimeoutSeconds = opts.MemoryLimit, opts.CallTimeout.Seconds()
				if opts.MemoryLimit == 0 {
					r.MemoryLimit = module.DefaultMemoryLimit
				}
				if opts.CallTimeout == 0 {
					r.CallTimeoutSeconds = module.DefaultCallTimeout.Seconds()
				}
			}
			if c.json() {
				if err := c.printJSON(r); err != nil {
					return err
				}
			} else {
				printInspect(c.stdout, r)
			}
			if !r.Accepted {
				return failf(exitFailed, "this host would refuse %s: %s", path, plural(len(r.Problems), "problem", "problems"))
			}
			return nil
		},
	}
}

// checkReport is what module check finds.
type checkReport struct {
	Name     string   `json:"name"`
	Path     string   `json:"path"`
	Accepted bool     `json:"accepted"`
	Problems []string `json:"problems"` // why the host refuses it
	Kind     string   `json:"kind,omitempty"`
	Serves   string   `json:"serves,omitempty"`
	Sandbox  string   `json:"sandbox"`
	Checks   []check  `json:"checks"`
	Passed   int      `json:"passed"`
	Failed   int      `json:"failed"`
	Skipped  int      `json:"skipped"`
}

type check struct {
	Name   string `json:"name"`
	Result string `json:"result"` // pass, fail or skip
	Detail string `json:"detail,omitempty"`
}

func moduleCheckCmd() *command {
	var moduleConfig string
	return &command{
		name: "module check", args: "FILE.wasm", nargs: [2]int{1, 1}, group: groupOffline,
		summary: "run the ABI conformance checks on a module",
		help: `Load a module file as the host does and run the ABI conformance checks on
it (host/module/conformance): describe answers the same twice; every
operation it declares survives an empty request, a malformed one and one
with fields from a future host, without a fault; a device source's
discovered devices are valid and it allocates, prefers and prestarts them
without a fault; a handler validates, registers and deregisters a plugin
without a fault; 200 concurrent calls fault none. Nothing is registered
and nothing is written.

The module runs in the default sandbox, or with --config in the one that
file gives a module of that name (memory limit, mounts, configuration);
--module-config adds configuration keys to it, as [modules.NAME] config
in plugins.toml does.

Exit status 1 means a check failed or the host would refuse the module.

Examples:
  wasmlet module check build/modules/widget.wasm
  wasmlet module check --module-config count=3,resource=example.com/x counter.wasm
  wasmlet module check --config plugins.toml -o json build/modules/pcisource.wasm`,
		flags: func(fs *flag.FlagSet) {
			fs.StringVar(&moduleConfig, "module-config", "", "configuration for the module: `KEY=VALUE[,KEY=VALUE...]`")
		},
		run: func(c *cli, args []string) error {
			path := args[0]
			if _, err := os.Stat(path); err != nil {
				return failf(exitFailed, "%v", err)
			}
			name := module.NameFromPath(path)
			opts, sandbox, err := c.sandboxFor(name)
			if err != nil {
				return err
			}
			if moduleConfig != "" {
				if opts.Config == nil {
					opts.Config = map[string]string{}
				}
				for _, kv := range strings.Split(moduleConfig, ",") {
					k, v, ok := strings.Cut(kv, "=")
					if !ok || k == "" {
						return usagef("--module-config %q: %q is not KEY=VALUE", moduleConfig, kv)
					}
					opts.Config[k] = v
				}
			}
			opts.Name = name
			r := &checkReport{Name: name, Path: path, Sandbox: sandbox, Problems: []string{}, Checks: []check{}}
			p := startProgress(c.stderr, "checking "+filepath.Base(path))
			rep, err := conformance.Check(context.Background(), path, opts)
			if err != nil {
				p.done("refused")
				r.Problems = module.Problems(err)
			} else {
				r.Accepted, r.Kind, r.Serves = true, rep.Kind, rep.Serves
				for _, res := range rep.Results {
					ck := check{Name: res.Name, Result: "pass"}
					switch {
					case res.Err != nil:
						ck.Result, ck.Detail = "fail", res.Err.Error()
						r.Failed++
					case res.Skipped != "":
						ck.Result, ck.Detail = "skip", res.Skipped
						r.Skipped++
					default:
						r.Passed++
					}
					r.Checks = append(r.Checks, ck)
				}
				p.done(fmt.Sprintf("%d passed, %d failed", r.Passed, r.Failed))
			}
			if c.json() {
				if err := c.printJSON(r); err != nil {
					return err
				}
			} else {
				printCheck(c.stdout, r)
			}
			switch {
			case !r.Accepted:
				return failf(exitFailed, "this host would refuse %s: %s", path, plural(len(r.Problems), "problem", "problems"))
			case r.Failed > 0:
				return failf(exitFailed, "%s fails %s of %d", path, plural(r.Failed, "check", "checks"), len(r.Checks))
			}
			return nil
		},
	}
}

// sandboxFor is the sandbox module name runs in: the default one, or the
// one --config gives it; and what to call it.
func (c *cli) sandboxFor(name string) (module.Options, string, error) {
	if c.config == "" {
		return module.Options{}, "default", nil
	}
	cfg, err := config.Load(c.config)
	if err != nil {
		if strings.Contains(c.config, "=") {
			return module.Options{}, "", usagef("--config %s: %v (--config is a plugins.toml; give module configuration with --module-config KEY=VALUE)", c.config, err)
		}
		return module.Options{}, "", failf(exitFailed, "reading --config %s: %v", c.config, err)
	}
	return cfg.ModuleOptions(name), cfg.File, nil
}

func printCheck(w io.Writer, r *checkReport) {
	t := newTableNoHeader(w)
	t.row("Module:", r.Name+" ("+r.Path+")")
	if r.Accepted {
		t.row("Declares:", r.Kind+" serving "+r.Serves)
	} else {
		t.row("Accepted:", "no: this host refuses it")
	}
	t.row("Sandbox:", r.Sandbox)
	t.flush()
	if !r.Accepted {
		fmt.Fprintf(w, "\nWhy it is refused:\n")
		for _, p := range r.Problems {
			fmt.Fprintf(w, "  - %s\n", p)
		}
		return
	}
	fmt.Fprintln(w)
	t = newTable(w, "CHECK", "RESULT")
	for _, ck := range r.Checks {
		t.row(ck.Name, ck.Result)
	}
	t.flush()
	for _, ck := range r.Checks {
		if ck.Result != "pass" {
			fmt.Fprintf(w, "\n%s: %s:\n  %s\n", ck.Name, ck.Result, strings.ReplaceAll(ck.Detail, "\n", "\n  "))
		}
	}
	fmt.Fprintf(w, "\n%s: %d passed, %d failed, %d skipped.\n", plural(len(r.Checks), "check", "checks"), r.Passed, r.Failed, r.Skipped)
}

// inspectInterface reads the module's imports and exports from the file.
func inspectInterface(r *inspectReport, path string) {
	bin, err := regularfile.Read(path, 256<<20)
	if err == nil {
		r.SHA256 = sha256hex(bin)
		var info *wasmbin.Module
		if info, err = wasmbin.Parse(bin); err == nil {
			for _, e := range info.Exports {
				r.Exports = append(r.Exports, wasmExport{Name: e.Name, Kind: string(e.Kind), Type: e.Type})
			}
			for _, im := range info.Imports {
				r.Imports = append(r.Imports, wasmImport{Module: im.Module, Name: im.Name, Kind: string(im.Kind), Type: im.Type})
			}
			return
		}
	}
	r.InterfaceError = err.Error()
}

func sha256hex(b []byte) string {
	sum := sha256.Sum256(b)
	return hex.EncodeToString(sum[:])
}

func printInspect(w io.Writer, r *inspectReport) {
	t := newTableNoHeader(w)
	t.row("Module:", r.Name)
	file := fmt.Sprintf("%s (%s", r.Path, size(uint64(r.Size)))
	if r.SHA256 != "" {
		file += ", sha256 " + r.SHA256
	}
	t.row("File:", file+")")
	if r.Accepted {
		t.row("Accepted:", "yes: this host would load it")
		t.declared(r.Kind, r.Serves, r.Version, r.Summary, r.Operations, r.PreStartRequired)
	} else {
		t.row("Accepted:", "no: this host refuses it")
	}
	secs := func(f float64) string { return seconds(time.Duration(f * float64(time.Second))) }
	t.row("Sandbox:", fmt.Sprintf("%s: memory %s, call timeout %s", r.Sandbox, size(r.MemoryLimit), secs(r.CallTimeoutSeconds)))
	load := secs(r.LoadSeconds)
	if r.Accepted {
		load += fmt.Sprintf(" (compile %s, start %s)", secs(r.CompileSeconds), secs(r.StartSeconds))
	}
	t.row("Checked in:", load)
	t.flush()
	if !r.Accepted {
		fmt.Fprintf(w, "\nWhy it is refused:\n")
		for _, p := range r.Problems {
			fmt.Fprintf(w, "  - %s\n", p)
		}
	}
	if r.InterfaceError != "" {
		fmt.Fprintf(w, "\nExports and imports: cannot be read: %s\n", r.InterfaceError)
		return
	}
	fmt.Fprintf(w, "\nExports (%d):\n", len(r.Exports))
	if len(r.Exports) > 0 {
		t = newTable(w, "  KIND", "NAME", "TYPE")
		for _, e := range r.Exports {
			t.row("  "+e.Kind, e.Name, e.Type)
		}
		t.flush()
	}
	fmt.Fprintf(w, "\nImports (%d):\n", len(r.Imports))
	if len(r.Imports) > 0 {
		t = newTable(w, "  KIND", "MODULE", "NAME", "TYPE")
		for _, im := range r.Imports {
			t.row("  "+im.Kind, im.Module, im.Name, im.Type)
		}
		t.flush()
	}
}

func checkpointVerifyCmd() *command {
	return &command{
		name: "checkpoint verify", args: "PATH", nargs: [2]int{1, 1}, group: groupOffline,
		summary: "check a checkpoint file",
		help: `Check a checkpoint file without modifying it: the frame and checksum, the
format version, that the payload decodes, and that the state it holds is
consistent (no device allocated to two pods, no resource or device listed
twice). The host's checkpoint is the file "checkpoint" in its state
directory. Exit status 1 means the file is damaged, from a newer wasmlet,
or inconsistent; the host refuses to start over such a file.

Examples:
  wasmlet checkpoint verify /var/lib/wasmlet/checkpoint
  wasmlet checkpoint verify -o json build/state/checkpoint`,
		run: func(c *cli, args []string) error {
			s, err := checkpoint.Verify(args[0])
			c.hostCheckpoint(args[0], err)
			if errors.Is(err, fs.ErrNotExist) {
				return failf(exitFailed, "%v", err)
			}
			if c.json() {
				out := verifyReport{Path: s.Path, OK: err == nil, Size: s.Size, Version: s.Version,
					Checksum: fmt.Sprintf("%#08x", s.Checksum), Generation: s.Generation, Allocations: s.Allocations,
					Resources: s.Resources, Devices: s.Devices, Plugins: s.Plugins}
				if !s.Written.IsZero() {
					out.Written = s.Written.Format(time.RFC3339Nano)
				}
				if err != nil {
					out.Error = err.Error()
				}
				if err := c.printJSON(out); err != nil {
					return err
				}
			} else if s.Version != 0 {
				fmt.Fprintln(c.stdout, s.String())
			}
			if err != nil {
				return failf(exitFailed, "%v", err)
			}
			if !c.json() {
				fmt.Fprintln(c.stdout, "OK: the checkpoint is intact and consistent.")
			}
			return nil
		},
	}
}

// hostCheckpoint marks a *checkpoint.CorruptError for the file at path as
// the host's own when path is where the configuration (--config, or the
// defaults) keeps the checkpoint: its message then says how to move the
// file aside, whatever the file holds. For any other file that does not
// look like a checkpoint, it does not: the user named the wrong file.
func (c *cli) hostCheckpoint(path string, err error) {
	var ce *checkpoint.CorruptError
	if !errors.As(err, &ce) {
		return
	}
	cfg := config.Default()
	if c.config != "" {
		if loaded, err := config.Load(c.config); err == nil {
			cfg = loaded
		}
	}
	own := filepath.Join(cfg.Host.StateDir, "checkpoint")
	a, errA := os.Stat(path)
	b, errB := os.Stat(own)
	ce.Expected = errA == nil && errB == nil && os.SameFile(a, b)
}

type verifyReport struct {
	Path        string `json:"path"`
	OK          bool   `json:"ok"`
	Error       string `json:"error,omitempty"`
	Size        int64  `json:"size"`
	Version     uint32 `json:"format_version"`
	Checksum    string `json:"crc32c"`
	Generation  uint64 `json:"generation"`
	Written     string `json:"written,omitempty"`
	Allocations int    `json:"allocations"`
	Resources   int    `json:"resources"`
	Devices     int    `json:"devices"`
	Plugins     int    `json:"plugins"`
}

func checkpointShowCmd() *command {
	return &command{
		name: "checkpoint show", args: "PATH", nargs: [2]int{1, 1}, group: groupOffline,
		summary: "print what a checkpoint file holds",
		help: `Print what a checkpoint file holds: every allocation with the response the
container was given, every resource with its last known devices, every
registered plugin. -o json prints the state as the protobuf JSON of
wasmlet.checkpoint.v3.State. The file is only read.

Examples:
  wasmlet checkpoint show /var/lib/wasmlet/checkpoint
  wasmlet checkpoint show -o json build/state/checkpoint | jq '.allocations | length'`,
		run: func(c *cli, args []string) error {
			st, err := checkpoint.Read(args[0])
			if err != nil {
				c.hostCheckpoint(args[0], err)
				return failf(exitFailed, "%v", err)
			}
			if c.json() {
				return c.printProto(st)
			}
			return checkpoint.Show(c.stdout, st)
		},
	}
}
