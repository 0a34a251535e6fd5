package cuda

import (
	"errors"
	"fmt"
	"math"
	"math/bits"
	"sync"

	"dlf/tensor"
	"dlf/tensor/cuda/cu"
)

// buffer is the backend's tensor.Buffer: one block of device memory. class is the block's size
// (its free list); n is the element count the tensor asked for.
type buffer struct {
	ptr   cu.DevicePtr
	class int64
	n     int
	// pool is the graph pool the block belongs to (graph.go), nil for the general cache.
	pool *graphPool
}

// graphPool holds the blocks a captured graph names: those handed out or freed during its capture.
// While the graph lives they never return to the general cache, so no eager op can be given memory
// that a replay writes (PyTorch's private graph pools play the same part).
type graphPool struct {
	free   map[int64][]cu.DevicePtr
	closed bool
}

// freeList is the pool's free lists (nil for no pool).
func (p *graphPool) freeList() map[int64][]cu.DevicePtr {
	if p == nil {
		return nil
	}
	return p.free
}

// Bytes is the size of the block in bytes (its size class).
func (b *buffer) Bytes() int { return int(b.class) }

// Size classes. Up to smallClassLimit, sizes round up to a multiple of classAlign; above it there are
// four classes per power of two (2^k·{1.25, 1.5, 1.75, 2}), which bounds the unused tail of a large
// block to 25% (pure powers of two would waste up to 50% of a big activation) while a training
// step's few hundred distinct shapes still land in few classes and get reused.
const (
	classAlign      = 512
	smallClassLimit = 1 << 20
)

// classSize returns the size class of an n-byte request (0 for n ≤ 0).
func classSize(n int64) int64 {
	if n <= 0 {
		return 0
	}
	if n <= smallClassLimit {
		return (n + classAlign - 1) &^ (classAlign - 1)
	}
	k := bits.Len64(uint64(n - 1)) // 2^(k-1) < n ≤ 2^k
	base := int64(1) << (k - 1)
	step := base / 4
	j := (n - base + step - 1) / step // 1..4
	return base + j*step
}

// MemStats are the allocator's counters, in bytes of size classes.
type MemStats struct {
	InUse  int64 // held by live tensors and scratch
	Cached int64 // on the free lists, ready for reuse
	Peak   int64 // the largest InUse seen
	// DriverAllocs counts cuMemAlloc calls, Reuses allocations served from a free list, Retries the
	// out-of-memory allocations retried after giving the cache back to the driver.
	DriverAllocs, Reuses, Retries int64
}

// allocator is a caching allocator for one stream. Its methods run on the device worker; mu only
// lets MemStats read the counters from other goroutines.
type allocator struct {
	mu    sync.Mutex
	free  map[int64][]cu.DevicePtr
	stats MemStats
	// wait blocks until the stream has finished all queued work: a cached block may still be named
	// by a queued kernel, so it is given back to the driver only after that (set by the backend).
	wait func() error
	// capture is the pool of the graph being captured, nil outside a capture.
	capture *graphPool
}

