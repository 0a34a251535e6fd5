package cu

import (
	"errors"
	"fmt"
	"os"
	"sync"
	"sync/atomic"
	"unsafe"

	"github.com/ebitengine/purego"
)

// DefaultLibrary is the driver library opened when DLF_LIBCUDA is unset. The
// ".so.1" name is the one the NVIDIA driver installs; the unversioned
// libcuda.so only comes with development packages.
const DefaultLibrary = "libcuda.so.1"

// LibraryEnv names the environment variable that overrides the driver
// library path, e.g. to point at a driver in a non-standard location.
const LibraryEnv = "DLF_LIBCUDA"

// ErrNoLibrary reports that the CUDA driver library could not be opened.
var ErrNoLibrary = errors.New("no CUDA driver library")

// ErrMissingSymbol reports that the opened library lacks an entry point this
// package needs (it is not libcuda, or the driver is too old).
var ErrMissingSymbol = errors.New("CUDA driver library lacks a required symbol")

// ErrNoDevice reports that the CUDA driver is installed but no usable device
// is present (cuInit returned CUDA_ERROR_NO_DEVICE, or the count is zero).
var ErrNoDevice = errors.New("CUDA driver present but no CUDA device")

// ErrUnsupported reports a call to an optional entry point that this driver
// does not export.
var ErrUnsupported = errors.New("not supported by this CUDA driver")

// symbolError names the symbol and library of a failed dlsym.
type symbolError struct {
	Library, Symbol string
	Err             error
}

func (e *symbolError) Error() string {
	return fmt.Sprintf("%v: %s has no %s (%v); install or update the NVIDIA driver",
		ErrMissingSymbol, e.Library, e.Symbol, e.Err)
}

func (e *symbolError) Unwrap() []error { return []error{ErrMissingSymbol, e.Err} }

// driver holds one opened driver library and its resolved entry points.
// Field names are the dlsym names; a zero optional field means the driver
// does not export that symbol.
type driver struct {
	path   string
	handle uintptr

	cuInit, cuDriverGetVersion, cuGetErrorName, cuGetErrorString uintptr

	cuDeviceGetCount, cuDeviceGet, cuDeviceGetName, cuDeviceGetAttribute, cuDeviceTotalMem uintptr
	cuDevicePrimaryCtxRetain, cuDevicePrimaryCtxRelease                                    uintptr
	cuCtxSetCurrent, cuCtxGetCurrent, cuCtxSynchronize                                     uintptr

	cuModuleLoadDataEx, cuModuleGetFunction, cuModuleUnload uintptr
	cuFuncGetAttribute, cuFuncSetAttribute, cuLaunchKernel  uintptr

	cuMemAlloc, cuMemFree, cuMemGetInfo, cuMemAllocHost, cuMemFreeHost uintptr
	cuMemcpyHtoD, cuMemcpyDtoH, cuMemcpyDtoD                           uintptr
	cuMemcpyHtoDAsync, cuMemcpyDtoHAsync, cuMemcpyDtoDAsync            uintptr
	cuMemsetD8Async, cuMemsetD32Async                                  uintptr

	cuStreamCreate, cuStreamDestroy, cuStreamSynchronize, cuStreamQuery, cuStreamWaitEvent uintptr
	cuEventCreate, cuEventRecord, cuEventSynchronize, cuEventQuery, cuEventDestroy         uintptr
	cuEventElapsedTime                                                                     uintptr

	cuMemAllocAsync, cuMemFreeAsync, cuDeviceGetDefaultMemPool            uintptr
	cuStreamBeginCapture, cuStreamEndCapture, cuStreamIsCapturing         uintptr
	cuGraphInstantiate, cuGraphLaunch, cuGraphExecDestroy, cuGraphDestroy uintptr
	cuMemPoolSetAttribute, cuMemPoolTrimTo, cuMemPoolSetAccess            uintptr
	cuDeviceCanAccessPeer, cuCtxEnablePeerAccess, cuCtxDisablePeerAccess  uintptr
	cuMemcpyPeerAsync                                                     uintptr

	// Optional (bound best-effort).
	cuOccupancyMaxActiveBlocksPerMultiprocessor, cuOccupancyMaxPotentialBlockSize uintptr
	cuDevicePrimaryCtxSetFlags                                                    uintptr
}

// symbol is one entry of the binding table.
type symbol struct {
	name     string
	addr     *uintptr
	optional bool
}

