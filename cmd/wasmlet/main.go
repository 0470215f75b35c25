// Command wasmlet is the wasmlet node agent and its command-line client.
//
// `wasmlet run` is the daemon: it registers plugins, manages devices and
// serves the host API, with plugin-type handlers and device sources as
// sandboxed WebAssembly modules. The client commands (status, plugins,
// modules, resources, allocations, allocate, release, module reload) talk to
// a running host over its API socket. The offline commands (config
// validate, module inspect, checkpoint verify and show) need no host.
//
// Run `wasmlet --help` for the commands, `wasmlet COMMAND --help` for a
// command's flags and examples. Exit status: 0 success; 1 the operation
// failed, was refused, or its input was invalid; 2 usage error (the host
// finding a request malformed included); 3 the host cannot be reached at
// its API socket; 4 not found (no such module, resource, workload or pod).
package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"runtime"
	"runtime/debug"
	"sort"
	"strings"
	"time"

	"github.com/wasmlet/wasmlet/host/config"
	"github.com/wasmlet/wasmlet/host/node"
)

// Exit codes.
const (
	exitOK          = 0
	exitFailed      = 1
	exitUsage       = 2
	exitUnreachable = 3
	exitNotFound    = 4
)

// socketEnv names the environment variable that overrides the default API
// socket.
const socketEnv = "WASMLET_SOCKET"

func main() {
	os.Exit(Main(os.Args[1:], os.Stdout, os.Stderr))
}

// exitError is an error with the exit code it should end the command with.
type exitError struct {
	code int
	err  error
}

func (e *exitError) Error() string { return e.err.Error() }
func (e *exitError) Unwrap() error { return e.err }

func failf(code int, format string, args ...any) error {
	return &exitError{code: code, err: fmt.Errorf(format, args...)}
}

// usageError is a mistake in how a command was called.
type usageError struct{ msg string }

func (e *usageError) Error() string { return e.msg }

func usagef(format string, args ...any) error { return &usageError{fmt.Sprintf(format, args...)} }

// cli holds the global flags and where output goes.
type cli struct {
	stdout, stderr io.Writer

	socket  string
	config  string
	output  string
	timeout time.Duration
}

// command is one subcommand.
type command struct {
	name    string // "resources", "module reload"
	alias   string // "devices"
	args    string // positional arguments, for usage: "RESOURCE COUNT"
	summary string
	help    string // what it does, in detail, and examples
	group   string
	nargs   [2]int // minimum and maximum positional arguments; max -1: any
	// noOutput: the command has no -o (run).
	noOutput bool
	flags    func(fs *flag.FlagSet)
	run      func(c *cli, args []string) error
}

const (
	groupDaemon  = "Daemon"
	groupClient  = "Client commands (talk to a running host over its API socket)"
	groupOffline = "Offline commands (need no running host)"
)

func commands() []*command {
	return []*command{
		runCmd(),
		statusCmd(), pluginsCmd(), modulesCmd(), moduleReloadCmd(), resourcesCmd(false), resourcesCmd(true),
		allocationsCmd(), allocateCmd(), releaseCmd(), csiCmd(),
		claimsCmd(), claimApplyCmd(), claimShowCmd(), claimDeleteCmd(),
		configValidateCmd(), moduleInspectCmd(), moduleCheckCmd(), checkpointVerifyCmd(), checkpointShowCmd(),
	}
}

// Main runs the wasmlet command with args (without the program name) and
// returns its exit code.
func Main(args []string, stdout, stderr io.Writer) int {
	c := &cli{stdout: stdout, stderr: stderr, output: "table", timeout: 30 * time.Second}
	cmds := commands()

	top := flag.NewFlagSet("wasmlet", flag.ContinueOnError)
	top.SetOutput(io.Discard)
	top.Usage = func() {}
	c.globalFlags(top)
	version := top.Bool("version", false, "print the version and exit")
	if err := top.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			topUsage(stdout, cmds)
			return exitOK
		}
		fmt.Fprintf(stderr, "wasmlet: %v\nRun 'wasmlet --help' for usage.\n", err)
		return exitUsage
	}
	if *version {
		fmt.Fprintln(stdout, versionString())
		return exitOK
	}
	args = top.Args()
	if len(args) == 0 {
		topUsage(stderr, cmds)
		return exitUsage
	}
	if args[0] == "help" {
		if len(args) == 1 {
			topUsage(stdout, cmds)
			return exitOK
		}
		args = append(args[1:], "--help")
	}
	cmd, rest := find(cmds, args)
	if cmd == nil {
		if sub := subcommands(cmds, args[0]); len(sub) > 0 {
			if len(args) > 1 && isHelp(args[1]) {
				groupUsage(stdout, args[0], sub)
				return exitOK
			}
			what := "a subcommand"
			if len(args) > 1 {
				what = fmt.Sprintf("a subcommand, not %q", args[1])
			}
			fmt.Fprintf(stderr, "wasmlet %s needs %s:\n", args[0], what)
			for _, s := range sub {
				fmt.Fprintf(stderr, "  wasmlet %-28s %s\n", s.name+" "+s.args, s.summary)
			}
			return exitUsage
		}
		fmt.Fprintf(stderr, "wasmlet: unknown command %q\nRun 'wasmlet --help' for the list of commands.\n", args[0])
		return exitUsage
	}
	return c.runCommand(cmd, rest)
}

