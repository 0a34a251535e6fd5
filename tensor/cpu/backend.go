package cpu

import (
	"fmt"
	"runtime"
	"sync"
	"sync/atomic"

	"dlf/tensor"
)

// Backend is the pure-Go implementation of tensor.Backend. It is safe for concurrent use: ops keep no
// state between calls beyond the buffer pools, which are goroutine-safe.
type Backend struct {
	threads int
	poison  bool
	grain   int // least work per goroutine, minWork except in tests
	block   int // elements per reduction block, blockElems except in tests
	f32     pools[float32]
	f64     pools[float64]

	failed atomic.Bool
	errMu  sync.Mutex
	err    error
}

// Option configures New.
type Option func(*Backend)

// WithThreads sets how many goroutines one op may use; n ≤ 0 means runtime.GOMAXPROCS(0), the default.
// Results do not depend on it (see the package documentation on determinism).
func WithThreads(n int) Option {
	return func(b *Backend) {
		if n > 0 {
			b.threads = n
		}
	}
}

// WithPoison makes Alloc fill every new buffer with NaN, so reads of memory no op has written show up
// as NaN instead of stale numbers. It costs one pass over each allocation; use it in tests and when
// hunting a bug.
func WithPoison(on bool) Option {
	return func(b *Backend) { b.poison = on }
}

// New returns a CPU backend.
func New(opts ...Option) *Backend {
	b := &Backend{threads: runtime.GOMAXPROCS(0), grain: minWork, block: blockElems}
	for _, o := range opts {
		o(b)
	}
	return b
}

// Threads returns the most goroutines one op uses.
func (b *Backend) Threads() int { return b.threads }

// Name returns "cpu".
func (b *Backend) Name() string { return "cpu" }

// Supports reports true for Float32 and Float64.
func (b *Backend) Supports(dt tensor.DType) bool {
	return dt == tensor.Float32 || dt == tensor.Float64
}

// Sync returns Err: CPU ops complete before they return, so there is nothing to wait for.
func (b *Backend) Sync() error { return b.Err() }

// Err returns the first failure recorded (an impossible allocation, a foreign buffer), or nil. After a
// failure every op is a no-op, as on the CUDA backend, so a broken step cannot silently continue.
func (b *Backend) Err() error {
	if !b.failed.Load() {
		return nil
	}
	b.errMu.Lock()
	defer b.errMu.Unlock()
	return b.err
}

// fail records err unless an earlier failure is already recorded.
func (b *Backend) fail(err error) {
	b.errMu.Lock()
	defer b.errMu.Unlock()
	if b.err == nil {
		b.err = err
		b.failed.Store(true)
	}
}

// dead reports whether a failure has been recorded; ops then do nothing.
func (b *Backend) dead() bool { return b.failed.Load() }

// is32 reports whether t holds float32 elements; the ops dispatch on it to their generic kernels.
func is32(t *tensor.Tensor) bool { return t.DType() == tensor.Float32 }

// data returns the elements of t (nil for a nil tensor). The dtype has been checked by the caller's
// dispatch; a tensor without memory has been released, which is a use-after-free in the caller.
func data[T float](t *tensor.Tensor) []T {
	if t == nil {
		return nil
	}
	buf := t.Buffer()
	if buf == nil {
		panic(fmt.Sprintf("cpu: %v has no memory (used after Release?)", t))
	}
	return buf.(*buffer[T]).data
}

func upload[T float](dst []T, src any) {
	switch s := src.(type) {
	case []float32:
		convert(dst, s)
	case []float64:
		convert(dst, s)
	default:
		panic(fmt.Sprintf("cpu: Upload from %T, want []float32 or []float64", src))
	}
}

func download[T float](dst any, src []T) {
	switch d := dst.(type) {
	case []float32:
		convert(d, src)
	case []float64:
		convert(d, src)
	default:
		panic(fmt.Sprintf("cpu: Download into %T, want []float32 or []float64", dst))
	}
}

// convert copies src into dst element by element with a dtype conversion (a plain copy when the
// types agree).
func convert[D, S float](dst []D, src []S) {
	if d, ok := any(dst).([]S); ok {
		copy(d, src)
		return
	}
	src = src[:len(dst)]
	for i := range dst {
		dst[i] = D(src[i])
	}
}
