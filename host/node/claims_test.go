package node

import (
	"context"
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/pelletier/go-toml/v2"
	podresourcesv1 "k8s.io/kubelet/pkg/apis/podresources/v1"
	"sigs.k8s.io/yaml"

	"github.com/wasmlet/wasmlet/guests/build"
	"github.com/wasmlet/wasmlet/host/api"
	"github.com/wasmlet/wasmlet/host/api/adminpb"
	"github.com/wasmlet/wasmlet/host/internal/testenv"
	"github.com/wasmlet/wasmlet/internal/testkit"
)

// bundledGPUs is a node with the real gpusim module twice, configured as
// the repository's plugins.toml configures it, and its device classes.
func bundledGPUs(t *testing.T) (*harness, string) {
	t.Helper()
	root, err := build.Root()
	if err != nil {
		t.Fatal(err)
	}
	// The bundled file names modules a clean checkout has not built: its
	// gpusim entries are read, not the whole file validated.
	data, err := os.ReadFile(filepath.Join(root, "plugins.toml"))
	if err != nil {
		t.Fatal(err)
	}
	var bundled struct {
		Modules map[string]struct{ Config map[string]string }
	}
	if err := toml.Unmarshal(data, &bundled); err != nil {
		t.Fatal(err)
	}
	var extra strings.Builder
	for _, name := range []string{"gpusim", "gpusim-shared"} {
		cfg := bundled.Modules[name].Config
		if len(cfg) == 0 {
			t.Fatalf("plugins.toml: [modules.%s] has no config", name)
		}
		var kv []string
		for _, k := range slices.Sorted(maps.Keys(cfg)) {
			kv = append(kv, fmt.Sprintf("%s = %q", k, cfg[k]))
		}
		fmt.Fprintf(&extra, "[modules.%s]\nconfig = { %s }\n", name, strings.Join(kv, ", "))
	}
	toml := strings.Replace(nodeTOML("127.0.0.1:0", extra.String()), "[host]\n",
		fmt.Sprintf("[host]\nnode_name = \"node-a\"\ndevice_class_dir = %q\n", filepath.Join(root, "examples", "deviceclasses")), 1)
	h := startTOML(t, map[string]string{"gpusim": "guests/gpusim", "gpusim-shared": "guests/gpusim"}, toml)
	h.eventually("both gpusim pools", func() bool {
		a, _ := h.resource("gpu.example.com/gpu")
		b, _ := h.resource("gpu.example.com/vgpu")
		return a.Healthy == 80 && b.Healthy == 2
	})
	return h, root
}

