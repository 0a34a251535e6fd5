package cu

import (
	"fmt"
	"unsafe"
)

// Scalar is the element types whose slices can be copied to and from the
// device as raw bytes.
type Scalar interface {
	~int8 | ~uint8 | ~int16 | ~uint16 | ~int32 | ~uint32 | ~int64 | ~uint64 | ~float32 | ~float64
}

// Bytes views s as its underlying bytes (no copy).
func Bytes[T Scalar](s []T) []byte {
	if len(s) == 0 {
		return nil
	}
	var zero T
	return unsafe.Slice((*byte)(unsafe.Pointer(unsafe.SliceData(s))), len(s)*int(unsafe.Sizeof(zero)))
}

// View reinterprets b (for example pinned memory from MemAllocHost) as a
// []T (no copy). It fails if b's length is not a multiple of T's size or b
// is misaligned for T.
func View[T Scalar](b []byte) ([]T, error) {
	var zero T
	size := int(unsafe.Sizeof(zero))
	if len(b)%size != 0 {
		return nil, fmt.Errorf("cu: View: %d bytes is not a multiple of the %d-byte element", len(b), size)
	}
	if len(b) == 0 {
		return nil, nil
	}
	p := unsafe.Pointer(unsafe.SliceData(b))
	if uintptr(p)%unsafe.Alignof(zero) != 0 {
		return nil, fmt.Errorf("cu: View: buffer at %p is not %d-byte aligned", p, unsafe.Alignof(zero))
	}
	return unsafe.Slice((*T)(p), len(b)/size), nil
}

// MemAlloc allocates bytes of device memory. Call inside Device.Do.
func MemAlloc(bytes int64) (DevicePtr, error) {
	d, err := lib()
	if err != nil {
		return 0, err
	}
	if bytes < 0 {
		return 0, fmt.Errorf("cu: MemAlloc: negative size %d", bytes)
	}
	var p uint64
	counts.allocs.Add(1)
	if r := call(d.cuMemAlloc, uintptr(unsafe.Pointer(&p)), uintptr(bytes)); r != Success {
		return 0, newCallError(r, "cuMemAlloc_v2", fmt.Sprintf("%d bytes", bytes))
	}
	return DevicePtr(p), nil
}

// MemFree frees memory from MemAlloc. Call inside Device.Do.
func MemFree(p DevicePtr) error {
	d, err := lib()
	if err != nil {
		return err
	}
	counts.frees.Add(1)
	if r := call(d.cuMemFree, uintptr(p)); r != Success {
		return newCallError(r, "cuMemFree_v2", fmt.Sprintf("%#x", uint64(p)))
	}
	return nil
}

// MemGetInfo returns the free and total device memory in bytes. Call inside
// Device.Do.
func MemGetInfo() (free, total int64, err error) {
	d, err := lib()
	if err != nil {
		return 0, 0, err
	}
	var f, t uint64
	if r := call(d.cuMemGetInfo, uintptr(unsafe.Pointer(&f)), uintptr(unsafe.Pointer(&t))); r != Success {
		return 0, 0, newCallError(r, "cuMemGetInfo_v2", "")
	}
	return int64(f), int64(t), nil
}

// MemAllocHost allocates bytes of page-locked host memory and returns it as
// a byte slice (C memory: the Go garbage collector neither scans nor frees
// it). Async copies from/to pinned memory overlap with compute, unlike Go
// memory. Free it with MemFreeHost; use View to get typed elements. Call
// inside Device.Do.
func MemAllocHost(bytes int) ([]byte, error) {
	d, err := lib()
	if err != nil {
		return nil, err
	}
	if bytes <= 0 {
		return nil, fmt.Errorf("cu: MemAllocHost: size %d must be positive", bytes)
	}
	// The driver writes a void* into p; keeping it as unsafe.Pointer (not
	// uintptr) lets us slice it without a uintptr-to-pointer conversion.
	var p unsafe.Pointer
	counts.allocs.Add(1)
	if r := call(d.cuMemAllocHost, uintptr(unsafe.Pointer(&p)), uintptr(bytes)); r != Success {
		return nil, newCallError(r, "cuMemAllocHost_v2", fmt.Sprintf("%d bytes", bytes))
	}
	return unsafe.Slice((*byte)(p), bytes), nil
}

// MemFreeHost frees a slice returned by MemAllocHost (pass the whole
// slice, or any slice starting at its first byte). Call inside Device.Do.
func MemFreeHost(b []byte) error {
	d, err := lib()
	if err != nil {
		return err
	}
	if len(b) == 0 {
		return fmt.Errorf("cu: MemFreeHost: empty slice")
	}
	p := unsafe.Pointer(unsafe.SliceData(b))
	counts.frees.Add(1)
	if r := call(d.cuMemFreeHost, uintptr(p)); r != Success {
		return newCallError(r, "cuMemFreeHost", fmt.Sprintf("%p", p))
	}
	return nil
}

// MemcpyHtoD copies src to device memory at dst, synchronously. Call inside
// Device.Do.
func MemcpyHtoD[T Scalar](dst DevicePtr, src []T) error {
	b := Bytes(src)
	if len(b) == 0 {
		return nil
	}
	d, err := lib()
	if err != nil {
		return err
	}
	counts.htod.Add(1)
	if r := call(d.cuMemcpyHtoD, uintptr(dst), uintptr(unsafe.Pointer(&b[0])), uintptr(len(b))); r != Success {
		return newCallError(r, "cuMemcpyHtoD_v2", fmt.Sprintf("dst %#x, %d bytes", uint64(dst), len(b)))
	}
	return nil
}

