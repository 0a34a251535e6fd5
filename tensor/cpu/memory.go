package cpu

import (
	"fmt"
	"math"
	"math/bits"
	"sync"

	"dlf/tensor"
)

// float is the element constraint of the generic kernels.
type float interface {
	float32 | float64
}

// buffer is the CPU backend's tensor.Buffer: a Go slice of the tensor's elements. len(data) is the
// tensor's element count; cap(data) is the size class it was carved from, so the slice can go back
// to the matching pool on Free.
type buffer[T float] struct {
	data []T
}

// Bytes is the size of the allocation (the whole size class) in bytes.
func (b *buffer[T]) Bytes() int {
	var zero T
	return cap(b.data) * sizeOf(zero)
}

func sizeOf[T float](T) int {
	var zero T
	if _, ok := any(zero).(float32); ok {
		return 4
	}
	return 8
}

// Size classes. A training step allocates and frees the same few hundred shapes over and over, so
// buffers are recycled through one sync.Pool per size class instead of going back to the garbage
// collector. Classes are 16 elements and then four per power of two (2^k·{1.25, 1.5, 1.75, 2}), which
// bounds the wasted tail of a buffer to 25% while keeping the number of pools small (≤ 240).
const (
	minClassElems = 16
	numClasses    = 1 + 59*4
)

// sizeClass returns the pool index and the capacity for a buffer of n elements.
func sizeClass(n int) (class, capacity int) {
	if n <= minClassElems {
		return 0, minClassElems
	}
	k := bits.Len(uint(n - 1)) // 2^(k-1) < n ≤ 2^k, k ≥ 5
	base := 1 << (k - 1)
	step := base / 4
	j := (n - base + step - 1) / step // 1..4
	return 1 + (k-5)*4 + (j - 1), base + j*step
}

// pools recycles buffers of one element type.
type pools[T float] struct {
	class [numClasses]sync.Pool // of *buffer[T] with len(data) == cap(data)
}

// get returns a buffer of n elements, recycled when one of its class is free.
func (p *pools[T]) get(n int) *buffer[T] {
	class, capacity := sizeClass(n)
	b, _ := p.class[class].Get().(*buffer[T])
	if b == nil {
		b = &buffer[T]{data: make([]T, capacity)}
	}
	b.data = b.data[:n]
	return b
}

// put gives b back to its class.
func (p *pools[T]) put(b *buffer[T]) {
	class, capacity := sizeClass(cap(b.data))
	if capacity != cap(b.data) {
		// Not one of ours (cannot happen through Alloc); let the GC have it.
		return
	}
	b.data = b.data[:capacity]
	p.class[class].Put(b)
}

// maxElems is the largest element count Alloc accepts for an element of size bytes: anything larger
// cannot be addressed and would make make() panic.
func maxElems(size int) int { return math.MaxInt / 2 / size }

// Alloc returns a buffer of n elements. Recycled memory holds stale values; with WithPoison every
// element is NaN so that a kernel that forgets to write an output is caught. On an unsupported dtype
// or an impossible size it records the error (see Err) and returns nil.
func (b *Backend) Alloc(dt tensor.DType, n int) tensor.Buffer {
	switch dt {
	case tensor.Float32:
		if n < 0 || n > maxElems(4) {
			b.fail(fmt.Errorf("cpu: cannot allocate %d float32 elements", n))
			return nil
		}
		buf := b.f32.get(n)
		if b.poison {
			fill(b, buf.data, float32(math.NaN()))
		}
		return buf
	case tensor.Float64:
		if n < 0 || n > maxElems(8) {
			b.fail(fmt.Errorf("cpu: cannot allocate %d float64 elements", n))
			return nil
		}
		buf := b.f64.get(n)
		if b.poison {
			fill(b, buf.data, math.NaN())
		}
		return buf
	}
	b.fail(fmt.Errorf("cpu: cannot allocate dtype %v (the CPU backend holds float32 and float64)", dt))
	return nil
}

// Free recycles a buffer returned by Alloc. It is safe from any goroutine (sync.Pool is), including
// the garbage collector's cleanup of forgotten tensors.
func (b *Backend) Free(buf tensor.Buffer) {
	switch v := buf.(type) {
	case *buffer[float32]:
		b.f32.put(v)
	case *buffer[float64]:
		b.f64.put(v)
	case nil:
	default:
		b.fail(fmt.Errorf("cpu: Free of a %T, which this backend did not allocate", buf))
	}
}

// scratch returns a float64 work area of n elements (contents stale) for partial sums and per-channel
// constants; give it back with release.
func (b *Backend) scratch(n int) *buffer[float64] { return b.f64.get(n) }

// release gives a scratch area back.
func (b *Backend) release(s *buffer[float64]) { b.f64.put(s) }

// pool returns the backend's pools for element type T (used for T-typed scratch).
func pool[T float](b *Backend) *pools[T] {
	if p, ok := any(&b.f32).(*pools[T]); ok {
		return p
	}
	return any(&b.f64).(*pools[T])
}

// Upload copies src ([]float32 or []float64) into dst, converting as needed.
func (b *Backend) Upload(dst *tensor.Tensor, src any) {
	if b.dead() {
		return
	}
	if is32(dst) {
		upload(data[float32](dst), src)
	} else {
		upload(data[float64](dst), src)
	}
}

// Download copies src into dst ([]float32 or []float64), converting as needed.
func (b *Backend) Download(dst any, src *tensor.Tensor) {
	if b.dead() {
		return
	}
	if is32(src) {
		download(dst, data[float32](src))
	} else {
		download(dst, data[float64](src))
	}
}
