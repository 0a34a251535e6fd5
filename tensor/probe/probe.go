// Package probe wraps a tensor.Backend so that every op passes through a hook that sees what ran,
// on which tensors, with an analytic count of its arithmetic and memory traffic, and decides when
// to run it. The model and autodiff see an ordinary backend, so the same code runs profiled (the
// per-layer benchmark times each op) or checked (the training engine re-runs a diverged forward
// pass to find the first op that produced a NaN) without any hook in the model itself.
package probe

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

// Name returns the inner backend's name, so messages and checks read the same as without the probe.
func (p *Backend) Name() string { return p.inner.Name() }

// Supports forwards to the inner backend.
func (p *Backend) Supports(dt tensor.DType) bool { return p.inner.Supports(dt) }

// Alloc forwards to the inner backend.
func (p *Backend) Alloc(dt tensor.DType, n int) tensor.Buffer { return p.inner.Alloc(dt, n) }

// Free forwards to the inner backend.
func (p *Backend) Free(b tensor.Buffer) { p.inner.Free(b) }

// Sync forwards to the inner backend.
func (p *Backend) Sync() error { return p.inner.Sync() }

// Err forwards to the inner backend.
func (p *Backend) Err() error { return p.inner.Err() }

// Upload forwards to the inner backend (a host-to-device transfer on a GPU).
func (p *Backend) Upload(dst *tensor.Tensor, src any) {
	p.call(func() { p.inner.Upload(dst, src) }, func() *Record {
		return &Record{Op: "upload", Outputs: ins(dst)}
	})
}

// Download forwards to the inner backend.
func (p *Backend) Download(dst any, src *tensor.Tensor) {
	p.call(func() { p.inner.Download(dst, src) }, func() *Record {
		return &Record{Op: "download", Inputs: ins(src)}
	})
}

// Fill forwards to the inner backend.
func (p *Backend) Fill(dst *tensor.Tensor, v float64) {
	p.call(func() { p.inner.Fill(dst, v) }, func() *Record { return &Record{Op: "fill", Outputs: ins(dst)} })
}

// Copy forwards to the inner backend.
func (p *Backend) Copy(dst, src *tensor.Tensor) {
	p.call(func() { p.inner.Copy(dst, src) }, func() *Record {
		return &Record{Op: "copy", Inputs: ins(src), Outputs: ins(dst)}
	})
}

// CopyChannels forwards to the inner backend.
func (p *Backend) CopyChannels(dst *tensor.Tensor, dstOff int, src *tensor.Tensor, srcOff, c int) {
	p.call(func() { p.inner.CopyChannels(dst, dstOff, src, srcOff, c) }, func() *Record {
		rows, _ := src.Shape().Rows()
		b := float64(2 * rows * c * src.DType().Size())
		return &Record{Op: "copy_channels", Inputs: ins(src), Outputs: ins(dst), Bytes: b}
	})
}

// Squeeze2 forwards to the inner backend.
func (p *Backend) Squeeze2(dst, src *tensor.Tensor) {
	p.call(func() { p.inner.Squeeze2(dst, src) }, func() *Record {
		return &Record{Op: "squeeze", Inputs: ins(src), Outputs: ins(dst)}
	})
}

// Unsqueeze2 forwards to the inner backend.
func (p *Backend) Unsqueeze2(dst, src *tensor.Tensor) {
	p.call(func() { p.inner.Unsqueeze2(dst, src) }, func() *Record {
		return &Record{Op: "unsqueeze", Inputs: ins(src), Outputs: ins(dst)}
	})
}

// Binary forwards to the inner backend.
func (p *Backend) Binary(op tensor.BinaryOp, dst, a, b *tensor.Tensor, bc tensor.Broadcast) {
	p.call(func() { p.inner.Binary(op, dst, a, b, bc) }, func() *Record {
		return &Record{Op: "binary " + op.String(), Inputs: ins(a, b), Outputs: ins(dst), Flops: numel(dst)}
	})
}

// Unary forwards to the inner backend.
func (p *Backend) Unary(op tensor.UnaryOp, dst, x *tensor.Tensor, p1, p2 float64) {
	p.call(func() { p.inner.Unary(op, dst, x, p1, p2) }, func() *Record {
		return &Record{Op: "unary " + op.String(), Inputs: ins(x), Outputs: ins(dst), Flops: numel(dst)}
	})
}

