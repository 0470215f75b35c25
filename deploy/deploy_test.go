// Package deploy_test checks the deployment files against each other: the
// DaemonSet (decoded into the Kubernetes API types), the kustomization that
// makes its ConfigMap, deploy/plugins.toml (parsed by host/config, as
// wasmlet reads it), the Containerfile and the systemd unit.
package deploy_test

import (
	"os"
	"path/filepath"
	"reflect"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	resourceapi "k8s.io/api/resource/v1"
	"sigs.k8s.io/yaml"

	"github.com/wasmlet/wasmlet/host/config"
)

// decode reads a YAML file into v, refusing fields v does not have.
func decode(t *testing.T, file string, v any) {
	t.Helper()
	b, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	if err := yaml.UnmarshalStrict(b, v); err != nil {
		t.Fatalf("%s: %v", file, err)
	}
}

// deployConfig is deploy/plugins.toml as wasmlet reads it, with the names of
// the modules it configures and its module directory.
type deployConfig struct {
	*config.Config
	moduleDir string
	modules   []string
}

// loadConfig parses plugins.toml with host/config. The configuration names
// modules that must exist in its module directory, which is a node's; the
// parse runs on a copy whose module_dir holds empty stand-ins.
func loadConfig(t *testing.T) deployConfig {
	t.Helper()
	data, err := os.ReadFile("plugins.toml")
	if err != nil {
		t.Fatal(err)
	}
	dirRE := regexp.MustCompile(`(?m)^module_dir = "([^"]*)"`)
	m := dirRE.FindSubmatch(data)
	if m == nil {
		t.Fatal("plugins.toml sets no module_dir")
	}
	dc := deployConfig{moduleDir: string(m[1])}
	stand := t.TempDir()
	for _, m := range regexp.MustCompile(`(?m)^\[(?:modules|sources)\.([A-Za-z0-9_-]+)[.\]]`).FindAllSubmatch(data, -1) {
		name := string(m[1])
		if !slices.Contains(dc.modules, name) {
			dc.modules = append(dc.modules, name)
			os.WriteFile(filepath.Join(stand, name+".wasm"), nil, 0o644)
		}
	}
	data = dirRE.ReplaceAll(data, []byte(`module_dir = "`+stand+`"`))
	cfg, err := config.Parse(data, "plugins.toml")
	if err != nil {
		t.Fatalf("deploy/plugins.toml: %v", err)
	}
	dc.Config = cfg
	return dc
}

// need is a directory the configuration uses.
type need struct {
	what  string
	path  string
	write bool
	// samePath: the node must see it at the same path (the kubelet, the
	// runtime or an administrator resolves paths wasmlet gives out).
	samePath bool
}

func (dc deployConfig) needs() []need {
	h, b := dc.Host, dc.Bridge
	ns := []need{
		{"state_dir", h.StateDir, true, true},
		{"registry_dir (wasmlet's own)", h.RegistryDir, true, false},
		{"device_plugin_dir (wasmlet's own)", h.DevicePluginDir, true, false},
		{"module_dir", dc.moduleDir, false, true},
		{"api_socket's directory", filepath.Dir(h.APISocket), true, true},
		{"pod_resources_socket's directory", filepath.Dir(h.PodResourcesSocket), true, true},
		{"bridge.cdi_dir", b.CDIDir, true, true},
	}
	bridged := false
	for _, name := range dc.modules {
		bridged = bridged || dc.Source(name).Bridge == config.BridgeDevicePlugin
		// csihandler's endpoint_dirs: wasmlet dials the CSI sockets there
		// at the paths the drivers' registrars give, which are the node's.
		if dirs, ok := dc.ModuleOptions(name).Config["endpoint_dirs"]; ok && dc.Handlers()["CSIPlugin"] == name {
			for _, d := range strings.Split(dirs, ",") {
				if d = strings.TrimSpace(d); d != "" {
					ns = append(ns, need{"modules." + name + " endpoint_dirs", d, false, true})
				}
			}
		}
		for _, m := range dc.ModuleOptions(name).Mounts {
			ns = append(ns, need{"modules." + name + " mount " + m.Guest, m.Host, false, false})
			if m.Root != "" {
				ns = append(ns, need{"modules." + name + " mount root", m.Root, false, false})
			}
		}
	}
	if dc.Bridges(config.BridgeDRA) {
		// The kubelet dials the DRA drivers' sockets at the paths they give.
		ns = append(ns, need{"dra.plugin_dir", dc.DRA.PluginDir, true, true},
			need{"dra.registry_dir", dc.DRA.RegistryDir, true, true})
		if dc.DRA.Kubeconfig != "" {
			ns = append(ns, need{"dra.kubeconfig", dc.DRA.Kubeconfig, false, false})
		}
	}
	if bridged {
		ns = append(ns, need{"bridge.kubelet_dir", b.KubeletDir, true, true})
		if b.Registration == config.RegisterPluginRegistry {
			ns = append(ns, need{"bridge.plugin_registry_dir", b.PluginRegistryDir, true, true})
		}
	}
	return ns
}

