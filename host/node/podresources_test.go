package node

import (
	"context"
	"fmt"
	"sort"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	pluginapi "k8s.io/kubelet/pkg/apis/deviceplugin/v1beta1"
	podresourcesv1 "k8s.io/kubelet/pkg/apis/podresources/v1"
	podresourcesv1alpha1 "k8s.io/kubelet/pkg/apis/podresources/v1alpha1"

	"github.com/wasmlet/wasmlet/host/api/adminpb"
	"github.com/wasmlet/wasmlet/host/internal/testenv"
	"github.com/wasmlet/wasmlet/host/internal/testplugin"
)

// devices renders ContainerDevices as "resource/id@numa" strings, sorted.
func devices(cds []*podresourcesv1.ContainerDevices) string {
	var out []string
	for _, cd := range cds {
		for _, id := range cd.GetDeviceIds() {
			s := cd.GetResourceName() + "/" + id
			for _, n := range cd.GetTopology().GetNodes() {
				s += fmt.Sprintf("@%d", n.GetID())
			}
			out = append(out, s)
		}
	}
	sort.Strings(out)
	return strings.Join(out, " ")
}

// TestPodResourcesV1 reads the pod resources socket the way a tool written
// for the kubelet's pod-resources socket does: the kubelet's own client
// connection and the generated v1 and v1alpha1 clients of k8s.io/kubelet.
// The admin service is not on that socket, and the pod resources services
// are not on the admin socket.
func TestPodResourcesV1(t *testing.T) {
	h := startHost(t)
	h.plugin("gpu.sock", "example.com/gpu", testplugin.Devices("gpu", 4))
	// A second resource whose provider reports no topology.
	h.plugin("nic.sock", "example.com/nic", []*pluginapi.Device{{ID: "nic0", Health: pluginapi.Healthy}, {ID: "nic1", Health: pluginapi.Unhealthy}})
	h.allocate("default", "train", "main", "example.com/gpu", 2)
	h.allocate("default", "train", "sidecar", "example.com/nic", 1)
	h.allocate("prod", "serve", "main", "example.com/gpu", 1)

	conn := testenv.DialPodResources(t, h.prSock)
	client := podresourcesv1.NewPodResourcesListerClient(conn)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()

	list, err := client.List(ctx, &podresourcesv1.ListPodResourcesRequest{})
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, p := range list.GetPodResources() {
		for _, c := range p.GetContainers() {
			got = append(got, p.GetNamespace()+"/"+p.GetName()+"/"+c.GetName()+": "+devices(c.GetDevices()))
		}
	}
	// The default allocation policy fills the smallest NUMA node that fits:
	// gpu0 and gpu2 are on node 0, gpu1 and gpu3 on node 1.
	want := []string{
		"default/train/main: example.com/gpu/gpu0@0 example.com/gpu/gpu2@0",
		"default/train/sidecar: example.com/nic/nic0",
		"prod/serve/main: example.com/gpu/gpu1@1",
	}
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Fatalf("List:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}

	alloc, err := client.GetAllocatableResources(ctx, &podresourcesv1.AllocatableResourcesRequest{})
	if err != nil {
		t.Fatal(err)
	}
	// Every healthy device, allocated or not, as the kubelet reports them.
	if got, want := devices(alloc.GetDevices()),
		"example.com/gpu/gpu0@0 example.com/gpu/gpu1@1 example.com/gpu/gpu2@0 example.com/gpu/gpu3@1 example.com/nic/nic0"; got != want {
		t.Fatalf("GetAllocatableResources: %s, want %s", got, want)
	}

	one, err := client.Get(ctx, &podresourcesv1.GetPodResourcesRequest{PodName: "serve", PodNamespace: "prod"})
	if err != nil {
		t.Fatal(err)
	}
	if p := one.GetPodResources(); p.GetName() != "serve" || p.GetNamespace() != "prod" || len(p.GetContainers()) != 1 ||
		devices(p.GetContainers()[0].GetDevices()) != "example.com/gpu/gpu1@1" {
		t.Fatalf("Get: %v", p)
	}
	_, err = client.Get(ctx, &podresourcesv1.GetPodResourcesRequest{PodName: "serve", PodNamespace: "default"})
	wantStatus(t, err, codes.NotFound, "pod serve in namespace default not found")
	_, err = client.Get(ctx, &podresourcesv1.GetPodResourcesRequest{PodName: "serve"})
	wantStatus(t, err, codes.InvalidArgument, "namespace are required")

	// v1alpha1: the same pods, without topology, as the kubelet's
	// v1alpha1 server derives them from v1's.
	alpha, err := podresourcesv1alpha1.NewPodResourcesListerClient(conn).List(ctx, &podresourcesv1alpha1.ListPodResourcesRequest{})
	if err != nil {
		t.Fatal(err)
	}
	got = nil
	for _, p := range alpha.GetPodResources() {
		for _, c := range p.GetContainers() {
			var ds []string
			for _, d := range c.GetDevices() {
				for _, id := range d.GetDeviceIds() {
					ds = append(ds, d.GetResourceName()+"/"+id)
				}
			}
			got = append(got, p.GetNamespace()+"/"+p.GetName()+"/"+c.GetName()+": "+strings.Join(ds, " "))
		}
	}
	want = []string{
		"default/train/main: example.com/gpu/gpu0 example.com/gpu/gpu2",
		"default/train/sidecar: example.com/nic/nic0",
		"prod/serve/main: example.com/gpu/gpu1",
	}
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Fatalf("v1alpha1 List:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}

	// Read-only: the admin service is not served there...
	_, err = adminpb.NewAdminClient(conn).Release(ctx, &adminpb.ReleaseRequest{Workload: "default/train/main"})
	if status.Code(err) != codes.Unimplemented {
		t.Fatalf("Release on the pod resources socket: %v, want Unimplemented", err)
	}
	if as := h.dm.Allocations(); len(as) != 3 {
		t.Fatalf("allocations after a Release on the pod resources socket: %v", as)
	}
	// ...nor pod resources on the admin socket.
	_, err = podresourcesv1.NewPodResourcesListerClient(testenv.DialPodResources(t, h.socket)).List(ctx, &podresourcesv1.ListPodResourcesRequest{})
	if status.Code(err) != codes.Unimplemented {
		t.Fatalf("List on the admin socket: %v, want Unimplemented", err)
	}
}
