// Package backendtest is the backend-conformance suite: it runs every op of tensor.Backend, through
// the checked package-level functions of dlf/tensor, against naive float64 references written here,
// for every dtype the backend supports.
//
// A backend's own test file calls it:
//
//	func TestConformance(t *testing.T) { backendtest.Run(t, cpu.New()) }
//
// It is a normal package (not a _test package) so that the test files of tensor/cpu and tensor/cuda
// can both import it, and it imports no backend: the backend under test is its only argument.
//
// # What is checked
//
// Every leaf subtest is named op/dtype/case (for example Conv2D/float32/2x14x14x4_to128_K3_edge), so
// `go test -run 'Conformance/Conv2D/float32/'` selects a family. Each leaf draws fresh random inputs
// (never zeros; ranges keep log, sqrt and div in their domains and tanh/sigmoid unsaturated), rounds
// them to the dtype, uploads them, allocates outputs and fills them with NaN before the op, so an
// element the backend forgets to write fails the comparison. Outputs that accumulate (logdet and
// log-prob vectors, Axpy's y, the optimizer state, GEMM with beta ≠ 0) start from random values
// instead, and the accumulated result is checked. Optional arguments (nil ld, nil bias, nil dld, nil
// alpha/beta where a mode ignores them) are exercised. Round trips (ActNorm, Affine, Gaussian
// eps→sample, Squeeze2/Unsqueeze2) are checked, Philox uniforms must match the reference bit for bit,
// and with Float64 every backward op is also compared with central finite differences of its forward
// op.
//
// The references are plain loops written from the op documentation and dlf-spec: direct convolution
// over an explicitly padded input with an explicit edge channel, triple-loop GEMM, the spec's squeeze
// index math, float64 reductions, Philox through tensor.PhiloxBlock, the fused flow ops and the
// optimizer rules straight from their formulas. Nothing of any backend is reused.
//
// # Tolerances
//
// A result passes when, element by element,
//
//	|got − want| ≤ tol · scale
//
// where tol comes from Tolerances (per dtype and op family) and scale ≥ |want| is a first-order
// running error bound that the reference computes alongside want (Wilkinson's running error
// analysis, in units of the rounding error): a sum contributes the sum of its terms' scales, a
// product the product of its factors' scales, exp(a) contributes exp(a)·(1 + scale(a)) because an
// absolute error in a becomes a relative error in exp(a), and so on (see ev in scale.go). For an op
// that rounds once and cancels nothing, scale = |want| and tol is a plain relative error; for a
// reduction, GEMM or convolution, scale is Σ|terms| (the "row norm"), so cancellation in the true
// result cannot make a correctly rounded computation fail, while a wrong index or a missing term
// (an O(1) error) still fails by orders of magnitude. DefaultTolerances holds the project's numbers
// (DESIGN.md): float32 1e-5 elementwise and 1e-4 for reductions, GEMM, convolution and fused
// reductions; float64 1e-12 elementwise and 1e-10 for reductions. Finite differences must agree
// within 1e-6 relative, plus the rounding noise of the two forward evaluations (see fdCheck).
// A backend whose GEMM/convolution runs on TF32 tensor cores passes RunWith Options with Matmul set
// to TF32Matmul (DESIGN.md's documented bound); nothing else should ever be widened. With -v, every
// passing comparison logs its margin, the worst |got − want|/(tol·scale), so a backend author can
// see how close each op comes to its bound.
//
// # Seeds
//
// Inputs are drawn from math/rand/v2 PCG seeded from a base seed and the leaf's full test name, so
// every leaf is reproducible on its own. The base seed is taken from the environment variable
// BACKENDTEST_SEED when set and is random otherwise; every failure message prints it, so a failing
// run is rerun with BACKENDTEST_SEED=<seed> go test -run '<the leaf>'.
package backendtest
