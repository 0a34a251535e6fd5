package cu

import (
	"errors"
	"fmt"
	"strings"
	"unsafe"
)

// Result is a CUresult, the status every driver call returns. It implements
// error; the zero value is Success. Use errors.As(err, &r) to get the code
// out of a wrapped error, or errors.Is(err, cu.ErrorOutOfMemory).
type Result uint32

// CUresult codes this package refers to by name (cuda.h, CUDA 11.8;
// go-cuda.md §2.4). Other codes still print by the driver's names.
const (
	Success                      Result = 0
	ErrorInvalidValue            Result = 1
	ErrorOutOfMemory             Result = 2
	ErrorNotInitialized          Result = 3
	ErrorDeinitialized           Result = 4
	ErrorNoDevice                Result = 100
	ErrorInvalidDevice           Result = 101
	ErrorInvalidImage            Result = 200
	ErrorInvalidContext          Result = 201
	ErrorNoBinaryForGPU          Result = 209
	ErrorECCUncorrectable        Result = 214
	ErrorPeerAccessUnsupported   Result = 217
	ErrorInvalidPTX              Result = 218
	ErrorJITCompilerNotFound     Result = 221
	ErrorUnsupportedPTXVersion   Result = 222
	ErrorInvalidHandle           Result = 400
	ErrorNotFound                Result = 500
	ErrorNotReady                Result = 600
	ErrorIllegalAddress          Result = 700
	ErrorLaunchOutOfResources    Result = 701
	ErrorLaunchTimeout           Result = 702
	ErrorPeerAccessAlreadyEnable Result = 704
	ErrorAssert                  Result = 710
	ErrorHardwareStackError      Result = 714
	ErrorIllegalInstruction      Result = 715
	ErrorMisalignedAddress       Result = 716
	ErrorInvalidAddressSpace     Result = 717
	ErrorInvalidPC               Result = 718
	ErrorLaunchFailed            Result = 719
	ErrorNotSupported            Result = 801
	ErrorExternalDevice          Result = 911
	ErrorUnknown                 Result = 999
)

// resultText is a code's name and description.
type resultText struct{ name, text string }

// staticResults names the common codes when no driver is loaded to ask. The
// names are cuda.h's enumerators; the descriptions are those that the 535
// driver's cuGetErrorString returns (a test checks the two agree whenever a
// driver is present).
var staticResults = map[Result]resultText{
	Success:                      {"CUDA_SUCCESS", "no error"},
	ErrorInvalidValue:            {"CUDA_ERROR_INVALID_VALUE", "invalid argument"},
	ErrorOutOfMemory:             {"CUDA_ERROR_OUT_OF_MEMORY", "out of memory"},
	ErrorNotInitialized:          {"CUDA_ERROR_NOT_INITIALIZED", "initialization error"},
	ErrorDeinitialized:           {"CUDA_ERROR_DEINITIALIZED", "driver shutting down"},
	ErrorNoDevice:                {"CUDA_ERROR_NO_DEVICE", "no CUDA-capable device is detected"},
	ErrorInvalidDevice:           {"CUDA_ERROR_INVALID_DEVICE", "invalid device ordinal"},
	ErrorInvalidImage:            {"CUDA_ERROR_INVALID_IMAGE", "device kernel image is invalid"},
	ErrorInvalidContext:          {"CUDA_ERROR_INVALID_CONTEXT", "invalid device context"},
	ErrorNoBinaryForGPU:          {"CUDA_ERROR_NO_BINARY_FOR_GPU", "no kernel image is available for execution on the device"},
	ErrorECCUncorrectable:        {"CUDA_ERROR_ECC_UNCORRECTABLE", "uncorrectable ECC error encountered"},
	ErrorPeerAccessUnsupported:   {"CUDA_ERROR_PEER_ACCESS_UNSUPPORTED", "peer access is not supported between these two devices"},
	ErrorInvalidPTX:              {"CUDA_ERROR_INVALID_PTX", "a PTX JIT compilation failed"},
	ErrorJITCompilerNotFound:     {"CUDA_ERROR_JIT_COMPILER_NOT_FOUND", "PTX JIT compiler library not found"},
	ErrorUnsupportedPTXVersion:   {"CUDA_ERROR_UNSUPPORTED_PTX_VERSION", "the provided PTX was compiled with an unsupported toolchain."},
	ErrorInvalidHandle:           {"CUDA_ERROR_INVALID_HANDLE", "invalid resource handle"},
	ErrorNotFound:                {"CUDA_ERROR_NOT_FOUND", "named symbol not found"},
	ErrorNotReady:                {"CUDA_ERROR_NOT_READY", "device not ready"},
	ErrorIllegalAddress:          {"CUDA_ERROR_ILLEGAL_ADDRESS", "an illegal memory access was encountered"},
	ErrorLaunchOutOfResources:    {"CUDA_ERROR_LAUNCH_OUT_OF_RESOURCES", "too many resources requested for launch"},
	ErrorLaunchTimeout:           {"CUDA_ERROR_LAUNCH_TIMEOUT", "the launch timed out and was terminated"},
	ErrorPeerAccessAlreadyEnable: {"CUDA_ERROR_PEER_ACCESS_ALREADY_ENABLED", "peer access is already enabled"},
	ErrorAssert:                  {"CUDA_ERROR_ASSERT", "device-side assert triggered"},
	ErrorHardwareStackError:      {"CUDA_ERROR_HARDWARE_STACK_ERROR", "hardware stack error"},
	ErrorIllegalInstruction:      {"CUDA_ERROR_ILLEGAL_INSTRUCTION", "an illegal instruction was encountered"},
	ErrorMisalignedAddress:       {"CUDA_ERROR_MISALIGNED_ADDRESS", "misaligned address"},
	ErrorInvalidAddressSpace:     {"CUDA_ERROR_INVALID_ADDRESS_SPACE", "operation not supported on global/shared address space"},
	ErrorInvalidPC:               {"CUDA_ERROR_INVALID_PC", "invalid program counter"},
	ErrorLaunchFailed:            {"CUDA_ERROR_LAUNCH_FAILED", "unspecified launch failure"},
	ErrorNotSupported:            {"CUDA_ERROR_NOT_SUPPORTED", "operation not supported"},
	ErrorExternalDevice:          {"CUDA_ERROR_EXTERNAL_DEVICE", "an async error has occured in external entity outside of CUDA"},
	ErrorUnknown:                 {"CUDA_ERROR_UNKNOWN", "unknown error"},
}

