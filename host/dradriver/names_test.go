package dradriver

import (
	"errors"
	"fmt"
	"strings"
	"testing"

	resourceapi "k8s.io/api/resource/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/util/validation"
	"k8s.io/apimachinery/pkg/util/validation/field"

	"github.com/wasmlet/wasmlet/host/device"
)

// Every valid device id (abi.ValidDeviceID: 1 to 63 bytes of
// [A-Za-z0-9._:-]) has a name in the slices that is a DNS label, as
// resource.k8s.io/v1 requires: itself when it is one, else a name of its
// own that says which id it is.
func TestDeviceName(t *testing.T) {
	long := strings.Repeat("A", 63)
	for _, c := range []struct{ id, want string }{
		{"gpu-0", "gpu-0"},
		{"0", "0"},
		{"0000:00:1f.6", "0000-00-1f-6-"},
		{"GPU-0", "gpu-0-"},
		{"nvme0n1.p2", "nvme0n1-p2-"},
		{"-x-", "x-"},
		{"...", "d-"},
		{":", "d-"},
		{long, strings.Repeat("a", 54) + "-"},
	} {
		got := DeviceName(c.id)
		if errs := validation.IsDNS1123Label(got); len(errs) > 0 {
			t.Errorf("DeviceName(%q) = %q: %v", c.id, got, errs)
		}
		if got == c.id {
			if c.want != c.id {
				t.Errorf("DeviceName(%q) = the id, want %q...", c.id, c.want)
			}
			continue
		}
		if !strings.HasPrefix(got, c.want) || len(got) != len(c.want)+8 {
			t.Errorf("DeviceName(%q) = %q, want %q and 8 hex digits", c.id, got, c.want)
		}
	}
	// Ids that read alike once mapped still have names of their own.
	seen := map[string]string{}
	for _, id := range []string{"a.b", "a:b", "A.B", "a_b", "a-b", "a..b"} {
		name := DeviceName(id)
		if other, dup := seen[name]; dup {
			t.Errorf("%q and %q are both %q", id, other, name)
		}
		seen[name] = id
	}
}

// A source cannot make its slices invalid: a device whose name in the
// slices an earlier device already has (a hostile "x-<hash>" beside "x.")
// is left out, and so are the devices beyond the limit; both are said,
// by id, and the rest keep the source's order.
func TestAdmit(t *testing.T) {
	devs := []device.Device{{ID: "0000:00:1f.6"}, {ID: DeviceName("0000:00:1f.6")}, {ID: "gpu-0"}, {ID: "gpu-1"}, {ID: "gpu-2"}}
	kept, ids, leftOut, why := admit(devs, 3)
	var names []string
	for _, d := range kept {
		names = append(names, d.ID)
	}
	if fmt.Sprint(names) != "[0000:00:1f.6 gpu-0 gpu-1]" || leftOut != 2 || ids[DeviceName("0000:00:1f.6")] != "0000:00:1f.6" {
		t.Fatalf("kept %v, left out %d, ids %v", names, leftOut, ids)
	}
	for _, s := range []string{`device "` + DeviceName("0000:00:1f.6") + `" is named`, `as device "0000:00:1f.6" already is`,
		`device "gpu-2" is beyond the 3 devices a driver publishes ([dra] max_devices)`} {
		if !strings.Contains(why, s) {
			t.Errorf("reason %q: no %q", why, s)
		}
	}
	var many []device.Device
	for i := range 10 {
		many = append(many, device.Device{ID: fmt.Sprintf("d%d", i)})
	}
	if _, _, n, why := admit(many, 2); n != 8 || !strings.HasSuffix(why, "and 5 more") {
		t.Errorf("%d left out: %q", n, why)
	}
	if _, _, n, why := admit(many, 10); n != 0 || why != "" {
		t.Errorf("nothing to leave out: %d, %q", n, why)
	}
}

// The API server refusing the slices is told apart from not reaching it,
// through the kubelet plugin helper's wrapping.
func TestRefusal(t *testing.T) {
	gr := schema.GroupResource{Group: resourceapi.GroupName, Resource: "resourceslices"}
	invalid := apierrors.NewInvalid(schema.GroupKind{Group: resourceapi.GroupName, Kind: "ResourceSlice"}, "s",
		field.ErrorList{field.TooMany(field.NewPath("spec", "sharedCounters"), 9, 8)})
	for _, c := range []struct {
		err  error
		want bool
	}{
		{fmt.Errorf("create slice: %w", invalid), true},
		{apierrors.NewForbidden(gr, "s", errors.New("RBAC")), true},
		{apierrors.NewRequestEntityTooLargeError("limit"), true},
		{apierrors.NewServiceUnavailable("down"), false},
		{errors.New("dial tcp: connection refused"), false},
	} {
		if got := refusal(c.err); got != c.want {
			t.Errorf("refusal(%v) = %v", c.err, got)
		}
	}
}
