// Package registration is the client side of the kubelet's plugin
// registration API (k8s.io/kubelet/pkg/apis/pluginregistration/v1): the
// calls wasmlet makes on a plugin's registration socket. A plugin is asked
// who it is (GetInfo), and told whether it was registered
// (NotifyRegistrationStatus), exactly as the kubelet does, so existing
// plugins (CSI node-driver-registrar, DRA drivers, device plugins using the
// plugin watcher) work unchanged.
package registration

import (
	"context"
	"fmt"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/backoff"
	"google.golang.org/grpc/credentials/insecure"
	registerapi "k8s.io/kubelet/pkg/apis/pluginregistration/v1"

	"github.com/wasmlet/wasmlet/abi"
)

// DialOptions are the gRPC options for a local unix socket. A plugin's socket
// appears (bind) a moment before the plugin accepts connections (listen,
// serve), so connection attempts retry quickly instead of using gRPC's
// default one-second backoff; callers bound the wait with their context.
func DialOptions() []grpc.DialOption {
	return []grpc.DialOption{
		grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithConnectParams(grpc.ConnectParams{
			Backoff:           backoff.Config{BaseDelay: 2 * time.Millisecond, Multiplier: 2, Jitter: 0.2, MaxDelay: 250 * time.Millisecond},
			MinConnectTimeout: time.Second,
		}),
		grpc.WithDefaultCallOptions(grpc.WaitForReady(true)),
	}
}

// Conn is a connection to one plugin's registration socket.
type Conn struct {
	socket string
	cc     *grpc.ClientConn
	client registerapi.RegistrationClient
}

// Dial opens a connection to the registration socket at path. It does not
// block; the first call waits for the plugin to accept.
func Dial(path string) (*Conn, error) {
	cc, err := grpc.NewClient("unix://"+path, DialOptions()...)
	if err != nil {
		return nil, fmt.Errorf("plugin socket %s: %w", path, err)
	}
	return &Conn{socket: path, cc: cc, client: registerapi.NewRegistrationClient(cc)}, nil
}

// GetInfo asks the plugin who it is. The result's SocketPath is the
// registration socket.
func (c *Conn) GetInfo(ctx context.Context) (*abi.Plugin, error) {
	info, err := c.client.GetInfo(ctx, &registerapi.InfoRequest{})
	if err != nil {
		return nil, fmt.Errorf("plugin socket %s: GetInfo: %w", c.socket, err)
	}
	if info.Type == "" || info.Name == "" {
		return nil, fmt.Errorf("plugin socket %s: GetInfo returned an empty type or name (type %q, name %q)", c.socket, info.Type, info.Name)
	}
	return &abi.Plugin{Type: info.Type, Name: info.Name, Endpoint: info.Endpoint,
		SupportedVersions: info.SupportedVersions, SocketPath: c.socket}, nil
}

// Notify tells the plugin whether it was registered, and if not, why.
func (c *Conn) Notify(ctx context.Context, registered bool, reason string) error {
	_, err := c.client.NotifyRegistrationStatus(ctx, &registerapi.RegistrationStatus{PluginRegistered: registered, Error: reason})
	if err != nil {
		return fmt.Errorf("plugin socket %s: NotifyRegistrationStatus: %w", c.socket, err)
	}
	return nil
}

// Close closes the connection.
func (c *Conn) Close() error { return c.cc.Close() }
