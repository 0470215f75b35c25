package backoff

import (
	"math"
	"testing"
	"time"

	clocktesting "k8s.io/utils/clock/testing"
)

func TestDelayDoublesAndCaps(t *testing.T) {
	ms := time.Millisecond
	for _, c := range []struct {
		initial, max time.Duration
		n            int
		want         time.Duration
	}{
		{40 * ms, 100 * ms, 1, 40 * ms},
		{40 * ms, 100 * ms, 2, 80 * ms},
		{40 * ms, 100 * ms, 3, 100 * ms},
		{40 * ms, 100 * ms, 1000, 100 * ms},
		{40 * ms, 10 * ms, 3, 40 * ms}, // a max below initial is initial
		{500 * ms, 2 * time.Minute, 8, 64 * time.Second},
		{500 * ms, 2 * time.Minute, 9, 2 * time.Minute}, // 128 s, capped
		// Doubling must not overflow, whatever the cap.
		{time.Second, math.MaxInt64, 30, time.Second << 29},
		{time.Second, math.MaxInt64, 100, math.MaxInt64},
		{3 * time.Second, math.MaxInt64, 1 << 30, math.MaxInt64},
		{time.Duration(math.MaxInt64/2 + 1), math.MaxInt64, 2, math.MaxInt64},
	} {
		if got := Delay(c.initial, c.max, c.n); got != c.want {
			t.Errorf("Delay(%v, %v, %d) = %v, want %v", c.initial, c.max, c.n, got, c.want)
		}
	}
}

func TestBackoffOnAClock(t *testing.T) {
	clk := clocktesting.NewFakePassiveClock(time.Unix(1000, 0))
	b := New(time.Second, 3*time.Second, clk)
	if b.Waiting() || !b.Until().IsZero() || b.Failures() != 0 {
		t.Fatal("a new backoff waits")
	}
	if d := b.Fail(); d != time.Second || !b.Until().Equal(time.Unix(1001, 0)) || !b.Waiting() {
		t.Fatalf("first failure: wait %v until %v", d, b.Until())
	}
	clk.SetTime(time.Unix(1001, 0))
	if b.Waiting() {
		t.Fatal("still waiting when the wait has ended")
	}
	if d := b.Fail(); d != 2*time.Second {
		t.Fatalf("second failure: wait %v", d)
	}
	b.Skip()
	if b.Waiting() || b.Failures() != 2 {
		t.Fatalf("after Skip: waiting %v, %d failures", b.Waiting(), b.Failures())
	}
	if d := b.Fail(); d != 3*time.Second {
		t.Fatalf("third failure after a skip: wait %v, want the cap", d)
	}
	b.Reset()
	if d := b.Fail(); d != time.Second || b.Failures() != 1 {
		t.Fatalf("after Reset: wait %v, %d failures", d, b.Failures())
	}
}
