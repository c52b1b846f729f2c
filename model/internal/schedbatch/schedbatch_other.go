//go:build !linux

package schedbatch

import "errors"

// Probe reports that SCHED_BATCH is Linux's.
func Probe() error { return errors.New("SCHED_BATCH is a Linux scheduling policy") }

// Run calls fn.
func Run(fn func()) { fn() }
