package tensor

import (
	"fmt"
	"runtime"
	"sync/atomic"
)

// Tensor is a contiguous, row-major array of one dtype on one backend. The zero value is not usable;
// create tensors with New, Zeros, Full or FromHost.
type Tensor struct {
	shape Shape
	dtype DType
	st    *storage
}

// storage is the reference-counted memory shared by a tensor and its reshapes.
type storage struct {
	be   Backend
	h    *handle // nil for an inert tensor
	refs atomic.Int32
	// n is the element count, fixed at allocation; reshapes must keep it.
	n int
}

// handle owns a backend buffer and frees it exactly once: either on the last Release or, as a safety
// net for forgotten Releases, from the garbage collector's cleanup.
type handle struct {
	be    Backend
	buf   Buffer
	freed atomic.Bool
}

func (h *handle) free() {
	if h.freed.CompareAndSwap(false, true) {
		h.be.Free(h.buf)
	}
}

// Buffer is a backend's handle to the memory of one tensor. Each backend defines its own type and
// type-asserts it in its ops; nothing outside a backend looks inside.
type Buffer interface {
	// Bytes is the size of the allocation in bytes.
	Bytes() int
}

// New allocates an uninitialised tensor on be. The contents are unspecified (backends may poison
// them); call Fill or Zeros when values matter. On allocation failure the backend records the error
// (see Backend.Err) and the returned tensor is inert: ops on it do nothing.
func New(be Backend, dt DType, shape ...int) *Tensor {
	s := Shape(shape).Clone()
	if !s.valid() {
		panic(fmt.Sprintf("tensor: negative dimension in %v", s))
	}
	if !be.Supports(dt) {
		panic(fmt.Sprintf("tensor: backend %s does not support %v", be.Name(), dt))
	}
	n := s.Numel()
	st := &storage{be: be, n: n}
	st.refs.Store(1)
	if buf := be.Alloc(dt, n); buf != nil {
		st.h = &handle{be: be, buf: buf}
		// Safety net for forgotten Release calls: give the memory back when the storage becomes
		// unreachable. Backend.Free must tolerate being called from the cleanup goroutine.
		runtime.AddCleanup(st, (*handle).free, st.h)
	}
	return &Tensor{shape: s, dtype: dt, st: st}
}

// Zeros allocates a tensor filled with zeros.
func Zeros(be Backend, dt DType, shape ...int) *Tensor {
	t := New(be, dt, shape...)
	be.Fill(t, 0)
	return t
}

// Full allocates a tensor filled with v.
func Full(be Backend, dt DType, v float64, shape ...int) *Tensor {
	t := New(be, dt, shape...)
	be.Fill(t, v)
	return t
}

// FromFloat32 allocates a Float32 tensor of the given shape on be and uploads data into it.
func FromFloat32(be Backend, data []float32, shape ...int) *Tensor {
	t := New(be, Float32, shape...)
	t.Upload(data)
	return t
}

// FromFloat64 allocates a Float64 tensor of the given shape on be and uploads data into it.
func FromFloat64(be Backend, data []float64, shape ...int) *Tensor {
	t := New(be, Float64, shape...)
	t.Upload(data)
	return t
}

// Shape returns the tensor's shape. The caller must not modify it.
func (t *Tensor) Shape() Shape { return t.shape }

// DType returns the element type.
func (t *Tensor) DType() DType { return t.dtype }

// Backend returns the backend that owns the storage.
func (t *Tensor) Backend() Backend { return t.st.be }

// Numel returns the number of elements.
func (t *Tensor) Numel() int { return t.st.n }

// Buffer returns the backend buffer; only backends use it. It is nil for an inert tensor (failed
// allocation) or after the last Release.
func (t *Tensor) Buffer() Buffer {
	if t.st.h == nil || t.st.h.freed.Load() {
		return nil
	}
	return t.st.h.buf
}

// Dim returns dimension i, counting from the end when i is negative.
func (t *Tensor) Dim(i int) int {
	if i < 0 {
		i += len(t.shape)
	}
	return t.shape[i]
}

