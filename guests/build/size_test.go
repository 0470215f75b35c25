package build

import (
	"os"
	"testing"
)

// sdkBudget is how much larger than an empty wasip1 reactor a minimal SDK
// guest may be (README.md, "Writing a module": the SDK avoids reflection and
// the protobuf runtime, "so a module stays within a few hundred kilobytes of
// an empty Go reactor").
const sdkBudget = 800_000 // bytes, 0.8 MB

func size(t *testing.T, dir string) int64 {
	t.Helper()
	fi, err := os.Stat(Go(t, dir))
	if err != nil {
		t.Fatal(err)
	}
	return fi.Size()
}

// TestSDKGuestSize builds an empty reactor and the counter (a complete device
// source on the SDK) the same way, and holds the difference to sdkBudget. It
// logs the sizes of the other Go guests for comparison.
func TestSDKGuestSize(t *testing.T) {
	empty := size(t, "guests/build/testdata/emptyreactor")
	counter := size(t, "guests/counter")
	t.Logf("empty wasip1 reactor: %d bytes; guests/counter: %d bytes (+%d)", empty, counter, counter-empty)
	if counter-empty > sdkBudget {
		t.Errorf("guests/counter is %d bytes larger than an empty reactor; the budget is %d: "+
			"has the SDK pulled in fmt, reflection or the protobuf runtime?", counter-empty, sdkBudget)
	}
	for _, g := range []string{"guests/devicepluginhandler", "guests/csihandler", "guests/customhandler", "guests/pcisource", "guests/devsource", "guests/gpusim"} {
		n := size(t, g)
		t.Logf("%s: %d bytes (+%d)", g, n, n-empty)
	}
}
