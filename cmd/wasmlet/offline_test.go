package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/wasmlet/wasmlet/checkpoint"
	"github.com/wasmlet/wasmlet/guests/build"
	"github.com/wasmlet/wasmlet/internal/testkit"
)

func TestConfigValidate(t *testing.T) {
	dir := testkit.ShortDir(t)
	testkit.WriteFile(t, filepath.Join(dir, "modules", "counter.wasm"), "\x00asm\x01\x00\x00\x00")
	good := testkit.WriteFile(t, filepath.Join(dir, "good.toml"), `
[host]
state_dir = "state"
module_dir = "modules"
api_socket = "run/api.sock"
metrics_address = ""

[modules.counter]
config = { count = "2" }
`)
	expect(t, exitOK, []string{"config", "validate", good}, good+" is valid.",
		"API socket:       "+filepath.Join(dir, "run", "api.sock"),
		"Pod resources:    "+filepath.Join(dir, "state", "pod-resources", "wasmlet.sock"), "Metrics:          (disabled)")
	expect(t, exitOK, []string{"config", "validate", "--config", good})

	bad := testkit.WriteFile(t, filepath.Join(dir, "bad.toml"), `[host]
state_dir = "state"
module_dir = "modules"

[sandbox]
timeout = "2 seconds"
memory = "64M"

[modules.nothere]
config = { a = "b" }
`)
	r := expect(t, exitFailed, []string{"config", "validate", bad},
		`stderr:`+bad+`:6:11: sandbox.timeout: invalid duration "2 seconds", expected a duration`,
		`stderr:`+bad+`:7:10: sandbox.memory: invalid size "64M"`,
		`stderr:`+bad+`:9:10: modules.nothere: module "nothere" not found`,
		"stderr:wasmlet config validate: "+bad+" is not valid: 3 problems")
	if r.stdout != "" {
		t.Fatalf("problems went to stdout: %v", r)
	}

	r = expect(t, exitFailed, []string{"config", "validate", "-o", "json", bad})
	var rep configReport
	decode(t, r, &rep)
	if rep.Valid || len(rep.Problems) != 3 || rep.Problems[0].Line != 6 || rep.Problems[0].Column != 11 ||
		rep.Problems[0].Key != "sandbox.timeout" || rep.Problems[2].Line != 9 {
		t.Fatalf("JSON report %+v", rep)
	}

	// What run would refuse at load is a problem; broad mounts and
	// devices = true are warnings.
	loadTime := testkit.WriteFile(t, filepath.Join(dir, "load.toml"), `[host]
state_dir = "state"
module_dir = "modules"

[modules.counter]
mounts = [{ host = "nothere", guest = "/a" }, { host = "/etc", guest = "/etc", devices = true }]
`)
	r = expect(t, exitFailed, []string{"config", "validate", loadTime},
		`stderr:`+loadTime+`:6:20: modules.counter.mounts[0].host: no such file or directory, expected an existing directory (the module is refused at load without it)`,
		`stderr:`+loadTime+`:6:56: modules.counter.mounts[1].host: warning: the module may read all of /etc`,
		`stderr:`+loadTime+`:6:90: modules.counter.mounts[1].devices: warning: the module may open the device nodes under /etc`,
		"stderr:wasmlet config validate: "+loadTime+" is not valid: 1 problem")
	r = expect(t, exitFailed, []string{"config", "validate", "-o", "json", loadTime})
	rep = configReport{}
	decode(t, r, &rep)
	if rep.Valid || len(rep.Problems) != 1 || len(rep.Warnings) != 2 || rep.Warnings[1].Key != "modules.counter.mounts[1].devices" {
		t.Fatalf("JSON report %+v", rep)
	}
	warned := testkit.WriteFile(t, filepath.Join(dir, "warned.toml"), `[host]
state_dir = "state"
module_dir = "modules"

[modules.counter]
mounts = [{ host = "/sys", guest = "/sys" }]
`)
	expect(t, exitOK, []string{"config", "validate", warned}, warned+" is valid.",
		`stderr:`+warned+`:6:20: modules.counter.mounts[0].host: warning: the module may read all of /sys`)

	expect(t, exitFailed, []string{"config", "validate", filepath.Join(dir, "missing.toml")}, "stderr:no such file or directory")
	expect(t, exitUsage, []string{"config", "validate"}, "stderr:which file?")
}