func within(path, dir string) bool {
	return path == dir || strings.HasPrefix(path, strings.TrimSuffix(dir, "/")+"/")
}

// mountFor is the volume mount of c that holds path (the deepest one).
func mountFor(c *corev1.Container, path string) *corev1.VolumeMount {
	var best *corev1.VolumeMount
	for i := range c.VolumeMounts {
		vm := &c.VolumeMounts[i]
		if within(path, vm.MountPath) && (best == nil || len(vm.MountPath) > len(best.MountPath)) {
			best = vm
		}
	}
	return best
}

func volume(ds *appsv1.DaemonSet, name string) *corev1.Volume {
	for i := range ds.Spec.Template.Spec.Volumes {
		if v := &ds.Spec.Template.Spec.Volumes[i]; v.Name == name {
			return v
		}
	}
	return nil
}

func container(t *testing.T, cs []corev1.Container, name string) *corev1.Container {
	t.Helper()
	for i := range cs {
		if cs[i].Name == name {
			return &cs[i]
		}
	}
	t.Fatalf("daemonset.yaml has no container %q", name)
	return nil
}

// configPath is the --config argument of the wasmlet container.
func configPath(t *testing.T, c *corev1.Container) string {
	t.Helper()
	args := append(slices.Clone(c.Command), c.Args...)
	i := slices.Index(args, "--config")
	if i < 0 || i+1 == len(args) {
		t.Fatalf("the wasmlet container is not given --config: %q", args)
	}
	return args[i+1]
}

// TestDaemonSetMountsWhatTheConfigUses: every directory deploy/plugins.toml
// uses is mounted into the wasmlet container, writable exactly where
// wasmlet writes, from the same path on the node where the kubelet, the
// container runtime or an administrator must find what wasmlet puts there;
// and nothing else is writable.
func TestDaemonSetMountsWhatTheConfigUses(t *testing.T) {
	var ds appsv1.DaemonSet
	decode(t, "daemonset.yaml", &ds)
	dc := loadConfig(t)
	c := container(t, ds.Spec.Template.Spec.Containers, "wasmlet")

	usedWritable := map[string]bool{}
	for _, n := range dc.needs() {
		vm := mountFor(c, n.path)
		if vm == nil {
			t.Errorf("%s %s is not mounted into the wasmlet container", n.what, n.path)
			continue
		}
		if n.write && vm.ReadOnly {
			t.Errorf("%s %s: wasmlet writes there, but its mount %s is read-only", n.what, n.path, vm.MountPath)
		}
		if n.write {
			usedWritable[vm.Name] = true
		}
		v := volume(&ds, vm.Name)
		if v == nil || v.HostPath == nil {
			t.Errorf("%s %s: mount %s is not a hostPath volume", n.what, n.path, vm.MountPath)
			continue
		}
		if n.samePath && v.HostPath.Path != vm.MountPath {
			t.Errorf("%s %s: mounted from the node's %s at %s; the node must see it at the same path",
				n.what, n.path, v.HostPath.Path, vm.MountPath)
		}
	}
	for _, vm := range c.VolumeMounts {
		if !vm.ReadOnly && !usedWritable[vm.Name] {
			t.Errorf("mount %s (%s) is writable, but plugins.toml writes nothing there", vm.MountPath, vm.Name)
		}
	}
	// The node's /sys and /dev, if mounted, are read-only everywhere.
	for _, cc := range append(slices.Clone(ds.Spec.Template.Spec.InitContainers), ds.Spec.Template.Spec.Containers...) {
		for _, vm := range cc.VolumeMounts {
			if v := volume(&ds, vm.Name); v != nil && v.HostPath != nil && (within(v.HostPath.Path, "/sys") || within(v.HostPath.Path, "/dev")) && !vm.ReadOnly {
				t.Errorf("container %s mounts the node's %s writable", cc.Name, v.HostPath.Path)
			}
		}
	}
}

