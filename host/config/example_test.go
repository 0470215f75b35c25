package config_test

import (
	"errors"
	"fmt"

	"github.com/wasmlet/wasmlet/host/config"
)

func ExampleParse() {
	doc := `
[host]
log_level = "verbose"

[sandbox]
memory = "64M"
timeout = "2s"
pool_size = 0
`
	_, err := config.Parse([]byte(doc), "plugins.toml")
	fmt.Println(err)

	var errs config.Errors
	if errors.As(err, &errs) {
		fmt.Printf("%d mistakes, the first at line %d, column %d\n", len(errs), errs[0].Line, errs[0].Column)
	}
	// Output:
	// plugins.toml:3:13: host.log_level: invalid value "verbose", expected "trace", "debug", "info", "warn" or "error"
	// plugins.toml:6:10: sandbox.memory: invalid size "64M", expected a size in bytes, such as 67108864 or "64MiB" (units B, KiB, MiB, GiB, KB, MB, GB)
	// plugins.toml:8:13: sandbox.pool_size: 0 is out of range, expected an integer from 1 to 2147483647
	// 3 mistakes, the first at line 3, column 13
}

func ExampleConfig_ModuleOptions() {
	doc := `
[sandbox]
memory = "32MiB"
timeout = "1s"
`
	c, err := config.Parse([]byte(doc), "/etc/wasmlet/plugins.toml")
	if err != nil {
		panic(err)
	}
	opts := c.ModuleOptions("pcisource") // no [modules.pcisource]: the [sandbox] defaults
	fmt.Println(opts.Name, opts.MemoryLimit, opts.CallTimeout, opts.PoolSize)
	fmt.Println(c.Host.ModuleDir)
	// Output:
	// pcisource 33554432 1s 2
	// /var/lib/wasmlet/modules
}
