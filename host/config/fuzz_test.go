package config

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/pelletier/go-toml/v2"
)

// FuzzParse checks that no input makes Parse panic, that every mistake
// carries a position, that a valid configuration is usable, and that the
// positioned tree the schema is decoded from holds exactly what go-toml
// decodes. The committed corpus is in testdata/fuzz/FuzzParse; run
//
//	go test -run '^$' -fuzz FuzzParse ./host/config
func FuzzParse(f *testing.F) {
	if data, err := os.ReadFile("../../plugins.toml"); err == nil {
		f.Add(data)
	}
	for _, doc := range treeDocs {
		f.Add([]byte(doc))
	}
	dir := f.TempDir()
	modules := filepath.Join(dir, "build", "modules")
	if err := os.MkdirAll(modules, 0o755); err != nil {
		f.Fatal(err)
	}
	for _, m := range []string{"x", "devicepluginhandler", "csihandler", "customhandler", "pcisource", "devsource"} {
		if err := os.WriteFile(filepath.Join(modules, m+".wasm"), nil, 0o644); err != nil {
			f.Fatal(err)
		}
	}
	file := filepath.Join(dir, "plugins.toml")

	f.Fuzz(func(t *testing.T, data []byte) {
		c, err := Parse(data, file)
		if err != nil {
			var errs Errors
			if !errors.As(err, &errs) || len(errs) == 0 {
				t.Fatalf("error %T is not a non-empty Errors: %v", err, err)
			}
			for _, e := range errs {
				if e.File != file || e.Line < 1 || e.Column < 1 || e.Msg == "" {
					t.Fatalf("error without a position or message: %+v", e)
				}
			}
			if c != nil {
				t.Fatal("a Config with an error")
			}
		} else {
			checkValid(t, c)
		}
		checkTree(t, bytes.TrimPrefix(data, []byte("\ufeff")))
	})
}

// checkValid checks the promises a valid Config makes.
func checkValid(t *testing.T, c *Config) {
	t.Helper()
	for _, p := range []string{c.File, c.Host.StateDir, c.Host.RegistryDir, c.Host.DevicePluginDir,
		c.Host.ModuleDir, c.Host.APISocket, c.Bridge.KubeletDir, c.Bridge.PluginRegistryDir, c.Bridge.CDIDir} {
		if !filepath.IsAbs(p) || filepath.Clean(p) != p {
			t.Fatalf("path %q is not absolute and clean", p)
		}
	}
	if c.Host.ResyncPeriod <= 0 || c.Host.OperationTimeout <= 0 || c.Host.GracePeriod < 0 ||
		c.Host.BackoffInitial <= 0 || c.Host.BackoffMax < c.Host.BackoffInitial {
		t.Fatalf("bad host durations: %+v", c.Host)
	}
	names := []string{"x", "other"}
	for name := range c.modules {
		names = append(names, name)
	}
	for _, name := range names {
		o := c.ModuleOptions(name)
		if o.MemoryLimit == 0 || o.MemoryLimit > maxMemory || o.CallTimeout <= 0 || o.InitTimeout <= 0 ||
			o.MaxReply == 0 || o.PoolSize < 1 || o.QuarantineAfter < 1 || o.LogRate < 1 || o.LogBurst < 1 {
			t.Fatalf("ModuleOptions(%q) out of range: %+v", name, o)
		}
		for _, m := range o.Mounts {
			if err := m.Validate(); err != nil {
				t.Fatalf("ModuleOptions(%q): %v", name, err)
			}
		}
	}
	for name := range c.sources {
		if c.Source(name).DiscoverInterval < 0 {
			t.Fatalf("negative discover interval for %q", name)
		}
	}
	_ = c.Handlers()
}

// checkTree checks that the tree holds what go-toml decodes, for every
// document go-toml accepts.
func checkTree(t *testing.T, data []byte) {
	t.Helper()
	var want map[string]any
	if toml.Unmarshal(data, &want) != nil {
		return
	}
	root, conflicts, err := parseTree(data)
	if err != nil {
		t.Fatalf("go-toml decodes the document, but the tree builder fails: %v", err)
	}
	if len(conflicts) > 0 {
		t.Fatalf("go-toml decodes the document, but the tree builder reports %q at %v", conflicts[0].msg, conflicts[0].at)
	}
	if got, want := plain(root), normalize(want); !reflect.DeepEqual(got, want) {
		t.Fatalf("tree differs from go-toml:\n got %#v\nwant %#v", got, want)
	}
}

