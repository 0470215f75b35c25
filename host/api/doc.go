// Package api is the wasmlet host API: two gRPC services on one unix socket.
//
//   - The kubelet's pod resources v1 service
//     (k8s.io/kubelet/pkg/apis/podresources/v1: List, GetAllocatableResources,
//     Get), built from the device manager's allocations and resources, so that
//     tools written for the kubelet's pod-resources socket (monitoring agents,
//     topology exporters) work against wasmlet unchanged.
//   - wasmlet's own admin service, wasmlet.admin.v1.Admin (adminpb/admin.proto),
//     which is everything the wasmlet command needs: status, plugins, modules
//     (and reloading one), resources and devices, allocations, allocate and
//     release.
//
// The host serves both with Serve, over a Backend: the running node seen
// through the few questions the API asks it. NewBackend assembles one from
// the module registry, the plugin manager and the device manager. Clients
// connect with Dial.
//
// # The socket
//
// The socket is created with mode 0600 in a directory that only its owner
// can write: Serve creates the directory with mode 0700 when it is missing
// and refuses a directory that group or others can write, or that belongs
// to another user, since whoever can write the directory can replace the
// socket. The socket is bound under a temporary name, restricted, then
// renamed into place, so it is never reachable with looser permissions. A
// stale socket left by a crash is replaced; a live one (another host
// serving) is an error. Serve removes the socket when it returns.
//
// # Errors
//
// Failures are gRPC status codes, chosen so that a client can act on them
// without parsing messages: NotFound for an unknown module, resource,
// workload or pod; InvalidArgument for a malformed request;
// ResourceExhausted when there are not enough free devices; AlreadyExists
// when the container already holds a different number of devices of the
// resource; FailedPrecondition when a module file is refused on reload;
// Unavailable when the resource's provider is gone for now or the change
// could not be made durable (the request had no effect: retry later);
// Unknown when the device provider itself failed.
//
// # Regenerating the admin service code
//
// With protoc, protoc-gen-go and protoc-gen-go-grpc on PATH,
// `go generate ./host/api` rewrites adminpb/admin.pb.go and
// adminpb/admin_grpc.pb.go from adminpb/admin.proto.
package api

//go:generate protoc -I adminpb --go_out=adminpb --go_opt=paths=source_relative --go-grpc_out=adminpb --go-grpc_opt=paths=source_relative admin.proto
