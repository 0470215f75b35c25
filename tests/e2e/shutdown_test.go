package e2e

import (
	"context"
	"net"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"google.golang.org/grpc"
	registerapi "k8s.io/kubelet/pkg/apis/pluginregistration/v1"

	"github.com/wasmlet/wasmlet/guests/build"
	"github.com/wasmlet/wasmlet/host/api/adminpb"
	"github.com/wasmlet/wasmlet/internal/testkit"
)

// registrant is a plugin that announces itself in the plugin registry
// (plugin registration API v1) as an ExamplePlugin.
type registrant struct {
	registerapi.UnimplementedRegistrationServer
}

func (registrant) GetInfo(context.Context, *registerapi.InfoRequest) (*registerapi.PluginInfo, error) {
	return &registerapi.PluginInfo{Type: "ExamplePlugin", Name: "dozy", SupportedVersions: []string{"v1"}}, nil
}

func (registrant) NotifyRegistrationStatus(context.Context, *registerapi.RegistrationStatus) (*registerapi.RegistrationStatusResponse, error) {
	return &registerapi.RegistrationStatusResponse{}, nil
}

// TestSIGTERMStopsHostileGuests runs the wasmlet binary with modules whose
// guests sleep in discover, loop in discover, sleep in an allocation a
// client is waiting for, sleep in a plugin's registration (which runs
// under operation_timeout, not under the host's context), and open a FIFO
// in their mount over and over — every call and operation timeout five
// minutes — and checks that SIGTERM ends the process cleanly within 10
// seconds.
func TestSIGTERMStopsHostileGuests(t *testing.T) {
	h := newHost(t, map[string]string{"sleeper": "guests/testmodules/faulty", "looper": "guests/testmodules/faulty",
		"napper": "guests/testmodules/faulty", "opener": "guests/testmodules/escape"}, testkit.SleepersTOML+`
[modules.opener]
mounts = [{ host = "fifos", guest = "/data" }]
config = { attempt = "read", path = "/data/fifo" }
timeout = "5m"

[sources]
opener = { discover_interval = "50ms" }
`)
	dozer, err := os.ReadFile(build.Testdata(t, "guests/testmodules/wat/sleep_register.wasm"))
	if err != nil {
		t.Fatal(err)
	}
	os.WriteFile(filepath.Join(h.dir, "modules", "dozer.wasm"), dozer, 0o644)
	config, _ := os.ReadFile(h.config)
	os.WriteFile(h.config, []byte(strings.Replace(string(config), "[host]\n", "[host]\noperation_timeout = \"5m\"\n", 1)), 0o644)
	fifos := filepath.Join(h.dir, "fifos")
	os.MkdirAll(fifos, 0o755)
	if err := syscall.Mkfifo(filepath.Join(fifos, "fifo"), 0o644); err != nil {
		t.Fatal(err)
	}
	h.start()
	c := h.client()
	h.eventually("napper's devices", func() bool {
		r, err := c.ListResources(context.Background(), &adminpb.ListResourcesRequest{Name: "example.com/napper"})
		return err == nil && len(r.Resources) == 1 && r.Resources[0].Healthy == 2
	})
	allocated := make(chan error, 1)
	go func() {
		_, err := c.Allocate(context.Background(), &adminpb.AllocateRequest{Namespace: "ns", Pod: "p", Container: "c",
			Resource: "example.com/napper", Count: 1})
		allocated <- err
	}()
	os.MkdirAll(filepath.Join(h.dir, "reg"), 0o755)
	lis, err := net.Listen("unix", filepath.Join(h.dir, "reg", "dozy.sock"))
	if err != nil {
		t.Fatal(err)
	}
	srv := grpc.NewServer()
	registerapi.RegisterRegistrationServer(srv, registrant{})
	go srv.Serve(lis)
	defer srv.Stop()
	h.eventually("every guest at work", func() bool {
		logs := h.logs()
		ms, err := c.ListModules(context.Background(), &adminpb.ListModulesRequest{})
		if err != nil {
			return false
		}
		registering := false
		for _, m := range ms.Modules {
			registering = registering || m.Name == "dozer" && m.Calls > 0
		}
		r, err := c.ListResources(context.Background(), &adminpb.ListResourcesRequest{Name: "example.com/escape"})
		return registering && strings.Contains(logs, "faulty: asleep in discover") && strings.Contains(logs, "faulty: asleep in allocate") &&
			err == nil && len(r.Resources) == 1 && r.Resources[0].Healthy == 1 // the opener's open was refused, not stuck
	})
	start := time.Now()
	if err := h.stop(); err != nil {
		t.Fatalf("wasmlet exited with %v\n%s", err, h.logs())
	}
	el := time.Since(start)
	if el > 10*time.Second {
		t.Fatalf("wasmlet took %v to stop after SIGTERM\n%s", el, h.logs())
	}
	t.Logf("stopped %v after SIGTERM", el.Round(time.Millisecond))
	if err := <-allocated; err == nil {
		t.Error("an allocation from a guest asleep until shutdown succeeded")
	}
	logs := h.logs()
	for _, want := range []string{"wasmlet stopped", "module call stopped", "module=dozer op=register fault=closed"} {
		if !strings.Contains(logs, want) {
			t.Errorf("the log does not say %q\n%s", want, logs)
		}
	}
}
