// Package cu is a cgo-free binding of the CUDA driver API, loaded at run time
// with purego, so that dlf builds with CGO_ENABLED=0 and runs (CPU-only) on
// machines without the NVIDIA driver.
//
// # Loading
//
// The driver library is opened lazily by [Init] (or by the first call that
// needs it) exactly once per process. The path defaults to "libcuda.so.1" and
// can be overridden with the environment variable DLF_LIBCUDA. Every symbol
// is resolved with dlsym by its exact versioned name (cuMemAlloc_v2 and so
// on), because the unversioned names in libcuda are the legacy 32-bit ABI.
// Failures come back as errors, never panics:
//
//   - [ErrNoLibrary]: the library cannot be opened (no driver installed);
//   - [ErrMissingSymbol]: it opened but lacks a required entry point (not a
//     CUDA driver, or one too old); the error names the symbol and library;
//   - [ErrNoDevice]: the driver is present but cuInit reports no device, or
//     the device count is zero;
//   - a [Result]: any other driver error, wrapped in a [*CallError] that
//     names the call and its arguments.
//
// # Threads and contexts
//
// A CUDA context is current per OS thread, while Go moves goroutines between
// threads freely. This package therefore uses primary contexts only and gives
// every opened [Device] one worker goroutine locked to one OS thread with
// that device's primary context current; [Device.Do] runs a function there.
// All the raw wrappers in this package (MemAlloc, LaunchKernel, ...) are
// plain functions that act on the calling thread's current context: call them
// inside Device.Do. Calls that need no context (device queries, error names)
// say so in their documentation.
//
// # Types
//
// Device memory addresses are [DevicePtr] (a uint64), never unsafe.Pointer:
// they are not Go pointers and the garbage collector must not see them.
// Handles (Context, Module, Function, Stream, Event, MemPool) are uintptr.
//
// A sticky error (for example CUDA_ERROR_ILLEGAL_ADDRESS, 700) leaves the
// context unusable until the process restarts; [Result.Sticky] and
// [IsSticky] detect it so callers can stop instead of carrying on.
package cu
