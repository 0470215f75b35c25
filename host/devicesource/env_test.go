package devicesource_test

import (
	"context"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"

	"github.com/wasmlet/wasmlet/host/devicemanager"
	"github.com/wasmlet/wasmlet/host/devicesource"
	"github.com/wasmlet/wasmlet/host/internal/testenv"
	"github.com/wasmlet/wasmlet/host/module"
)

// env is a module registry, a device manager and a device source controller
// wired together.
type env struct {
	t    testing.TB
	mods *testenv.Modules
	reg  *module.Registry // mods.Registry
	m    *devicemanager.Manager
	ctrl *devicesource.Controller

	mu      sync.Mutex
	srcOpts map[string]devicesource.Options
}

type envConfig struct {
	grace        time.Duration // default 10 minutes
	restartDelay time.Duration // default 10 minutes
	noController bool
}

func newEnv(t testing.TB, cfg envConfig) *env {
	t.Helper()
	if cfg.grace == 0 {
		cfg.grace = 10 * time.Minute
	}
	if cfg.restartDelay == 0 {
		cfg.restartDelay = 10 * time.Minute
	}
	log := testenv.Logger(t, hclog.Info)
	e := &env{t: t, mods: testenv.NewModules(t, log), srcOpts: map[string]devicesource.Options{}}
	e.reg = e.mods.Registry
	m, err := devicemanager.New(devicemanager.Config{GracePeriod: cfg.grace, Logger: log})
	if err != nil {
		t.Fatal(err)
	}
	e.m = m
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Add(1)
	go func() { defer wg.Done(); m.Run(ctx) }()
	if !cfg.noController {
		e.ctrl = devicesource.NewController(e.reg, m, devicesource.ControllerConfig{
			Options:      e.sourceOptions,
			RestartDelay: cfg.restartDelay,
			Logger:       log,
		})
		wg.Add(1)
		go func() { defer wg.Done(); e.ctrl.Run(ctx) }()
	}
	t.Cleanup(func() {
		cancel()
		wg.Wait()
	})
	return e
}

func (e *env) sourceOptions(name string) devicesource.Options {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.srcOpts[name]
}

// configure sets the sandbox and source options of module name, used from
// its next load on.
func (e *env) configure(name string, mo module.Options, so devicesource.Options) {
	e.mods.Configure(name, mo)
	e.mu.Lock()
	e.srcOpts[name] = so
	e.mu.Unlock()
}

// resource waits until resource name satisfies cond (a resource the device
// manager does not know is passed as the zero ResourceStatus).
func (e *env) resource(name string, cond func(devicemanager.ResourceStatus) bool) devicemanager.ResourceStatus {
	e.t.Helper()
	return waitResource(e.t, e.m, name, cond)
}

func waitResource(t testing.TB, m *devicemanager.Manager, name string, cond func(devicemanager.ResourceStatus) bool) devicemanager.ResourceStatus {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	var last devicemanager.ResourceStatus
	for time.Now().Before(deadline) {
		last = devicemanager.ResourceStatus{}
		for _, r := range m.Resources() {
			if r.Name == name {
				last = r
			}
		}
		if cond(last) {
			return last
		}
		time.Sleep(5 * time.Millisecond)
	}
	t.Fatalf("resource %s never reached the expected state; last %+v", name, last)
	return last
}

func healthy(n int) func(devicemanager.ResourceStatus) bool {
	return func(r devicemanager.ResourceStatus) bool { return r.Connected && r.Healthy == n && r.Capacity == n }
}

func gone(r devicemanager.ResourceStatus) bool { return r.Name == "" }

func ids(r devicemanager.ResourceStatus) []string {
	out := []string{}
	for _, d := range r.Devices {
		out = append(out, d.ID)
	}
	return out
}

func deviceOf(r devicemanager.ResourceStatus, id string) devicemanager.DeviceStatus {
	for _, d := range r.Devices {
		if d.ID == id {
			return d
		}
	}
	return devicemanager.DeviceStatus{}
}

func req(pod, resource string, n int) devicemanager.AllocateRequest {
	return devicemanager.AllocateRequest{Namespace: "default", Pod: pod, Container: "main", Resource: resource, Count: n}
}

// eventually polls cond for up to 10 s.
var eventually = testenv.Eventually

// writeFile writes path atomically, so that a discovery running meanwhile
// never reads it half written.
func writeFile(t testing.TB, path, content string) {
	t.Helper()
	testenv.WriteFile(t, path, []byte(content))
}

// ---- a fake sysfs (internal/sysfstest) ----------------------------------------

// sysfsMounts grants /sys/bus/pci/devices and /sys/kernel/iommu_groups of
// the tree at sys, with sys as the root within which links resolve.
func sysfsMounts(sys string) []module.Mount {
	return []module.Mount{
		{Host: filepath.Join(sys, "bus/pci/devices"), Guest: "/sys/bus/pci/devices", Root: sys},
		{Host: filepath.Join(sys, "kernel/iommu_groups"), Guest: "/sys/kernel/iommu_groups", Root: sys},
	}
}
