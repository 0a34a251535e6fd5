package backendtest

import (
	"fmt"

	"dlf/tensor"
)

// Tolerances are the relative error bounds of one dtype, per op family. Every comparison accepts
// |got − want| ≤ tol·scale with the reference's running error scale (see the package doc): for an
// op that rounds once, scale = |want|; for sums, scale = Σ|terms|.
type Tolerances struct {
	// Elementwise bounds ops that produce each element from a few inputs without a reduction:
	// Binary, Unary, UnaryGrad, Axpy, the elementwise outputs of the fused flow ops (y, x, eps,
	// dx, per-position dh/dp), round trips and the optimizer update.
	Elementwise float64
	// Reduction bounds Reduce and the reduced outputs of fused ops: logdet and log-prob vectors,
	// per-channel and scalar parameter gradients (dbias, dlogs, dalpha, dbeta, broadcast dh/dp).
	Reduction float64
	// Matmul bounds GEMM and the three convolution ops (long dot products).
	Matmul float64
	// Normal bounds RandNormal against PhiloxNormal (relative to |want|); uniforms are exact.
	Normal float64
	// FiniteDiff bounds the relative difference between a backward op and central differences of
	// its forward op (Float64 only): |analytic − fd| ≤ FiniteDiff·max(|analytic|, Σ|fd terms|).
	FiniteDiff float64
}

// TF32Matmul is DESIGN.md's bound for GEMM and convolution paths that run on TF32 tensor cores
// (10-bit mantissa inputs, so a unit roundoff of 2⁻¹¹ ≈ 4.9e-4 per product). A backend that uses
// them passes Options{Tolerances: ...} with Matmul set to it, and says so in its test file.
const TF32Matmul = 5e-3

// DefaultTolerances returns the project's bounds for dt (DESIGN.md: float32 ≤ 1e-5 relative for
// elementwise ops, ≤ 1e-4 for reductions/GEMM/convolution; float64 ≤ 1e-12 elementwise, ≤ 1e-10
// for long reductions; normals within 1e-6; finite differences within 1e-6).
func DefaultTolerances(dt tensor.DType) Tolerances {
	switch dt {
	case tensor.Float32:
		return Tolerances{Elementwise: 1e-5, Reduction: 1e-4, Matmul: 1e-4, Normal: 1e-6, FiniteDiff: 1e-6}
	case tensor.Float64:
		return Tolerances{Elementwise: 1e-12, Reduction: 1e-10, Matmul: 1e-10, Normal: 1e-12, FiniteDiff: 1e-6}
	}
	panic(fmt.Sprintf("backendtest: no tolerances for dtype %v", dt))
}

// Options adjusts a run of the suite. The zero value runs everything with DefaultTolerances.
type Options struct {
	// Tolerances overrides DefaultTolerances for the dtypes it lists. Use it only for a documented
	// precision mode (e.g. TF32Matmul), never to make a failing op pass.
	Tolerances map[tensor.DType]Tolerances
	// DTypes restricts the run to these dtypes; nil runs every dtype the backend supports. A
	// listed dtype the backend does not support fails the run.
	DTypes []tensor.DType
	// Seed fixes the base seed; 0 takes BACKENDTEST_SEED from the environment, or a random one.
	Seed uint64

	// leafFilter, when set, runs only the cases whose name it accepts (this package's own tests
	// use it to keep the runs against deliberately broken backends short).
	leafFilter func(name string) bool
}

func (o Options) tolerances(dt tensor.DType) Tolerances {
	if t, ok := o.Tolerances[dt]; ok {
		return t
	}
	return DefaultTolerances(dt)
}
