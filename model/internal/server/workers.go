package server

import (
	"context"
	"runtime"
	"sync"

	"github.com/planets-mlops/deploy/model/internal/classifier"
)

// A job is one request's decoding and inference, handed to a worker.
type job struct {
	ctx   context.Context
	model *loaded
	data  []byte
	done  chan struct{} // closed once pred and err are set
	pred  classifier.Prediction
	err   error
}

// workerPool runs the CPU-bound part of requests (decoding and inference,
// in C through cgo) on Limits.Workers goroutines, each locked to an OS
// thread of its own, taking jobs from one first-come-first-served queue.
//
// Why not a semaphore each request's goroutine takes to compute itself (the
// design before): under saturation (32 clients on 2 cores) requests then
// waited in the Go scheduler's run queues, in no particular order, behind
// goroutines readied onto Ps whose threads were deep in a C call; the 99th
// percentile was 3.7 times the median (12.5 ms). With the queue, a worker
// takes the next job without a hand-off, connection goroutines only read
// and write, and a worker's locked thread never carries them into a C call:
// p99 about 8 ms at the same throughput (README, Benchmark).
type workerPool struct {
	jobs    chan *job
	running sync.WaitGroup
	close   sync.Once
}

// startWorkers starts limits.Workers workers, each locked to an OS thread
// of its own for good (the thread exits with it).
func (s *Server) startWorkers() {
	s.pool.jobs = make(chan *job, s.limits.MaxInFlight)
	for range s.limits.Workers {
		s.pool.running.Go(func() {
			runtime.LockOSThread() // never unlocked
			var input []float32    // the model's input, reused
			for j := range s.pool.jobs {
				if n := j.model.input.Len(); len(input) != n {
					input = make([]float32, n)
				}
				j.pred, j.err = s.predict(j.ctx, j.model, j.data, input)
				close(j.done)
			}
		})
	}
}

// compute has a worker decode data and run model on it, and waits for the
// result. The caller holds an inFlight token, so the queue has room.
func (s *Server) compute(ctx context.Context, model *loaded, data []byte) (classifier.Prediction, error) {
	j := &job{ctx: ctx, model: model, data: data, done: make(chan struct{})}
	s.pool.jobs <- j
	// Waited for even when ctx is done: the worker may be reading data.
	// It gives up as soon as it sees ctx done.
	<-j.done
	return j.pred, j.err
}

// Close stops the workers. Call it once no request is being served: Serve
// does after a clean shutdown; a server used only through Handler must be
// closed by its owner.
func (s *Server) Close() {
	s.pool.close.Do(func() {
		close(s.pool.jobs)
		s.pool.running.Wait()
	})
}
