//go:build linux

package schedbatch

import (
	"runtime"
	"testing"

	"golang.org/x/sys/unix"
)

func policyOf(t *testing.T, tid int) uint32 {
	t.Helper()
	attr, err := unix.SchedGetAttr(tid, 0)
	if err != nil {
		t.Fatalf("sched_getattr(%d): %v", tid, err)
	}
	return attr.Policy
}

// TestRun: fn runs on a SCHED_BATCH thread with the nice value it had, and
// the thread is SCHED_OTHER again afterwards, also after a panic.
func TestRun(t *testing.T) {
	if err := Probe(); err != nil {
		t.Fatalf("Probe: %v", err)
	}
	for _, panics := range []bool{false, true} {
		var tid int
		var policy uint32
		func() {
			defer func() {
				if r := recover(); (r != nil) != panics {
					t.Errorf("recover() = %v, want a panic: %v", r, panics)
				}
			}()
			Run(func() {
				tid = unix.Gettid()
				policy = policyOf(t, tid)
				if panics {
					panic("in fn")
				}
			})
		}()
		if policy != unix.SCHED_BATCH {
			t.Errorf("panics=%v: policy during Run = %d, want SCHED_BATCH (%d)", panics, policy, unix.SCHED_BATCH)
		}
		// The goroutine is no longer locked: the thread may run other
		// goroutines now, and must do so with the normal policy (SCHED_NORMAL, POSIX SCHED_OTHER).
		if got := policyOf(t, tid); got != unix.SCHED_NORMAL {
			t.Errorf("panics=%v: policy after Run = %d, want SCHED_NORMAL (%d)", panics, got, unix.SCHED_NORMAL)
		}
	}
}

// TestRunKeepsTheLockOfItsCaller: a goroutine that locked its thread before
// Run still has it locked afterwards (LockOSThread nests).
func TestRunKeepsTheLockOfItsCaller(t *testing.T) {
	done := make(chan int)
	go func() {
		runtime.LockOSThread()
		defer runtime.UnlockOSThread()
		before := unix.Gettid()
		Run(func() {})
		runtime.Gosched()
		if unix.Gettid() != before {
			done <- -1
			return
		}
		done <- before
	}()
	if tid := <-done; tid < 0 {
		t.Error("the caller's thread lock was lost by Run")
	}
}
