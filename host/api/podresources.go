package api

import (
	"context"
	"sort"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	podresourcesv1 "k8s.io/kubelet/pkg/apis/podresources/v1"
	podresourcesv1alpha1 "k8s.io/kubelet/pkg/apis/podresources/v1alpha1"

	"github.com/wasmlet/wasmlet/host/api/adminpb"
)

// podResources implements the kubelet's pod resources v1 service from the
// backend's allocations and resources. It reports devices the way the
// kubelet does: one ContainerDevices per device (and per NUMA node of the
// device, with its topology, when the provider reported one). wasmlet
// manages no CPUs, memory or dynamic resources, so those fields stay empty.
type podResources struct {
	podresourcesv1.UnimplementedPodResourcesListerServer
	b Backend
}

// podResourcesV1alpha1 is the kubelet's older pod resources service (List
// only), still served by the kubelet for older monitoring agents: the same
// answer as v1's List, without topology, as the kubelet derives it.
type podResourcesV1alpha1 struct {
	podresourcesv1alpha1.UnimplementedPodResourcesListerServer
	b Backend
}

// topology maps resource → device id → NUMA nodes, for the devices whose
// provider reported any.
type topology map[string]map[string][]int64

func topologyOf(rs []*adminpb.Resource) topology {
	t := topology{}
	for _, r := range rs {
		for _, d := range r.Devices {
			if len(d.NumaNodes) > 0 {
				if t[r.Name] == nil {
					t[r.Name] = map[string][]int64{}
				}
				t[r.Name][d.Id] = d.NumaNodes
			}
		}
	}
	return t
}

// devices appends the ContainerDevices of ids, as the kubelet builds them.
func (t topology) devices(out []*podresourcesv1.ContainerDevices, resource string, ids []string) []*podresourcesv1.ContainerDevices {
	for _, id := range ids {
		nodes := t[resource][id]
		if len(nodes) == 0 {
			out = append(out, &podresourcesv1.ContainerDevices{ResourceName: resource, DeviceIds: []string{id}})
			continue
		}
		for _, n := range nodes {
			out = append(out, &podresourcesv1.ContainerDevices{ResourceName: resource, DeviceIds: []string{id},
				Topology: &podresourcesv1.TopologyInfo{Nodes: []*podresourcesv1.NUMANode{{ID: n}}}})
		}
	}
	return out
}

// pods groups allocations and claims by pod, then container, in name
// order.
func (t topology) pods(allocs []*adminpb.Allocation, claims []*adminpb.Claim, keep func(namespace, pod string) bool) []*podresourcesv1.PodResources {
	type key struct{ namespace, pod string }
	byPod := map[key]map[string]*podresourcesv1.ContainerResources{}
	var order []key
	container := func(namespace, pod, name string) *podresourcesv1.ContainerResources {
		k := key{namespace, pod}
		if !keep(k.namespace, k.pod) {
			return nil
		}
		cs := byPod[k]
		if cs == nil {
			cs = map[string]*podresourcesv1.ContainerResources{}
			byPod[k] = cs
			order = append(order, k)
		}
		c := cs[name]
		if c == nil {
			c = &podresourcesv1.ContainerResources{Name: name}
			cs[name] = c
		}
		return c
	}
	for _, a := range allocs {
		if c := container(a.Namespace, a.Pod, a.Container); c != nil {
			c.Devices = t.devices(c.Devices, a.Resource, a.DeviceIds)
		}
	}
	for _, cl := range claims {
		if cl.Pod == "" {
			continue
		}
		c := container(cl.Namespace, cl.Pod, cl.Container)
		if c == nil {
			continue
		}
		dr := &podresourcesv1.DynamicResource{ClaimName: cl.Name, ClaimNamespace: cl.Namespace}
		for _, d := range cl.Devices {
			cr := &podresourcesv1.ClaimResource{DriverName: d.Driver, PoolName: d.Pool, DeviceName: d.Device}
			if d.ShareId != "" {
				id := d.ShareId
				cr.ShareId = &id
			}
			for _, n := range d.CdiDevices {
				cr.CdiDevices = append(cr.CdiDevices, &podresourcesv1.CDIDevice{Name: n})
			}
			dr.ClaimResources = append(dr.ClaimResources, cr)
		}
		c.DynamicResources = append(c.DynamicResources, dr)
	}
	sort.Slice(order, func(i, j int) bool {
		if order[i].namespace != order[j].namespace {
			return order[i].namespace < order[j].namespace
		}
		return order[i].pod < order[j].pod
	})
	out := make([]*podresourcesv1.PodResources, 0, len(order))
	for _, k := range order {
		p := &podresourcesv1.PodResources{Name: k.pod, Namespace: k.namespace}
		for _, c := range byPod[k] {
			p.Containers = append(p.Containers, c)
		}
		sort.Slice(p.Containers, func(i, j int) bool { return p.Containers[i].Name < p.Containers[j].Name })
		out = append(out, p)
	}
	return out
}

