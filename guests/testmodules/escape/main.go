// Command escape is a device source that tries to leave its sandbox, for the
// sandbox tests. Its configuration names one attempt:
//
//	attempt  read | write | list | stat | readlink | env | dial
//	path     the file or directory for read, write and list
//	addr     the address for dial
//
// discover reports the outcome as the attributes of a device called
// "outcome": ok=true and what it got when the attempt succeeded, ok=false and
// the error otherwise. The tests assert ok=false.
package main

import (
	"net"
	"os"
	"strconv"
	"strings"

	"github.com/wasmlet/wasmlet/abi"
	"github.com/wasmlet/wasmlet/guests/sdk"
	"github.com/wasmlet/wasmlet/guests/sdk/source"
)

func init() {
	source.Serve(source.Source{
		Resource: "example.com/escape",
		Name:     "escape",
		Discover: func() ([]abi.Device, error) {
			got, err := try(sdk.ConfigOr("attempt", ""))
			attrs := map[string]string{"ok": strconv.FormatBool(err == nil), "got": got}
			if err != nil {
				attrs["error"] = err.Error()
			}
			return []abi.Device{{ID: "outcome", Attributes: attrs}}, nil
		},
	})
}

func main() {}

func try(attempt string) (string, error) {
	path := sdk.ConfigOr("path", "/")
	switch attempt {
	case "read":
		b, err := os.ReadFile(path)
		return string(b), err
	case "write":
		return "", os.WriteFile(path, []byte("escaped"), 0o644)
	case "stat":
		fi, err := os.Stat(path)
		if err != nil {
			return "", err
		}
		return fi.Mode().String(), nil
	case "readlink":
		return os.Readlink(path)
	case "list":
		es, err := os.ReadDir(path)
		names := make([]string, len(es))
		for i, e := range es {
			names[i] = e.Name()
		}
		return strings.Join(names, ","), err
	case "env":
		env := os.Environ()
		return strings.Join(env, "\n"), nil
	case "dial":
		c, err := net.Dial("tcp", sdk.ConfigOr("addr", "127.0.0.1:1"))
		if err == nil {
			c.Close()
		}
		return "", err
	}
	return "", os.ErrInvalid
}
