package pluginmanager_test

// The register operation step by step, with a built-in (Go) handler added
// with AddHandler, real plugins on real sockets, and a fake clock for the
// backoffs.

import (
	"context"
	"errors"
	"fmt"
	"reflect"
	"sync"
	"testing"
	"time"

	clocktesting "k8s.io/utils/clock/testing"

	"github.com/wasmlet/wasmlet/host/internal/testenv"
	"github.com/wasmlet/wasmlet/host/internal/testplugin"
	"github.com/wasmlet/wasmlet/host/pluginmanager"
)

// goHandler is a built-in handler whose answers a test decides; it records
// its calls.
type goHandler struct {
	name     string
	mu       sync.Mutex
	calls    []string
	validate []error // answers to the next validate calls; then nil
	register []error // the same for register
	deregs   []pluginmanager.Registration
}

func (h *goHandler) next(answers *[]error) error {
	if len(*answers) == 0 {
		return nil
	}
	err := (*answers)[0]
	*answers = (*answers)[1:]
	return err
}

func (h *goHandler) Validate(_ context.Context, p pluginmanager.Plugin) error {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.calls = append(h.calls, "validate "+p.Name)
	return h.next(&h.validate)
}

func (h *goHandler) Register(_ context.Context, p pluginmanager.Plugin) (pluginmanager.Registration, error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.calls = append(h.calls, "register "+p.Name)
	if err := h.next(&h.register); err != nil {
		return pluginmanager.Registration{}, err
	}
	return pluginmanager.Registration{Handler: h.name, Action: "csi-driver", Endpoint: p.Endpoint, Version: p.Versions[0],
		Attributes: map[string]string{"node_id": "node-1"}}, nil
}

func (h *goHandler) Deregister(_ context.Context, p pluginmanager.Plugin, r pluginmanager.Registration) error {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.calls = append(h.calls, "deregister "+p.Name)
	h.deregs = append(h.deregs, r)
	return nil
}

func (h *goHandler) log() []string {
	h.mu.Lock()
	defer h.mu.Unlock()
	return append([]string(nil), h.calls...)
}

var csi = testplugin.Info{Type: "CSIPlugin", Name: "csi.example.com", Endpoint: "/run/csi/csi.sock", Versions: []string{"1.0.0"}}

// now is the plugin at socket's status now.
func (e *env) now(socket string) pluginmanager.PluginStatus {
	for _, s := range e.pm.Plugins() {
		if s.SocketPath == socket {
			return s
		}
	}
	return pluginmanager.PluginStatus{}
}

// fakeClock runs the plugin manager's backoffs on a fake clock.
func fakeClock(clk *clocktesting.FakeClock) func(*pluginmanager.Config) {
	return func(c *pluginmanager.Config) { c.Clock = clk }
}

func TestBuiltInHandler(t *testing.T) {
	e := start(t, nil)
	h := &goHandler{name: "csi"}
	e.pm.AddHandler("CSIPlugin", h)
	p := e.plugin("csi-reg.sock", csi)
	if s := p.Expect(t, 5*time.Second); !s.Registered {
		t.Fatalf("%+v", s)
	}
	st := e.status(p.Path, pluginmanager.StateRegistered)
	if st.Handler != "csi" || st.Action != "csi-driver" || st.Endpoint != "/run/csi/csi.sock" || st.Attributes["node_id"] != "node-1" {
		t.Fatalf("status %+v", st)
	}
	p.Stop()
	e.status(p.Path, "")
	if got := h.log(); fmt.Sprint(got) != "[validate csi.example.com register csi.example.com deregister csi.example.com]" {
		t.Fatalf("handler calls %v", got)
	}
	// Deregister gets back what Register returned.
	if len(h.deregs) != 1 || h.deregs[0].Version != "1.0.0" || h.deregs[0].Attributes["node_id"] != "node-1" {
		t.Fatalf("deregistered %+v", h.deregs)
	}
}