func TestModuleInspectAccepted(t *testing.T) {
	counter := build.Go(t, "guests/counter")
	r := expect(t, exitOK, []string{"module", "inspect", counter},
		"Accepted:   yes: this host would load it",
		"Kind:       device-source",
		"Serves:     example.com/counter",
		"Version:    1.0.0",
		"Operations: discover, allocate, preferred_allocation, prestart",
		"Sandbox:    default: memory 64 MiB, call timeout 2s",
		"func    wasmlet_discover              (i32, i32) -> i64",
		"memory  memory",
		"func  wasmlet                 config_get",
		// stderr is not a terminal here: one line, with the time it took.
		"stderr:compiling and checking "+filepath.Base(counter))
	if lines := strings.Count(r.stderr, "\n"); lines != 1 || !strings.Contains(r.stderr, ": accepted in ") {
		t.Fatalf("progress on a non-terminal should be one line: %q", r.stderr)
	}

	r = expect(t, exitOK, []string{"module", "inspect", "-o", "json", counter})
	var rep inspectReport
	decode(t, r, &rep)
	// 11 exports: the six operations of a source (the SDK exports them
	// all), the three every module has, _initialize and memory.
	if !rep.Accepted || rep.Kind != "device-source" || rep.Serves != "example.com/counter" || len(rep.Problems) != 0 ||
		len(rep.SHA256) != 64 || rep.LoadSeconds <= 0 || len(rep.Exports) != 11 || len(rep.Imports) == 0 {
		t.Fatalf("JSON report %+v", rep)
	}
}

func TestModuleInspectRefused(t *testing.T) {
	wat := func(name string) string { return build.Testdata(t, "guests/testmodules/wat/"+name+".wasm") }
	for _, c := range []struct {
		module string
		want   []string
	}{
		{"missing_exports", []string{"  - missing required export wasmlet_alloc(i32) -> i32",
			"  - missing required export wasmlet_describe(i32, i32) -> i64", "Exports (2):"}},
		{"wrong_signature", []string{"  - export wasmlet_alloc has type (i64) -> i32, want (i32) -> i32",
			"func    wasmlet_alloc        (i64) -> i32"}},
		{"bad_import", []string{"  - imports env.abort, but the host provides only wasi_snapshot_preview1.* and wasmlet.*",
			"func  env     abort  (i32)"}},
		{"wrong_version", []string{"  - declares ABI version 2; this host speaks version 1"}},
		{"describe_lies", []string{`  - declares operation "allocate" but does not export wasmlet_allocate(i32, i32) -> i64`}},
		{"not_wasm", []string{`  - not a WebAssembly module: the file starts with "this", not "\0asm"`,
			"Exports and imports: cannot be read: not a WebAssembly module"}},
		// Answered at once: the start function, which never returns, is not run.
		{"start_loop", []string{`  - modules are reactors; a start section is not allowed (this one runs function 4 ("spin") when the module is instantiated)`,
			"func    spin "}},
		// Read only as far as its bytes go, by the host and by inspect.
		{"../malformed/huge_function_count", []string{"  - is not a well-formed WebAssembly module: code section: at offset 128: a vector of 4294967295 elements cannot fit in the 44 bytes left",
			"Exports and imports: cannot be read: code section: at offset 128: a vector of 4294967295 elements"}},
	} {
		want := append([]string{"Accepted:   no: this host refuses it", "Why it is refused:",
			"stderr:wasmlet module inspect: this host would refuse " + wat(c.module)}, c.want...)
		expect(t, exitFailed, []string{"module", "inspect", wat(c.module)}, want...)
	}

	r := expect(t, exitFailed, []string{"module", "inspect", "--output=json", wat("missing_exports")})
	var rep inspectReport
	decode(t, r, &rep)
	if rep.Accepted || len(rep.Problems) != 2 || rep.Name != "missing_exports" || len(rep.Exports) != 2 {
		t.Fatalf("JSON report %+v", rep)
	}

	expect(t, exitFailed, []string{"module", "inspect", "/nonexistent/m.wasm"}, "stderr:no such file or directory")
}

