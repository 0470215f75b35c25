package main

import (
	"flag"
	"fmt"
	"io"
	"os"
	"strings"

	"sigs.k8s.io/yaml"

	"github.com/wasmlet/wasmlet/host/api"
	"github.com/wasmlet/wasmlet/host/api/adminpb"
)

func claimApplyCmd() *command {
	var file, pod, podUID, container string
	return &command{
		name: "claim apply", group: groupClient, nargs: [2]int{0, 0},
		summary: "allocate and prepare a ResourceClaim",
		help: `Apply a resource.k8s.io/v1 ResourceClaim, written as for a cluster (YAML or
JSON; "-" reads standard input): allocate its devices from the node's
device sources with Kubernetes' own allocator, have the sources prepare
them, and print the devices and what a container needs to use them. The
answer comes once the claim is durable. Applying the same claim again
returns it; another claim of the same name fails until it is deleted. A
claim that cannot be allocated fails with the reason: which request,
selector or constraint left too few devices.

Examples:
  wasmlet claim apply -f examples/claims/selector.yaml
  wasmlet claim apply -f claim.yaml --pod train --container main -o json`,
		flags: func(fs *flag.FlagSet) {
			fs.StringVar(&file, "f", "", "the claim's `FILE` (required; - for standard input)")
			fs.StringVar(&pod, "pod", "", "the pod it is for (optional; with --container)")
			fs.StringVar(&podUID, "pod-uid", "", "the pod's `UID` (optional)")
			fs.StringVar(&container, "container", "", "the container it is for (optional; with --pod)")
		},
		run: func(c *cli, _ []string) error {
			if file == "" {
				return usagef("-f FILE is required")
			}
			if (pod == "") != (container == "") {
				return usagef("--pod and --container go together")
			}
			in := io.Reader(os.Stdin)
			if file != "-" {
				f, err := os.Open(file)
				if err != nil {
					return failf(exitFailed, "reading the claim: %v", err)
				}
				defer f.Close()
				in = f
			}
			data, err := io.ReadAll(io.LimitReader(in, api.MaxClaimSize+1))
			if err != nil {
				return failf(exitFailed, "reading the claim: %v", err)
			}
			if len(data) > api.MaxClaimSize {
				return usagef("%s is larger than %s, the most a claim may be", file, size(api.MaxClaimSize))
			}
			// Sent as JSON: the host reads JSON faster than YAML.
			if data, err = yaml.YAMLToJSON(data); err != nil {
				return usagef("%s is not YAML or JSON: %v", file, err)
			}
			req := &adminpb.ApplyClaimRequest{Claim: data, Pod: pod, PodUid: podUID, Container: container}
			return callAndPrint(c, (*api.Client).ApplyClaim, req, func(resp *adminpb.ApplyClaimResponse) error {
				cm := resp.Claim
				fmt.Fprintf(c.stdout, "Claim %s/%s allocated: %s\n", cm.Namespace, cm.Name, plural(len(cm.Devices), "device", "devices"))
				printClaim(c.stdout, cm)
				return nil
			})
		},
	}
}

func claimsCmd() *command {
	var namespace string
	return &command{
		name: "claims", group: groupClient, nargs: [2]int{0, 0},
		summary: "ResourceClaims applied on the node",
		help: `List the ResourceClaims applied on this node: their devices, and what
became of each (healthy, unhealthy, or gone from its source).

Examples:
  wasmlet claims
  wasmlet claims --namespace ml -o json`,
		flags: func(fs *flag.FlagSet) {
			fs.StringVar(&namespace, "namespace", "", "only this `NAMESPACE`")
		},
		run: func(c *cli, _ []string) error {
			return callAndPrint(c, (*api.Client).ListClaims, &adminpb.ListClaimsRequest{Namespace: namespace}, func(resp *adminpb.ListClaimsResponse) error {
				if len(resp.Claims) == 0 {
					fmt.Fprintln(c.stderr, "No claims on this node.")
					return nil
				}
				t := newTable(c.stdout, "CLAIM", "FOR", "REQUEST", "DEVICE", "CLASS", "HEALTH", "CONSUMED")
				for _, cm := range resp.Claims {
					for _, d := range cm.Devices {
						t.row(cm.Namespace+"/"+cm.Name, workloadOf(cm), d.Request, d.Driver+"/"+d.Device, d.DeviceClass, d.Health,
							strings.Join(keyValues(d.ConsumedCapacity), " "))
					}
				}
				t.flush()
				return nil
			})
		},
	}
}

func claimShowCmd() *command {
	var namespace string
	return &command{
		name: "claim show", args: "NAME", group: groupClient, nargs: [2]int{1, 1},
		summary: "one claim: its devices, their health, what a container gets",
		help: `Show one claim: its devices and their health, what a container of the claim
gets (environment, mounts, device nodes, CDI devices), and, with -o json,
the claim as applied with its allocation (resource.k8s.io/v1).

Examples:
  wasmlet claim show gpu-partition
  wasmlet claim show --namespace ml train -o json | jq -r .claim.object`,
		flags: func(fs *flag.FlagSet) {
			fs.StringVar(&namespace, "namespace", "default", "the claim's `NAMESPACE`")
		},
		run: func(c *cli, args []string) error {
			return callAndPrint(c, (*api.Client).GetClaim, &adminpb.GetClaimRequest{Namespace: namespace, Name: args[0]}, func(resp *adminpb.GetClaimResponse) error {
				cm := resp.Claim
				fmt.Fprintf(c.stdout, "Claim %s/%s (uid %s), allocated %s ago", cm.Namespace, cm.Name, cm.Uid, ago(cm.Allocated))
				if w := workloadOf(cm); w != "" {
					fmt.Fprintf(c.stdout, ", for %s", w)
				}
				fmt.Fprintln(c.stdout)
				printClaim(c.stdout, cm)
				return nil
			})
		},
	}
}

func claimDeleteCmd() *command {
	var namespace string
	return &command{
		name: "claim delete", args: "NAME", group: groupClient, nargs: [2]int{1, 1},
		summary: "unprepare a claim and free its devices",
		help: `Delete a claim: its device sources unprepare it, its CDI specs are removed,
its devices are free again. The answer comes once that is durable.

Examples:
  wasmlet claim delete gpu-partition`,
		flags: func(fs *flag.FlagSet) {
			fs.StringVar(&namespace, "namespace", "default", "the claim's `NAMESPACE`")
		},
		run: func(c *cli, args []string) error {
			return callAndPrint(c, (*api.Client).DeleteClaim, &adminpb.DeleteClaimRequest{Namespace: namespace, Name: args[0]}, func(resp *adminpb.DeleteClaimResponse) error {
				fmt.Fprintf(c.stdout, "Claim %s/%s deleted: %s freed\n", resp.Claim.Namespace, resp.Claim.Name,
					plural(len(resp.Claim.Devices), "device", "devices"))
				return nil
			})
		},
	}
}

func workloadOf(c *adminpb.Claim) string {
	if c.Pod == "" {
		return ""
	}
	return c.Namespace + "/" + c.Pod + "/" + c.Container
}

func printClaim(w io.Writer, c *adminpb.Claim) {
	t := newTable(w, "REQUEST", "DEVICE", "CLASS", "HEALTH", "CONSUMED", "SHARE")
	for _, d := range c.Devices {
		t.row(d.Request, d.Driver+"/"+d.Pool+"/"+d.Device, d.DeviceClass, d.Health,
			strings.Join(keyValues(d.ConsumedCapacity), " "), d.ShareId)
	}
	t.flush()
	fmt.Fprintln(w, "Container edits:")
	printResponse(w, c.Response)
}
