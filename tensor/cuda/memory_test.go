package cuda

import (
	"errors"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"dlf/tensor"
	"dlf/tensor/cuda/cu"
)

// TestClassSize checks the size classes without a GPU: every class holds its request, is a multiple
// of 512 bytes, wastes at most 25% above 1 MiB, and is monotone.
func TestClassSize(t *testing.T) {
	if classSize(0) != 0 || classSize(-5) != 0 {
		t.Fatalf("classSize of an empty request: %d, %d", classSize(0), classSize(-5))
	}
	prev := int64(0)
	for _, n := range []int64{1, 4, 511, 512, 513, 4096, 1<<20 - 1, 1 << 20, 1<<20 + 1, 3 << 20, 5<<20 + 7, 1 << 30,
		1<<30 + 1, 48 << 30} {
		c := classSize(n)
		switch {
		case c < n:
			t.Errorf("classSize(%d) = %d, smaller than the request", n, c)
		case c%classAlign != 0:
			t.Errorf("classSize(%d) = %d, not a multiple of %d", n, c, classAlign)
		case n > smallClassLimit && float64(c) > 1.25*float64(n):
			t.Errorf("classSize(%d) = %d wastes more than 25%%", n, c)
		case n <= smallClassLimit && c-n >= classAlign:
			t.Errorf("classSize(%d) = %d wastes a whole alignment unit", n, c)
		case c < prev:
			t.Errorf("classSize(%d) = %d, below the class of a smaller request (%d)", n, c, prev)
		}
		prev = c
		if classSize(c) != c {
			t.Errorf("classSize is not idempotent: classSize(%d) = %d", c, classSize(c))
		}
	}
}

func TestPartitions(t *testing.T) {
	for _, c := range []struct{ r, l int64 }{{1, 0}, {1, 1}, {1, 1 << 30}, {32, 3072}, {65536, 7}, {3, 1001}} {
		parts, chunk := rowParts(c.r, c.l)
		if parts < 1 || parts > maxGridY || chunk%4 != 0 || int64(parts)*chunk < c.l || int64(parts-1)*chunk >= max(c.l, 1) {
			t.Errorf("rowParts(%d, %d) = %d parts of %d", c.r, c.l, parts, chunk)
		}
	}
	for _, c := range []struct {
		r int64
		c int
	}{{0, 1}, {8192, 12}, {8192, 512}, {1, 300}, {1 << 24, 1}, {32, 6144}} {
		tiles, parts, chunk := colParts(c.r, c.c)
		w := min(c.c, threads)
		if tiles*w < c.c || (tiles-1)*w >= c.c || parts < 1 || parts > maxGridY || int64(parts)*chunk < c.r ||
			int64(parts-1)*chunk >= max(c.r, 1) {
			t.Errorf("colParts(%d, %d) = %d tiles, %d parts of %d", c.r, c.c, tiles, parts, chunk)
		}
	}
	for _, c := range []struct{ k, blocks int64 }{{0, 1}, {15, 1}, {8192, 1}, {1027, 9}, {4608, 256}, {1 << 20, 1}} {
		s, chunk := splitK(c.k, c.blocks)
		if s < 1 || s > maxSplits || chunk%16 != 0 || int64(s)*chunk < c.k || (c.k > 0 && int64(s-1)*chunk >= c.k) {
			t.Errorf("splitK(%d, %d) = %d slices of %d", c.k, c.blocks, s, chunk)
		}
	}
}

func TestAllocatorReuse(t *testing.T) {
	be := newTestBackend(t)
	s0 := be.MemStats()
	a := tensor.New(be, tensor.Float32, 1000)
	s1 := be.MemStats()
	if got := s1.InUse - s0.InUse; got != classSize(4000) {
		t.Fatalf("InUse grew by %d for a 4000-byte tensor, want its class %d", got, classSize(4000))
	}
	a.Release()
	tensor.Fill(tensor.New(be, tensor.Float32, 1), 0) // any op applies the queued free
	b := tensor.New(be, tensor.Float32, 900)          // same class: must reuse a's block
	s2 := be.MemStats()
	if s2.Reuses <= s1.Reuses || s2.DriverAllocs != s1.DriverAllocs+1 {
		t.Fatalf("after free and realloc of the same class: %+v (before %+v), want a reuse and no new driver allocation", s2, s1)
	}
	if s2.Peak < s2.InUse {
		t.Fatalf("Peak %d below InUse %d", s2.Peak, s2.InUse)
	}
	b.Release()
	if err := be.Sync(); err != nil {
		t.Fatal(err)
	}
}