// get returns a block of at least n bytes (n > 0): a cached one of the same class when there is one,
// otherwise a new one from the driver. When the driver is out of memory, every cached block is
// returned to it and the allocation is retried once.
func (a *allocator) get(n int64) (*buffer, error) {
	cls := classSize(n)
	a.mu.Lock()
	pool := a.capture
	// During a capture: the graph's own blocks first, then the general cache (the block joins the
	// graph), never the driver (an allocation is not permitted while capturing).
	for _, free := range [2]map[int64][]cu.DevicePtr{pool.freeList(), a.free} {
		if l := free[cls]; len(l) > 0 {
			p := l[len(l)-1]
			free[cls] = l[:len(l)-1]
			a.stats.Cached -= cls
			a.take(cls)
			a.stats.Reuses++
			a.mu.Unlock()
			return &buffer{ptr: p, class: cls, pool: pool}, nil
		}
	}
	a.mu.Unlock()
	if pool != nil {
		return nil, fmt.Errorf("allocate %s during a graph capture: no cached block of class %s (run the captured work once eagerly first, so that the allocator holds every block it needs)", fmtBytes(n), fmtBytes(cls))
	}
	p, err := cu.MemAlloc(cls)
	if errors.Is(err, cu.ErrorOutOfMemory) {
		a.mu.Lock()
		a.stats.Retries++
		a.mu.Unlock()
		if rerr := a.releaseCached(); rerr != nil {
			return nil, errors.Join(err, rerr)
		}
		p, err = cu.MemAlloc(cls)
	}
	if err != nil {
		s := a.snapshot()
		msg := ""
		if free, total, ierr := cu.MemGetInfo(); ierr == nil {
			msg = fmt.Sprintf(", device free %s of %s", fmtBytes(free), fmtBytes(total))
		}
		return nil, fmt.Errorf("allocate %s (class %s; this backend holds %s in use, peak %s%s): %w",
			fmtBytes(n), fmtBytes(cls), fmtBytes(s.InUse), fmtBytes(s.Peak), msg, err)
	}
	a.mu.Lock()
	a.stats.DriverAllocs++
	a.take(cls)
	a.mu.Unlock()
	return &buffer{ptr: p, class: cls}, nil
}

// take accounts cls bytes as in use; a.mu is held.
func (a *allocator) take(cls int64) {
	a.stats.InUse += cls
	a.stats.Peak = max(a.stats.Peak, a.stats.InUse)
}

