package devicemanager

import (
	"path/filepath"
	"strings"
	"testing"

	pluginapi "k8s.io/kubelet/pkg/apis/deviceplugin/v1beta1"
)

// FuzzRegisterRequest feeds arbitrary registration requests (version,
// endpoint, resource name) to kubelet.sock's checks: none may panic, and an
// accepted endpoint is always a socket directly inside the device plugin
// directory.
func FuzzRegisterRequest(f *testing.F) {
	s := NewServer(nil, "/var/lib/wasmlet/dp", nil, 0)
	f.Add("v1beta1", "gpu.sock", "example.com/gpu")
	f.Add("v1beta1", "../gpu.sock", "example.com/gpu")
	f.Add("v1beta1", "/abs.sock", "example.com/gpu")
	f.Add("v1beta1", "kubelet.sock", "example.com/gpu")
	f.Add("v1alpha", "..", "kubernetes.io/gpu")
	f.Add("", "a\x00b", "a/b/c")
	f.Fuzz(func(t *testing.T, version, endpoint, resource string) {
		path, err := s.check(&pluginapi.RegisterRequest{Version: version, Endpoint: endpoint, ResourceName: resource})
		if err != nil {
			if !strings.Contains(err.Error(), "device plugin") {
				t.Fatalf("error does not name the plugin: %v", err)
			}
			return
		}
		if filepath.Dir(path) != s.dir || filepath.Base(path) != endpoint || endpoint == KubeletSocket {
			t.Fatalf("accepted endpoint %q as %q, outside %s or the registration socket", endpoint, path, s.dir)
		}
	})
}