// symbols lists every entry point with its exact dlsym name (go-cuda.md
// §2.2/§2.3: cuda.h #defines the plain names to these _v2 symbols; the
// unversioned ones are a legacy ABI with 32-bit device pointers).
func (d *driver) symbols() []symbol {
	return []symbol{
		// cuInit first: a library that is not libcuda fails on it, which
		// makes the "missing symbol" error name the most telling symbol.
		{"cuInit", &d.cuInit, false},
		{"cuDriverGetVersion", &d.cuDriverGetVersion, false},
		{"cuGetErrorName", &d.cuGetErrorName, false},
		{"cuGetErrorString", &d.cuGetErrorString, false},
		{"cuDeviceGetCount", &d.cuDeviceGetCount, false},
		{"cuDeviceGet", &d.cuDeviceGet, false},
		{"cuDeviceGetName", &d.cuDeviceGetName, false},
		{"cuDeviceGetAttribute", &d.cuDeviceGetAttribute, false},
		{"cuDeviceTotalMem_v2", &d.cuDeviceTotalMem, false},
		{"cuDevicePrimaryCtxRetain", &d.cuDevicePrimaryCtxRetain, false},
		{"cuDevicePrimaryCtxRelease_v2", &d.cuDevicePrimaryCtxRelease, false},
		{"cuCtxSetCurrent", &d.cuCtxSetCurrent, false},
		{"cuCtxGetCurrent", &d.cuCtxGetCurrent, false},
		{"cuCtxSynchronize", &d.cuCtxSynchronize, false},
		{"cuModuleLoadDataEx", &d.cuModuleLoadDataEx, false},
		{"cuModuleGetFunction", &d.cuModuleGetFunction, false},
		{"cuModuleUnload", &d.cuModuleUnload, false},
		{"cuFuncGetAttribute", &d.cuFuncGetAttribute, false},
		{"cuFuncSetAttribute", &d.cuFuncSetAttribute, false},
		{"cuLaunchKernel", &d.cuLaunchKernel, false},
		{"cuMemAlloc_v2", &d.cuMemAlloc, false},
		{"cuMemFree_v2", &d.cuMemFree, false},
		{"cuMemGetInfo_v2", &d.cuMemGetInfo, false},
		{"cuMemAllocHost_v2", &d.cuMemAllocHost, false},
		{"cuMemFreeHost", &d.cuMemFreeHost, false},
		{"cuMemcpyHtoD_v2", &d.cuMemcpyHtoD, false},
		{"cuMemcpyDtoH_v2", &d.cuMemcpyDtoH, false},
		{"cuMemcpyDtoD_v2", &d.cuMemcpyDtoD, false},
		{"cuMemcpyHtoDAsync_v2", &d.cuMemcpyHtoDAsync, false},
		{"cuMemcpyDtoHAsync_v2", &d.cuMemcpyDtoHAsync, false},
		{"cuMemcpyDtoDAsync_v2", &d.cuMemcpyDtoDAsync, false},
		{"cuMemsetD8Async", &d.cuMemsetD8Async, false},
		{"cuMemsetD32Async", &d.cuMemsetD32Async, false},
		{"cuStreamCreate", &d.cuStreamCreate, false},
		{"cuStreamDestroy_v2", &d.cuStreamDestroy, false},
		{"cuStreamSynchronize", &d.cuStreamSynchronize, false},
		{"cuStreamQuery", &d.cuStreamQuery, false},
		{"cuStreamWaitEvent", &d.cuStreamWaitEvent, false},
		{"cuEventCreate", &d.cuEventCreate, false},
		{"cuEventRecord", &d.cuEventRecord, false},
		{"cuEventSynchronize", &d.cuEventSynchronize, false},
		{"cuEventQuery", &d.cuEventQuery, false},
		{"cuEventDestroy_v2", &d.cuEventDestroy, false},
		{"cuEventElapsedTime", &d.cuEventElapsedTime, false},
		{"cuDeviceCanAccessPeer", &d.cuDeviceCanAccessPeer, false},
		{"cuCtxEnablePeerAccess", &d.cuCtxEnablePeerAccess, false},
		{"cuCtxDisablePeerAccess", &d.cuCtxDisablePeerAccess, false},
		{"cuMemcpyPeerAsync", &d.cuMemcpyPeerAsync, false},
		// Stream-ordered allocation arrived in CUDA 11.2; optional so that
		// an older driver still loads (calls then return ErrUnsupported).
		{"cuMemAllocAsync", &d.cuMemAllocAsync, true},
		{"cuMemFreeAsync", &d.cuMemFreeAsync, true},
		{"cuDeviceGetDefaultMemPool", &d.cuDeviceGetDefaultMemPool, true},
		{"cuMemPoolSetAttribute", &d.cuMemPoolSetAttribute, true},
		{"cuMemPoolTrimTo", &d.cuMemPoolTrimTo, true},
		{"cuMemPoolSetAccess", &d.cuMemPoolSetAccess, true},
		{"cuOccupancyMaxActiveBlocksPerMultiprocessor", &d.cuOccupancyMaxActiveBlocksPerMultiprocessor, true},
		{"cuOccupancyMaxPotentialBlockSize", &d.cuOccupancyMaxPotentialBlockSize, true},
		{"cuDevicePrimaryCtxSetFlags_v2", &d.cuDevicePrimaryCtxSetFlags, true},
		// CUDA graphs (graph.go), optional: a driver without them runs eagerly. The versioned
		// names are the ABI that matches graph.go's calls (graphs-tf32-mpi-nccl.md §1.2): the
		// unsuffixed cuStreamBeginCapture takes no mode and the older cuGraphInstantiate five
		// arguments, so a call through them would misread its arguments.
		{"cuStreamBeginCapture_v2", &d.cuStreamBeginCapture, true},
		{"cuStreamEndCapture", &d.cuStreamEndCapture, true},
		{"cuStreamIsCapturing", &d.cuStreamIsCapturing, true},
		{"cuGraphInstantiateWithFlags", &d.cuGraphInstantiate, true},
		{"cuGraphLaunch", &d.cuGraphLaunch, true},
		{"cuGraphExecDestroy", &d.cuGraphExecDestroy, true},
		{"cuGraphDestroy", &d.cuGraphDestroy, true},
	}
}

