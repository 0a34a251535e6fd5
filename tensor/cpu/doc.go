// Package cpu is dlf's pure-Go tensor backend: every op of tensor.Backend for Float32 and Float64,
// written once over Go type parameters, parallel across goroutines, with GEMM and convolution
// delegated to the assembly-backed packages gemm and conv.
//
// # Memory
//
// A tensor's memory is a Go slice held in a buffer. Free returns buffers to one sync.Pool per size
// class (see sizeClass), so a training loop that allocates and releases the same shapes every step
// reuses memory instead of producing garbage. WithPoison fills new buffers with NaN.
//
// # Parallelism and grain size
//
// Ops split their outermost loop (rows, row blocks, examples) across up to WithThreads goroutines
// (default runtime.GOMAXPROCS). A goroutine is only started for at least minWork = 65536 units of
// work, a unit being one element of a cheap elementwise loop (0.3–0.5 ns); ops with exp/tanh per
// element count more units per element. A fork and join measured 2–6 µs on the loaded dev machine
// (BenchmarkForkJoin), about a tenth of that grain, while the model's flow activations
// (64×14×14×4 = 50176 elements and smaller) stay on the calling goroutine with no synchronisation.
// Hidden layers (64×14×14×512) split across all cores. The caller's goroutine always takes a share
// of the work.
//
// # Precision and determinism
//
// Simple arithmetic (Binary, Axpy, Scale, …) runs in the element type. Transcendental functions and
// the fused flow ops (ActNorm, Affine, Gaussian, AdamStep) compute in float64 and round once on
// store, so float32 results are close to correctly rounded. Every sum — Reduce, logdets, log-probs,
// per-channel and scalar parameter gradients — accumulates in float64 as one partial per fixed block
// of rows, combined in block order. The blocks depend only on the shape, never on the thread count,
// so these results are bitwise identical for every WithThreads setting and from run to run. GEMM
// and convolution come from packages gemm and conv, which are deterministic for a fixed thread
// count (conv's weight gradient sums one partial per goroutine).
//
// # Allocation
//
// Ops allocate no tensor-sized memory: scratch (per-block partial sums, per-channel constants) comes
// from the same pools. What remains is the closure that carries an op's arguments to its goroutines,
// about 100 bytes per call (plus one per extra goroutine), which the benchmarks report.
//
// # Errors
//
// Shapes and dtypes are checked by package tensor before a backend is called. The backend records
// its own failures (an impossible allocation, a buffer from another backend) and reports the first
// from Err and Sync; after one, ops do nothing, matching the CUDA backend's sticky-error model.
package cpu