func all(string, string) bool { return true }

// list is every pod holding devices, as v1's List reports them.
func list(b Backend) []*podresourcesv1.PodResources {
	return topologyOf(b.Resources()).pods(b.Allocations(), b.Claims(), all)
}

// List reports every pod holding devices, with the devices of each container.
func (s *podResources) List(context.Context, *podresourcesv1.ListPodResourcesRequest) (*podresourcesv1.ListPodResourcesResponse, error) {
	return &podresourcesv1.ListPodResourcesResponse{PodResources: list(s.b)}, nil
}

// GetAllocatableResources reports the devices containers can be given: as
// with the kubelet, every healthy device, whether it is allocated or not.
func (s *podResources) GetAllocatableResources(context.Context, *podresourcesv1.AllocatableResourcesRequest) (*podresourcesv1.AllocatableResourcesResponse, error) {
	rs := s.b.Resources()
	t := topologyOf(rs)
	out := &podresourcesv1.AllocatableResourcesResponse{}
	for _, r := range rs {
		var ids []string
		for _, d := range r.Devices {
			if d.Healthy {
				ids = append(ids, d.Id)
			}
		}
		out.Devices = t.devices(out.Devices, r.Name, ids)
	}
	return out, nil
}

// Get reports one pod's devices. A pod that holds no devices is unknown to
// wasmlet: NotFound.
func (s *podResources) Get(_ context.Context, req *podresourcesv1.GetPodResourcesRequest) (*podresourcesv1.GetPodResourcesResponse, error) {
	if req.GetPodName() == "" || req.GetPodNamespace() == "" {
		return nil, status.Errorf(codes.InvalidArgument, "pod name and namespace are required (got %q in %q)",
			req.GetPodName(), req.GetPodNamespace())
	}
	pods := topologyOf(s.b.Resources()).pods(s.b.Allocations(), s.b.Claims(), func(namespace, pod string) bool {
		return namespace == req.GetPodNamespace() && pod == req.GetPodName()
	})
	if len(pods) == 0 {
		return nil, status.Errorf(codes.NotFound, "pod %s in namespace %s not found: it holds no devices on this node",
			req.GetPodName(), req.GetPodNamespace())
	}
	return &podresourcesv1.GetPodResourcesResponse{PodResources: pods[0]}, nil
}

// List is v1's List without topology: one ContainerDevices per device and
// NUMA node, as the kubelet's v1alpha1 server converts v1's.
func (s *podResourcesV1alpha1) List(context.Context, *podresourcesv1alpha1.ListPodResourcesRequest) (*podresourcesv1alpha1.ListPodResourcesResponse, error) {
	pods := list(s.b)
	out := &podresourcesv1alpha1.ListPodResourcesResponse{PodResources: make([]*podresourcesv1alpha1.PodResources, len(pods))}
	for i, p := range pods {
		ap := &podresourcesv1alpha1.PodResources{Name: p.Name, Namespace: p.Namespace,
			Containers: make([]*podresourcesv1alpha1.ContainerResources, len(p.Containers))}
		for j, c := range p.Containers {
			ac := &podresourcesv1alpha1.ContainerResources{Name: c.Name}
			for _, d := range c.Devices {
				ac.Devices = append(ac.Devices, &podresourcesv1alpha1.ContainerDevices{ResourceName: d.ResourceName, DeviceIds: d.DeviceIds})
			}
			ap.Containers[j] = ac
		}
		out.PodResources[i] = ap
	}
	return out, nil
}