// TestFreeAnyGoroutine frees from many goroutines at once and through the GC's cleanups, then checks
// that the blocks reach the free lists at the next op.
func TestFreeAnyGoroutine(t *testing.T) {
	be := newTestBackend(t)
	const n = 64
	ts := make([]*tensor.Tensor, n)
	for i := range ts {
		ts[i] = tensor.New(be, tensor.Float32, 4096)
	}
	s0 := be.MemStats()
	var wg sync.WaitGroup
	for i := range ts {
		wg.Add(1)
		go func(t *tensor.Tensor) { defer wg.Done(); t.Release() }(ts[i])
	}
	wg.Wait()
	func() {
		for i := 0; i < n; i++ {
			_ = tensor.New(be, tensor.Float32, 4096) // dropped: the GC cleanup frees them
		}
	}()
	// The dropped tensors reused the released blocks, so the cache grows by n blocks only once the
	// GC's cleanups have freed them. Cleanups run on a runtime goroutine after a collection: poll.
	want := s0.Cached + n*classSize(4*4096)
	var s1 MemStats
	for try := 0; try < 200; try++ {
		runtime.GC()
		tensor.Fill(tensor.New(be, tensor.Float32, 1), 0) // any op applies the queued frees
		if s1 = be.MemStats(); s1.Cached >= want {
			break
		}
		time.Sleep(10 * time.Millisecond)
	}
	if s1.Cached < want {
		t.Fatalf("cached %d bytes after %d releases and %d collected tensors, want at least %d", s1.Cached, n, n, want)
	}
	if err := be.Sync(); err != nil {
		t.Fatal(err)
	}
}

// TestOOMRetry fills most of the device with one cached block, then asks for a block of another
// class that only fits once the cache is given back: the allocator must retry after releasing it.
func TestOOMRetry(t *testing.T) {
	be := newTestBackend(t, WithPoison(false))
	var free int64
	if err := be.Device().Do(func() error {
		var err error
		free, _, err = cu.MemGetInfo()
		return err
	}); err != nil {
		t.Fatal(err)
	}
	a := tensor.New(be, tensor.Float32, int(free/4*55/100))
	if err := be.Err(); err != nil {
		t.Fatalf("allocating 55%% of the free memory: %v", err)
	}
	a.Release()
	b := tensor.New(be, tensor.Float32, int(free/4*50/100))
	if err := be.Sync(); err != nil {
		t.Fatalf("allocation that fits only after the cache is released: %v", err)
	}
	if s := be.MemStats(); s.Retries < 1 {
		t.Fatalf("stats %+v: want an out-of-memory retry", s)
	}
	b.Release()
}

// TestOOMIsStickyAndClear checks the error model: an impossible allocation returns an inert tensor,
// Err and Sync report it with the sizes, later ops do nothing, and Download fills NaN.
func TestOOMIsStickyAndClear(t *testing.T) {
	be := newTestBackend(t, WithPoison(false))
	ok := tensor.FromFloat32(be, []float32{1, 2, 3}, 3)
	huge := tensor.New(be, tensor.Float32, int(be.Device().TotalMem()/2)) // 2× the device
	if huge.Buffer() != nil {
		t.Fatal("an allocation of twice the device memory returned a buffer")
	}
	err := be.Err()
	if err == nil || !errors.Is(err, cu.ErrorOutOfMemory) || !strings.Contains(err.Error(), "Alloc") {
		t.Fatalf("Err after an impossible allocation = %v, want CUDA_ERROR_OUT_OF_MEMORY naming Alloc", err)
	}
	if IsFatal(err) {
		t.Fatalf("out of memory reported as fatal: %v", err)
	}
	tensor.Fill(ok, 7) // must be a no-op
	if got := be.Sync(); got != err {
		t.Fatalf("Sync = %v, want the first error %v", got, err)
	}
	out := []float32{0, 0, 0}
	ok.Download(out)
	for _, v := range out {
		if v == v {
			t.Fatalf("Download after a failure gave %v, want NaN", out)
		}
	}
}