// isHelp reports whether arg asks for help.
func isHelp(arg string) bool {
	switch arg {
	case "-h", "-help", "--help":
		return true
	}
	return false
}

// groupUsage describes a group of commands such as "module".
func groupUsage(w io.Writer, group string, sub []*command) {
	fmt.Fprintf(w, "Usage: wasmlet %s SUBCOMMAND [flags] [arguments]\n\nSubcommands:\n", group)
	for _, s := range sub {
		name := s.name
		if s.args != "" {
			name += " " + s.args
		}
		fmt.Fprintf(w, "  wasmlet %-32s %s\n", name, s.summary)
	}
	fmt.Fprintf(w, "\nRun 'wasmlet %s SUBCOMMAND --help' for a subcommand's flags and examples.\n\n%s", group, exitCodesHelp)
}

// find returns the command args start with, and the arguments after its
// name.
func find(cmds []*command, args []string) (*command, []string) {
	if len(args) >= 2 {
		for _, cmd := range cmds {
			if cmd.name == args[0]+" "+args[1] {
				return cmd, args[2:]
			}
		}
	}
	for _, cmd := range cmds {
		if cmd.name == args[0] || cmd.alias != "" && cmd.alias == args[0] {
			return cmd, args[1:]
		}
	}
	return nil, nil
}

// subcommands lists the commands of a group such as "module".
func subcommands(cmds []*command, word string) []*command {
	var out []*command
	for _, cmd := range cmds {
		if strings.HasPrefix(cmd.name, word+" ") {
			out = append(out, cmd)
		}
	}
	return out
}

func (c *cli) globalFlags(fs *flag.FlagSet) {
	fs.StringVar(&c.socket, "socket", c.socket,
		"the host API socket (default: host.api_socket of --config, else $"+socketEnv+", else "+config.Default().Host.APISocket+")")
	fs.StringVar(&c.config, "config", c.config, "a plugins.toml")
	fs.StringVar(&c.output, "o", c.output, "output format: table or json")
	fs.StringVar(&c.output, "output", c.output, "output format: table or json")
	fs.DurationVar(&c.timeout, "timeout", c.timeout, "how long to wait for the host to answer")
}