// TestConfigMapIsPluginsToml: the wasmlet container reads plugins.toml from
// the ConfigMap that kustomization.yaml makes from deploy/plugins.toml.
func TestConfigMapIsPluginsToml(t *testing.T) {
	var ds appsv1.DaemonSet
	decode(t, "daemonset.yaml", &ds)
	var k struct {
		APIVersion         string   `json:"apiVersion"`
		Kind               string   `json:"kind"`
		Namespace          string   `json:"namespace"`
		Resources          []string `json:"resources"`
		ConfigMapGenerator []struct {
			Name  string   `json:"name"`
			Files []string `json:"files"`
		} `json:"configMapGenerator"`
		Images []struct {
			Name   string `json:"name"`
			NewTag string `json:"newTag"`
		} `json:"images"`
	}
	decode(t, "kustomization.yaml", &k)
	var ns corev1.Namespace
	decode(t, "namespace.yaml", &ns)

	c := container(t, ds.Spec.Template.Spec.Containers, "wasmlet")
	cfgPath := configPath(t, c)
	vm := mountFor(c, cfgPath)
	if vm == nil || !vm.ReadOnly || filepath.Dir(cfgPath) != vm.MountPath {
		t.Fatalf("--config %s: not in a read-only mount of its own (%+v)", cfgPath, vm)
	}
	v := volume(&ds, vm.Name)
	if v == nil || v.ConfigMap == nil {
		t.Fatalf("--config %s: the volume %s is not a ConfigMap", cfgPath, vm.Name)
	}
	if len(k.ConfigMapGenerator) != 1 || k.ConfigMapGenerator[0].Name != v.ConfigMap.Name ||
		!slices.Contains(k.ConfigMapGenerator[0].Files, filepath.Base(cfgPath)) {
		t.Errorf("kustomization.yaml does not make ConfigMap %s with %s from deploy/: %+v", v.ConfigMap.Name,
			filepath.Base(cfgPath), k.ConfigMapGenerator)
	}
	if filepath.Base(cfgPath) != "plugins.toml" {
		t.Errorf("--config %s: the ConfigMap key is the file name, plugins.toml", cfgPath)
	}
	if k.Namespace != ds.Namespace || ns.Name != ds.Namespace || !slices.Contains(k.Resources, "namespace.yaml") ||
		!slices.Contains(k.Resources, "daemonset.yaml") {
		t.Errorf("namespaces: kustomization %q, namespace.yaml %q, daemonset %q; resources %v", k.Namespace, ns.Name,
			ds.Namespace, k.Resources)
	}
	if ns.Labels["pod-security.kubernetes.io/enforce"] != "privileged" {
		t.Errorf("namespace %s: hostPath volumes need the privileged Pod Security level", ns.Name)
	}
	for _, img := range k.Images {
		for _, cc := range append(slices.Clone(ds.Spec.Template.Spec.InitContainers), ds.Spec.Template.Spec.Containers...) {
			if !strings.HasPrefix(cc.Image, img.Name+":") {
				t.Errorf("container %s runs %s, not the kustomized image %s", cc.Name, cc.Image, img.Name)
			}
		}
	}
}

