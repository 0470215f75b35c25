package config

import (
	"cmp"
	"fmt"
	"slices"
	"strconv"
	"strings"
)

// Error is one mistake in a configuration file.
//
// Its text has the form
//
//	FILE:LINE:COLUMN: KEY: WHAT IS WRONG, expected WHAT
//
// for example
//
//	plugins.toml:12:10: sandbox.memory: invalid size "64M", expected a size in bytes, such as 67108864 or "64MiB" (units B, KiB, MiB, GiB, KB, MB, GB)
//
// KEY is omitted for syntax errors, which are not about one key.
type Error struct {
	// File is the configuration file's name, as given to Load or Parse
	// ("<input>" if Parse was given none).
	File string
	// Line and Column locate the mistake: 1-based, the column in bytes.
	Line, Column int
	// Key is the dotted path of the key the mistake is about, written as
	// in TOML ("modules.pcisource.mounts[0].root"), or "".
	Key string
	// Msg says what is wrong and what was expected.
	Msg string
}

func (e *Error) Error() string {
	var b strings.Builder
	b.WriteString(e.File)
	b.WriteByte(':')
	b.WriteString(strconv.Itoa(e.Line))
	b.WriteByte(':')
	b.WriteString(strconv.Itoa(e.Column))
	b.WriteString(": ")
	if e.Key != "" {
		b.WriteString(e.Key)
		b.WriteString(": ")
	}
	b.WriteString(e.Msg)
	return b.String()
}

// Errors is every mistake found in a configuration file, in the order they
// appear in it. Parse and Load return an Errors when the file is not valid;
// use errors.As to get at it.
type Errors []*Error

// Error lists the mistakes, one per line.
func (es Errors) Error() string {
	lines := make([]string, len(es))
	for i, e := range es {
		lines[i] = e.Error()
	}
	return strings.Join(lines, "\n")
}

// Unwrap gives access to each *Error through errors.As and errors.Is.
func (es Errors) Unwrap() []error {
	errs := make([]error, len(es))
	for i, e := range es {
		errs[i] = e
	}
	return errs
}

// sortErrors orders the mistakes as they appear in the file and drops exact
// duplicates.
func sortErrors(es Errors) Errors {
	slices.SortStableFunc(es, func(a, b *Error) int {
		return cmp.Or(cmp.Compare(a.Line, b.Line), cmp.Compare(a.Column, b.Column))
	})
	return slices.CompactFunc(es, func(a, b *Error) bool { return *a == *b })
}

// keyPath appends a key to a dotted path, quoting it unless it is a bare key.
func keyPath(prefix, key string) string {
	if !isBareKey(key) {
		key = strconv.Quote(key)
	}
	if prefix == "" {
		return key
	}
	return prefix + "." + key
}

// indexPath appends an array index to a path.
func indexPath(prefix string, i int) string {
	return prefix + "[" + strconv.Itoa(i) + "]"
}

func isBareKey(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '_' || c == '-') {
			return false
		}
	}
	return true
}

// quote shows a value in a message the way it is written in TOML.
func quote(s string) string { return strconv.Quote(s) }

// oneOf lists the accepted values of a key: "a, b or c".
func oneOf(values []string) string {
	switch len(values) {
	case 0:
		return ""
	case 1:
		return values[0]
	}
	return strings.Join(values[:len(values)-1], ", ") + " or " + values[len(values)-1]
}

// suggest returns the candidate closest to s, if it is close enough to be a
// likely typo.
func suggest(s string, candidates []string) (string, bool) {
	best, bestDist := "", -1
	for _, c := range candidates {
		limit := max(1, len(c)/3) // the most typos a suggestion may fix
		if abs(len(s)-len(c)) > limit {
			continue // farther than that: no need to measure
		}
		if d := editDistance(strings.ToLower(s), strings.ToLower(c)); d <= limit && (bestDist < 0 || d < bestDist) {
			best, bestDist = c, d
		}
	}
	return best, bestDist >= 0
}

func abs(n int) int {
	if n < 0 {
		return -n
	}
	return n
}

// editDistance is the Levenshtein distance between a and b, in bytes.
func editDistance(a, b string) int {
	prev := make([]int, len(b)+1)
	cur := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
		}
		prev, cur = cur, prev
	}
	return prev[len(b)]
}

// errorf is a shorthand used by the decoder.
func errorf(file string, at pos, key, format string, args ...any) *Error {
	return &Error{File: file, Line: at.line, Column: at.col, Key: key, Msg: fmt.Sprintf(format, args...)}
}