// put puts b on its free list. Later work on the same stream runs after every op queued so far, so
// the block can be handed out again at once.
func (a *allocator) put(b *buffer) {
	if b.class == 0 {
		return
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	a.stats.InUse -= b.class
	a.stats.Cached += b.class
	pool := b.pool
	if pool == nil {
		pool = a.capture // a block freed during a capture may be named by the graph
	}
	if pool != nil && !pool.closed {
		if pool.free == nil {
			pool.free = map[int64][]cu.DevicePtr{}
		}
		pool.free[b.class] = append(pool.free[b.class], b.ptr)
		return
	}
	if a.free == nil {
		a.free = map[int64][]cu.DevicePtr{}
	}
	a.free[b.class] = append(a.free[b.class], b.ptr)
}

// closePool returns a graph's free blocks to the general cache; its blocks still held by live
// tensors go there when those are freed.
func (a *allocator) closePool(p *graphPool) {
	a.mu.Lock()
	defer a.mu.Unlock()
	p.closed = true
	if a.free == nil {
		a.free = map[int64][]cu.DevicePtr{}
	}
	for cls, l := range p.free {
		a.free[cls] = append(a.free[cls], l...)
	}
	p.free = nil
}

// releaseCached gives every cached block back to the driver, after the stream has drained.
func (a *allocator) releaseCached() error {
	if a.wait != nil {
		if err := a.wait(); err != nil {
			return err
		}
	}
	a.mu.Lock()
	free := a.free
	a.free = nil
	a.stats.Cached = 0
	a.mu.Unlock()
	var errs []error
	for _, l := range free {
		for _, p := range l {
			if err := cu.MemFree(p); err != nil {
				errs = append(errs, err)
			}
		}
	}
	return errors.Join(errs...)
}

func (a *allocator) snapshot() MemStats {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.stats
}

// fmtBytes formats a byte count for messages.
func fmtBytes(n int64) string {
	switch {
	case n >= 1<<30:
		return fmt.Sprintf("%.2f GiB", float64(n)/(1<<30))
	case n >= 1<<20:
		return fmt.Sprintf("%.1f MiB", float64(n)/(1<<20))
	case n >= 1<<10:
		return fmt.Sprintf("%.1f KiB", float64(n)/(1<<10))
	}
	return fmt.Sprintf("%d B", n)
}

// MemStats returns the allocator's counters. Frees queued since the last op are not yet counted.
func (b *Backend) MemStats() MemStats { return b.alloc.snapshot() }

// EmptyCache gives every cached block back to the driver (e.g. before handing memory to another
// library). Blocks of live tensors are untouched.
func (b *Backend) EmptyCache() error {
	var err error
	b.run("EmptyCache", func() error {
		err = b.alloc.releaseCached()
		return err
	})
	if err != nil {
		return err
	}
	return b.Err()
}

// Alloc returns a buffer for n float32 elements, or nil after recording the failure.
func (b *Backend) Alloc(dt tensor.DType, n int) tensor.Buffer {
	if dt != tensor.Float32 {
		panic(fmt.Sprintf("cuda: Alloc of %v: the CUDA backend supports float32 only", dt))
	}
	if n < 0 {
		panic(fmt.Sprintf("cuda: Alloc of %d elements", n))
	}
	if n == 0 {
		return &buffer{}
	}
	var buf *buffer
	b.run("Alloc", func() error {
		var err error
		if buf, err = b.alloc.get(int64(n) * 4); err != nil {
			return err
		}
		buf.n = n
		if b.poison {
			return cu.MemsetD32Async(buf.ptr, nanBits, int64(n), b.stream)
		}
		return nil
	})
	if buf == nil {
		return nil // the failure is recorded; a typed nil would look like a buffer
	}
	return buf
}

// Free queues buf for reuse. It may be called from any goroutine, including the GC's cleanup; the
// block goes back to its free list at the next op.
func (b *Backend) Free(buf tensor.Buffer) {
	bb, ok := buf.(*buffer)
	if !ok || bb == nil {
		panic(fmt.Sprintf("cuda: Free of a %T, not a CUDA buffer", buf))
	}
	if bb.class == 0 {
		return
	}
	b.pendingMu.Lock()
	b.pending = append(b.pending, bb)
	b.pendingMu.Unlock()
}

// drainFrees moves queued frees to the free lists; it runs on the worker.
func (b *Backend) drainFrees() {
	b.pendingMu.Lock()
	p := b.pending
	b.pending = nil
	b.pendingMu.Unlock()
	for _, bb := range p {
		b.alloc.put(bb)
	}
}

// scratch returns a temporary device block of n bytes for partial sums; give it back with
// b.alloc.put once the kernels using it are queued (stream order keeps it alive long enough).
// Call on the worker.
func (b *Backend) scratch(n int64) (*buffer, error) {
	if n <= 0 {
		return &buffer{}, nil
	}
	return b.alloc.get(n)
}

// Upload copies src ([]float32, or []float64 converted on the host) into dst in stream order.
func (b *Backend) Upload(dst *tensor.Tensor, src any) {
	b.run("Upload", func() error {
		p := dptr(dst)
		switch s := src.(type) {
		case []float32:
			return cu.MemcpyHtoDAsync(p, s, b.stream)
		case []float64:
			tmp := make([]float32, len(s))
			for i, v := range s {
				tmp[i] = float32(v)
			}
			// From pageable memory the driver stages the data before returning, so tmp may go.
			return cu.MemcpyHtoDAsync(p, tmp, b.stream)
		}
		panic(fmt.Sprintf("cuda: Upload of %T", src))
	})
}

// Download copies src into dst ([]float32, or []float64 converted on the host) after all queued
// work, and synchronises the stream so that kernel faults surface here. After a failure dst is
// filled with NaN, so stale numbers are never mistaken for results.
func (b *Backend) Download(dst any, src *tensor.Tensor) {
	reads.Add(1)
	b.run("Download", func() error {
		p := dptr(src)
		switch d := dst.(type) {
		case []float32:
			if err := cu.MemcpyDtoHAsync(d, p, b.stream); err != nil {
				return err
			}
			return cu.StreamSynchronize(b.stream)
		case []float64:
			tmp := make([]float32, len(d))
			if err := cu.MemcpyDtoHAsync(tmp, p, b.stream); err != nil {
				return err
			}
			if err := cu.StreamSynchronize(b.stream); err != nil {
				return err
			}
			for i, v := range tmp {
				d[i] = float64(v)
			}
			return nil
		}
		panic(fmt.Sprintf("cuda: Download into %T", dst))
	})
	if b.failed.Load() {
		switch d := dst.(type) {
		case []float32:
			for i := range d {
				d[i] = float32(math.NaN())
			}
		case []float64:
			for i := range d {
				d[i] = math.NaN()
			}
		}
	}
}
