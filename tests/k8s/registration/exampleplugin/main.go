// Command exampleplugin runs the Kubernetes plugin watcher's own example
// plugin (k8s.io/kubernetes/pkg/kubelet/pluginmanager/pluginwatcher,
// NewTestExamplePlugin and Serve, unmodified) as a process of its own, so
// that tests can put many real plugin processes in front of a plugin
// manager at once.
//
// It takes commands, one a line, on standard input:
//
//	serve NAME SOCKET   serve a new example plugin called NAME on SOCKET
//	stop                stop the plugins served (their sockets are removed)
//
// and answers on standard output:
//
//	serving NAME                      Serve returned: the socket exists
//	status NAME OK NANOS ERROR        the plugin was told its registration
//	                                  status: OK is true or false, NANOS the
//	                                  time since Serve was called (which
//	                                  creates the socket), ERROR the reason
//	                                  given, quoted
//	stopped                           every plugin was stopped
//	error MESSAGE                     a command failed
//
// The example plugin hands each NotifyRegistrationStatus it receives to a
// channel that only its own package's tests can read, and the call does not
// return until someone does: a plugin manager's notify would hang. This
// command reads that channel (by reflection; it is the field
// registrationStatus) and prints what it receives.
package main

import (
	"bufio"
	"context"
	"flag"
	"fmt"
	"os"
	"reflect"
	"strconv"
	"strings"
	"sync"
	"time"
	"unsafe"

	"k8s.io/klog/v2"
	registerapi "k8s.io/kubelet/pkg/apis/pluginregistration/v1"
	"k8s.io/kubernetes/pkg/kubelet/pluginmanager/pluginwatcher"
)

func main() {
	typ := flag.String("type", "ExamplePlugin", "plugin type the plugin reports in GetInfo")
	versions := flag.String("versions", "v1beta1,v1beta2", "comma-separated versions the plugin reports in GetInfo (the upstream tests' supportedVersions)")
	services := flag.String("services", "v1beta1,v1beta2", "comma-separated example API services the plugin serves")
	flag.Parse()
	// The example plugin logs through klog's global logger; keep standard
	// error for this command's own failures.
	klog.SetOutput(discard{})
	klog.LogToStderr(false)

	out := &output{w: bufio.NewWriter(os.Stdout)}
	ctx := context.Background()
	type served struct {
		stop func(context.Context) error
		quit chan struct{}
	}
	var plugins []served
	in := bufio.NewScanner(os.Stdin)
	for in.Scan() {
		f := strings.Fields(in.Text())
		switch {
		case len(f) == 3 && f[0] == "serve":
			name, socket := f[1], f[2]
			p := pluginwatcher.NewTestExamplePlugin(name, *typ, socket, split(*versions)...)
			statuses := statusChannel(p)
			start := time.Now()
			if err := p.Serve(ctx, split(*services)...); err != nil {
				out.printf("error serve %s: %v", name, err)
				continue
			}
			out.printf("serving %s", name)
			quit := make(chan struct{})
			go func() {
				cases := []reflect.SelectCase{
					{Dir: reflect.SelectRecv, Chan: statuses},
					{Dir: reflect.SelectRecv, Chan: reflect.ValueOf(quit)},
				}
				for {
					chosen, v, _ := reflect.Select(cases)
					if chosen == 1 {
						return
					}
					ps := reflect.New(v.Type())
					ps.Elem().Set(v)
					s := ps.Interface().(*registerapi.RegistrationStatus)
					out.printf("status %s %t %d %s", name, s.PluginRegistered, time.Since(start).Nanoseconds(), strconv.Quote(s.Error))
				}
			}()
			plugins = append(plugins, served{stop: p.Stop, quit: quit})
		case len(f) == 1 && f[0] == "stop":
			for _, p := range plugins {
				if err := p.stop(ctx); err != nil {
					out.printf("error stop: %v", err)
				}
				close(p.quit)
			}
			plugins = nil
			out.printf("stopped")
		default:
			out.printf("error unknown command %q", in.Text())
		}
	}
	for _, p := range plugins {
		p.stop(ctx)
		close(p.quit)
	}
}

// statusChannel is the example plugin's registrationStatus channel, which
// NotifyRegistrationStatus sends to. (Its element, a protobuf message, is
// received through reflection too: a plain receive would copy its lock.)
func statusChannel(p any) reflect.Value {
	f := reflect.ValueOf(p).Elem().FieldByName("registrationStatus")
	if !f.IsValid() || f.Type() != reflect.TypeFor[chan registerapi.RegistrationStatus]() || f.IsNil() {
		fmt.Fprintln(os.Stderr, "exampleplugin: the upstream example plugin has no registrationStatus channel any more")
		os.Exit(2)
	}
	return reflect.NewAt(f.Type(), unsafe.Pointer(f.UnsafeAddr())).Elem()
}

func split(s string) []string {
	if s == "" {
		return nil
	}
	return strings.Split(s, ",")
}

// output writes whole lines to standard output, from any goroutine.
type output struct {
	mu sync.Mutex
	w  *bufio.Writer
}

func (o *output) printf(format string, args ...any) {
	o.mu.Lock()
	defer o.mu.Unlock()
	fmt.Fprintf(o.w, format+"\n", args...)
	o.w.Flush()
}

type discard struct{}

func (discard) Write(p []byte) (int, error) { return len(p), nil }
