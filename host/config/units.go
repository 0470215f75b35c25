package config

import (
	"errors"
	"math"
	"math/bits"
	"strconv"
	"strings"
)

// sizeUnits are the units a size may be written in: binary (KiB) and
// decimal (KB) multiples of a byte.
var sizeUnits = map[string]uint64{
	"B":   1,
	"KiB": 1 << 10,
	"MiB": 1 << 20,
	"GiB": 1 << 30,
	"KB":  1e3,
	"MB":  1e6,
	"GB":  1e9,
}

var errSize = errors.New("invalid size")

// parseSize parses "<n><unit>", such as "64MiB" or "512 KB": a non-negative
// decimal integer and one of sizeUnits, with optional spaces between and
// around them. A unit is required: a bare number of bytes is written as a
// TOML integer, not a string.
func parseSize(s string) (uint64, error) {
	s = strings.TrimSpace(s)
	i := 0
	for i < len(s) && '0' <= s[i] && s[i] <= '9' {
		i++
	}
	if i == 0 {
		return 0, errSize
	}
	n, err := strconv.ParseUint(s[:i], 10, 64)
	if err != nil {
		n = math.MaxUint64 // only ever out of range: saturate, as below
	}
	unit, ok := sizeUnits[strings.TrimSpace(s[i:])]
	if !ok {
		return 0, errSize
	}
	hi, v := bits.Mul64(n, unit)
	if hi != 0 {
		// Well-formed but too large for anything: saturate, so that the
		// caller's limit check reports it as too large.
		return math.MaxUint64, nil
	}
	return v, nil
}