// plain is the tree as generic values, with floats and date-times reduced
// to their kind (the tree does not decode them).
func plain(n *node) any {
	switch n.kind {
	case kindTable:
		m := make(map[string]any, len(n.fields))
		for k, v := range n.fields {
			m[k] = plain(v)
		}
		return m
	case kindArray:
		s := make([]any, len(n.elems))
		for i, v := range n.elems {
			s[i] = plain(v)
		}
		return s
	case kindString:
		return n.str
	case kindInteger:
		return n.num
	case kindBool:
		return n.flag
	default:
		return n.kind.String()
	}
}

// normalize is go-toml's generic decoding in plain's terms.
func normalize(v any) any {
	switch v := v.(type) {
	case map[string]any:
		m := make(map[string]any, len(v))
		for k, e := range v {
			m[k] = normalize(e)
		}
		return m
	case []any:
		s := make([]any, len(v))
		for i, e := range v {
			s[i] = normalize(e)
		}
		return s
	case float64:
		return kindFloat.String()
	case time.Time, toml.LocalDate, toml.LocalTime, toml.LocalDateTime:
		return kindDatetime.String()
	}
	return v
}

// treeDocs are valid TOML documents that exercise the tree builder: every
// way of defining tables, arrays of tables, nesting, quoting and numbers.
var treeDocs = []string{
	"",
	"a = 1\nb = 0x7fffffffffffffff\nc = 0o17\nd = 0b101\ne = 1_000\nf = +3\ng = -9223372036854775808\n",
	"s = 'lit'\nt = \"esc\\u00e9\\n\"\nu = '''\nmulti'''\nv = \"\"\"\nmulti\\\n  line\"\"\"\n",
	"f = 1.5\ng = inf\nh = -nan\ni = 1e3\nd = 1979-05-27\nt = 07:32:00\ndt = 1979-05-27T07:32:00Z\nl = 1979-05-27 07:32:00\n",
	"[a.b.c]\nx = 1\n[a]\ny = 2\n[a.b]\nz = 3\n",
	"[fruit]\napple.color = \"red\"\napple.taste.sweet = true\n[fruit.apple.texture]\nsmooth = true\n",
	"[[a]]\nx = 1\n[[a]]\nx = 2\n[a.b]\ny = 3\n[[a.c]]\nz = 4\n[[a.c]]\n",
	"a = [1, [2, [3]], { b = [ { c = 1 } ] }, []]\nb = [ # comment\n  1,\n  2, # trailing\n]\n",
	"\"quoted key\" = 1\n'lit.key' = 2\na.\"b.c\".d = 3\n\"\" = 4\n[\"sec tion\".x]\ny = 5\n",
	"x = { a = 1, b.c = 2, d = { e = 3 } }\ny = {}\n",
	"[modules.x]\nmounts = [{ host = \"/a\", guest = \"/a\" }]\n[[modules.x.extra]]\n",
	"a.b = 1\n[a.c]\nd = 2\n",
	"[a]\n[a.b]\n[[a.c]]\n[a.c.d]\ne = 1\n",
}

func TestTreeMatchesGoToml(t *testing.T) {
	guardUnstable(t)
	for i, doc := range treeDocs {
		t.Run(strconv.Itoa(i), func(t *testing.T) {
			var m map[string]any
			if err := toml.Unmarshal([]byte(doc), &m); err != nil {
				t.Fatalf("not valid TOML: %v\n%s", err, doc)
			}
			checkTree(t, []byte(doc))
		})
	}
}

// TestTreePositions checks the positions the tree records, including those
// go-toml's AST does not carry (arrays).
func TestTreePositions(t *testing.T) {
	guardUnstable(t)
	doc := "a = [\n  [ 1 ],\n  [[2]]\n]\n[t]\n  k = \"v\"\n[[u]]\n[[u]]\nw = { x = [ ] }\n"
	root, conflicts, err := parseTree([]byte(doc))
	if err != nil || len(conflicts) > 0 {
		t.Fatal(err, conflicts)
	}
	a := root.fields["a"]
	u := root.fields["u"]
	for what, got := range map[string]pos{
		"1:1 a key":   a.key,
		"1:5 a":       a.at,
		"2:3 a[0]":    a.elems[0].at,
		"2:5 a[0][0]": a.elems[0].elems[0].at,
		"3:3 a[1]":    a.elems[1].at,
		"3:4 a[1][0]": a.elems[1].elems[0].at,
		"5:2 t":       root.fields["t"].key,
		"6:3 t.k key": root.fields["t"].fields["k"].key,
		"6:7 t.k":     root.fields["t"].fields["k"].at,
		"7:3 u":       u.key,
		"8:3 u[1]":    u.elems[1].key,
		"9:1 u[1].w":  u.elems[1].fields["w"].key,
		"9:11 w.x":    u.elems[1].fields["w"].fields["x"].at,
	} {
		if want := strings.Fields(what)[0]; got.String() != want {
			t.Errorf("%s: got %v", what, got)
		}
	}
}
