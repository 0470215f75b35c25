//go:build !wasip1

package main

import "time"

func now() int64 { return time.Now().UnixNano() }
