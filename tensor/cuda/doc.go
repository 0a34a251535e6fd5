// Package cuda is dlf's GPU backend: tensor.Backend for Float32 on one CUDA device, running the
// hand-written kernels of package kernels through the cgo-free driver bindings of tensor/cuda/cu.
//
// # Execution model
//
// A Backend owns one device worker (cu.Device: a goroutine locked to an OS thread with the device's
// primary context current) and one non-blocking stream. Every op is a Device.Do call that enqueues
// its kernels on that stream and returns without waiting for the GPU; Download and Sync are the
// only calls that wait. All ops therefore execute in call order on the device, which is what makes
// the caching allocator's reuse and the in-place (aliasing) elementwise ops safe.
//
// # Errors
//
// Ops return nothing (tensor.Backend's model): the first failure — a launch error, an out-of-memory
// allocation, an asynchronous kernel fault found at the next synchronisation — is recorded, every
// later op becomes a no-op, and Err and Sync return it. A sticky CUDA error (700
// CUDA_ERROR_ILLEGAL_ADDRESS, 719 CUDA_ERROR_LAUNCH_FAILED, …) is reported with its name and marked
// fatal (IsFatal): the context is unusable until the process restarts.
//
// # Memory
//
// Device memory comes from a caching allocator (alloc.go): freed blocks go to size-classed free
// lists and are reused by later allocations on the same stream, so a training step allocates from
// the driver only in its first iteration. Free may be called from any goroutine (tensor's GC
// cleanup); it only queues the block, and the queue is applied on the worker at the next op.
// MemStats reports in-use, cached and peak bytes.
//
// # Determinism
//
// Every reduction (Reduce, GEMM/convolution split-K, the fused flow kernels' logdets and parameter
// gradients) is a fixed-order two-pass sum without floating-point atomics, and every launch shape is
// derived from tensor shapes alone (never from the device's SM count), so the same inputs give
// bit-identical outputs from run to run, and on any GPU that runs the same PTX.
//
// # Layout
//
// Tensors are NHWC and contiguous; each tensor has its own allocation (reshapes share it), so every
// base pointer is 256-byte aligned and the kernels' float4 paths are always legal.
package cuda
