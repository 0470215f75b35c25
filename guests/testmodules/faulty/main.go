// Command faulty is a device source that misbehaves on request, for the
// fault-containment tests. Configuration:
//
//	fault  none | panic | loop | memory | stack | exit | oversized | logflood |
//	       slow | sleep | slowinit | initloop | initpanic
//	on     the operation that faults: discover (default) or allocate
//	after  how many calls of that operation succeed first, per instance
//	delay_ms  for slow and slowinit: how long the call or initialisation takes
//
// sleep logs "faulty: asleep in <op>", then sleeps for a year (time.Sleep:
// WASI poll_oneoff, in the host).
package main

import (
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/wasmlet/wasmlet/abi"
	"github.com/wasmlet/wasmlet/guests/sdk"
	"github.com/wasmlet/wasmlet/guests/sdk/source"
)

var (
	oversized string
	fault     = sdk.ConfigOr("fault", "none")
	on        = sdk.ConfigOr("on", "discover")
	after     = atoi(sdk.ConfigOr("after", "0"))
	calls     int
	sink      [][]byte
)

func atoi(s string) int {
	n, _ := strconv.Atoi(s)
	return n
}

func init() {
	switch fault {
	case "slowinit":
		time.Sleep(time.Duration(atoi(sdk.ConfigOr("delay_ms", "200"))) * time.Millisecond)
	case "initloop":
		spin()
	case "initpanic":
		panic("faulty: panic during initialisation")
	}
	source.Serve(source.Source{
		Resource: sdk.ConfigOr("resource", "example.com/faulty"),
		Name:     "faulty",
		Discover: func() ([]abi.Device, error) {
			maybeFault("discover")
			devs := []abi.Device{{ID: "f0"}, {ID: "f1"}}
			if oversized != "" {
				devs[0].Attributes = map[string]string{"blob": oversized}
			}
			return devs, nil
		},
		Allocate: func(req *abi.AllocateRequest) (*abi.AllocateResponse, error) {
			maybeFault("allocate")
			return &abi.AllocateResponse{Envs: map[string]string{"FAULTY": strings.Join(req.DeviceIDs, ",")}}, nil
		},
	})
}

func main() {}

var counter int

//go:noinline
func spin() {
	for {
		counter++
	}
}

//go:noinline
func recurse(n int) int {
	var pad [256]byte
	pad[n%256] = byte(n)
	return recurse(n+1) + int(pad[0])
}

func maybeFault(op string) {
	if op != on {
		return
	}
	calls++
	if calls <= after {
		return
	}
	switch fault {
	case "panic":
		panic("faulty: deliberate panic in " + op)
	case "loop":
		spin()
	case "memory":
		for {
			sink = append(sink, make([]byte, 1<<20))
		}
	case "stack":
		recurse(0)
	case "exit":
		os.Exit(3)
	case "sleep":
		sdk.Info("faulty: asleep in " + op)
		time.Sleep(365 * 24 * time.Hour)
	case "slow":
		time.Sleep(time.Duration(atoi(sdk.ConfigOr("delay_ms", "200"))) * time.Millisecond)
	case "oversized":
		oversized = strings.Repeat("x", 8<<20)
	case "logflood":
		for i := 0; i < 100000; i++ {
			sdk.Info("faulty: flooding the log, line " + strconv.Itoa(i))
		}
	}
}
