package cluster

import (
	"context"
	"fmt"
	"io"
	"net"
	"os"
	"path"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"
	apitesting "k8s.io/apiserver/pkg/storage/etcd3/testserver"
	"k8s.io/apiserver/pkg/storage/storagebackend"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"
	kubeapiserver "k8s.io/kubernetes/cmd/kube-apiserver/app/testing"
)

// token is the bearer token of the cluster's administrator (group
// system:masters), from a static token file, so that an API server started
// again on the same etcd accepts the clients of the one before it.
const token = "wasmlet-tests-admin-token"

// Cluster is a running etcd and kube-apiserver. Config and Client reach the
// API server through a TCP forwarder of the cluster's own whose address
// never changes, so they outlive Stop and Start.
type Cluster struct {
	t       testing.TB
	dir     string
	storage *storagebackend.Config
	proxy   *forwarder

	// Config reaches the API server as its administrator; Client is a
	// clientset for it.
	Config *rest.Config
	Client kubernetes.Interface

	mu       sync.Mutex
	teardown func()
}

// Start starts etcd and a kube-apiserver on it, waits until the API server
// is healthy, and stops both when the test ends.
func Start(t testing.TB) *Cluster {
	t.Helper()
	etcd := apitesting.RunEtcd(t, nil) // stopped by t.Cleanup
	storage := storagebackend.NewDefaultConfig(path.Join(uuid.New().String(), "registry"), nil)
	storage.Transport.ServerList = etcd.Endpoints()

	c := &Cluster{t: t, dir: t.TempDir(), storage: storage}
	tokens := filepath.Join(c.dir, "tokens.csv")
	if err := os.WriteFile(tokens, []byte(token+`,admin,admin-uid,"system:masters"`+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	proxy, err := newForwarder()
	if err != nil {
		t.Fatal(err)
	}
	c.proxy = proxy
	t.Cleanup(proxy.close)
	t.Cleanup(c.Stop)
	c.Start()

	c.Config = &rest.Config{
		Host:            "https://" + proxy.addr(),
		BearerToken:     token,
		TLSClientConfig: rest.TLSClientConfig{Insecure: true},
		QPS:             1000,
		Burst:           10000,
	}
	client, err := kubernetes.NewForConfig(c.Config)
	if err != nil {
		t.Fatal(err)
	}
	c.Client = client
	return c
}

// Start starts the API server again after Stop, on the same etcd; the
// forwarder sends new connections to it. It returns once it is healthy.
func (c *Cluster) Start() {
	c.t.Helper()
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.teardown != nil {
		return
	}
	server, err := kubeapiserver.StartTestServer(quiet{c.t}, &kubeapiserver.TestServerInstanceOptions{
		DisableInvariantChecks: true,
	}, []string{
		"--runtime-config=resource.k8s.io/v1=true",
		"--token-auth-file=" + filepath.Join(c.dir, "tokens.csv"),
		"--endpoint-reconciler-type=none",
		"--disable-admission-plugins=ServiceAccount",
	}, c.storage)
	if err != nil {
		c.t.Fatalf("starting kube-apiserver: %v", err)
	}
	c.teardown = server.TearDownFn
	if err := c.proxy.setBackend(server.ClientConfig.Host); err != nil {
		c.t.Fatal(err)
	}
}

// Stop stops the API server (etcd keeps running) and cuts every connection
// the forwarder holds; until Start, connections to Config's address are
// refused.
func (c *Cluster) Stop() {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.proxy.setBackend("")
	if c.teardown != nil {
		c.teardown()
		c.teardown = nil
	}
}

// Kubeconfig writes a kubeconfig file for Config into the test's temporary
// directory, as a node agent outside the cluster would be given one.
func (c *Cluster) Kubeconfig() string {
	c.t.Helper()
	cfg := clientcmdapi.NewConfig()
	cfg.Clusters["test"] = &clientcmdapi.Cluster{Server: c.Config.Host, InsecureSkipTLSVerify: true}
	cfg.AuthInfos["admin"] = &clientcmdapi.AuthInfo{Token: token}
	cfg.Contexts["test"] = &clientcmdapi.Context{Cluster: "test", AuthInfo: "admin"}
	cfg.CurrentContext = "test"
	file := filepath.Join(c.dir, "kubeconfig")
	if err := clientcmd.WriteToFile(*cfg, file); err != nil {
		c.t.Fatal(err)
	}
	return file
}

// quiet is the test, without the API server's log lines (upstream's test
// server sends every one of them to the test's log, which a benchmark
// prints between its name and its result).
type quiet struct{ testing.TB }

func (quiet) Log(...any)          {}
func (quiet) Logf(string, ...any) {}

// forwarder is a TCP forwarder on a fixed local address: the stable
// address of an API server that comes and goes. While there is no API
// server it does not listen, so that connections are refused, as they are
// by a host whose API server is down.
type forwarder struct {
	address string

	mu      sync.Mutex
	ln      net.Listener // nil while there is no backend
	backend string       // host:port
	conns   map[net.Conn]struct{}
}

func newForwarder() (*forwarder, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	address := ln.Addr().String()
	ln.Close()
	return &forwarder{address: address, conns: map[net.Conn]struct{}{}}, nil
}

func (f *forwarder) addr() string { return f.address }

// setBackend sends new connections to host (a URL or host:port), closing
// every connection to the previous one; "" closes them and stops
// listening.
func (f *forwarder) setBackend(host string) error {
	host = strings.TrimPrefix(strings.TrimPrefix(host, "https://"), "http://")
	f.mu.Lock()
	defer f.mu.Unlock()
	f.backend = host
	for c := range f.conns {
		c.Close()
		delete(f.conns, c)
	}
	if host == "" {
		if f.ln != nil {
			f.ln.Close()
			f.ln = nil
		}
		return nil
	}
	if f.ln != nil {
		return nil
	}
	// The port was free a moment ago: another process taking it between
	// the Stop and the Start of one test is unlikely, but retried.
	var err error
	for range 50 {
		var ln net.Listener
		if ln, err = net.Listen("tcp", f.address); err == nil {
			f.ln = ln
			go f.serve(ln)
			return nil
		}
		time.Sleep(20 * time.Millisecond)
	}
	return fmt.Errorf("listening again on %s: %w", f.address, err)
}

func (f *forwarder) serve(ln net.Listener) {
	for {
		in, err := ln.Accept()
		if err != nil {
			return
		}
		go f.forward(in)
	}
}

func (f *forwarder) forward(in net.Conn) {
	f.mu.Lock()
	backend := f.backend
	f.mu.Unlock()
	if backend == "" {
		in.Close()
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	out, err := (&net.Dialer{}).DialContext(ctx, "tcp", backend)
	cancel()
	if err != nil {
		in.Close()
		return
	}
	f.mu.Lock()
	if f.backend != backend {
		f.mu.Unlock()
		in.Close()
		out.Close()
		return
	}
	f.conns[in] = struct{}{}
	f.conns[out] = struct{}{}
	f.mu.Unlock()
	done := make(chan struct{}, 2)
	pipe := func(dst, src net.Conn) {
		io.Copy(dst, src)
		dst.Close()
		src.Close()
		done <- struct{}{}
	}
	go pipe(out, in)
	go pipe(in, out)
	<-done
	<-done
	f.mu.Lock()
	delete(f.conns, in)
	delete(f.conns, out)
	f.mu.Unlock()
}

func (f *forwarder) close() { f.setBackend("") }