// driverText asks the driver for r's name and description; ok is false when
// the driver does not know r (cuGetErrorName returns CUDA_ERROR_INVALID_VALUE).
func (d *driver) driverText(r Result) (t resultText, ok bool) {
	var name, text *byte
	if call(d.cuGetErrorName, uintptr(r), uintptr(unsafe.Pointer(&name))) != Success || name == nil {
		return t, false
	}
	t.name = cString(name)
	if call(d.cuGetErrorString, uintptr(r), uintptr(unsafe.Pointer(&text))) == Success {
		t.text = cString(text)
	}
	return t, true
}

// lookup names r, preferring the loaded driver's own tables.
func (r Result) lookup() resultText {
	if d := named.Load(); d != nil {
		if t, ok := d.driverText(r); ok {
			return t
		}
	}
	if t, ok := staticResults[r]; ok {
		return t
	}
	return resultText{fmt.Sprintf("CUresult(%d)", uint32(r)), "unrecognised CUDA error code"}
}

// Name returns the enumerator name, e.g. "CUDA_ERROR_OUT_OF_MEMORY".
func (r Result) Name() string { return r.lookup().name }

// Error returns "NAME: description", e.g.
// "CUDA_ERROR_OUT_OF_MEMORY: out of memory".
func (r Result) Error() string {
	t := r.lookup()
	if t.text == "" {
		return t.name
	}
	return t.name + ": " + t.text
}

// Sticky reports whether r leaves the process's CUDA state unusable, so that
// every later call fails with the same error until the process restarts.
// The set is the codes whose cuda.h (11.8) documentation says "This leaves
// the process in an inconsistent state ... the process must be terminated
// and relaunched", plus CUDA_ERROR_ASSERT, whose context "cannot be used
// anymore" (a primary context cannot be rebuilt in-process without losing
// every allocation either).
func (r Result) Sticky() bool {
	switch r {
	case ErrorIllegalAddress, ErrorLaunchTimeout, ErrorAssert, ErrorHardwareStackError,
		ErrorIllegalInstruction, ErrorMisalignedAddress, ErrorInvalidAddressSpace,
		ErrorInvalidPC, ErrorLaunchFailed, ErrorExternalDevice:
		return true
	}
	return false
}

// CallError is a failed driver call: which entry point, with which
// arguments, and the Result it returned.
type CallError struct {
	Func   string // dlsym name, e.g. "cuMemAlloc_v2"
	Args   string // human-readable arguments, e.g. "1048576 bytes"
	Result Result
	Log    string // extra detail, e.g. the JIT error log of a module load
}

// Error reads like "cuMemAlloc_v2(1048576 bytes): CUDA_ERROR_OUT_OF_MEMORY:
// out of memory"; a sticky error says that the process must restart.
func (e *CallError) Error() string {
	var b strings.Builder
	b.WriteString(e.Func)
	b.WriteByte('(')
	b.WriteString(e.Args)
	b.WriteString("): ")
	b.WriteString(e.Result.Error())
	if e.Result.Sticky() {
		b.WriteString(" [fatal: sticky CUDA error, the context is unusable; restart the process]")
	}
	if e.Log != "" {
		b.WriteString("\n")
		b.WriteString(e.Log)
	}
	return b.String()
}

// Unwrap exposes the Result to errors.Is and errors.As.
func (e *CallError) Unwrap() error { return e.Result }

// newCallError builds the error for a failed call; args is preformatted.
func newCallError(r Result, fn, args string) error {
	return &CallError{Func: fn, Args: args, Result: r}
}

// IsSticky reports whether err carries a sticky Result (see Result.Sticky):
// the caller must stop using CUDA and report the error as fatal.
func IsSticky(err error) bool {
	var r Result
	return errors.As(err, &r) && r.Sticky()
}

// ResultOf extracts the Result carried by err, if any.
func ResultOf(err error) (Result, bool) {
	var r Result
	ok := errors.As(err, &r)
	return r, ok
}
