package cu

import (
	"fmt"
	"unsafe"
)

// optional returns ErrUnsupported naming sym when the driver lacks it.
func optional(addr uintptr, sym string) error {
	if addr == 0 {
		return fmt.Errorf("%s: %w", sym, ErrUnsupported)
	}
	return nil
}

// MemAllocAsync allocates bytes from the device's current pool in stream
// order: the memory is usable by work queued on s after this call. Call
// inside Device.Do.
func MemAllocAsync(bytes int64, s Stream) (DevicePtr, error) {
	d, err := lib()
	if err != nil {
		return 0, err
	}
	if err := optional(d.cuMemAllocAsync, "cuMemAllocAsync"); err != nil {
		return 0, err
	}
	if bytes < 0 {
		return 0, fmt.Errorf("cu: MemAllocAsync: negative size %d", bytes)
	}
	var p uint64
	counts.allocs.Add(1)
	if r := call(d.cuMemAllocAsync, uintptr(unsafe.Pointer(&p)), uintptr(bytes), uintptr(s)); r != Success {
		return 0, newCallError(r, "cuMemAllocAsync", fmt.Sprintf("%d bytes, stream %#x", bytes, uintptr(s)))
	}
	return DevicePtr(p), nil
}

// MemFreeAsync returns p to its pool once the work queued on s before it
// has finished. Call inside Device.Do.
func MemFreeAsync(p DevicePtr, s Stream) error {
	d, err := lib()
	if err != nil {
		return err
	}
	if err := optional(d.cuMemFreeAsync, "cuMemFreeAsync"); err != nil {
		return err
	}
	counts.frees.Add(1)
	if r := call(d.cuMemFreeAsync, uintptr(p), uintptr(s)); r != Success {
		return newCallError(r, "cuMemFreeAsync", fmt.Sprintf("%#x, stream %#x", uint64(p), uintptr(s)))
	}
	return nil
}

// DeviceGetDefaultMemPool returns dev's default stream-ordered pool. It
// needs no context.
func DeviceGetDefaultMemPool(dev DeviceHandle) (MemPool, error) {
	d, err := lib()
	if err != nil {
		return 0, err
	}
	if err := optional(d.cuDeviceGetDefaultMemPool, "cuDeviceGetDefaultMemPool"); err != nil {
		return 0, err
	}
	var p uintptr
	if r := call(d.cuDeviceGetDefaultMemPool, uintptr(unsafe.Pointer(&p)), uintptr(dev)); r != Success {
		return 0, newCallError(r, "cuDeviceGetDefaultMemPool", fmt.Sprintf("device %d", dev))
	}
	return MemPool(p), nil
}

// MemPoolSetReleaseThreshold sets how many bytes the pool keeps cached
// across synchronisations; math.MaxUint64 keeps everything, which makes
// MemAllocAsync after warm-up nearly free. Call inside Device.Do.
func MemPoolSetReleaseThreshold(pool MemPool, bytes uint64) error {
	d, err := lib()
	if err != nil {
		return err
	}
	if err := optional(d.cuMemPoolSetAttribute, "cuMemPoolSetAttribute"); err != nil {
		return err
	}
	// The attribute value is passed by pointer to a cuuint64_t (cuda.h).
	v := bytes
	if r := call(d.cuMemPoolSetAttribute, uintptr(pool), memPoolAttrReleaseThreshold, uintptr(unsafe.Pointer(&v))); r != Success {
		return newCallError(r, "cuMemPoolSetAttribute", fmt.Sprintf("pool %#x, CU_MEMPOOL_ATTR_RELEASE_THRESHOLD=%d", uintptr(pool), bytes))
	}
	return nil
}

// MemPoolTrimTo releases cached pool memory down to keep bytes. Call inside
// Device.Do.
func MemPoolTrimTo(pool MemPool, keep int64) error {
	d, err := lib()
	if err != nil {
		return err
	}
	if err := optional(d.cuMemPoolTrimTo, "cuMemPoolTrimTo"); err != nil {
		return err
	}
	if r := call(d.cuMemPoolTrimTo, uintptr(pool), uintptr(keep)); r != Success {
		return newCallError(r, "cuMemPoolTrimTo", fmt.Sprintf("pool %#x, keep %d", uintptr(pool), keep))
	}
	return nil
}

