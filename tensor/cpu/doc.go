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
// (default runtime.GOMAXPROCS). A goroutine is only started for at least minWork = 32768 units of
// work, a unit being one element of a cheap elementwise loop; ops with exp/tanh per element count
// more units per element. Starting and joining a goroutine costs 1–2 µs, about a tenth of that grain,
// while the model's many small activations (64×7×7×8 = 25088 elements) stay on the calling goroutine
// with no synchronisation. The caller's goroutine always takes a share of the work.
//
// # Precision and determinism
//
// Simple arithmetic (Binary, Axpy, Scale, …) runs in the element type. Transcendental functions and
// the fused flow ops (ActNorm, Affine, Gaussian, AdamStep) compute in float64 and round once on
// store, so float32 results are close to correctly rounded. Every sum — Reduce, logdets, log-probs,
// per-channel and scalar parameter gradients — accumulates in float64 as one partial per fixed block
// of rows, combined in block order. The blocks depend only on the shape, never on the thread count,
// so results are bitwise identical for every WithThreads setting and from run to run.
//
// # Errors
//
// Shapes and dtypes are checked by package tensor before a backend is called. The backend records
// its own failures (an impossible allocation, a buffer from another backend) and reports the first
// from Err and Sync; after one, ops do nothing, matching the CUDA backend's sticky-error model.
package cpu