// MemcpyDtoH copies len(dst) elements from device memory at src into dst,
// synchronously. Call inside Device.Do.
func MemcpyDtoH[T Scalar](dst []T, src DevicePtr) error {
	b := Bytes(dst)
	if len(b) == 0 {
		return nil
	}
	d, err := lib()
	if err != nil {
		return err
	}
	counts.dtoh.Add(1)
	if r := call(d.cuMemcpyDtoH, uintptr(unsafe.Pointer(&b[0])), uintptr(src), uintptr(len(b))); r != Success {
		return newCallError(r, "cuMemcpyDtoH_v2", fmt.Sprintf("src %#x, %d bytes", uint64(src), len(b)))
	}
	return nil
}

// MemcpyDtoD copies bytes between device buffers, synchronously. Call
// inside Device.Do.
func MemcpyDtoD(dst, src DevicePtr, bytes int64) error {
	if bytes == 0 {
		return nil
	}
	d, err := lib()
	if err != nil {
		return err
	}
	counts.dtod.Add(1)
	if r := call(d.cuMemcpyDtoD, uintptr(dst), uintptr(src), uintptr(bytes)); r != Success {
		return newCallError(r, "cuMemcpyDtoD_v2", fmt.Sprintf("dst %#x, src %#x, %d bytes", uint64(dst), uint64(src), bytes))
	}
	return nil
}

// MemcpyHtoDAsync copies src to dst in stream order. From Go (pageable)
// memory the driver stages the data before returning, so src may be reused
// at once; from MemAllocHost memory the copy is truly asynchronous and src
// must stay untouched until the stream reaches it. Call inside Device.Do.
func MemcpyHtoDAsync[T Scalar](dst DevicePtr, src []T, s Stream) error {
	b := Bytes(src)
	if len(b) == 0 {
		return nil
	}
	d, err := lib()
	if err != nil {
		return err
	}
	counts.async.Add(1)
	if r := call(d.cuMemcpyHtoDAsync, uintptr(dst), uintptr(unsafe.Pointer(&b[0])), uintptr(len(b)), uintptr(s)); r != Success {
		return newCallError(r, "cuMemcpyHtoDAsync_v2", fmt.Sprintf("dst %#x, %d bytes, stream %#x", uint64(dst), len(b), uintptr(s)))
	}
	return nil
}

// MemcpyDtoHAsync copies into dst in stream order. Into Go (pageable)
// memory it returns only when the copy is done; into MemAllocHost memory it
// returns at once and dst is valid after the stream is synchronised. Call
// inside Device.Do.
func MemcpyDtoHAsync[T Scalar](dst []T, src DevicePtr, s Stream) error {
	b := Bytes(dst)
	if len(b) == 0 {
		return nil
	}
	d, err := lib()
	if err != nil {
		return err
	}
	counts.async.Add(1)
	if r := call(d.cuMemcpyDtoHAsync, uintptr(unsafe.Pointer(&b[0])), uintptr(src), uintptr(len(b)), uintptr(s)); r != Success {
		return newCallError(r, "cuMemcpyDtoHAsync_v2", fmt.Sprintf("src %#x, %d bytes, stream %#x", uint64(src), len(b), uintptr(s)))
	}
	return nil
}

// MemcpyDtoDAsync copies bytes between device buffers in stream order. Call
// inside Device.Do.
func MemcpyDtoDAsync(dst, src DevicePtr, bytes int64, s Stream) error {
	if bytes == 0 {
		return nil
	}
	d, err := lib()
	if err != nil {
		return err
	}
	counts.async.Add(1)
	if r := call(d.cuMemcpyDtoDAsync, uintptr(dst), uintptr(src), uintptr(bytes), uintptr(s)); r != Success {
		return newCallError(r, "cuMemcpyDtoDAsync_v2", fmt.Sprintf("dst %#x, src %#x, %d bytes, stream %#x", uint64(dst), uint64(src), bytes, uintptr(s)))
	}
	return nil
}

// MemsetD8Async sets n bytes at dst to v in stream order. Call inside
// Device.Do.
func MemsetD8Async(dst DevicePtr, v uint8, n int64, s Stream) error {
	if n == 0 {
		return nil
	}
	d, err := lib()
	if err != nil {
		return err
	}
	counts.async.Add(1)
	if r := call(d.cuMemsetD8Async, uintptr(dst), uintptr(v), uintptr(n), uintptr(s)); r != Success {
		return newCallError(r, "cuMemsetD8Async", fmt.Sprintf("dst %#x, value %#x, %d bytes", uint64(dst), v, n))
	}
	return nil
}

// MemsetD32Async sets n 32-bit words at dst (4-byte aligned) to v in stream
// order; pass math.Float32bits(x) to fill float32 data. Call inside
// Device.Do.
func MemsetD32Async(dst DevicePtr, v uint32, n int64, s Stream) error {
	if n == 0 {
		return nil
	}
	d, err := lib()
	if err != nil {
		return err
	}
	counts.async.Add(1)
	if r := call(d.cuMemsetD32Async, uintptr(dst), uintptr(v), uintptr(n), uintptr(s)); r != Success {
		return newCallError(r, "cuMemsetD32Async", fmt.Sprintf("dst %#x, value %#x, %d words", uint64(dst), v, n))
	}
	return nil
}
