package registration

import (
	"context"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/wasmlet/wasmlet/internal/testkit"
	"k8s.io/apimachinery/pkg/util/sets"
	"k8s.io/client-go/tools/record"
	"k8s.io/klog/v2"
	"k8s.io/kubernetes/pkg/kubelet/config"
	"k8s.io/kubernetes/pkg/kubelet/pluginmanager"
)

// kubelet is the kubelet's own plugin manager (what the kubelet runs on
// /var/lib/kubelet/plugins_registry) watching a registry directory of its
// own, with exampleHandler for ExamplePlugin.
type kubelet struct {
	registry string
	handler  *exampleHandler
}

func startKubelet(tb testing.TB) *kubelet {
	tb.Helper()
	// It logs every registration at the default verbosity.
	klog.SetOutput(discard{})
	klog.LogToStderr(false)
	k := &kubelet{registry: testkit.ShortDir(tb), handler: &exampleHandler{versions: []string{"v1beta1", "v1beta2"}, plugins: map[string]string{}}}
	pm := pluginmanager.NewPluginManager(k.registry, &record.FakeRecorder{})
	pm.AddHandler("ExamplePlugin", k.handler)
	ctx, cancel := context.WithCancel(context.Background())
	stop := make(chan struct{})
	done := make(chan struct{})
	go func() {
		defer close(done)
		pm.Run(ctx, config.NewSourcesReady(func(sets.Set[string]) bool { return true }), stop)
	}()
	tb.Cleanup(func() {
		close(stop)
		cancel()
		<-done
	})
	return k
}

// exampleHandler is the kubelet's side of ExamplePlugin: it accepts a
// plugin that offers one of its versions and records it, as wasmlet's
// customhandler does. (pluginwatcher's own example handler no longer
// implements the kubelet's PluginHandler interface.)
type exampleHandler struct {
	versions []string
	mu       sync.Mutex
	plugins  map[string]string // name → endpoint
}

func (h *exampleHandler) ValidatePlugin(_ context.Context, name, endpoint string, versions []string) error {
	for _, v := range versions {
		if slices.Contains(h.versions, v) {
			return nil
		}
	}
	return fmt.Errorf("plugin %q offers versions %v, none of %v", name, versions, h.versions)
}

func (h *exampleHandler) RegisterPlugin(_ context.Context, name, endpoint string, _ []string, _ *time.Duration) error {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.plugins[name] = endpoint
	return nil
}

func (h *exampleHandler) DeRegisterPlugin(_ context.Context, name, _ string) {
	h.mu.Lock()
	defer h.mu.Unlock()
	delete(h.plugins, name)
}

func (h *exampleHandler) registered() int {
	h.mu.Lock()
	defer h.mu.Unlock()
	return len(h.plugins)
}

type discard struct{}

func (discard) Write(p []byte) (int, error) { return len(p), nil }
