package testplugin

import (
	"context"
	"os"
	"sync"
	"testing"

	csipb "github.com/container-storage-interface/spec/lib/go/csi"
	"google.golang.org/grpc"
)

// CSIDriver is a CSI driver's node service (CSI spec v1) on a real socket,
// answering NodeGetInfo and NodeGetCapabilities with what it is given: the
// shapes a real driver may answer, good or bad, for the tests of one stage.
// The end-to-end tests use a real driver (tests/k8s).
type CSIDriver struct {
	csipb.UnimplementedNodeServer

	Path string

	mu    sync.Mutex
	info  CSINodeInfo
	hang  bool
	calls int
	srv   *grpc.Server
}

// CSINodeInfo is what the driver answers.
type CSINodeInfo struct {
	NodeID       string
	MaxVolumes   int64
	Topology     map[string]string
	Capabilities []csipb.NodeServiceCapability_RPC_Type
}

// StartCSIDriver serves a CSI node service on a socket at path until the
// test ends, or Stop.
func StartCSIDriver(t testing.TB, path string, info CSINodeInfo) *CSIDriver {
	t.Helper()
	d := &CSIDriver{Path: path, info: info}
	var err error
	if _, d.srv, err = serve(path, func(s *grpc.Server) { csipb.RegisterNodeServer(s, d) }); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(d.Stop)
	return d
}

// Hang makes NodeGetInfo wait until its caller gives up.
func (d *CSIDriver) Hang() {
	d.mu.Lock()
	d.hang = true
	d.mu.Unlock()
}

// Calls is how many NodeGetInfo calls the driver answered or held.
func (d *CSIDriver) Calls() int {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.calls
}

// Stop stops serving and removes the socket.
func (d *CSIDriver) Stop() {
	d.mu.Lock()
	srv := d.srv
	d.srv = nil
	d.mu.Unlock()
	if srv != nil {
		srv.Stop()
		os.Remove(d.Path)
	}
}

func (d *CSIDriver) NodeGetInfo(ctx context.Context, _ *csipb.NodeGetInfoRequest) (*csipb.NodeGetInfoResponse, error) {
	d.mu.Lock()
	d.calls++
	info, hang := d.info, d.hang
	d.mu.Unlock()
	if hang {
		<-ctx.Done()
		return nil, ctx.Err()
	}
	r := &csipb.NodeGetInfoResponse{NodeId: info.NodeID, MaxVolumesPerNode: info.MaxVolumes}
	if info.Topology != nil {
		r.AccessibleTopology = &csipb.Topology{Segments: info.Topology}
	}
	return r, nil
}

func (d *CSIDriver) NodeGetCapabilities(context.Context, *csipb.NodeGetCapabilitiesRequest) (*csipb.NodeGetCapabilitiesResponse, error) {
	d.mu.Lock()
	types := d.info.Capabilities
	d.mu.Unlock()
	r := &csipb.NodeGetCapabilitiesResponse{}
	for _, t := range types {
		r.Capabilities = append(r.Capabilities, &csipb.NodeServiceCapability{
			Type: &csipb.NodeServiceCapability_Rpc{Rpc: &csipb.NodeServiceCapability_RPC{Type: t}}})
	}
	return r, nil
}
