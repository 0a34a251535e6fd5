package cu

import (
	"errors"
	"runtime"
	"sync"
	"syscall"
	"testing"
)

func newTestWorker(t *testing.T) *worker {
	t.Helper()
	w, err := startWorker(nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { w.close() })
	return w
}

func TestWorkerRunsOnOneThread(t *testing.T) {
	w := newTestWorker(t)
	var wg sync.WaitGroup
	var mu sync.Mutex
	tids := map[int]int{}
	for g := 0; g < 8; g++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < 200; i++ {
				if err := w.do(func() error {
					mu.Lock()
					tids[syscall.Gettid()]++
					mu.Unlock()
					return nil
				}); err != nil {
					t.Error(err)
					return
				}
			}
		}()
	}
	wg.Wait()
	if len(tids) != 1 || tids[w.tid] != 1600 {
		t.Fatalf("jobs ran on threads %v, want all 1600 on worker thread %d", tids, w.tid)
	}
}

func TestWorkerReentrant(t *testing.T) {
	w := newTestWorker(t)
	depth := 0
	var inner func(n int) error
	inner = func(n int) error {
		depth++
		if n == 0 {
			return nil
		}
		return w.do(func() error { return inner(n - 1) })
	}
	if err := w.do(func() error { return inner(5) }); err != nil {
		t.Fatal(err)
	}
	if depth != 6 {
		t.Fatalf("nested depth %d, want 6", depth)
	}
}

func TestWorkerErrorsAndPanics(t *testing.T) {
	w := newTestWorker(t)
	sentinel := errors.New("job failed")
	if err := w.do(func() error { return sentinel }); err != sentinel {
		t.Fatalf("do returned %v, want the job's error", err)
	}
	func() {
		defer func() {
			if v := recover(); v != "boom" {
				t.Fatalf("recovered %v, want the job's panic value", v)
			}
		}()
		_ = w.do(func() error { panic("boom") })
		t.Fatal("panic was not re-raised")
	}()
	// The worker survives a panicking job.
	if err := w.do(func() error { return nil }); err != nil {
		t.Fatalf("worker dead after panic: %v", err)
	}
}

func TestWorkerClose(t *testing.T) {
	var setupTid, teardownTid int
	w, err := startWorker(func() error { setupTid = syscall.Gettid(); return nil },
		func() error { teardownTid = syscall.Gettid(); return nil })
	if err != nil {
		t.Fatal(err)
	}
	if err := w.do(func() error { return w.close() }); err == nil {
		t.Fatal("close from inside a job did not fail")
	}
	if err := w.close(); err != nil {
		t.Fatal(err)
	}
	if err := w.close(); err != nil { // idempotent
		t.Fatal(err)
	}
	if setupTid != w.tid || teardownTid != w.tid {
		t.Fatalf("setup on %d, teardown on %d, worker %d", setupTid, teardownTid, w.tid)
	}
	if err := w.do(func() error { return nil }); !errors.Is(err, ErrClosed) {
		t.Fatalf("do after close = %v, want ErrClosed", err)
	}
}

func TestWorkerSetupError(t *testing.T) {
	sentinel := errors.New("no context")
	if _, err := startWorker(func() error { return sentinel }, nil); err != sentinel {
		t.Fatalf("startWorker = %v, want the setup error", err)
	}
}

func BenchmarkWorkerDo(b *testing.B) {
	w, err := startWorker(nil, nil)
	if err != nil {
		b.Fatal(err)
	}
	defer w.close()
	fn := func() error { return nil }
	b.ReportAllocs()
	for b.Loop() {
		_ = w.do(fn)
	}
}

func TestWorkerGoexitClosesDevice(t *testing.T) {
	w, err := startWorker(nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := w.do(func() error { runtime.Goexit(); return nil }); !errors.Is(err, errGoexit) {
		t.Fatalf("do of a Goexit job = %v, want errGoexit", err)
	}
	if err := w.do(func() error { return nil }); !errors.Is(err, ErrClosed) {
		t.Fatalf("do after Goexit = %v, want ErrClosed", err)
	}
	if err := w.close(); err != nil {
		t.Fatal(err)
	}
}
