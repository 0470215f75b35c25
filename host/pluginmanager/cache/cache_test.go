package cache

import (
	"testing"
	"time"
)

func TestGenerations(t *testing.T) {
	d := NewDesiredState()
	a := d.Add("/r/a.sock", time.Now())
	b := d.Add("/r/a.sock", time.Now()) // recreated
	if b.Generation <= a.Generation {
		t.Fatalf("recreated socket did not get a new generation: %d then %d", a.Generation, b.Generation)
	}
	if got, _ := d.Get("/r/a.sock"); got.Generation != b.Generation {
		t.Fatal("the latest socket is not the desired one")
	}
	as := NewActualState()
	as.Add(RegisteredPlugin{SocketPath: "/r/a.sock", Generation: b.Generation})
	if as.Remove("/r/a.sock", a.Generation) {
		t.Fatal("removing an older generation removed the newer registration")
	}
	if !as.Remove("/r/a.sock", b.Generation) {
		t.Fatal("could not remove the registration")
	}
	d.Add("/r/b.sock", time.Now())
	if l := d.List(); len(l) != 2 || l[0].SocketPath != "/r/a.sock" {
		t.Fatalf("list %v", l)
	}
	if !d.Remove("/r/a.sock") || d.Remove("/r/a.sock") {
		t.Fatal("remove")
	}
}