// TestLeastPrivilege: no privileged container, no capability, no way to
// gain one, a read-only root file system, the runtime's seccomp profile,
// none of the node's namespaces, an API server token only when a DRA driver
// needs one.
func TestLeastPrivilege(t *testing.T) {
	var ds appsv1.DaemonSet
	decode(t, "daemonset.yaml", &ds)
	spec := ds.Spec.Template.Spec
	if spec.HostNetwork || spec.HostPID || spec.HostIPC {
		t.Error("the pod shares a namespace of the node")
	}
	// A token only for the DRA drivers, which reach the API server with the
	// pod's service account.
	dc := loadConfig(t)
	needToken := dc.Bridges(config.BridgeDRA) && dc.DRA.Kubeconfig == ""
	if token := spec.AutomountServiceAccountToken == nil || *spec.AutomountServiceAccountToken; token != needToken {
		t.Errorf("the pod gets an API server token: %v; its DRA drivers need one: %v", token, needToken)
	}
	if spec.SecurityContext == nil || spec.SecurityContext.SeccompProfile == nil ||
		spec.SecurityContext.SeccompProfile.Type != corev1.SeccompProfileTypeRuntimeDefault {
		t.Error("the pod does not run under the runtime's default seccomp profile")
	}
	for _, c := range append(slices.Clone(spec.InitContainers), spec.Containers...) {
		sc := c.SecurityContext
		if sc == nil {
			t.Errorf("container %s has no security context", c.Name)
			continue
		}
		if sc.Privileged != nil && *sc.Privileged {
			t.Errorf("container %s is privileged", c.Name)
		}
		if sc.AllowPrivilegeEscalation == nil || *sc.AllowPrivilegeEscalation {
			t.Errorf("container %s may gain privileges", c.Name)
		}
		if sc.ReadOnlyRootFilesystem == nil || !*sc.ReadOnlyRootFilesystem {
			t.Errorf("container %s has a writable root file system", c.Name)
		}
		if sc.Capabilities == nil || !slices.Contains(sc.Capabilities.Drop, "ALL") || len(sc.Capabilities.Add) > 0 {
			t.Errorf("container %s keeps or adds capabilities: %+v", c.Name, sc.Capabilities)
		}
		if c.Resources.Limits.Memory().IsZero() {
			t.Errorf("container %s has no memory limit", c.Name)
		}
	}
}

