// Package schedbatch runs CPU-bound work on a thread that the kernel
// schedules with its SCHED_BATCH policy for the duration of the work.
//
// Why: the model server's decoding and inference (in C, through cgo) keep
// the CPUs busy, and with equal scheduling the threads that read requests
// and write answers wait behind them for a slice. Requests then queue in
// the Go scheduler's run queues, in no particular order, instead of in the
// server's first-come-first-served worker queue: at 32 clients on 2 cores
// the 99th percentile was 3.5 times the median. A SCHED_BATCH thread does
// not preempt others when it wakes and is the one preempted when a normal
// thread wakes, so network work runs first and compute fills the rest.
// Same weight, same share of CPU: nothing starves.
//
// Switching between SCHED_OTHER and SCHED_BATCH needs no privilege (unlike
// lowering and restoring a nice value), so it works as the image's user
// 65532 with every capability dropped.
package schedbatch