// TestModuleCheck runs the conformance checks as a module author would:
// on a good module, a relative path; on one that traps, each failed check
// named with its fault; on one the host refuses, the reasons; with
// configuration given on the command line.
func TestModuleCheck(t *testing.T) {
	wat := func(name string) string { return build.Testdata(t, "guests/testmodules/wat/"+name+".wasm") }
	wd, err := os.Getwd()
	if err != nil {
		t.Fatal(err)
	}
	rel, err := filepath.Rel(wd, wat("minimal"))
	if err != nil {
		t.Fatal(err)
	}
	expect(t, exitOK, []string{"module", "check", rel}, "Module:   minimal ("+rel+")",
		"Declares: device-source serving example.com/wat", "row:describe is stable pass",
		"row:discover returns valid devices pass", "row:concurrent calls pass", "0 failed, 0 skipped.")

	r := expect(t, exitFailed, []string{"module", "check", wat("trap")}, "row:describe is stable pass",
		"row:discover survives an empty request fail", "discover survives an empty request: fail:",
		`module "trap": discover: trap: wasm error: unreachable`,
		"stderr:wasmlet module check: "+wat("trap")+" fails 5 checks of 6")
	if strings.Contains(r.stdout, "quarantined") {
		t.Errorf("the checks met a quarantine, not the module's faults:\n%v", r)
	}
	r = expect(t, exitFailed, []string{"module", "check", "-o", "json", wat("trap")})
	var rep checkReport
	decode(t, r, &rep)
	if !rep.Accepted || rep.Failed != 5 || rep.Passed != 1 || rep.Checks[0].Result != "pass" || rep.Checks[1].Result != "fail" {
		t.Fatalf("JSON report %+v", rep)
	}

	expect(t, exitFailed, []string{"module", "check", wat("missing_exports")}, "Accepted: no: this host refuses it",
		"  - missing required export wasmlet_alloc(i32) -> i32", "stderr:this host would refuse")

	// The counter's configuration decides its devices; a bad count is its
	// own error, which it answers without a fault.
	counter := build.Go(t, "guests/counter")
	expect(t, exitOK, []string{"module", "check", "--module-config", "count=3,resource=example.com/three", counter},
		"Declares: device-source serving example.com/three", "row:allocate a discovered device pass")
	expect(t, exitUsage, []string{"module", "check", "--module-config", "count", counter}, `stderr:"count" is not KEY=VALUE`)
	expect(t, exitUsage, []string{"module", "check", "--config", "count=3", counter}, "stderr:give module configuration with --module-config KEY=VALUE")
}

// TestModuleInspectWithConfig checks a module against a host's sandbox: a
// sha256 pin the file does not match is a refusal.
func TestModuleInspectWithConfig(t *testing.T) {
	dir := testkit.ShortDir(t)
	minimal, err := os.ReadFile(build.Testdata(t, "guests/testmodules/wat/minimal.wasm"))
	if err != nil {
		t.Fatal(err)
	}
	mod := testkit.WriteFile(t, filepath.Join(dir, "modules", "minimal.wasm"), string(minimal))
	cfg := testkit.WriteFile(t, filepath.Join(dir, "plugins.toml"), `[host]
module_dir = "modules"
state_dir = "state"

[modules.minimal]
sha256 = "`+strings.Repeat("ab", 32)+`"
memory = "2MiB"
`)
	expect(t, exitOK, []string{"module", "inspect", mod}, "Accepted:   yes")
	expect(t, exitFailed, []string{"module", "inspect", "--config", cfg, mod},
		"Accepted:   no", "but the configuration pins "+strings.Repeat("ab", 32),
		"Sandbox:    "+cfg+": memory 2 MiB")
}