// TestProbesAndImage: the probes reach wasmlet's metrics address; the
// image has the binaries the DaemonSet runs, reads the configuration where
// the DaemonSet puts it, and bundles every module plugins.toml configures,
// which the init container installs into the module directory.
func TestProbesAndImage(t *testing.T) {
	var ds appsv1.DaemonSet
	decode(t, "daemonset.yaml", &ds)
	dc := loadConfig(t)
	c := container(t, ds.Spec.Template.Spec.Containers, "wasmlet")
	_, port, ok := strings.Cut(dc.Host.MetricsAddress, ":")
	if !ok || strings.HasPrefix(dc.Host.MetricsAddress, "127.") || strings.HasPrefix(dc.Host.MetricsAddress, "localhost") {
		t.Fatalf("metrics_address %q: the kubelet's probes come from outside the pod", dc.Host.MetricsAddress)
	}
	if len(c.Ports) != 1 || c.Ports[0].Name != "metrics" || port != strconv.Itoa(int(c.Ports[0].ContainerPort)) {
		t.Errorf("container port %+v, metrics_address %s", c.Ports, dc.Host.MetricsAddress)
	}
	for _, p := range []*corev1.Probe{c.LivenessProbe, c.ReadinessProbe, c.StartupProbe} {
		if p == nil || p.HTTPGet == nil || p.HTTPGet.Port.String() != "metrics" {
			t.Errorf("probe %+v does not use the metrics port", p)
		}
	}

	cf, err := os.ReadFile("Containerfile")
	if err != nil {
		t.Fatal(err)
	}
	image := string(cf)
	if !strings.Contains(image, `"--config", "`+configPath(t, c)+`"`) {
		t.Errorf("the Containerfile's CMD does not read %s", configPath(t, c))
	}
	init := container(t, ds.Spec.Template.Spec.InitContainers, "install-modules")
	for _, cc := range []*corev1.Container{c, init} {
		if !strings.Contains(image, "-o /out"+cc.Command[0]+" ") {
			t.Errorf("container %s runs %s, which the Containerfile does not build", cc.Name, cc.Command[0])
		}
	}
	if len(init.Command) != 3 || init.Command[2] != dc.moduleDir {
		t.Fatalf("install-modules %q does not install into module_dir %s", init.Command, dc.moduleDir)
	}
	bundle := init.Command[1]
	loop := regexp.MustCompile(`for m in ([a-z0-9 -]+); do`).FindStringSubmatch(image)
	if loop == nil || !strings.Contains(image, "-o /out"+bundle+"/$m.wasm") {
		t.Fatalf("the Containerfile does not build modules into %s", bundle)
	}
	built := strings.Fields(loop[1])
	for _, m := range dc.modules {
		if !slices.Contains(built, m) {
			t.Errorf("plugins.toml configures module %s, which the image does not bundle (it bundles %v)", m, built)
		}
	}
	if vm := mountFor(init, dc.moduleDir); vm == nil || vm.ReadOnly || len(init.VolumeMounts) != 1 {
		t.Errorf("install-modules must write the module directory and nothing else: %+v", init.VolumeMounts)
	}
}

// TestSystemdUnit: the unit reads the configuration the DaemonSet does, and
// may write exactly where wasmlet writes on the node.
func TestSystemdUnit(t *testing.T) {
	var ds appsv1.DaemonSet
	decode(t, "daemonset.yaml", &ds)
	dc := loadConfig(t)
	b, err := os.ReadFile("wasmlet.service")
	if err != nil {
		t.Fatal(err)
	}
	unit := map[string][]string{}
	for _, line := range strings.Split(string(b), "\n") {
		if k, v, ok := strings.Cut(line, "="); ok && !strings.HasPrefix(line, "#") {
			unit[k] = append(unit[k], v)
		}
	}
	cfgPath := configPath(t, container(t, ds.Spec.Template.Spec.Containers, "wasmlet"))
	if len(unit["ExecStart"]) != 1 || !strings.HasSuffix(unit["ExecStart"][0], " run --config "+cfgPath) {
		t.Errorf("ExecStart %q does not run wasmlet on %s", unit["ExecStart"], cfgPath)
	}
	if got := unit["ProtectSystem"]; len(got) != 1 || got[0] != "strict" {
		t.Errorf("ProtectSystem %q: everything not listed must be read-only", got)
	}
	if got := unit["CapabilityBoundingSet"]; len(got) != 1 || got[0] != "" {
		t.Errorf("CapabilityBoundingSet %q: wasmlet needs no capability", got)
	}
	var writable []string
	for _, v := range unit["ReadWritePaths"] {
		writable = append(writable, strings.Fields(v)...)
	}
	for _, n := range dc.needs() {
		if !n.write {
			continue
		}
		if !slices.ContainsFunc(writable, func(w string) bool { return within(n.path, w) }) {
			t.Errorf("%s %s is not in the unit's ReadWritePaths %v", n.what, n.path, writable)
		}
	}
	for _, w := range writable {
		if !slices.ContainsFunc(dc.needs(), func(n need) bool { return n.write && within(n.path, w) }) {
			t.Errorf("ReadWritePaths has %s, where plugins.toml writes nothing", w)
		}
	}
}