// UnaryGrad forwards to the inner backend.
func (p *Backend) UnaryGrad(op tensor.UnaryGradOp, dx, saved, dy *tensor.Tensor, p1, p2 float64) {
	p.call(func() { p.inner.UnaryGrad(op, dx, saved, dy, p1, p2) }, func() *Record {
		return &Record{Op: "unary_grad", Inputs: ins(saved, dy), Outputs: ins(dx), Flops: 2 * numel(dx)}
	})
}

// Axpy forwards to the inner backend.
func (p *Backend) Axpy(alpha float64, x, y *tensor.Tensor) {
	p.call(func() { p.inner.Axpy(alpha, x, y) }, func() *Record {
		return &Record{Op: "axpy", Inputs: ins(x, y), Outputs: ins(y), Flops: 2 * numel(y)}
	})
}

// Reduce forwards to the inner backend.
func (p *Backend) Reduce(op tensor.ReduceOp, axes tensor.ReduceAxes, dst, src *tensor.Tensor) {
	p.call(func() { p.inner.Reduce(op, axes, dst, src) }, func() *Record {
		f := numel(src)
		if op == tensor.SumSq {
			f *= 2
		}
		return &Record{Op: "reduce", Inputs: ins(src), Outputs: ins(dst), Flops: f}
	})
}

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

// Gemm forwards to the inner backend.
func (p *Backend) Gemm(transA, transB bool, alpha float64, a, b *tensor.Tensor, beta float64, c *tensor.Tensor) {
	p.call(func() { p.inner.Gemm(transA, transB, alpha, a, b, beta, c) }, func() *Record {
		bt, m, n, k := gemmDims(transA, transB, a, b)
		r := &Record{Op: "gemm", Inputs: ins(a, b), Outputs: ins(c), Flops: 2 * float64(bt) * float64(m) * float64(n) * float64(k)}
		if beta != 0 {
			r.Inputs = append(r.Inputs, c)
		}
		return r
	})
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
	return s
}

// Conv2D forwards to the inner backend.
func (p *Backend) Conv2D(cp tensor.ConvParams, y, x, w, bias *tensor.Tensor) {
	p.call(func() { p.inner.Conv2D(cp, y, x, w, bias) }, func() *Record {
		return &Record{Op: convName("conv2d", cp), Inputs: ins(x, w, bias), Outputs: ins(y), Flops: convFlops(w, y)}
	})
}

// Conv2DBackwardData forwards to the inner backend.
func (p *Backend) Conv2DBackwardData(cp tensor.ConvParams, dx, dy, w *tensor.Tensor) {
	p.call(func() { p.inner.Conv2DBackwardData(cp, dx, dy, w) }, func() *Record {
		return &Record{Op: convName("conv2d_bwd_data", cp), Inputs: ins(dy, w), Outputs: ins(dx), Flops: convFlops(w, dy)}
	})
}

// Conv2DBackwardWeights forwards to the inner backend.
func (p *Backend) Conv2DBackwardWeights(cp tensor.ConvParams, dw, x, dy *tensor.Tensor) {
	p.call(func() { p.inner.Conv2DBackwardWeights(cp, dw, x, dy) }, func() *Record {
		return &Record{Op: convName("conv2d_bwd_weights", cp), Inputs: ins(x, dy), Outputs: ins(dw), Flops: convFlops(dw, dy)}
	})
}

// RandUniform forwards to the inner backend.
func (p *Backend) RandUniform(dst *tensor.Tensor, seed, offset uint64) {
	p.call(func() { p.inner.RandUniform(dst, seed, offset) }, func() *Record {
		return &Record{Op: "rand_uniform", Outputs: ins(dst)}
	})
}

// RandNormal forwards to the inner backend.
func (p *Backend) RandNormal(dst *tensor.Tensor, seed, offset uint64) {
	p.call(func() { p.inner.RandNormal(dst, seed, offset) }, func() *Record {
		return &Record{Op: "rand_normal", Outputs: ins(dst)}
	})
}

// ActNormForward forwards to the inner backend.
func (p *Backend) ActNormForward(y, ld, x, bias, logs *tensor.Tensor, scale float64) {
	p.call(func() { p.inner.ActNormForward(y, ld, x, bias, logs, scale) }, func() *Record {
		return &Record{Op: "actnorm", Inputs: ins(x, bias, logs), Outputs: ins(y, ld), Flops: 2 * numel(x)}
	})
}

