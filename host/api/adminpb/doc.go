// Package adminpb is the generated Go code of admin.proto, the wasmlet admin
// API (package wasmlet.admin.v1). Edit admin.proto, not the .pb.go files;
// host/api/doc.go has the command that regenerates them.
package adminpb
