package cu

import (
	"errors"
	"fmt"
	"runtime"
	"sync"
	"syscall"
)

// ErrClosed reports a Device.Do on a closed device.
var ErrClosed = errors.New("cu: device is closed")

// job is one function sent to a worker and the way its outcome comes back.
type job struct {
	fn       func() error
	err      error
	panicked bool
	panicVal any
	done     chan struct{} // buffered(1), reused through jobPool
}

var jobPool = sync.Pool{New: func() any { return &job{done: make(chan struct{}, 1)} }}

// worker is a goroutine locked to one OS thread that runs jobs one at a time.
// The CUDA context is per thread, so running every call of one device on one
// locked thread keeps its context current without a cuCtxSetCurrent per call.
//
// Re-entrancy is detected by OS thread id, not goroutine id: while a
// goroutine is locked to a thread (runtime.LockOSThread), no other goroutine
// runs on that thread. So a Do whose caller is on the worker's thread is,
// necessarily, a call made by a job from inside the worker, and runs inline
// instead of waiting for itself. A caller on any other thread cannot observe
// the worker's thread id even if it is rescheduled right after the check.
type worker struct {
	tid  int // OS thread id of the locked worker thread
	jobs chan *job
	quit chan struct{}
	done chan struct{}
	once sync.Once
}

// startWorker starts the goroutine, locks it, runs setup on it and returns
// once setup has finished; a setup error stops the worker and is returned.
// teardown runs on the worker thread after the last job.
func startWorker(setup, teardown func() error) (*worker, error) {
	w := &worker{jobs: make(chan *job), quit: make(chan struct{}), done: make(chan struct{})}
	ready := make(chan error, 1)
	go w.loop(setup, teardown, ready)
	if err := <-ready; err != nil {
		<-w.done
		return nil, err
	}
	return w, nil
}

// loop is the worker goroutine body.
func (w *worker) loop(setup, teardown func() error, ready chan<- error) {
	defer close(w.done)
	runtime.LockOSThread()
	// Deliberately no UnlockOSThread: a goroutine that exits while locked
	// takes its thread down with it, so no other goroutine ever inherits a
	// thread with this device's context current.
	w.tid = syscall.Gettid()
	if setup != nil {
		if err := setup(); err != nil {
			ready <- err
			return
		}
	}
	ready <- nil
	for {
		select {
		case j := <-w.jobs:
			w.run(j)
		case <-w.quit:
			if teardown != nil {
				_ = teardown()
			}
			return
		}
	}
}

// errGoexit is the job error when fn ended its goroutine (runtime.Goexit,
// which is what t.FailNow/t.Fatal do): the worker cannot survive that.
var errGoexit = errors.New("cu: a Device.Do job called runtime.Goexit (t.Fatal inside Do?); the device worker has stopped and the device is closed")

// run executes one job, turning a panic into a value re-raised in Do's
// caller so that the worker survives and the panic surfaces where the
// failing call was made. A job that calls runtime.Goexit takes the worker
// goroutine down; the device is then marked closed so that later Do calls
// fail with ErrClosed instead of waiting forever.
func (w *worker) run(j *job) {
	finished := false
	defer func() {
		if !finished {
			if v := recover(); v != nil {
				j.panicked, j.panicVal = true, v
			} else {
				j.err = errGoexit
				w.once.Do(func() { close(w.quit) })
			}
		}
		j.done <- struct{}{}
	}()
	j.err = j.fn()
	finished = true
}

// onWorker reports whether the caller is the worker goroutine itself.
func (w *worker) onWorker() bool { return syscall.Gettid() == w.tid }

// do runs fn on the worker thread and returns its error. Called from inside
// a job, it runs fn inline (see the type comment). A panic in fn is re-raised
// in the caller with the same value.
func (w *worker) do(fn func() error) error {
	if w.onWorker() {
		return fn()
	}
	counts.hops.Add(1)
	j := jobPool.Get().(*job)
	j.fn = fn
	// jobs is unbuffered: a send succeeds only when the worker takes the
	// job, so a job is never stranded by a concurrent close.
	select {
	case w.jobs <- j:
	case <-w.quit:
		j.fn = nil
		jobPool.Put(j)
		return ErrClosed
	}
	<-j.done
	err, panicked, pv := j.err, j.panicked, j.panicVal
	*j = job{done: j.done}
	jobPool.Put(j)
	if panicked {
		panic(pv)
	}
	return err
}

// close stops the worker after the job in progress, runs teardown, and
// waits for the goroutine to exit. It must not be called from a job.
func (w *worker) close() error {
	if w.onWorker() {
		return fmt.Errorf("cu: Device.Close called from inside Device.Do on the same device")
	}
	w.once.Do(func() { close(w.quit) })
	<-w.done
	return nil
}

// Worker is a goroutine locked to its own OS thread, for driver calls that must not wait behind a
// Device's worker: a collective's proxy thread, for instance, which queues peer copies and
// reduction kernels on its own streams while the device worker is busy queuing a backward pass
// (a context may be current on several threads at once; CUDA Driver API reference, "Context
// Management": cuCtxSetCurrent binds a context to the calling CPU thread). The thread starts with no
// current context; a job makes one current with CtxSetCurrent, and the choice stays for the next
// jobs. Do and Close behave as Device's.
type Worker struct{ w *worker }

// NewWorker starts a Worker. The driver library must load (it is needed to clear the thread's
// context on Close).
func NewWorker() (*Worker, error) {
	d, err := lib()
	if err != nil {
		return nil, err
	}
	teardown := func() error {
		_ = call(d.cuCtxSetCurrent, 0)
		return nil
	}
	w, err := startWorker(nil, teardown)
	if err != nil {
		return nil, err
	}
	return &Worker{w: w}, nil
}

// Do runs fn on the worker's thread (inline when called from one of its jobs) and returns fn's
// error; a panic in fn is re-raised in the caller.
func (w *Worker) Do(fn func() error) error { return w.w.do(fn) }

// Close stops the worker after the job in progress; later Do calls return ErrClosed.
func (w *Worker) Close() error { return w.w.close() }
