//go:build !linux

package checkpoint

import "testing"

func inPrivateMount(t *testing.T, size string, readOnly bool, prepare func(dir string) error, check func(dir string, errorf func(string, ...any))) {
	t.Fatal("no private mount namespaces on this system: cannot make a directory that root cannot write")
}
