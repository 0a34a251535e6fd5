package cu

import (
	"fmt"
	"runtime"
	"unsafe"
)

// LaunchKernel queues f on stream with the given grid, block and dynamic
// shared memory. params is the kernelParams array: params[i] points at the
// value of argument i, which must have exactly the byte size the kernel's
// PTX declares for it (a DevicePtr/int64/uint64 for .u64, an int32/uint32/
// float32 for 32-bit parameters, ...). The driver copies the values during
// the call, so they only need to stay alive until LaunchKernel returns,
// which it guarantees for params and everything params points at. Launch
// errors of the kernel itself surface at the next synchronisation. Call
// inside Device.Do.
//
// This is the hot path: it makes one purego.SyscallN call (no reflection),
// and the generated launchers in package kernels reuse one argument block.
func LaunchKernel(f Function, grid, block Dim3, sharedMem uint32, stream Stream, params []unsafe.Pointer) error {
	d, err := lib()
	if err != nil {
		return err
	}
	return d.launchKernel(f, grid, block, sharedMem, stream, params)
}

// launchKernel is LaunchKernel on a given driver (tests use their own).
func (d *driver) launchKernel(f Function, grid, block Dim3, sharedMem uint32, stream Stream, params []unsafe.Pointer) error {
	var r Result
	counts.launches.Add(1)
	// The pointer conversion stays inside the call expression so that
	// go:uintptrescapes on call keeps params alive for its duration.
	if len(params) == 0 {
		r = call(d.cuLaunchKernel, uintptr(f), uintptr(grid.X), uintptr(grid.Y), uintptr(grid.Z),
			uintptr(block.X), uintptr(block.Y), uintptr(block.Z), uintptr(sharedMem), uintptr(stream), 0, 0)
	} else {
		r = call(d.cuLaunchKernel, uintptr(f), uintptr(grid.X), uintptr(grid.Y), uintptr(grid.Z),
			uintptr(block.X), uintptr(block.Y), uintptr(block.Z), uintptr(sharedMem), uintptr(stream),
			uintptr(unsafe.Pointer(&params[0])), 0)
	}
	runtime.KeepAlive(params)
	if r != Success {
		return newCallError(r, "cuLaunchKernel", fmt.Sprintf("grid %v, block %v, %d B shared, stream %#x, %d params",
			grid, block, sharedMem, uintptr(stream), len(params)))
	}
	return nil
}