// TestClaimExamples applies examples/claims in the order README.md walks
// through them, through the admin API, on the real gpusim module as
// plugins.toml configures it: each gets the devices it should, its
// prepared edits and CDI devices, the one that must fail says why; a count
// request then gets none of their devices; pod resources report a claim
// applied for a container; a deleted claim's CDI spec goes.
func TestClaimExamples(t *testing.T) {
	h, root := bundledGPUs(t)
	cl := testkit.DialAPI(t, h.cfg.Host.APISocket)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	apply := func(name string, req *adminpb.ApplyClaimRequest) (*adminpb.Claim, error) {
		data, err := os.ReadFile(filepath.Join(root, "examples", "claims", name+".yaml"))
		if err != nil {
			t.Fatal(err)
		}
		if req.Claim, err = yaml.YAMLToJSON(data); err != nil { // as the CLI sends it
			t.Fatal(err)
		}
		resp, err := cl.ApplyClaim(ctx, req)
		if err != nil {
			return nil, err
		}
		return resp.Claim, nil
	}
	held := map[string]bool{}
	for _, c := range []struct {
		file, want string
		env        map[string]string
		consumed   string
		pod        string
	}{
		{file: "selector", want: "gpu=gpu-0"},
		{file: "match-attribute", want: "gpus=gpu-2 gpus=gpu-3"},
		{file: "first-available", want: "gpu/small=gpu-1-1g-5gb-0 gpu/small=gpu-1-1g-5gb-1",
			env: map[string]string{"GPUSIM_GPU_1_1G_5GB_0_GPU_SMALL_COMPUTE_MODE": "Default"}}, // the class's configuration
		{file: "all", want: "slices=gpu-7-1g-5gb-0 slices=gpu-7-1g-5gb-1 slices=gpu-7-1g-5gb-2 slices=gpu-7-1g-5gb-3 " +
			"slices=gpu-7-1g-5gb-4 slices=gpu-7-1g-5gb-5 slices=gpu-7-1g-5gb-6"},
		{file: "partition", want: "mig=gpu-1-3g-20gb-0", pod: "train",
			env: map[string]string{"GPUSIM_GPU_1_3G_20GB_0_MIG_COMPUTE_MODE": "Exclusive"}}, // the claim's, after the class's
		{file: "consumable", want: "vgpu=gpu-0", consumed: "6Gi"},
	} {
		req := &adminpb.ApplyClaimRequest{}
		if c.pod != "" {
			req.Pod, req.Container = c.pod, "main"
		}
		got, err := apply(c.file, req)
		if err != nil {
			t.Fatalf("%s: %v", c.file, err)
		}
		var devs []string
		for _, d := range got.Devices {
			devs = append(devs, d.Request+"="+d.Device)
			held[d.Driver+"/"+d.Device] = true
			if d.Health != "healthy" || len(d.CdiDevices) == 0 {
				t.Errorf("%s: device %+v", c.file, d)
			}
			if c.consumed != "" && (d.ConsumedCapacity["memory"] != c.consumed || d.ShareId == "") {
				t.Errorf("%s: consumed %v, share %q", c.file, d.ConsumedCapacity, d.ShareId)
			}
		}
		if strings.Join(devs, " ") != c.want {
			t.Errorf("%s: allocated %s, want %s", c.file, strings.Join(devs, " "), c.want)
		}
		for k, v := range c.env {
			if got.Response.Envs[k] != v {
				t.Errorf("%s: %s=%q, want %q (env %v)", c.file, k, got.Response.Envs[k], v, got.Response.Envs)
			}
		}
		if !slices.ContainsFunc(got.Response.CdiDevices, func(n string) bool { return strings.Contains(n, "/claim="+got.Uid+"-") }) {
			t.Errorf("%s: no CDI device of the claim's own spec in %v", c.file, got.Response.CdiDevices)
		}
	}
	_, err := apply("must-fail", &adminpb.ApplyClaimRequest{})
	if api.ReasonOf(err) != api.ReasonNotEnoughDevices ||
		!strings.Contains(err.Error(), "claim default/too-many cannot be allocated: request gpus: needs 9 device(s), 3 available") ||
		!strings.Contains(err.Error(), "class whole.gpu.example.com's selector #0") {
		t.Errorf("must-fail: %v", err)
	}

	// A count request for the source's resource gets none of the claims'
	// devices, nor a partition of a GPU they hold.
	a, err := cl.Allocate(ctx, &adminpb.AllocateRequest{Namespace: "default", Pod: "count", Container: "main",
		Resource: "gpu.example.com/gpu", Count: 3})
	if err != nil {
		t.Fatal(err)
	}
	for _, id := range a.Allocation.DeviceIds {
		gpu := strings.Join(strings.SplitN(id, "-", 3)[:2], "-")
		if held["gpu.example.com/"+id] || slices.Contains([]string{"gpu-0", "gpu-2", "gpu-3", "gpu-7"}, gpu) {
			t.Errorf("the count request got %s, which a claim holds (or a part of it)", id)
		}
	}

	// Pod resources report the claim applied for default/train/main.
	pr := podresourcesv1.NewPodResourcesListerClient(testenv.DialPodResources(t, h.cfg.Host.PodResourcesSocket))
	pod, err := pr.Get(ctx, &podresourcesv1.GetPodResourcesRequest{PodName: "train", PodNamespace: "default"})
	if err != nil {
		t.Fatal(err)
	}
	dr := pod.PodResources.Containers[0].DynamicResources
	if len(dr) != 1 || dr[0].ClaimName != "partition" || len(dr[0].ClaimResources) != 1 ||
		dr[0].ClaimResources[0].DeviceName != "gpu-1-3g-20gb-0" || dr[0].ClaimResources[0].PoolName != "node-a" ||
		dr[0].ClaimResources[0].DriverName != "gpu.example.com" || len(dr[0].ClaimResources[0].CdiDevices) != 2 {
		t.Errorf("pod resources: %v", dr)
	}

	// Deleted, a claim's CDI spec goes and its devices are free again.
	show, err := cl.GetClaim(ctx, &adminpb.GetClaimRequest{Name: "partition"})
	if err != nil {
		t.Fatal(err)
	}
	spec := filepath.Join(h.cfg.Bridge.CDIDir, "wasmlet-claim-"+show.Claim.Uid+"-gpu.example.com.json")
	if _, err := os.Stat(spec); err != nil {
		t.Fatalf("the claim's CDI spec: %v", err)
	}
	if _, err := cl.DeleteClaim(ctx, &adminpb.DeleteClaimRequest{Name: "partition"}); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(spec); !os.IsNotExist(err) {
		t.Errorf("the CDI spec of a deleted claim: %v", err)
	}
	again, err := apply("partition", &adminpb.ApplyClaimRequest{})
	if err != nil || again.Devices[0].Device != "gpu-1-3g-20gb-0" {
		t.Errorf("applied again: %v %v", again, err)
	}
	list, err := cl.ListClaims(ctx, &adminpb.ListClaimsRequest{})
	if err != nil || len(list.Claims) != 6 {
		t.Errorf("claims: %v %v", list, err)
	}
	st, err := cl.Status(ctx, &adminpb.StatusRequest{})
	if err != nil || st.Counts.Claims != 6 {
		t.Errorf("status counts: %v %v", st.GetCounts(), err)
	}
}
