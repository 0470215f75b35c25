package defaults

import (
	"testing"
	"time"
)

func TestPositive(t *testing.T) {
	for _, c := range []struct{ in, want time.Duration }{{0, time.Second}, {-1, time.Second}, {time.Millisecond, time.Millisecond}} {
		v := c.in
		Positive(&v, time.Second)
		if v != c.want {
			t.Errorf("Positive(%v, 1s) = %v, want %v", c.in, v, c.want)
		}
	}
	n := 0
	Positive(&n, 8)
	if n != 8 {
		t.Errorf("Positive(0, 8) = %d", n)
	}
}
