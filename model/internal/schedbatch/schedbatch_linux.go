package schedbatch

import (
	"fmt"
	"runtime"
	"unsafe"

	"golang.org/x/sys/unix"
)

// setPolicy sets the scheduling policy of thread tid, keeping its nice
// value (sched_setscheduler, unlike sched_setattr, takes it from the thread).
func setPolicy(tid, policy int) error {
	var param struct{ priority int32 } // must be 0 for SCHED_OTHER and SCHED_BATCH
	_, _, errno := unix.Syscall(unix.SYS_SCHED_SETSCHEDULER, uintptr(tid), uintptr(policy), uintptr(unsafe.Pointer(&param)))
	if errno != 0 {
		return errno
	}
	return nil
}

// Probe reports whether this process may switch its threads to SCHED_BATCH
// and back (a seccomp profile could forbid it). It tries once, on a thread
// of its own.
func Probe() error {
	errs := make(chan error, 1)
	go func() {
		// Exiting while locked ends the thread, whatever state it is in.
		runtime.LockOSThread()
		tid := unix.Gettid()
		if err := setPolicy(tid, unix.SCHED_BATCH); err != nil {
			errs <- fmt.Errorf("sched_setscheduler(SCHED_BATCH): %w", err)
			return
		}
		if err := setPolicy(tid, unix.SCHED_NORMAL); err != nil {
			errs <- fmt.Errorf("sched_setscheduler(SCHED_OTHER) after SCHED_BATCH: %w", err)
			return
		}
		errs <- nil
	}()
	return <-errs
}

// Run calls fn on the calling goroutine's thread switched to SCHED_BATCH,
// and switches it back afterwards (also when fn panics). If the switch is
// refused, fn runs all the same. A thread that could not be switched back
// is never handed back to the Go runtime: it stays locked to the calling
// goroutine and ends with it.
func Run(fn func()) {
	runtime.LockOSThread()
	tid := unix.Gettid()
	if setPolicy(tid, unix.SCHED_BATCH) != nil {
		runtime.UnlockOSThread()
		fn()
		return
	}
	defer func() {
		if setPolicy(tid, unix.SCHED_NORMAL) == nil {
			runtime.UnlockOSThread()
		}
	}()
	fn()
}
