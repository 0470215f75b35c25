package sdk

import (
	"strings"

	"github.com/wasmlet/wasmlet/abi"
	"github.com/wasmlet/wasmlet/guests/sdk/internal/guest"
)

// Debug, Info, Warn and Error send one line to the host's log, tagged with the
// module's name. The host rate-limits module logs; do not log per device per
// call.
func Debug(msg string) { guest.Log(abi.LogDebug, msg) }
func Info(msg string)  { guest.Log(abi.LogInfo, msg) }
func Warn(msg string)  { guest.Log(abi.LogWarn, msg) }
func Error(msg string) { guest.Log(abi.LogError, msg) }

// Config returns the value of key from the module's configuration in
// plugins.toml, and whether it was set.
func Config(key string) (string, bool) { return guest.Config(key) }

// ConfigOr returns the value of key, or def when it is not set.
func ConfigOr(key, def string) string {
	if v, ok := guest.Config(key); ok {
		return v
	}
	return def
}

// ConfigList returns the comma-separated value of key (or def, when it is
// not set) as a list, with blanks trimmed and empty items dropped.
func ConfigList(key, def string) []string {
	var out []string
	for _, f := range strings.Split(ConfigOr(key, def), ",") {
		if f = strings.TrimSpace(f); f != "" {
			out = append(out, f)
		}
	}
	return out
}

// EnvName turns s into the tail of an environment variable name: upper case
// letters, digits and underscores ("example.com/nic" -> "EXAMPLE_COM_NIC").
func EnvName(s string) string {
	b := []byte(s)
	for i, c := range b {
		switch {
		case c >= 'a' && c <= 'z':
			b[i] = c - 'a' + 'A'
		case c >= 'A' && c <= 'Z', c >= '0' && c <= '9':
		default:
			b[i] = '_'
		}
	}
	return string(b)
}

// Refuse returns the error a module gives for a request it understood and
// will not satisfy (a plugin that fails validation, an impossible
// allocation). The host passes msg on to whoever asked.
func Refuse(msg string) error {
	return &abi.Error{Code: abi.CodeInvalidArgument, Message: msg}
}

// Fail returns an error with an explicit code.
func Fail(code abi.Code, msg string) error {
	return &abi.Error{Code: code, Message: msg}
}
