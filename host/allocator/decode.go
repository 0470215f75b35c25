package allocator

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"sort"
	"strconv"
	"strings"

	sigsjson "sigs.k8s.io/json"
	"sigs.k8s.io/yaml"
)

// maxExponent bounds the exponent of any number written in a claim or a
// device class. Kubernetes' quantity parser (resource.ParseQuantity) takes
// time that grows with the square of a negative exponent: "1.5e-3000000"
// costs a fifth of a second, "1.5e-2147483648" (15 bytes) about a day, and
// nothing can interrupt it. Claims reach it when they are decoded
// (capacity requests) and when their CEL selectors run (quantity("…")), so
// every number-like token in every string of the document is checked before
// anything parses it. No real quantity needs an exponent beyond ±1000 (a
// quantity's own range ends near 10^±18 in practice).
const maxExponent = 1000

// checkExponents refuses a JSON document holding a number, anywhere in its
// values or keys, whose exponent is beyond ±maxExponent, naming where.
func checkExponents(doc []byte) error {
	var v any
	d := json.NewDecoder(bytes.NewReader(doc))
	d.UseNumber()
	if err := d.Decode(&v); err != nil {
		return nil // not JSON: the strict decoder says what is wrong
	}
	return walkExponents(v, "")
}

func walkExponents(v any, path string) error {
	switch t := v.(type) {
	case map[string]any:
		keys := make([]string, 0, len(t))
		for k := range t {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		for _, k := range keys {
			p := k
			if path != "" {
				p = path + "." + k
			}
			if err := tokenExponents(k, p); err != nil {
				return err
			}
			if err := walkExponents(t[k], p); err != nil {
				return err
			}
		}
	case []any:
		for i, e := range t {
			if err := walkExponents(e, fmt.Sprintf("%s[%d]", path, i)); err != nil {
				return err
			}
		}
	case string:
		return tokenExponents(t, path)
	case json.Number:
		return tokenExponents(string(t), path)
	}
	return nil
}

// tokenExponents finds the exponents of the numbers written in s: a digit
// or a point, then e or E, an optional sign and digits, not inside a longer
// word or a dashed identifier (so "3e12345ab" and "GPU-3e12345-1e5" hold no
// number but the 1e5).
func tokenExponents(s, path string) error {
	for i := 0; i < len(s); i++ {
		if s[i] != 'e' && s[i] != 'E' || i == 0 || !(isDigit(s[i-1]) || s[i-1] == '.') {
			continue
		}
		j := i + 1
		if j < len(s) && (s[j] == '+' || s[j] == '-') {
			j++
		}
		k := j
		for k < len(s) && isDigit(s[k]) {
			k++
		}
		if k == j || k < len(s) && (isWord(s[k]) || s[k] == '-' || s[k] == '.') || startsInWord(s, i) {
			continue
		}
		if exp, err := strconv.ParseInt(s[j:k], 10, 64); err != nil || exp > maxExponent {
			return fmt.Errorf("%s: the number %q has an exponent beyond ±%d, which Kubernetes' quantity parser cannot read in reasonable time",
				pathOr(path), s[numberStart(s, i):k], maxExponent)
		}
	}
	return nil
}

func isDigit(c byte) bool { return c >= '0' && c <= '9' }

func isWord(c byte) bool {
	return isDigit(c) || c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c == '_'
}

// startsInWord reports whether the number whose exponent marker is at i
// begins inside a word ("GPU-ab3e1234"): its mantissa's first character
// follows a letter.
func startsInWord(s string, i int) bool {
	st := numberStart(s, i)
	return st > 0 && isWord(s[st-1]) && !isDigit(s[st-1])
}

// numberStart is where the mantissa ending at i begins.
func numberStart(s string, i int) int {
	st := i
	for st > 0 && (isDigit(s[st-1]) || s[st-1] == '.') {
		st--
	}
	return st
}

func pathOr(p string) string {
	if p == "" {
		return "the document"
	}
	return p
}

// DecodeStrict decodes YAML or JSON into v, as the API server does: an unknown
// or duplicate field is an error that names its path
// ("spec.devices.requests[0].exactly.selector"). Claims and device classes are
// both decoded with it, and it refuses numbers the quantity parser cannot
// read in reasonable time (checkExponents) before anything parses them.
func DecodeStrict(data []byte, v any) error {
	j := data
	if t := bytes.TrimSpace(data); len(t) == 0 || t[0] != '{' { // JSON is YAML, but much faster read as JSON
		var err error
		if j, err = yaml.YAMLToJSON(data); err != nil {
			return err
		}
	}
	if err := checkExponents(j); err != nil {
		return err
	}
	strict, err := sigsjson.UnmarshalStrict(j, v)
	if err != nil {
		return err
	}
	if len(strict) > 0 {
		msgs := make([]string, len(strict))
		for i, e := range strict {
			msgs[i] = e.Error()
		}
		return errors.New(strings.Join(msgs, "; "))
	}
	return nil
}
