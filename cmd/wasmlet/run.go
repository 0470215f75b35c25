package main

import (
	"context"
	"errors"
	"flag"
	"os"
	"os/signal"
	"syscall"

	"github.com/hashicorp/go-hclog"

	"github.com/wasmlet/wasmlet/host/config"
	"github.com/wasmlet/wasmlet/host/node"
)

func runCmd() *command {
	var logLevel string
	return &command{
		name: "run", group: groupDaemon, noOutput: true,
		summary: "start the host (the daemon)",
		help: `Start the wasmlet host on the configuration in --config (built-in defaults
without it): load the modules in the module directory, follow the plugin
registry and serve kubelet.sock, the host API and the metrics. It runs
until SIGINT or SIGTERM, then shuts down cleanly and removes the sockets
it made: module calls still running after a short grace period are
stopped, whatever the module is doing. A second signal ends it at once.
Logs go to stderr, in the format and at the level the configuration says.

It refuses to start on an invalid configuration (every problem is listed,
as by 'wasmlet config validate') and on a damaged checkpoint (the message
says which file, and how to inspect it or move it aside).

Examples:
  wasmlet run --config plugins.toml
  wasmlet run --config /etc/wasmlet/plugins.toml --log-level debug`,
		flags: func(fs *flag.FlagSet) {
			fs.StringVar(&logLevel, "log-level", "", "override host.log_level: `LEVEL` is trace, debug, info, warn or error")
		},
		run: func(c *cli, _ []string) error {
			cfg := config.Default()
			if c.config != "" {
				var err error
				if cfg, err = config.Load(c.config); err != nil {
					var errs config.Errors
					if errors.As(err, &errs) {
						for _, e := range errs {
							c.stderr.Write([]byte(e.Error() + "\n"))
						}
						return failf(exitFailed, "%s is not valid: %s; not starting", c.config, plural(len(errs), "problem", "problems"))
					}
					return failf(exitFailed, "%v", err)
				}
			}
			level := cfg.Host.LogLevel
			if logLevel != "" {
				if level = hclog.LevelFromString(logLevel); level == hclog.NoLevel {
					return usagef("--log-level %q: want trace, debug, info, warn or error", logLevel)
				}
			}
			log := hclog.New(&hclog.LoggerOptions{
				Name:       "wasmlet",
				Level:      level,
				JSONFormat: cfg.Host.LogFormat == config.LogJSON,
				Output:     c.stderr,
			})
			ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
			defer stop()
			// After the first signal, the default action again: a second one
			// ends the process at once.
			go func() { <-ctx.Done(); stop() }()
			// The daemon itself: host/node assembles and runs every part of the
			// host (it serves the host API with api.Serve over api.NewBackend).
			if err := node.Run(ctx, cfg, log); err != nil {
				return failf(exitFailed, "%v", err)
			}
			return nil
		},
	}
}
