package api

import (
	"context"
	"errors"
	"fmt"
	"net"
	"sync"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"

	"github.com/wasmlet/wasmlet/host/api/adminpb"
)

// maxReply bounds the replies a client accepts: a node's complete device
// list is far smaller.
const maxReply = 64 << 20

// Client is a connection to the host's admin API socket. Its calls fail
// with an *UnreachableError when nothing could be reached at the socket at
// all; any other failure is a gRPC status: the host's answer when ReasonOf
// names a reason, else a failure of the connection or of the call's own
// context.
type Client struct {
	adminpb.AdminClient

	socket string
	conn   *grpc.ClientConn

	mu        sync.Mutex
	connected bool  // a connection to the socket succeeded once
	dialErr   error // the last failed attempt's error
}

// UnreachableError says that no host could be reached at Socket.
type UnreachableError struct {
	Socket string
	Err    error
}

func (e *UnreachableError) Error() string {
	return fmt.Sprintf("cannot reach the wasmlet host API at %s: %v", e.Socket, e.Err)
}

func (e *UnreachableError) Unwrap() error { return e.Err }

// Dial returns a client of the host API at socketPath. It does not connect:
// the first call does, and fails with an *UnreachableError if the socket is
// missing or no one listens on it.
func Dial(socketPath string) (*Client, error) {
	c := &Client{socket: socketPath}
	var d net.Dialer
	conn, err := grpc.NewClient("passthrough:///wasmlet",
		grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithAuthority("localhost"),
		grpc.WithContextDialer(func(ctx context.Context, _ string) (net.Conn, error) {
			conn, err := d.DialContext(ctx, "unix", socketPath)
			c.mu.Lock()
			if err != nil {
				c.dialErr = err
			} else {
				c.connected = true
			}
			c.mu.Unlock()
			return conn, err
		}),
		grpc.WithDefaultCallOptions(grpc.MaxCallRecvMsgSize(maxReply)),
		grpc.WithUnaryInterceptor(c.unreachable),
	)
	if err != nil {
		return nil, fmt.Errorf("host API at %s: %w", socketPath, err)
	}
	c.conn = conn
	c.AdminClient = adminpb.NewAdminClient(conn)
	return c, nil
}

// unreachable turns the failure of a call that never reached a host into
// an *UnreachableError.
func (c *Client) unreachable(ctx context.Context, method string, req, reply any, cc *grpc.ClientConn, invoke grpc.UnaryInvoker, opts ...grpc.CallOption) error {
	err := invoke(ctx, method, req, reply, cc, opts...)
	if err == nil {
		return nil
	}
	code := status.Code(err)
	if code != codes.Unavailable && code != codes.DeadlineExceeded {
		return err
	}
	c.mu.Lock()
	connected, dialErr := c.connected, c.dialErr
	c.mu.Unlock()
	if connected {
		return err
	}
	if dialErr == nil {
		dialErr = errors.New(status.Convert(err).Message())
	}
	return &UnreachableError{Socket: c.socket, Err: dialErr}
}

// Socket is the socket the client talks to.
func (c *Client) Socket() string { return c.socket }

// Close closes the connection.
func (c *Client) Close() error { return c.conn.Close() }