// documents decodes every YAML document of file strictly, each into a new
// value of the type among kinds (pointers to Kubernetes objects) named as
// the document's kind; a document of another kind fails the test.
func documents(t *testing.T, file string, kinds ...any) []any {
	t.Helper()
	b, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	var out []any
	for i, doc := range regexp.MustCompile(`(?m)^---$`).Split(string(b), -1) {
		var meta struct {
			Kind string `json:"kind"`
		}
		if err := yaml.Unmarshal([]byte(doc), &meta); err != nil || meta.Kind == "" {
			t.Fatalf("%s, document %d: no kind (%v)", file, i+1, err)
		}
		k := slices.IndexFunc(kinds, func(k any) bool { return reflect.TypeOf(k).Elem().Name() == meta.Kind })
		if k < 0 {
			t.Fatalf("%s, document %d: unexpected kind %s", file, i+1, meta.Kind)
		}
		v := reflect.New(reflect.TypeOf(kinds[k]).Elem()).Interface()
		if err := yaml.UnmarshalStrict([]byte(doc), v); err != nil {
			t.Fatalf("%s, document %d (%s): %v", file, i+1, meta.Kind, err)
		}
		out = append(out, v)
	}
	return out
}

// one is the document of type T among docs (the last, if there are
// several), or nil.
func one[T any](docs []any) T {
	var found T
	for _, d := range docs {
		if v, ok := d.(T); ok {
			found = v
		}
	}
	return found
}