func (c *cli) runCommand(cmd *command, args []string) int {
	fs := flag.NewFlagSet("wasmlet "+cmd.name, flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	fs.Usage = func() {}
	c.globalFlags(fs)
	if cmd.flags != nil {
		cmd.flags(fs)
	}
	pos, err := parseInterleaved(fs, args)
	if errors.Is(err, flag.ErrHelp) {
		commandUsage(c.stdout, cmd, fs)
		return exitOK
	}
	if err == nil {
		err = checkArgs(cmd, pos)
	}
	if err == nil && c.output != "table" && c.output != "json" {
		err = usagef("-o %q: the output format is table or json", c.output)
	}
	if err != nil {
		fmt.Fprintf(c.stderr, "wasmlet %s: %v\nRun 'wasmlet %s --help' for usage.\n", cmd.name, err, cmd.name)
		return exitUsage
	}
	err = cmd.run(c, pos)
	if err == nil {
		return exitOK
	}
	var ue *usageError
	if errors.As(err, &ue) {
		fmt.Fprintf(c.stderr, "wasmlet %s: %v\nRun 'wasmlet %s --help' for usage.\n", cmd.name, err, cmd.name)
		return exitUsage
	}
	if msg := err.Error(); msg != "" {
		fmt.Fprintf(c.stderr, "wasmlet %s: %s\n", cmd.name, msg)
	}
	var ee *exitError
	if errors.As(err, &ee) {
		return ee.code
	}
	return exitFailed
}

func checkArgs(cmd *command, pos []string) error {
	lo, hi := cmd.nargs[0], cmd.nargs[1]
	switch {
	case len(pos) < lo && lo == hi:
		return usagef("needs %d argument(s), %s; got %d", lo, cmd.args, len(pos))
	case len(pos) < lo:
		return usagef("needs at least %d argument(s), %s; got %d", lo, cmd.args, len(pos))
	case hi >= 0 && len(pos) > hi:
		if hi == 0 {
			return usagef("takes no arguments; got %q", strings.Join(pos, " "))
		}
		return usagef("takes at most %d argument(s), %s; got %d (%q)", hi, cmd.args, len(pos), strings.Join(pos, " "))
	}
	return nil
}

// parseInterleaved parses flags wherever they are among the positional
// arguments ("release ns/pod/ctr -o json"); "--" ends the flags.
func parseInterleaved(fs *flag.FlagSet, args []string) ([]string, error) {
	var pos []string
	for {
		if err := fs.Parse(args); err != nil {
			return nil, err
		}
		rest := fs.Args()
		if consumed := len(args) - len(rest); consumed > 0 && args[consumed-1] == "--" {
			return append(pos, rest...), nil
		}
		if len(rest) == 0 {
			return pos, nil
		}
		pos = append(pos, rest[0])
		args = rest[1:]
	}
}

const exitCodesHelp = `Exit status:
  0  success
  1  the operation failed or was refused, or its input is invalid
  2  usage error: unknown command or flag, wrong or malformed arguments
  3  cannot reach the host: no API socket, nobody listening on it, or the
     connection was lost
  4  not found: no such module, resource, workload or pod
`

func topUsage(w io.Writer, cmds []*command) {
	fmt.Fprint(w, `wasmlet is a node agent that registers plugins and manages devices, like the
kubelet's plugin manager and device manager, with plugin-type handlers and
device sources as sandboxed WebAssembly modules.

Usage:
  wasmlet [global flags] COMMAND [flags] [arguments]
`)
	groups := []string{groupDaemon, groupClient, groupOffline}
	for _, g := range groups {
		fmt.Fprintf(w, "\n%s:\n", g)
		for _, cmd := range cmds {
			if cmd.group != g {
				continue
			}
			name := cmd.name
			if cmd.args != "" {
				name += " " + cmd.args
			}
			summary := cmd.summary
			if cmd.alias != "" {
				summary += " (alias: " + cmd.alias + ")"
			}
			if len(name) > 28 {
				fmt.Fprintf(w, "  %s\n  %-28s %s\n", name, "", summary)
			} else {
				fmt.Fprintf(w, "  %-28s %s\n", name, summary)
			}
		}
	}
	fmt.Fprintf(w, `
Global flags (also accepted after the command):
  --socket PATH       the host API socket; default: host.api_socket of
                      --config, else $%s, else %s
  --config FILE       the host's plugins.toml
  -o, --output FORMAT table (default) or json: every command but run
  --timeout DURATION  how long to wait for the host (default 30s)
  --version           print the version

%s
Examples:
  wasmlet run --config plugins.toml
  wasmlet --config plugins.toml devices
  wasmlet allocate --pod train --container main example.com/dev 1
  wasmlet module inspect build/modules/pcisource.wasm

Run 'wasmlet COMMAND --help' for a command's flags and examples.
`, socketEnv, config.Default().Host.APISocket, exitCodesHelp)
}

func commandUsage(w io.Writer, cmd *command, fs *flag.FlagSet) {
	fmt.Fprintf(w, "Usage: wasmlet %s [flags]", cmd.name)
	if cmd.args != "" {
		fmt.Fprintf(w, " %s", cmd.args)
	}
	fmt.Fprintf(w, "\n\n%s\n", strings.TrimSpace(cmd.help))
	if cmd.alias != "" {
		fmt.Fprintf(w, "\nAlias: wasmlet %s\n", cmd.alias)
	}
	global := map[string]bool{"socket": true, "config": true, "o": true, "output": true, "timeout": true}
	var own []*flag.Flag
	fs.VisitAll(func(f *flag.Flag) {
		if !global[f.Name] {
			own = append(own, f)
		}
	})
	sort.Slice(own, func(i, j int) bool { return own[i].Name < own[j].Name })
	if len(own) > 0 {
		fmt.Fprintf(w, "\nFlags:\n")
		for _, f := range own {
			name, usage := flag.UnquoteUsage(f)
			dash := "--"
			if len(f.Name) == 1 {
				dash = "-"
			}
			line := "  " + dash + f.Name
			if name != "" {
				line += " " + name
			}
			if def := f.DefValue; def != "" && def != "false" {
				usage += fmt.Sprintf(" (default %q)", def)
			}
			fmt.Fprintf(w, "%-24s %s\n", line, usage)
		}
	}
	fmt.Fprintf(w, "\nGlobal flags: --socket PATH, --config FILE, -o table|json, --timeout DURATION")
	if cmd.noOutput {
		fmt.Fprintf(w, " (-o does not apply)")
	}
	fmt.Fprintf(w, "\n\n%s", exitCodesHelp)
}

// versionString is the version the linker set in node.Version, with the
// toolchain and platform.
func versionString() string {
	v := node.Version
	if bi, ok := debug.ReadBuildInfo(); ok && v == "dev" && bi.Main.Version != "" && bi.Main.Version != "(devel)" {
		v = bi.Main.Version
	}
	return fmt.Sprintf("wasmlet %s (%s, %s/%s)", v, runtime.Version(), runtime.GOOS, runtime.GOARCH)
}
