// Package api is the wasmlet host API: gRPC services on two unix sockets.
//
//   - The admin socket (host.api_socket) serves wasmlet's own admin
//     service, wasmlet.admin.v1.Admin (adminpb/admin.proto): everything the
//     wasmlet command needs: status, plugins, modules (and reloading one),
//     resources and devices, allocations, allocate and release, CSI drivers.
//   - The pod resources socket (host.pod_resources_socket) serves the
//     kubelet's pod resources services, which only read: v1
//     (k8s.io/kubelet/pkg/apis/podresources/v1: List,
//     GetAllocatableResources, Get) and v1alpha1 (List, as the kubelet
//     derives it from v1, for older monitoring agents), built from the
//     host's allocations and resources, so that tools written for the
//     kubelet's pod-resources socket work against wasmlet unchanged. A
//     socket of its own, as the kubelet's is, so that such a tool gets no
//     admin rights.
//
// The host serves both with Serve, over a Backend: the running node seen
// through the few questions the API asks it, answered in the API's own
// types (the adminpb messages). The API depends on none of the host's
// parts; host/node converts their state into those types. Clients of the
// admin socket connect with Dial.
//
// # The sockets
//
// The admin socket is created with mode 0600 in a directory of mode 0700;
// the pod resources socket with mode 0660 in a directory of mode 0750 at
// most, so that a reader in the directory's group can be let in. A missing
// directory is created with that mode. An existing one must belong to root
// or to this process's user (whoever can write it can replace the socket);
// one with a wider mode is narrowed when it is wasmlet's own (this user's,
// holding nothing but sockets) and refused otherwise, with its path, its
// mode and what to do. A socket is bound under a temporary name,
// restricted, then renamed into place, so it is never reachable with
// looser permissions. A stale socket left by a crash is replaced; a live
// one (another host serving) is an error. Serve removes the sockets when it
// returns.
//
// # Errors
//
// Failures are gRPC status codes, chosen so that a client can act on them
// without parsing messages, each with a google.rpc.ErrorInfo detail whose
// reason (Reason, in the domain ErrorDomain) says what happened: NotFound
// for an unknown module, resource, workload or pod; InvalidArgument for a
// malformed request; ResourceExhausted when there are not enough free
// devices; AlreadyExists when the container already holds a different
// number of devices of the resource; FailedPrecondition when a module file
// is refused on reload; Unavailable when the request had no effect and may
// be retried (the resource's provider is gone for now, the change could not
// be made durable, the module has no free instance, a part of the host is
// not running); DeadlineExceeded when the host's own deadline for a
// provider passed; Unknown when the device provider itself failed. A status
// without that detail is not the host's answer: the connection failed, or
// the client's own deadline passed. The pod resources services answer as
// the kubelet's do, with plain status codes.
//
// # Regenerating the admin service code
//
// With protoc, protoc-gen-go and protoc-gen-go-grpc on PATH,
// `go generate ./host/api` rewrites adminpb/admin.pb.go and
// adminpb/admin_grpc.pb.go from adminpb/admin.proto.
package api

//go:generate protoc -I adminpb --go_out=adminpb --go_opt=paths=source_relative --go-grpc_out=adminpb --go-grpc_opt=paths=source_relative admin.proto
