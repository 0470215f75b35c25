// Command emptyreactor is the smallest Go wasip1 reactor: no SDK, no exports
// of its own. The size test measures the SDK's cost against it.
package main

func main() {}
