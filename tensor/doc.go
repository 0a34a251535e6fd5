// Package tensor is dlf's tensor library: a Tensor (shape, dtype, backend storage), the Backend
// interface that lists every op the flows need, the shape checks that guard those ops, and host-side
// float64 linear algebra.
//
// # Layout and types
//
// Activations are NHWC and contiguous: a 4-D tensor [N, H, W, C] stores channel fastest. Every backend
// supports Float32; the CPU backend also supports Float64, which references and gradient checks use.
// A 1x1 convolution is a GEMM [N·H·W, C] × [C, C]; DLT partitions are channel ranges, copied with
// CopyChannels.
//
// # Calling convention
//
// The package-level functions (Add, Conv2D, DLTForward, …) check shapes and dtypes once, then call the
// backend with tensors it may trust. They write into caller-provided destination tensors, so the caller
// (autodiff, the model) decides what is allocated and when it is released. Elementwise ops allow the
// destination to alias an input; GEMM, convolution, squeeze and reductions do not. Shape mismatches are
// programming errors and panic with both shapes.
//
// # Errors
//
// Ops return no error. A backend that can fail at run time (CUDA: out of memory, a failed launch) keeps
// its first failure, turns later ops into no-ops and reports it from Err and Sync — the same model as the
// CUDA driver's own asynchronous errors. Callers check Err at step boundaries (the trainer does so after
// every step), so a failure surfaces within one step and is never silently continued past.
//
// # Memory
//
// A Tensor's storage is reference counted: Reshape shares it, Release drops a reference, and the
// backend recycles the memory when the last reference goes. Storage that is never released is
// reclaimed when the Go garbage collector finds it unreachable, so forgetting Release leaks nothing
// for long, but hot paths release explicitly to keep device memory tight.
//
// # Random numbers
//
// Fills use Philox-4x32-10 (Salmon et al., "Parallel random numbers: as easy as 1, 2, 3", SC 2011) in
// counter mode, defined in philox.go, so the same (seed, offset) gives the same numbers on every
// backend.
package tensor
