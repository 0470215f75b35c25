// Command stubplugin runs the kubelet's own device plugin Stub
// (k8s.io/kubernetes/pkg/kubelet/cm/devicemanager/plugin/v1beta1,
// unmodified) as a device plugin process of its own, as Kubernetes' sample
// device plugin (test/images/sample-device-plugin) does, but in a directory
// of the test's choosing (the sample's is fixed to
// /var/lib/kubelet/device-plugins): it serves the Stub on -socket, registers
// -resource on kubelet.sock beside it, and with -watch runs the Stub's own
// Watch, which, whenever kubelet.sock is created (a kubelet that starts),
// serves a new socket and registers again.
//
// It prints one line on standard output once the first registration is
// answered:
//
//	registered         Register succeeded
//	refused MESSAGE    Register failed, with the error, quoted
//
// and runs until SIGTERM.
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"path/filepath"
	"strconv"
	"syscall"

	"k8s.io/klog/v2"
	pluginapi "k8s.io/kubelet/pkg/apis/deviceplugin/v1beta1"
	plugin "k8s.io/kubernetes/pkg/kubelet/cm/devicemanager/plugin/v1beta1"
)

func main() {
	socket := flag.String("socket", "", "the device plugin socket, in the device plugin directory")
	resource := flag.String("resource", "example.com/dev", "the extended resource to register")
	devices := flag.Int("devices", 2, "how many healthy devices (dev-0, dev-1, ...) to offer")
	watch := flag.Bool("watch", false, "register again whenever kubelet.sock is created (the Stub's Watch)")
	flag.Parse()
	klog.SetOutput(os.Stderr)
	logger := klog.Background()
	ctx := context.Background()

	devs := make([]*pluginapi.Device, *devices)
	for i := range devs {
		devs[i] = &pluginapi.Device{ID: "dev-" + strconv.Itoa(i), Health: pluginapi.Healthy}
	}
	kubelet := filepath.Join(filepath.Dir(*socket), "kubelet.sock")
	stub := plugin.NewDevicePluginStub(logger, devs, *socket, *resource, false, false)
	if err := stub.Start(ctx); err != nil {
		fmt.Fprintln(os.Stderr, "start:", err)
		os.Exit(1)
	}
	if err := stub.Register(ctx, kubelet, *resource, ""); err != nil {
		fmt.Printf("refused %q\n", err.Error())
	} else {
		fmt.Println("registered")
		if *watch {
			go stub.Watch(ctx, kubelet, *resource, "")
		}
	}
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, syscall.SIGTERM, syscall.SIGINT)
	<-sig
	os.Exit(0) // (Stop would leave the Watch loop spinning on a closed channel)
}