func TestCheckpointVerifyAndShow(t *testing.T) {
	dir := testkit.ShortDir(t)
	path := filepath.Join(dir, "checkpoint")
	st := &checkpoint.State{Generation: 7, Allocations: []*checkpoint.Allocation{{
		Workload: "default/train/main", Namespace: "default", Pod: "train", Container: "main",
		Resource: "example.com/gpu", DeviceIds: []string{"gpu0", "gpu2"},
		Response: &checkpoint.ContainerResponse{Envs: map[string]string{"GPUS": "0,2"}},
	}}}
	if err := checkpoint.Write(path, st); err != nil {
		t.Fatal(err)
	}
	expect(t, exitOK, []string{"checkpoint", "verify", path}, path+": format version 3",
		"generation 7", "1 allocations", "OK: the checkpoint is intact and consistent.")
	expect(t, exitOK, []string{"checkpoint", "show", path}, "generation 7",
		"default/train/main  example.com/gpu  devices gpu0,gpu2", "env         GPUS=0,2")
	r := expect(t, exitOK, []string{"checkpoint", "show", "-o", "json", path})
	var shown struct {
		Generation  string `json:"generation"`
		Allocations []struct {
			Workload  string   `json:"workload"`
			DeviceIDs []string `json:"device_ids"`
		} `json:"allocations"`
	}
	decode(t, r, &shown)
	if shown.Generation != "7" || len(shown.Allocations) != 1 || shown.Allocations[0].DeviceIDs[1] != "gpu2" {
		t.Fatalf("JSON %+v", shown)
	}
	r = expect(t, exitOK, []string{"checkpoint", "verify", "-o", "json", path})
	var v verifyReport
	decode(t, r, &v)
	if !v.OK || v.Version != checkpoint.FormatVersion || v.Generation != 7 || v.Allocations != 1 {
		t.Fatalf("JSON %+v", v)
	}

	// One flipped bit.
	b, _ := os.ReadFile(path)
	b[len(b)/2] ^= 0x10
	bad := testkit.WriteFile(t, filepath.Join(dir, "bad"), string(b))
	expect(t, exitFailed, []string{"checkpoint", "verify", bad}, "stderr:checkpoint "+bad+" is unusable: it is damaged: checksum mismatch",
		"stderr:The file was left untouched")
	expect(t, exitFailed, []string{"checkpoint", "show", bad}, "stderr:checksum mismatch")
	r = expect(t, exitFailed, []string{"checkpoint", "verify", "-o", "json", bad})
	decode(t, r, &v)
	if v.OK || !strings.Contains(v.Error, "checksum mismatch") {
		t.Fatalf("JSON %+v", v)
	}
	if after, _ := os.ReadFile(bad); string(after) != string(b) {
		t.Fatal("verify modified the file")
	}
	expect(t, exitFailed, []string{"checkpoint", "verify", filepath.Join(dir, "missing")}, "stderr:no such file or directory")

	// A file that is no checkpoint at all was named by mistake: nothing
	// says to move it aside. Where the configuration keeps the
	// checkpoint, whatever is there is in the host's way: it does.
	passwd := testkit.WriteFile(t, filepath.Join(dir, "passwd"), "root:x:0:0:root:/root:/bin/bash\n")
	r = expect(t, exitFailed, []string{"checkpoint", "verify", passwd}, "stderr:"+passwd+" cannot be a checkpoint: it is not a wasmlet checkpoint",
		"stderr:Is this the right file?")
	if strings.Contains(r.stderr, "mv ") {
		t.Errorf("moving a file that is no checkpoint aside was advised:\n%v", r)
	}
	cfg := testkit.WriteFile(t, filepath.Join(dir, "plugins.toml"), "[host]\nstate_dir = \"state\"\n")
	own := testkit.WriteFile(t, filepath.Join(dir, "state", "checkpoint"), "root:x:0:0:root:/root:/bin/bash\n")
	expect(t, exitFailed, []string{"--config", cfg, "checkpoint", "verify", own}, "stderr:is unusable: it is not a wasmlet checkpoint",
		"stderr:`mv "+own+" "+own+".bad`")
	expect(t, exitFailed, []string{"--config", cfg, "checkpoint", "show", own}, "stderr:`mv "+own+" "+own+".bad`")
}

// TestRunRefusesToStart covers what `wasmlet run` does before it starts
// anything: an invalid configuration and a damaged checkpoint stop it with
// exit status 1 and a message that says what and where. (Running hosts are
// tested end to end with the daemon.)
func TestRunRefusesToStart(t *testing.T) {
	dir := testkit.ShortDir(t)
	bad := testkit.WriteFile(t, filepath.Join(dir, "bad.toml"), "[host]\nstate_dir = \"state\"\nresync_period = \"often\"\n")
	expect(t, exitFailed, []string{"run", "--config", bad},
		"stderr:"+bad+`:3:17: host.resync_period: invalid duration "often"`,
		"stderr:wasmlet run: "+bad+" is not valid: 1 problem; not starting")

	good := testkit.WriteFile(t, filepath.Join(dir, "plugins.toml"), `[host]
state_dir = "state"
api_socket = "run/api.sock"
metrics_address = ""
`)
	testkit.WriteFile(t, filepath.Join(dir, "state", "checkpoint"), "WLTCKPT\ngarbage")
	expect(t, exitFailed, []string{"run", "--config", good},
		"stderr:checkpoint "+filepath.Join(dir, "state", "checkpoint")+" is unusable",
		"stderr:wasmlet checkpoint verify "+filepath.Join(dir, "state", "checkpoint"))
	// Whatever lies where the checkpoint belongs stops the start, and the
	// message says how to move it aside.
	ck := filepath.Join(dir, "state", "checkpoint")
	testkit.WriteFile(t, ck, "not a checkpoint at all")
	expect(t, exitFailed, []string{"run", "--config", good}, "stderr:checkpoint "+ck+" is unusable", "stderr:`mv "+ck+" "+ck+".bad`")
	expect(t, exitUsage, []string{"run", "--config", good, "--log-level", "loud"}, `stderr:--log-level "loud"`)
}
