// Package probe wraps a tensor.Backend so that every op passes through a hook that sees what ran,
// on which tensors, with an analytic count of its arithmetic and memory traffic, and decides when
// to run it. The model and autodiff see an ordinary backend, so the same code runs profiled (the
// per-layer benchmark times each op) or checked (the training engine re-runs a diverged forward
// pass to find the first op that produced a NaN) without any hook in the model itself.
package probe

//go:generate go run ./gen

import (
	"dlf/tensor"
)

// Record describes one backend call for a probe hook: what ran, on which tensors, and an
// analytic count of its arithmetic and memory traffic for roofline figures.
type Record struct {
	// Op names the backend method, with a detail where it matters ("conv2d k3", "unary exp").
	Op string
	// Inputs are the tensors the op reads, Outputs those it writes.
	Inputs, Outputs []*tensor.Tensor
	// Flops counts floating-point operations: 2·M·N·K for a GEMM, 2·outputs·K²·Cin for a
	// convolution, and a fixed small count per element for elementwise and fused kernels (one per
	// add/mul; a transcendental counts as one, so those figures understate the work).
	Flops float64
	// Bytes counts the bytes the op must move at least once: every input read and every output
	// written once. Caches can make the real traffic lower for small operands and higher for GEMMs
	// that re-read tiles; the figure is the floor the roofline model uses.
	Bytes float64
}

// Backend is a tensor.Backend that forwards every op to an inner backend and, when hook is set,
// hands the hook a description of the op and a function that runs it.
type Backend struct {
	inner tensor.Backend
	// hook, when non-nil, must call run exactly once.
	hook func(r *Record, run func())
}

// New wraps inner; hook (nil: none) sees every op and must call run exactly once.
func New(inner tensor.Backend, hook func(r *Record, run func())) *Backend {
	return &Backend{inner: inner, hook: hook}
}

// SetHook replaces the hook (nil: none), e.g. once a model built on the probe is ready to observe.
func (p *Backend) SetHook(hook func(r *Record, run func())) { p.hook = hook }

func nbytes(ts ...*tensor.Tensor) float64 {
	s := 0
	for _, t := range ts {
		if t != nil {
			s += t.Numel() * t.DType().Size()
		}
	}
	return float64(s)
}

func numel(t *tensor.Tensor) float64 { return float64(t.Numel()) }

// call runs fn through the hook with the record built by rec (only when there is a hook).
func (p *Backend) call(fn func(), rec func() *Record) {
	if p.hook == nil {
		fn()
		return
	}
	r := rec()
	if r.Bytes == 0 {
		r.Bytes = nbytes(r.Inputs...) + nbytes(r.Outputs...)
	}
	p.hook(r, fn)
}

func ins(ts ...*tensor.Tensor) []*tensor.Tensor { return ts }

// gemmDims returns batch, m, n, k of c = op(a)·op(b).
func gemmDims(transA, transB bool, a, b *tensor.Tensor) (batch, m, n, k int) {
	sa, sb := a.Shape(), b.Shape()
	batch = 1
	if len(sa) == 3 {
		batch = sa[0]
		sa = sa[1:]
	}
	if len(sb) == 3 {
		sb = sb[1:]
	}
	m, k = sa[0], sa[1]
	if transA {
		m, k = k, m
	}
	n = sb[1]
	if transB {
		n = sb[0]
	}
	return batch, m, n, k
}

// convFlops is 2·(outputs positions)·K²·Cin·Cout for w [K,K,Cin,Cout] over an [N,H,W,·] grid.
func convFlops(w, grid *tensor.Tensor) float64 {
	ws := w.Shape()
	n, h, wd, _ := grid.Shape().NHWC()
	return 2 * float64(n*h*wd) * float64(ws[0]*ws[1]*ws[2]*ws[3])
}

func convName(base string, cp tensor.ConvParams) string {
	s := base + " k1"
	if cp.K == 3 {
		s = base + " k3"
	}
	if cp.Precision == tensor.TF32 {
		s += " tf32"
	}
	return s
}

var _ tensor.Backend = (*Backend)(nil)