// ActNormInverse forwards to the inner backend.
func (p *Backend) ActNormInverse(x, ld, y, bias, logs *tensor.Tensor, scale float64) {
	p.call(func() { p.inner.ActNormInverse(x, ld, y, bias, logs, scale) }, func() *Record {
		return &Record{Op: "actnorm_inverse", Inputs: ins(y, bias, logs), Outputs: ins(x, ld), Flops: 2 * numel(x)}
	})
}

// ActNormBackward forwards to the inner backend.
func (p *Backend) ActNormBackward(dx, dbias, dlogs, dy, y, logs, dld *tensor.Tensor, scale float64) {
	p.call(func() { p.inner.ActNormBackward(dx, dbias, dlogs, dy, y, logs, dld, scale) }, func() *Record {
		return &Record{Op: "actnorm_bwd", Inputs: ins(dy, y, logs, dld), Outputs: ins(dx, dbias, dlogs), Flops: 5 * numel(dy)}
	})
}

// AffineForward forwards to the inner backend.
func (p *Backend) AffineForward(ap tensor.AffineParams, y, ld, x, h, alpha, beta *tensor.Tensor) {
	p.call(func() { p.inner.AffineForward(ap, y, ld, x, h, alpha, beta) }, func() *Record {
		return &Record{Op: "affine", Inputs: ins(x, h, alpha, beta), Outputs: ins(y, ld), Flops: 6 * numel(x)}
	})
}

// AffineInverse forwards to the inner backend.
func (p *Backend) AffineInverse(ap tensor.AffineParams, x, ld, y, h, alpha, beta *tensor.Tensor) {
	p.call(func() { p.inner.AffineInverse(ap, x, ld, y, h, alpha, beta) }, func() *Record {
		return &Record{Op: "affine_inverse", Inputs: ins(y, h, alpha, beta), Outputs: ins(x, ld), Flops: 6 * numel(x)}
	})
}

// AffineBackward forwards to the inner backend.
func (p *Backend) AffineBackward(ap tensor.AffineParams, dx, dh, dalpha, dbeta, dy, y, h, alpha, beta, dld *tensor.Tensor) {
	p.call(func() { p.inner.AffineBackward(ap, dx, dh, dalpha, dbeta, dy, y, h, alpha, beta, dld) }, func() *Record {
		return &Record{Op: "affine_bwd", Inputs: ins(dy, y, h, alpha, beta, dld), Outputs: ins(dx, dh, dalpha, dbeta), Flops: 12 * numel(dy)}
	})
}

// GaussianLogProb forwards to the inner backend.
func (p *Backend) GaussianLogProb(g tensor.GaussianParams, lp, eps, z, pr, alpha, beta *tensor.Tensor) {
	p.call(func() { p.inner.GaussianLogProb(g, lp, eps, z, pr, alpha, beta) }, func() *Record {
		return &Record{Op: "gaussian", Inputs: ins(z, pr, alpha, beta), Outputs: ins(lp, eps), Flops: 8 * numel(z)}
	})
}

// GaussianLogProbBackward forwards to the inner backend.
func (p *Backend) GaussianLogProbBackward(g tensor.GaussianParams, dz, dp, dalpha, dbeta, z, pr, alpha, beta, dlp *tensor.Tensor) {
	p.call(func() { p.inner.GaussianLogProbBackward(g, dz, dp, dalpha, dbeta, z, pr, alpha, beta, dlp) }, func() *Record {
		return &Record{Op: "gaussian_bwd", Inputs: ins(z, pr, alpha, beta, dlp), Outputs: ins(dz, dp, dalpha, dbeta), Flops: 12 * numel(z)}
	})
}

// GaussianSample forwards to the inner backend.
func (p *Backend) GaussianSample(g tensor.GaussianParams, z, eps, pr, alpha, beta *tensor.Tensor) {
	p.call(func() { p.inner.GaussianSample(g, z, eps, pr, alpha, beta) }, func() *Record {
		return &Record{Op: "gaussian_sample", Inputs: ins(eps, pr, alpha, beta), Outputs: ins(z), Flops: 4 * numel(z)}
	})
}

// AdamStep forwards to the inner backend.
func (p *Backend) AdamStep(o tensor.OptimParams, w, m, v, g *tensor.Tensor) {
	p.call(func() { p.inner.AdamStep(o, w, m, v, g) }, func() *Record {
		return &Record{Op: "adam", Inputs: ins(w, m, v, g), Outputs: ins(w, m, v), Flops: 10 * numel(w)}
	})
}

var _ tensor.Backend = (*Backend)(nil)
