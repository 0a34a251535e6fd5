package cu

import (
	"unsafe"

	"github.com/ebitengine/purego"
)

// call invokes the C function at fn with integer-class arguments and returns
// its CUresult.
//
// Every driver entry point this package binds takes only integers and
// pointers (no float by value), so purego.SyscallN is exact and avoids the
// reflection cost of RegisterFunc (about 100 ns and one allocation per call
// instead of 270-600 ns and up to 11; go-cuda.md §1.3). CUresult is a C enum
// (32 bits) returned in EAX; the upper half of RAX is unspecified, hence the
// truncation to uint32.
//
// go:uintptrescapes keeps every uintptr(unsafe.Pointer(x)) argument alive and
// in place until the call returns, as SyscallN itself does.
//
//go:uintptrescapes
func call(fn uintptr, args ...uintptr) Result {
	r, _, _ := purego.SyscallN(fn, args...)
	return Result(uint32(r))
}

// cString copies a NUL-terminated C string into Go memory. p must be nil or
// point at a NUL-terminated string that stays valid during the copy (the
// driver's error strings are static).
func cString(p *byte) string {
	if p == nil {
		return ""
	}
	n := 0
	for *(*byte)(unsafe.Add(unsafe.Pointer(p), n)) != 0 {
		n++
	}
	return string(unsafe.Slice(p, n))
}

// cBytes returns s as a NUL-terminated byte slice for const char* arguments.
func cBytes(s string) []byte {
	b := make([]byte, len(s)+1)
	copy(b, s)
	return b
}