// loadLibrary opens path and resolves every symbol. It does not call cuInit.
// Each call gives an independent driver value, which is what tests use; the
// package-level loader wraps one call in a sync.Once.
func loadLibrary(path string) (*driver, error) {
	h, err := purego.Dlopen(path, purego.RTLD_NOW|purego.RTLD_GLOBAL)
	if err != nil {
		return nil, fmt.Errorf("%w: dlopen %s: %w; install the NVIDIA driver or run on a GPU machine (set %s to its path if it is elsewhere)",
			ErrNoLibrary, path, err, LibraryEnv)
	}
	d := &driver{path: path, handle: h}
	for _, s := range d.symbols() {
		addr, err := purego.Dlsym(h, s.name)
		if err != nil || addr == 0 {
			if s.optional {
				continue
			}
			_ = purego.Dlclose(h)
			if err == nil {
				err = errors.New("null address")
			}
			return nil, &symbolError{Library: path, Symbol: s.name, Err: err}
		}
		*s.addr = addr
	}
	return d, nil
}

// close releases the library handle. Only tests use it: the package-level
// driver lives for the whole process.
func (d *driver) close() error { return purego.Dlclose(d.handle) }

// initialize runs cuInit(0) and checks that at least one device exists,
// mapping "no device" outcomes onto ErrNoDevice.
func (d *driver) initialize() error {
	if r := call(d.cuInit, 0); r != Success {
		if r == ErrorNoDevice {
			return fmt.Errorf("%w (%s: cuInit(0): %w)", ErrNoDevice, d.path, r)
		}
		return newCallError(r, "cuInit", "0")
	}
	var n int32
	if r := call(d.cuDeviceGetCount, uintptr(unsafe.Pointer(&n))); r != Success {
		return newCallError(r, "cuDeviceGetCount", "")
	}
	if n <= 0 {
		return fmt.Errorf("%w (%s: cuDeviceGetCount reported %d devices)", ErrNoDevice, d.path, n)
	}
	return nil
}

// global is the process-wide driver, loaded once.
var global struct {
	once sync.Once
	d    *driver
	err  error
}

// named is the library used to name Result codes. It is set as soon as the
// symbols resolve, even when cuInit then fails, because cuGetErrorName works
// before initialisation (go-cuda.md §1.2).
var named atomic.Pointer[driver]

// libraryPath returns the library to open: $DLF_LIBCUDA or DefaultLibrary.
func libraryPath() string {
	if p := os.Getenv(LibraryEnv); p != "" {
		return p
	}
	return DefaultLibrary
}

// Init loads and initialises the CUDA driver once per process; later calls
// return the first outcome. It is safe to call from many goroutines. Errors
// match ErrNoLibrary, ErrMissingSymbol or ErrNoDevice with errors.Is, or
// carry a Result.
func Init() error {
	_, err := lib()
	return err
}

// lib returns the initialised process-wide driver.
func lib() (*driver, error) {
	global.once.Do(func() {
		d, err := loadLibrary(libraryPath())
		if err != nil {
			global.err = err
			return
		}
		named.Store(d)
		if err := d.initialize(); err != nil {
			global.err = err
			return
		}
		global.d = d
	})
	return global.d, global.err
}

// Loaded reports the path of the initialised driver library, or "" when
// Init has not succeeded.
func Loaded() string {
	if d, err := lib(); err == nil {
		return d.path
	}
	return ""
}

// DriverVersion returns the CUDA version the driver supports, encoded as
// 1000*major + 10*minor (12020 is CUDA 12.2). It needs no context.
func DriverVersion() (int, error) {
	d, err := lib()
	if err != nil {
		return 0, err
	}
	var v int32
	if r := call(d.cuDriverGetVersion, uintptr(unsafe.Pointer(&v))); r != Success {
		return 0, newCallError(r, "cuDriverGetVersion", "")
	}
	return int(v), nil
}
