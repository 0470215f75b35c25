// Package defaults fills in a component's Config: in every wasmlet Config a
// count, size or duration that is zero or negative means "the default", so
// that a zero Config works and a caller sets only what it means to change.
package defaults

// Positive sets *v to def when *v is zero or negative.
func Positive[T ~int | ~int32 | ~int64 | ~uint32 | ~uint64 | ~float64](v *T, def T) {
	if *v <= 0 {
		*v = def
	}
}