// String describes the tensor without its values.
func (t *Tensor) String() string {
	return fmt.Sprintf("Tensor(%v %v on %s)", t.shape, t.dtype, t.st.be.Name())
}

// Reshape returns a tensor with a new shape sharing this tensor's storage. One dimension may be -1 and
// is inferred. Both tensors must be released (or dropped) independently.
func (t *Tensor) Reshape(shape ...int) *Tensor {
	s := Shape(shape).Clone()
	infer := -1
	known := 1
	for i, d := range s {
		switch {
		case d == -1 && infer < 0:
			infer = i
		case d < 0:
			panic(fmt.Sprintf("tensor: bad reshape of %v to %v", t.shape, Shape(shape)))
		default:
			known *= d
		}
	}
	if infer >= 0 {
		if known == 0 || t.st.n%known != 0 {
			panic(fmt.Sprintf("tensor: cannot reshape %v to %v", t.shape, Shape(shape)))
		}
		s[infer] = t.st.n / known
	}
	if s.Numel() != t.st.n {
		panic(fmt.Sprintf("tensor: cannot reshape %v (%d elements) to %v", t.shape, t.st.n, s))
	}
	t.st.refs.Add(1)
	return &Tensor{shape: s, dtype: t.dtype, st: t.st}
}

// Retain returns a new handle to the same storage and shape, holding its own reference: the storage
// lives until both handles are released. It is Reshape to the same shape, named for the intent.
func (t *Tensor) Retain() *Tensor { return t.Reshape(t.shape...) }

// Release drops this tensor's reference to its storage; when no tensor refers to it any more the
// backend recycles the memory at once. Using a tensor after Release panics in the backend.
func (t *Tensor) Release() {
	if t == nil || t.st == nil {
		return
	}
	st := t.st
	t.st = &storage{be: st.be, n: st.n} // later use of t finds no buffer
	if st.refs.Add(-1) == 0 && st.h != nil {
		st.h.free()
	}
}

// SameStorage reports whether two tensors share memory (one is a reshape of the other).
func SameStorage(a, b *Tensor) bool { return a.st == b.st }

// Upload copies host data into the tensor. data must be []float32 or []float64 of exactly Numel
// elements; a dtype conversion happens when it differs from the tensor's.
func (t *Tensor) Upload(data any) {
	switch d := data.(type) {
	case []float32:
		checkLen(t, len(d))
	case []float64:
		checkLen(t, len(d))
	default:
		panic(fmt.Sprintf("tensor: Upload wants []float32 or []float64, got %T", data))
	}
	t.st.be.Upload(t, data)
}

// Download copies the tensor into dst, which must be []float32 or []float64 of exactly Numel elements.
func (t *Tensor) Download(dst any) {
	switch d := dst.(type) {
	case []float32:
		checkLen(t, len(d))
	case []float64:
		checkLen(t, len(d))
	default:
		panic(fmt.Sprintf("tensor: Download wants []float32 or []float64, got %T", dst))
	}
	t.st.be.Download(dst, t)
}

// Float32s downloads the tensor into a new []float32 (converting from Float64 if needed).
func (t *Tensor) Float32s() []float32 {
	out := make([]float32, t.st.n)
	t.Download(out)
	return out
}

// Float64s downloads the tensor into a new []float64 (converting from Float32 if needed).
func (t *Tensor) Float64s() []float64 {
	out := make([]float64, t.st.n)
	t.Download(out)
	return out
}

// Item returns the value of a one-element tensor as a float64.
func (t *Tensor) Item() float64 {
	if t.st.n != 1 {
		panic(fmt.Sprintf("tensor: Item of %v, want one element", t.shape))
	}
	return t.Float64s()[0]
}

func checkLen(t *Tensor, n int) {
	if n != t.st.n {
		panic(fmt.Sprintf("tensor: host slice of %d elements for %v", n, t.shape))
	}
}