// TestDRA: what the DRA drivers of plugins.toml (bridge = "dra") need from
// the cluster is there. The DaemonSet runs as a service account that
// rbac.yaml binds to exactly the rights the kubelet plugin helper and
// wasmlet use (slices: everything; claims: get; nodes: get), gets the node
// name from the downward API (and the pod UID when rolling_update is on);
// every DRA driver has a DeviceClass in deviceclasses.yaml; the example
// ResourceClaimTemplate and Pod decode, and refer to each other and to a
// class that exists.
func TestDRA(t *testing.T) {
	dc := loadConfig(t)
	if !dc.Bridges(config.BridgeDRA) {
		t.Fatal("deploy/plugins.toml serves no source as a DRA driver")
	}
	var ds appsv1.DaemonSet
	decode(t, "daemonset.yaml", &ds)
	spec := ds.Spec.Template.Spec

	rbac := documents(t, "rbac.yaml", &corev1.ServiceAccount{}, &rbacv1.ClusterRole{}, &rbacv1.ClusterRoleBinding{})
	sa, role, binding := one[*corev1.ServiceAccount](rbac), one[*rbacv1.ClusterRole](rbac), one[*rbacv1.ClusterRoleBinding](rbac)
	if sa == nil || role == nil || binding == nil {
		t.Fatal("rbac.yaml: want a ServiceAccount, a ClusterRole and a ClusterRoleBinding")
	}
	if spec.ServiceAccountName != sa.Name || sa.Namespace != ds.Namespace {
		t.Errorf("the DaemonSet runs as %q, rbac.yaml's account is %s/%s", spec.ServiceAccountName, sa.Namespace, sa.Name)
	}
	if binding.RoleRef.Kind != "ClusterRole" || binding.RoleRef.Name != role.Name || len(binding.Subjects) != 1 ||
		binding.Subjects[0].Kind != "ServiceAccount" || binding.Subjects[0].Name != sa.Name || binding.Subjects[0].Namespace != sa.Namespace {
		t.Errorf("the binding %+v does not give %s to %s/%s", binding, role.Name, sa.Namespace, sa.Name)
	}
	want := map[string][]string{
		"resource.k8s.io/resourceslices": {"get", "list", "watch", "create", "update", "patch", "delete", "deletecollection"},
		"resource.k8s.io/resourceclaims": {"get"},
		"/nodes":                         {"get"},
	}
	got := map[string][]string{}
	for _, r := range role.Rules {
		for _, g := range r.APIGroups {
			for _, res := range r.Resources {
				got[g+"/"+res] = append(got[g+"/"+res], r.Verbs...)
			}
		}
	}
	for res, verbs := range want {
		slices.Sort(verbs)
		have := slices.Clone(got[res])
		slices.Sort(have)
		if !slices.Equal(have, verbs) {
			t.Errorf("ClusterRole %s: %s may %v, want exactly %v", role.Name, res, have, verbs)
		}
	}
	if len(got) != len(want) {
		t.Errorf("ClusterRole %s grants %d resources, want %d: %v", role.Name, len(got), len(want), got)
	}

	c := container(t, spec.Containers, "wasmlet")
	env := map[string]string{}
	for _, e := range c.Env {
		if e.ValueFrom != nil && e.ValueFrom.FieldRef != nil {
			env[e.Name] = e.ValueFrom.FieldRef.FieldPath
		}
	}
	if env["NODE_NAME"] != "spec.nodeName" {
		t.Errorf("NODE_NAME comes from %q, want the downward API's spec.nodeName", env["NODE_NAME"])
	}
	if _, ok := env["POD_UID"]; ok != dc.DRA.RollingUpdate || (ok && env["POD_UID"] != "metadata.uid") {
		t.Errorf("POD_UID from %q; rolling_update = %v needs it from metadata.uid", env["POD_UID"], dc.DRA.RollingUpdate)
	}

	classes := map[string]bool{}
	for _, v := range documents(t, "deviceclasses.yaml", &resourceapi.DeviceClass{}) {
		cl := v.(*resourceapi.DeviceClass)
		for _, sel := range cl.Spec.Selectors {
			if sel.CEL != nil && strings.Contains(sel.CEL.Expression, `device.driver == "`+cl.Name+`"`) {
				classes[cl.Name] = true
			}
		}
		if !classes[cl.Name] {
			t.Errorf("DeviceClass %s does not select the devices of driver %s", cl.Name, cl.Name)
		}
	}
	for _, name := range dc.modules {
		if dc.Source(name).Bridge != config.BridgeDRA {
			continue
		}
		driver := dc.ModuleOptions(name).Config["driver"]
		if driver == "" {
			t.Errorf("modules.%s: a DRA driver of the deployment names its driver (config driver), for its DeviceClass", name)
		} else if !classes[driver] {
			t.Errorf("driver %s of module %s has no DeviceClass in deviceclasses.yaml", driver, name)
		}
	}

	example := documents(t, "examples/gpusim-pod.yaml", &resourceapi.ResourceClaimTemplate{}, &corev1.Pod{})
	tmpl, pod := one[*resourceapi.ResourceClaimTemplate](example), one[*corev1.Pod](example)
	if tmpl == nil || pod == nil {
		t.Fatal("examples/gpusim-pod.yaml: want a ResourceClaimTemplate and a Pod")
	}
	for _, r := range tmpl.Spec.Spec.Devices.Requests {
		if r.Exactly == nil || !classes[r.Exactly.DeviceClassName] {
			t.Errorf("template %s, request %s: not of a DeviceClass of deviceclasses.yaml", tmpl.Name, r.Name)
		}
	}
	if len(pod.Spec.ResourceClaims) != 1 || pod.Spec.ResourceClaims[0].ResourceClaimTemplateName == nil ||
		*pod.Spec.ResourceClaims[0].ResourceClaimTemplateName != tmpl.Name || pod.Namespace != tmpl.Namespace {
		t.Errorf("pod %s does not claim from template %s: %+v", pod.Name, tmpl.Name, pod.Spec.ResourceClaims)
	}
	for _, cc := range pod.Spec.Containers {
		if len(cc.Resources.Claims) != 1 || cc.Resources.Claims[0].Name != pod.Spec.ResourceClaims[0].Name {
			t.Errorf("container %s does not use the pod's claim: %+v", cc.Name, cc.Resources.Claims)
		}
	}

	var k struct {
		Resources []string `json:"resources"`
	}
	b, err := os.ReadFile("kustomization.yaml")
	if err != nil {
		t.Fatal(err)
	}
	if err := yaml.Unmarshal(b, &k); err != nil {
		t.Fatal(err)
	}
	for _, f := range []string{"rbac.yaml", "deviceclasses.yaml"} {
		if !slices.Contains(k.Resources, f) {
			t.Errorf("kustomization.yaml does not apply %s", f)
		}
	}
}
