// Package registration is the client side of the kubelet's plugin
// registration API (k8s.io/kubelet/pkg/apis/pluginregistration/v1): the
// calls wasmlet makes on a plugin's registration socket. A plugin is asked
// who it is (GetInfo), and told whether it was registered
// (NotifyRegistrationStatus), exactly as the kubelet does, so existing
// plugins (CSI node-driver-registrar, DRA drivers, device plugins using the
// plugin watcher) work unchanged. The answer to GetInfo is converted here,
// at the edge, into the plugin manager's own cache.Plugin.
package registration

import (
	"context"
	"fmt"

	"google.golang.org/grpc"
	registerapi "k8s.io/kubelet/pkg/apis/pluginregistration/v1"

	"github.com/wasmlet/wasmlet/host/internal/unixgrpc"
	"github.com/wasmlet/wasmlet/host/pluginmanager/cache"
)

// Conn is a connection to one plugin's registration socket.
type Conn struct {
	socket string
	cc     *grpc.ClientConn
	client registerapi.RegistrationClient
}

// Dial opens a connection to the registration socket at path. It does not
// block; the first call waits for the plugin to accept.
func Dial(path string) (*Conn, error) {
	cc, err := unixgrpc.Dial(path)
	if err != nil {
		return nil, fmt.Errorf("plugin socket %s: %w", path, err)
	}
	return &Conn{socket: path, cc: cc, client: registerapi.NewRegistrationClient(cc)}, nil
}

// GetInfo asks the plugin who it is. A plugin that does not say its type and
// name is an error.
func (c *Conn) GetInfo(ctx context.Context) (cache.Plugin, error) {
	info, err := c.client.GetInfo(ctx, &registerapi.InfoRequest{})
	if err != nil {
		return cache.Plugin{}, fmt.Errorf("plugin socket %s: GetInfo: %w", c.socket, err)
	}
	if info.Type == "" || info.Name == "" {
		return cache.Plugin{}, fmt.Errorf("plugin socket %s: GetInfo returned an empty type or name (type %q, name %q)", c.socket, info.Type, info.Name)
	}
	return cache.Plugin{SocketPath: c.socket, Type: info.Type, Name: info.Name, Endpoint: info.Endpoint,
		Versions: info.SupportedVersions}, nil
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
