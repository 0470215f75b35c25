package registration

import (
	"context"
	"net"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc"
	registerapi "k8s.io/kubelet/pkg/apis/pluginregistration/v1"

	"github.com/wasmlet/wasmlet/host/internal/testenv"
	"github.com/wasmlet/wasmlet/host/internal/testplugin"
	"github.com/wasmlet/wasmlet/host/pluginmanager/cache"
)

func dial(t *testing.T, path string) *Conn {
	t.Helper()
	c, err := Dial(path)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

func ctx(t *testing.T) context.Context {
	c, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	t.Cleanup(cancel)
	return c
}

// The client against a plugin built on the kubelet's own registration API.
func TestGetInfoAndNotify(t *testing.T) {
	path := filepath.Join(testenv.ShortDir(t), "p.sock")
	p := testplugin.StartRegistrant(t, path, testplugin.Info{Type: "CSIPlugin", Name: "csi.example.com",
		Endpoint: "/var/lib/kubelet/plugins/csi.example.com/csi.sock", Versions: []string{"1.0.0"}})
	c := dial(t, path)
	got, err := c.GetInfo(ctx(t))
	if err != nil {
		t.Fatal(err)
	}
	want := cache.Plugin{SocketPath: path, Type: "CSIPlugin", Name: "csi.example.com",
		Endpoint: "/var/lib/kubelet/plugins/csi.example.com/csi.sock", Versions: []string{"1.0.0"}}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("GetInfo = %+v, want %+v", got, want)
	}
	if err := c.Notify(ctx(t), false, "not this time"); err != nil {
		t.Fatal(err)
	}
	if s := p.Expect(t, 5*time.Second); s.Registered || s.Error != "not this time" {
		t.Fatalf("plugin was told %+v", s)
	}
	if err := c.Notify(ctx(t), true, ""); err != nil {
		t.Fatal(err)
	}
	if s := p.Expect(t, 5*time.Second); !s.Registered || s.Error != "" {
		t.Fatalf("plugin was told %+v", s)
	}
}

// nameless answers GetInfo without a name.
type nameless struct {
	registerapi.UnimplementedRegistrationServer
}

func (nameless) GetInfo(context.Context, *registerapi.InfoRequest) (*registerapi.PluginInfo, error) {
	return &registerapi.PluginInfo{Type: "DevicePlugin"}, nil
}

func TestErrorsNameTheSocket(t *testing.T) {
	dir := testenv.ShortDir(t)

	// A plugin that does not say its name.
	path := filepath.Join(dir, "nameless.sock")
	lis, err := net.Listen("unix", path)
	if err != nil {
		t.Fatal(err)
	}
	srv := grpc.NewServer()
	registerapi.RegisterRegistrationServer(srv, nameless{})
	go srv.Serve(lis)
	t.Cleanup(srv.Stop)
	if _, err := dial(t, path).GetInfo(ctx(t)); err == nil || !strings.Contains(err.Error(), "plugin socket "+path+": GetInfo returned an empty type or name") {
		t.Fatalf("GetInfo of a nameless plugin: %v", err)
	}

	// A plugin that cannot take its status.
	path = filepath.Join(dir, "deaf.sock")
	testplugin.StartRegistrant(t, path, testplugin.Info{Type: "T", Name: "n"}, testplugin.FailNotify(1))
	if err := dial(t, path).Notify(ctx(t), true, ""); err == nil || !strings.Contains(err.Error(), "plugin socket "+path+": NotifyRegistrationStatus") {
		t.Fatalf("Notify of a plugin that fails it: %v", err)
	}

	// Nobody serves the socket: the call waits for the caller's deadline.
	path = filepath.Join(dir, "absent.sock")
	short, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	if _, err := dial(t, path).GetInfo(short); err == nil || !strings.Contains(err.Error(), "plugin socket "+path+": GetInfo") {
		t.Fatalf("GetInfo with nobody serving: %v", err)
	}
}
