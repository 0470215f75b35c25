package node

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/wasmlet/wasmlet/guests/build"
	"github.com/wasmlet/wasmlet/host/api"
	"github.com/wasmlet/wasmlet/host/api/adminpb"
	"github.com/wasmlet/wasmlet/internal/syncbuf"
	"github.com/wasmlet/wasmlet/internal/testkit"
)

// modules asks the node's admin socket for its modules, by name, and its
// counts.
func (h *harness) modules() (map[string]*adminpb.Module, *adminpb.Counts) {
	h.t.Helper()
	c, err := api.Dial(h.cfg.Host.APISocket)
	if err != nil {
		h.t.Fatal(err)
	}
	defer c.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	ms, err := c.ListModules(ctx, &adminpb.ListModulesRequest{})
	if err != nil {
		h.t.Fatal(err)
	}
	st, err := c.Status(ctx, &adminpb.StatusRequest{})
	if err != nil {
		h.t.Fatal(err)
	}
	out := map[string]*adminpb.Module{}
	for _, m := range ms.Modules {
		out[m.Name] = m
	}
	return out, st.Counts
}

// TestConflictsAreVisible: a second module serving a resource another
// serves, and a second handler of a plugin type another handles, run but
// are not used; the API says so, with the module that is, and counts them
// apart from the running ones. When the first goes, the second takes over.
// (Which of two device sources loaded at once serves first is not fixed:
// modules load in parallel.)
func TestConflictsAreVisible(t *testing.T) {
	h := start(t, map[string]string{"a-counter": "guests/counter", "b-counter": "guests/counter",
		"h1": "guests/customhandler", "h2": "guests/customhandler"}, "")
	var ms map[string]*adminpb.Module
	var counts *adminpb.Counts
	serving, waiting := "", ""
	h.eventually("one counter and h2 in conflict", func() bool {
		ms, counts = h.modules()
		switch {
		case ms["a-counter"].GetState() == api.ModuleConflict:
			serving, waiting = "b-counter", "a-counter"
		case ms["b-counter"].GetState() == api.ModuleConflict:
			serving, waiting = "a-counter", "b-counter"
		}
		return waiting != "" && ms["h2"].GetState() == api.ModuleConflict
	})
	want := "example.com/counter is served by " + serving + "; " + waiting + " takes over when " + serving + " goes"
	if c := ms[waiting].Conflict; c != want {
		t.Errorf("%s: %q, want %q", waiting, c, want)
	}
	if c := ms["h2"].Conflict; !strings.HasPrefix(c, "plugin type ") || !strings.HasSuffix(c, " is handled by h1") {
		t.Errorf("h2: %q", c)
	}
	if ms[serving].State != api.ModuleRunning || ms["h1"].State != api.ModuleRunning {
		t.Errorf("%s %s, h1 %s", serving, ms[serving].State, ms["h1"].State)
	}
	if counts.Modules != 4 || counts.ModulesRunning != 2 || counts.ModulesConflicting != 2 {
		t.Errorf("counts %v", counts)
	}
	os.Remove(filepath.Join(h.dir, "modules", serving+".wasm"))
	h.eventually(waiting+" to take over", func() bool {
		ms, _ = h.modules()
		r, ok := h.resource("example.com/counter")
		return ms[waiting].GetState() == api.ModuleRunning && ms[waiting].Conflict == "" &&
			ok && r.Provider == "module:"+waiting
	})
}

// TestCopiedInPlaceIsLoadingNotRefused copies a module into the module
// directory the way a slow `cp` does: in place, a chunk at a time, with
// pauses longer than the watcher waits for a file to settle. Meanwhile the
// module is listed as loading, never refused, and nothing is logged as an
// error; once the file rests, it runs.
func TestCopiedInPlaceIsLoadingNotRefused(t *testing.T) {
	logs := &syncbuf.Buffer{}
	h := start(t, nil, "", withLog(logs))
	path := filepath.Join(h.dir, "modules", "slowcopy.wasm")
	// The copy's pace, 150 ms a chunk: slower than the watcher's 100 ms.
	copied := testkit.CopySlowly(t, build.Go(t, "guests/counter"), path, 8, 150*time.Millisecond)
	states := map[string]bool{}
	counted := false // the status counted it loading, once at least: it is a second read, which may see the module a moment later
	h.eventually("slowcopy to run", func() bool {
		ms, counts := h.modules()
		if m := ms["slowcopy"]; m != nil {
			states[m.State] = true
			if m.State == api.ModuleLoading && (m.LoadingPath != path || m.LoadingSince == nil) {
				t.Errorf("while loading: %v", m)
			}
			counted = counted || m.State == api.ModuleLoading && counts.ModulesLoading == 1
		}
		return ms["slowcopy"].GetState() == api.ModuleRunning
	})
	if err := <-copied; err != nil {
		t.Fatal(err)
	}
	if !states[api.ModuleLoading] || states[api.ModuleRefused] || !counted {
		t.Errorf("states seen: %v, counted loading: %v; want loading, counted, never refused", states, counted)
	}
	if n := logs.Count("[ERROR]"); n != 0 {
		t.Errorf("%d errors logged while the file was copied:\n%s", n, logs.String())
	}
}

// TestSymlinkedModules: a symbolic link to a module file is loaded as that
// file, under the link's name; a link to nothing usable is not, and the log
// says why, once.
func TestSymlinkedModules(t *testing.T) {
	logs := &syncbuf.Buffer{}
	h := start(t, nil, "", withLog(logs))
	elsewhere := filepath.Join(h.dir, "store", "counter-1.0.wasm")
	if err := os.Mkdir(filepath.Dir(elsewhere), 0o755); err != nil {
		t.Fatal(err)
	}
	copyModule(t, "guests/counter", elsewhere)
	if err := os.Symlink(elsewhere, filepath.Join(h.dir, "modules", "linked.wasm")); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(filepath.Join(h.dir, "store", "missing.wasm"), filepath.Join(h.dir, "modules", "dangling.wasm")); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(filepath.Join(h.dir, "store"), filepath.Join(h.dir, "modules", "dir.wasm")); err != nil {
		t.Fatal(err)
	}
	h.eventually("linked to run", func() bool {
		ms, _ := h.modules()
		return ms["linked"].GetState() == api.ModuleRunning && ms["linked"].Serves == "example.com/counter"
	})
	h.n.modw.Rescan(context.Background()) // look at the links again: still warned about once
	ms, _ := h.modules()
	if ms["dangling"] != nil || ms["dir"] != nil {
		t.Errorf("links to nothing usable were loaded: %v", ms)
	}
	if n := logs.Count("symbolic link in the module directory not loaded"); n != 2 ||
		!strings.Contains(logs.String(), "no such file or directory") || !strings.Contains(logs.String(), "not to a regular file") {
		t.Errorf("%d warnings:\n%s", n, logs.String())
	}
	// Replacing the link is noticed.
	other := filepath.Join(h.dir, "store", "wat.wasm")
	b, err := os.ReadFile(build.Testdata(t, "guests/testmodules/wat/minimal.wasm"))
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(other, b, 0o644); err != nil {
		t.Fatal(err)
	}
	tmp := filepath.Join(h.dir, "modules", ".linked.tmp")
	if err := os.Symlink(other, tmp); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, filepath.Join(h.dir, "modules", "linked.wasm")); err != nil {
		t.Fatal(err)
	}
	h.eventually("the new link's module", func() bool {
		ms, _ := h.modules()
		return ms["linked"].GetServes() == "example.com/wat"
	})
}