// A plugin whose type has no handler is told so, as the kubelet tells it,
// retried with the executor's backoff, and registered as soon as a handler
// appears: a built-in one (CSIPlugin) or a module (FooPlugin).
func TestNoHandlerToldRetriedAndRegisteredWhenOneAppears(t *testing.T) {
	clk := clocktesting.NewFakeClock(time.Now())
	e := start(t, nil, fakeClock(clk))
	c := e.plugin("csi-reg.sock", csi)
	foo := e.plugin("foo.sock", testplugin.Info{Type: "FooPlugin", Name: "foo-1", Versions: []string{"v1"}})
	for _, p := range []*testplugin.Registrant{c, foo} {
		if s := p.Expect(t, 5*time.Second); s.Registered || s.Error != noHandler(p) {
			t.Fatalf("%s was told %+v, want %q", p.Path, s, noHandler(p))
		}
		st := e.status(p.Path, pluginmanager.StateWaiting)
		if st.Waiting != fmt.Sprintf("a handler for plugin type %q", p.Info.Type) || st.Failures != 1 {
			t.Fatalf("status %+v", st)
		}
	}
	// Retried when the backoff (50 ms) ends, not before.
	clk.Step(49 * time.Millisecond)
	c.ExpectNone(t, 100*time.Millisecond)
	clk.Step(time.Millisecond)
	for _, p := range []*testplugin.Registrant{c, foo} {
		if s := p.Expect(t, 5*time.Second); s.Registered || s.Error != noHandler(p) {
			t.Fatalf("%s on retry: %+v", p.Path, s)
		}
		if n := p.GetInfos(); n != 2 {
			t.Fatalf("%s asked who it is %d times, want 2", p.Path, n)
		}
	}
	testenv.Eventually(t, "the second backoff", func() bool {
		st := e.now(c.Path)
		return st.State == pluginmanager.StateWaiting && st.Failures == 2 && st.NextRetry.Sub(clk.Now()) == 100*time.Millisecond
	})
	// A handler appears: registered at once, the clock standing still.
	e.pm.AddHandler("CSIPlugin", &goHandler{name: "csi"})
	if s := c.Expect(t, 5*time.Second); !s.Registered {
		t.Fatalf("%+v", s)
	}
	e.install("foohandler", "guests/customhandler")
	waitRegistered(t, foo) // (the CSI handler's arrival made it look once more)
	if st := e.status(foo.Path, pluginmanager.StateRegistered); st.Handler != "foohandler" {
		t.Fatalf("status %+v", st)
	}
}

// A refusal is told to the plugin; a failure of the handler is not. Both
// are retried after the backoff.
func TestRefusalToldFailureRetried(t *testing.T) {
	clk := clocktesting.NewFakeClock(time.Now())
	e := start(t, nil, fakeClock(clk))
	h := &goHandler{name: "csi",
		validate: []error{&pluginmanager.Refusal{Reason: "CSI driver csi.example.com: no supported version"}},
		register: []error{errors.New("the CSI driver did not answer NodeGetInfo")}}
	e.pm.AddHandler("CSIPlugin", h)
	p := e.plugin("csi-reg.sock", csi)
	if s := p.Expect(t, 5*time.Second); s.Registered || s.Error != "CSI driver csi.example.com: no supported version" {
		t.Fatalf("refused plugin told %+v", s)
	}
	st := e.status(p.Path, pluginmanager.StateFailing)
	if st.LastError != "CSI driver csi.example.com: no supported version" || st.Failures != 1 {
		t.Fatalf("status %+v", st)
	}
	clk.Step(50 * time.Millisecond)
	testenv.Eventually(t, "the retry to fail in register", func() bool {
		return len(h.log()) == 3 && e.now(p.Path).Failures == 2
	})
	p.ExpectNone(t, 50*time.Millisecond) // a handler's failure is not the plugin's business
	if st := e.status(p.Path, pluginmanager.StateFailing); st.LastError != "the CSI driver did not answer NodeGetInfo" {
		t.Fatalf("status %+v", st)
	}
	clk.Step(100 * time.Millisecond)
	if s := p.Expect(t, 5*time.Second); !s.Registered {
		t.Fatalf("%+v", s)
	}
	want := []string{"validate csi.example.com", "validate csi.example.com", "register csi.example.com",
		"validate csi.example.com", "register csi.example.com"}
	if got := h.log(); !reflect.DeepEqual(got, want) {
		t.Fatalf("handler calls %v, want %v", got, want)
	}
}

// A plugin that does not hear it registered is deregistered from its
// handler and from the actual state, and registered again after the backoff.
func TestNotifyFailureUndone(t *testing.T) {
	clk := clocktesting.NewFakeClock(time.Now())
	e := start(t, nil, fakeClock(clk))
	h := &goHandler{name: "csi"}
	e.pm.AddHandler("CSIPlugin", h)
	p := e.plugin("csi-reg.sock", csi, testplugin.FailNotify(1))
	st := e.status(p.Path, pluginmanager.StateFailing)
	if len(e.pm.RegisteredSockets()) != 0 || st.Failures != 1 {
		t.Fatalf("after a failed notify: %v registered, status %+v", e.pm.RegisteredSockets(), st)
	}
	if got := h.log(); fmt.Sprint(got) != "[validate csi.example.com register csi.example.com deregister csi.example.com]" {
		t.Fatalf("handler calls %v", got)
	}
	clk.Step(50 * time.Millisecond)
	if s := p.Expect(t, 5*time.Second); !s.Registered {
		t.Fatalf("%+v", s)
	}
	e.status(p.Path, pluginmanager.StateRegistered)
}

// A handler added with AddHandler comes before a module for the same type.
func TestAddedHandlerComesFirst(t *testing.T) {
	e := start(t, map[string]string{"customhandler": "guests/customhandler"})
	e.pm.AddHandler("ExamplePlugin", &goHandler{name: "built-in"})
	p := e.plugin("one.sock", example)
	p.Expect(t, 5*time.Second)
	if st := e.status(p.Path, pluginmanager.StateRegistered); st.Handler != "built-in" {
		t.Fatalf("handler %q, want the added one", st.Handler)
	}
}