// memAccessDesc mirrors CUmemAccessDesc: {CUmemLocation{type, id}, flags},
// 12 bytes (checked against cuda.h with gcc).
type memAccessDesc struct {
	locType, locID, flags int32
}

// MemPoolSetAccess grants (or revokes) read-write access to pool memory for
// device peer. Pool memory ignores cuCtxEnablePeerAccess, so this is how a
// peer kernel gets to read it. Call inside Device.Do.
func MemPoolSetAccess(pool MemPool, peer DeviceHandle, readWrite bool) error {
	d, err := lib()
	if err != nil {
		return err
	}
	if err := optional(d.cuMemPoolSetAccess, "cuMemPoolSetAccess"); err != nil {
		return err
	}
	desc := memAccessDesc{locType: memLocationTypeDevice, locID: int32(peer), flags: memAccessFlagsProtNone}
	if readWrite {
		desc.flags = memAccessFlagsProtReadWrite
	}
	if r := call(d.cuMemPoolSetAccess, uintptr(pool), uintptr(unsafe.Pointer(&desc)), 1); r != Success {
		return newCallError(r, "cuMemPoolSetAccess", fmt.Sprintf("pool %#x, device %d, read-write %v", uintptr(pool), peer, readWrite))
	}
	return nil
}

// DeviceCanAccessPeer reports whether dev can map peer's memory. It needs
// no context.
func DeviceCanAccessPeer(dev, peer DeviceHandle) (bool, error) {
	d, err := lib()
	if err != nil {
		return false, err
	}
	var ok int32
	if r := call(d.cuDeviceCanAccessPeer, uintptr(unsafe.Pointer(&ok)), uintptr(dev), uintptr(peer)); r != Success {
		return false, newCallError(r, "cuDeviceCanAccessPeer", fmt.Sprintf("device %d, peer %d", dev, peer))
	}
	return ok != 0, nil
}

// CtxEnablePeerAccess lets the current context access peer's memory.
// Access is one-directional; CUDA_ERROR_PEER_ACCESS_ALREADY_ENABLED counts
// as success so the call is idempotent. Call inside the accessing device's
// Device.Do.
func CtxEnablePeerAccess(peer Context) error {
	d, err := lib()
	if err != nil {
		return err
	}
	switch r := call(d.cuCtxEnablePeerAccess, uintptr(peer), 0); r {
	case Success, ErrorPeerAccessAlreadyEnable:
		return nil
	default:
		return newCallError(r, "cuCtxEnablePeerAccess", fmt.Sprintf("peer context %#x", uintptr(peer)))
	}
}

// CtxDisablePeerAccess revokes access enabled by CtxEnablePeerAccess. Call
// inside the accessing device's Device.Do.
func CtxDisablePeerAccess(peer Context) error {
	d, err := lib()
	if err != nil {
		return err
	}
	if r := call(d.cuCtxDisablePeerAccess, uintptr(peer)); r != Success {
		return newCallError(r, "cuCtxDisablePeerAccess", fmt.Sprintf("peer context %#x", uintptr(peer)))
	}
	return nil
}

// MemcpyPeerAsync copies bytes from src in srcCtx to dst in dstCtx in
// stream order; it works without peer access (the driver stages it). Call
// inside Device.Do.
func MemcpyPeerAsync(dst DevicePtr, dstCtx Context, src DevicePtr, srcCtx Context, bytes int64, s Stream) error {
	if bytes == 0 {
		return nil
	}
	d, err := lib()
	if err != nil {
		return err
	}
	counts.async.Add(1)
	if r := call(d.cuMemcpyPeerAsync, uintptr(dst), uintptr(dstCtx), uintptr(src), uintptr(srcCtx), uintptr(bytes), uintptr(s)); r != Success {
		return newCallError(r, "cuMemcpyPeerAsync", fmt.Sprintf("dst %#x, src %#x, %d bytes", uint64(dst), uint64(src), bytes))
	}
	return nil
}
