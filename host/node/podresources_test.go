package api_test

import (
	"context"
	"fmt"
	"sort"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	pluginapi "k8s.io/kubelet/pkg/apis/deviceplugin/v1beta1"
	podresourcesv1 "k8s.io/kubelet/pkg/apis/podresources/v1"

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

// TestPodResourcesV1 reads the socket the way a tool written for the
// kubelet's pod-resources socket does: a plain gRPC connection and the
// kubelet's generated client.
func TestPodResourcesV1(t *testing.T) {
	h := startHost(t)
	h.plugin("gpu.sock", "example.com/gpu", testplugin.Devices("gpu", 4))
	// A second resource whose provider reports no topology.
	h.plugin("nic.sock", "example.com/nic", []*pluginapi.Device{{ID: "nic0", Health: pluginapi.Healthy}, {ID: "nic1", Health: pluginapi.Unhealthy}})
	h.allocate("default", "train", "main", "example.com/gpu", 2)
	h.allocate("default", "train", "sidecar", "example.com/nic", 1)
	h.allocate("prod", "serve", "main", "example.com/gpu", 1)

	conn, err := grpc.NewClient("unix://"+h.socket, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
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
	wantCode(t, err, codes.NotFound, "pod serve in namespace default not found")
	_, err = client.Get(ctx, &podresourcesv1.GetPodResourcesRequest{PodName: "serve"})
	wantCode(t, err, codes.InvalidArgument, "namespace are required")
}
