// Package unixgrpc opens gRPC client connections to local unix sockets: a
// plugin's registration socket (the plugin manager), a device plugin's
// socket (the device manager's endpoint), the kubelet's kubelet.sock (the
// bridge). Every such socket appears (bind) a moment before its server
// accepts connections (listen, serve), so connection attempts retry within
// milliseconds instead of gRPC's default one-second backoff, and calls wait
// for the connection; callers bound the wait with their context.
package unixgrpc

import (
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/backoff"
	"google.golang.org/grpc/credentials/insecure"
)

// Dial returns a connection to the unix socket at path. It does not block;
// the first call waits for the server to accept.
func Dial(path string) (*grpc.ClientConn, error) {
	return grpc.NewClient("unix://"+path,
		grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithConnectParams(grpc.ConnectParams{
			Backoff:           backoff.Config{BaseDelay: 2 * time.Millisecond, Multiplier: 2, Jitter: 0.2, MaxDelay: 250 * time.Millisecond},
			MinConnectTimeout: time.Second,
		}),
		grpc.WithDefaultCallOptions(grpc.WaitForReady(true)),
	)
}
