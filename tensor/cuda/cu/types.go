package cu

import "fmt"

// DevicePtr is a device memory address (CUdeviceptr, 64-bit). It is not a Go
// pointer: keep it out of unsafe.Pointer so the garbage collector and vet's
// pointer checks never see it.
type DevicePtr uint64

// Add returns p advanced by off bytes.
func (p DevicePtr) Add(off int64) DevicePtr { return p + DevicePtr(off) }

// DeviceHandle is a CUdevice as returned by cuDeviceGet.
type DeviceHandle int32

// Context is a CUcontext handle.
type Context uintptr

// Module is a CUmodule handle (a loaded PTX/cubin image).
type Module uintptr

// Function is a CUfunction handle (a kernel entry point in a Module).
type Function uintptr

// Stream is a CUstream handle. The zero Stream is the legacy default stream,
// which synchronises with every blocking stream of the context.
type Stream uintptr

// Event is a CUevent handle.
type Event uintptr

// MemPool is a CUmemoryPool handle (stream-ordered allocator pool).
type MemPool uintptr

// Dim3 is a grid or block shape.
type Dim3 struct{ X, Y, Z uint32 }

// D1 returns the one-dimensional shape {x, 1, 1}.
func D1(x uint32) Dim3 { return Dim3{x, 1, 1} }

// Count returns X*Y*Z.
func (d Dim3) Count() uint64 { return uint64(d.X) * uint64(d.Y) * uint64(d.Z) }

// String formats d as "(x,y,z)".
func (d Dim3) String() string { return fmt.Sprintf("(%d,%d,%d)", d.X, d.Y, d.Z) }

// DeviceAttribute is a CUdevice_attribute (cuda.h, CUDA 11.8).
type DeviceAttribute int32

// Device attributes (values from cuda.h; go-cuda.md §2.4).
const (
	AttrMaxThreadsPerBlock           DeviceAttribute = 1
	AttrMaxBlockDimX                 DeviceAttribute = 2
	AttrMaxGridDimX                  DeviceAttribute = 5
	AttrMaxGridDimY                  DeviceAttribute = 6
	AttrMaxGridDimZ                  DeviceAttribute = 7
	AttrMaxSharedMemoryPerBlock      DeviceAttribute = 8
	AttrWarpSize                     DeviceAttribute = 10
	AttrClockRate                    DeviceAttribute = 13
	AttrMultiprocessorCount          DeviceAttribute = 16
	AttrMemoryClockRate              DeviceAttribute = 36
	AttrGlobalMemoryBusWidth         DeviceAttribute = 37
	AttrL2CacheSize                  DeviceAttribute = 38
	AttrMaxThreadsPerMultiprocessor  DeviceAttribute = 39
	AttrUnifiedAddressing            DeviceAttribute = 41
	AttrComputeCapabilityMajor       DeviceAttribute = 75
	AttrComputeCapabilityMinor       DeviceAttribute = 76
	AttrMaxSharedMemoryPerMultiproc  DeviceAttribute = 81
	AttrMaxRegistersPerMultiproc     DeviceAttribute = 82
	AttrMaxSharedMemoryPerBlockOptin DeviceAttribute = 97
	AttrMemoryPoolsSupported         DeviceAttribute = 115
)

// FuncAttribute is a CUfunction_attribute (cuda.h, CUDA 11.8).
type FuncAttribute int32

// Function attributes.
const (
	FuncAttrMaxThreadsPerBlock         FuncAttribute = 0
	FuncAttrSharedSizeBytes            FuncAttribute = 1
	FuncAttrConstSizeBytes             FuncAttribute = 2
	FuncAttrLocalSizeBytes             FuncAttribute = 3
	FuncAttrNumRegs                    FuncAttribute = 4
	FuncAttrPTXVersion                 FuncAttribute = 5
	FuncAttrBinaryVersion              FuncAttribute = 6
	FuncAttrMaxDynamicSharedSizeBytes  FuncAttribute = 8
	FuncAttrPreferredSharedCarveoutPct FuncAttribute = 9
)

// Flags and enumerators passed to the driver (cuda.h, CUDA 11.8).
const (
	streamNonBlocking = 1 // CU_STREAM_NON_BLOCKING

	jitInfoLogBuffer          = 3 // CU_JIT_INFO_LOG_BUFFER
	jitInfoLogBufferSizeBytes = 4 // CU_JIT_INFO_LOG_BUFFER_SIZE_BYTES
	jitErrorLogBuffer         = 5 // CU_JIT_ERROR_LOG_BUFFER
	jitErrorLogBufferSize     = 6 // CU_JIT_ERROR_LOG_BUFFER_SIZE_BYTES
	jitLogVerbose             = 12

	memPoolAttrReleaseThreshold = 4 // CU_MEMPOOL_ATTR_RELEASE_THRESHOLD
	memLocationTypeDevice       = 1 // CU_MEM_LOCATION_TYPE_DEVICE
	memAccessFlagsProtNone      = 0 // CU_MEM_ACCESS_FLAGS_PROT_NONE
	memAccessFlagsProtReadWrite = 3 // CU_MEM_ACCESS_FLAGS_PROT_READWRITE
)

// EventFlags are cuEventCreate flags.
type EventFlags uint32

// Event creation flags.
const (
	EventDefault       EventFlags = 0 // timing enabled, spin on sync
	EventBlockingSync  EventFlags = 1 // cuEventSynchronize blocks the thread instead of spinning
	EventDisableTiming EventFlags = 2 // cheapest; for ordering only (no ElapsedTime)
)

// CtxFlags are primary-context flags (cuDevicePrimaryCtxSetFlags).
type CtxFlags uint32

// Primary context scheduling flags.
const (
	CtxSchedAuto         CtxFlags = 0 // driver's heuristic (spins when cores are free)
	CtxSchedSpin         CtxFlags = 1
	CtxSchedYield        CtxFlags = 2
	CtxSchedBlockingSync CtxFlags = 4 // block on a sync primitive: saves CPU, adds latency
)
