package config

import (
	"fmt"
	"os"
	"regexp"
	"strings"
	"testing"
)

// The tree builder (tree.go) reads github.com/pelletier/go-toml/v2/unstable,
// whose API and behaviour may change in any release (see the package
// documentation for why wasmlet uses it anyway). go.mod pins the version;
// the tests below pin the behaviour tree.go relies on, and say so when it
// changes, so that an upgrade of go-toml that would move error positions
// fails here, loudly, rather than as a puzzling diff in errors_test.go.

// goTOMLVersion is the go-toml version go.mod requires.
func goTOMLVersion(t *testing.T) string {
	data, err := os.ReadFile("../../go.mod")
	if err != nil {
		t.Fatal(err)
	}
	m := regexp.MustCompile(`(?m)^\s*(?:require\s+)?github\.com/pelletier/go-toml/v2 (\S+)`).FindSubmatch(data)
	if m == nil {
		t.Fatal("go.mod does not require github.com/pelletier/go-toml/v2")
	}
	return string(m[1])
}

// guardUnstable makes a failure of t name its likely cause.
func guardUnstable(t *testing.T) {
	t.Cleanup(func() {
		if t.Failed() {
			t.Errorf("go-toml %s's unstable parser no longer gives the tree host/config/tree.go was written "+
				"against (key and value positions, arrays without a position, comments among array elements, "+
				"error highlights within the input). Its unstable package promises no compatibility: adapt "+
				"tree.go to this version, or go back to the version it was written for.", goTOMLVersion(t))
		}
	})
}

// dumpTree lists every node of n below path, one a line: path, kind, where
// its key and its value are written, and what the builder marked it.
func dumpTree(n *node, path string, b *strings.Builder) {
	if path != "" {
		fmt.Fprintf(b, "%s %s key=%v at=%v", path, strings.Fields(n.kind.String())[1], n.key, n.at)
		for _, f := range []struct {
			on   bool
			name string
		}{{n.tableArray, "tablearray"}, {n.header, "header"}, {n.explicit, "explicit"}, {n.dotted, "dotted"}, {n.inline, "inline"}} {
			if f.on {
				b.WriteString(" " + f.name)
			}
		}
		switch n.kind {
		case kindString:
			fmt.Fprintf(b, " %q", n.str)
		case kindInteger:
			fmt.Fprintf(b, " %d", n.num)
		case kindBool:
			fmt.Fprintf(b, " %t", n.flag)
		case kindFloat, kindDatetime:
			fmt.Fprintf(b, " %s", n.raw)
		}
		b.WriteString("\n")
	}
	for _, k := range n.keys {
		dumpTree(n.fields[k], keyPath(path, k), b)
	}
	for i, e := range n.elems {
		dumpTree(e, indexPath(path, i), b)
	}
}

// TestGoTOMLTree pins the whole tree, positions included, of a document
// that uses every construct tree.go handles. Every position below was
// counted by hand.
func TestGoTOMLTree(t *testing.T) {
	guardUnstable(t)
	doc := strings.Join([]string{
		`# a comment`,                 // 1
		`title = "x" # trailing`,      // 2
		`[host]`,                      // 3
		"\tstate_dir = '/s'",          // 4
		`a.b."c d" = 1`,               // 5
		`[[src]]`,                     // 6
		`arr = [ # c`,                 // 7
		`  1,`,                        // 8
		`  [ 2, [3] ], # c`,           // 9
		`]`,                           // 10
		`[[src]]`,                     // 11
		`t = { k = true, n.m = 1.5 }`, // 12
		`ml = """`,                    // 13
		`x"""`,                        // 14
		`[ "src" . x ]`,               // 15
		`when = 1979-05-27T07:32:00Z`, // 16
		"crlf = 0x10\r",               // 17
		`last = -3`,                   // 18
		`last = 4`,                    // 19
	}, "\n") + "\n"
	want := `title string key=2:1 at=2:9 "x"
host table key=3:2 at=3:2 header explicit
host.state_dir string key=4:2 at=4:14 "/s"
host.a table key=5:1 at=5:1 dotted
host.a.b table key=5:3 at=5:3 dotted
host.a.b."c d" integer key=5:5 at=5:13 1
src array key=6:3 at=6:3 tablearray
src[0] table key=6:3 at=6:3 header explicit
src[0].arr array key=7:1 at=7:7 inline
src[0].arr[0] integer key=8:3 at=8:3 1
src[0].arr[1] array key=9:3 at=9:3 inline
src[0].arr[1][0] integer key=9:5 at=9:5 2
src[0].arr[1][1] array key=9:8 at=9:8 inline
src[0].arr[1][1][0] integer key=9:9 at=9:9 3
src[1] table key=11:3 at=11:3 header explicit
src[1].t table key=12:1 at=12:5 inline
src[1].t.k boolean key=12:7 at=12:11 true
src[1].t.n table key=12:17 at=12:17 dotted
src[1].t.n.m float key=12:19 at=12:23 1.5
src[1].ml string key=13:1 at=13:6 "x"
src[1].x table key=15:11 at=15:11 header explicit
src[1].x.when date-time key=16:1 at=16:8 1979-05-27T07:32:00Z
src[1].x.crlf integer key=17:1 at=17:8 16
src[1].x.last integer key=18:1 at=18:8 -3
conflict src[1].x.last at=19:1: duplicate key (first defined at 18:1), expected each key to be defined once
`
	root, conflicts, err := parseTree([]byte(doc))
	if err != nil {
		t.Fatal(err)
	}
	var b strings.Builder
	dumpTree(root, "", &b)
	for _, c := range conflicts {
		fmt.Fprintf(&b, "conflict %s at=%v: %s\n", c.path, c.at, c.msg)
	}
	if got := b.String(); got != want {
		t.Errorf("tree of\n%s\ngot:\n%s\nwant:\n%s", doc, got, want)
	}
}

// TestGoTOMLSyntaxErrorPosition pins where the parser's errors point: its
// highlight is a slice of the input, which parserErrorOffset relies on.
func TestGoTOMLSyntaxErrorPosition(t *testing.T) {
	guardUnstable(t)
	for doc, want := range map[string]int{
		"[host\nstate_dir = 1\n": 5,
		"a = 1\nb = [1,,2]\n":    13,
		"a = 1\n= 2\n":           6,
	} {
		data := []byte(doc)
		_, _, err := parseTree(data)
		if err == nil {
			t.Errorf("%q parsed", doc)
			continue
		}
		if off, ok := parserErrorOffset(data, err); !ok || off != want {
			t.Errorf("%q: error %v at offset %d (found: %t), want offset %d", doc, err, off, ok, want)
		}
	}
}
