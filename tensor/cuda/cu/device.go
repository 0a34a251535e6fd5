package cu

import (
	"fmt"
	"sync"
	"unsafe"
)

// Device is one opened GPU: its primary context plus a worker goroutine
// locked to an OS thread on which that context is current. Run CUDA work
// with Do. A Device is safe for concurrent use; its jobs run one at a time.
type Device struct {
	ordinal  int
	handle   DeviceHandle
	ctx      Context
	name     string
	major    int
	minor    int
	sms      int
	totalMem int64
	w        *worker

	closeOnce sync.Once
	closeErr  error
}

// DeviceCount returns the number of CUDA devices (0 needs no special case:
// Init already reports ErrNoDevice). It needs no context.
func DeviceCount() (int, error) {
	d, err := lib()
	if err != nil {
		return 0, err
	}
	var n int32
	if r := call(d.cuDeviceGetCount, uintptr(unsafe.Pointer(&n))); r != Success {
		return 0, newCallError(r, "cuDeviceGetCount", "")
	}
	return int(n), nil
}

// DeviceGet returns the handle of device ordinal. It needs no context.
func DeviceGet(ordinal int) (DeviceHandle, error) {
	d, err := lib()
	if err != nil {
		return 0, err
	}
	var h int32
	if r := call(d.cuDeviceGet, uintptr(unsafe.Pointer(&h)), uintptr(ordinal)); r != Success {
		return 0, newCallError(r, "cuDeviceGet", fmt.Sprintf("ordinal %d", ordinal))
	}
	return DeviceHandle(h), nil
}

// DeviceGetName returns the marketing name of dev. It needs no context.
func DeviceGetName(dev DeviceHandle) (string, error) {
	d, err := lib()
	if err != nil {
		return "", err
	}
	var buf [256]byte
	if r := call(d.cuDeviceGetName, uintptr(unsafe.Pointer(&buf[0])), uintptr(len(buf)-1), uintptr(dev)); r != Success {
		return "", newCallError(r, "cuDeviceGetName", fmt.Sprintf("device %d", dev))
	}
	return cString(&buf[0]), nil
}

// DeviceGetAttribute returns one attribute of dev. It needs no context.
func DeviceGetAttribute(dev DeviceHandle, attr DeviceAttribute) (int, error) {
	d, err := lib()
	if err != nil {
		return 0, err
	}
	var v int32
	if r := call(d.cuDeviceGetAttribute, uintptr(unsafe.Pointer(&v)), uintptr(attr), uintptr(dev)); r != Success {
		return 0, newCallError(r, "cuDeviceGetAttribute", fmt.Sprintf("attribute %d, device %d", attr, dev))
	}
	return int(v), nil
}

// DeviceTotalMem returns the memory size of dev in bytes. It needs no context.
func DeviceTotalMem(dev DeviceHandle) (int64, error) {
	d, err := lib()
	if err != nil {
		return 0, err
	}
	var n uint64
	if r := call(d.cuDeviceTotalMem, uintptr(unsafe.Pointer(&n)), uintptr(dev)); r != Success {
		return 0, newCallError(r, "cuDeviceTotalMem_v2", fmt.Sprintf("device %d", dev))
	}
	return int64(n), nil
}

// DevicePrimaryCtxSetFlags sets the scheduling flags of dev's primary
// context; it only takes effect before the context is first retained (i.e.
// before Open). It needs no context.
func DevicePrimaryCtxSetFlags(dev DeviceHandle, flags CtxFlags) error {
	d, err := lib()
	if err != nil {
		return err
	}
	if d.cuDevicePrimaryCtxSetFlags == 0 {
		return fmt.Errorf("cuDevicePrimaryCtxSetFlags_v2: %w", ErrUnsupported)
	}
	if r := call(d.cuDevicePrimaryCtxSetFlags, uintptr(dev), uintptr(flags)); r != Success {
		return newCallError(r, "cuDevicePrimaryCtxSetFlags_v2", fmt.Sprintf("device %d, flags %#x", dev, uint32(flags)))
	}
	return nil
}

// CtxSetCurrent makes ctx (a Device's primary context, or 0 for none) current
// on the calling thread. Only for a Worker's jobs: a Device's worker keeps its
// own context current, and an unlocked goroutine may change threads between
// calls (docs: a context is current per OS thread, and a primary context may
// be current on many threads at once).
func CtxSetCurrent(ctx Context) error {
	d, err := lib()
	if err != nil {
		return err
	}
	if r := call(d.cuCtxSetCurrent, uintptr(ctx)); r != Success {
		return newCallError(r, "cuCtxSetCurrent", fmt.Sprintf("context %#x", uintptr(ctx)))
	}
	return nil
}

// CtxGetCurrent returns the context current on the calling thread (0 if
// none). Inside Device.Do it is that device's primary context.
func CtxGetCurrent() (Context, error) {
	d, err := lib()
	if err != nil {
		return 0, err
	}
	var c uintptr
	if r := call(d.cuCtxGetCurrent, uintptr(unsafe.Pointer(&c))); r != Success {
		return 0, newCallError(r, "cuCtxGetCurrent", "")
	}
	return Context(c), nil
}

// CtxSynchronize waits for all work in the current context. Call inside
// Device.Do.
func CtxSynchronize() error {
	d, err := lib()
	if err != nil {
		return err
	}
	counts.syncs.Add(1)
	if r := call(d.cuCtxSynchronize); r != Success {
		return newCallError(r, "cuCtxSynchronize", "")
	}
	return nil
}

// Open initialises the driver, retains the primary context of device
// ordinal and starts the device's worker thread with that context current.
// Several Open calls for one ordinal give independent workers sharing the
// (reference-counted) primary context; normally open each device once.
func Open(ordinal int) (*Device, error) {
	d, err := lib()
	if err != nil {
		return nil, err
	}
	n, err := DeviceCount()
	if err != nil {
		return nil, err
	}
	if ordinal < 0 || ordinal >= n {
		return nil, fmt.Errorf("cu: device ordinal %d out of range: %d CUDA device(s) present", ordinal, n)
	}
	dev := &Device{ordinal: ordinal}
	if dev.handle, err = DeviceGet(ordinal); err != nil {
		return nil, err
	}
	if dev.name, err = DeviceGetName(dev.handle); err != nil {
		return nil, err
	}
	if dev.major, err = DeviceGetAttribute(dev.handle, AttrComputeCapabilityMajor); err != nil {
		return nil, err
	}
	if dev.minor, err = DeviceGetAttribute(dev.handle, AttrComputeCapabilityMinor); err != nil {
		return nil, err
	}
	if dev.sms, err = DeviceGetAttribute(dev.handle, AttrMultiprocessorCount); err != nil {
		return nil, err
	}
	if dev.totalMem, err = DeviceTotalMem(dev.handle); err != nil {
		return nil, err
	}
	var ctx uintptr
	if r := call(d.cuDevicePrimaryCtxRetain, uintptr(unsafe.Pointer(&ctx)), uintptr(dev.handle)); r != Success {
		return nil, newCallError(r, "cuDevicePrimaryCtxRetain", fmt.Sprintf("device %d", ordinal))
	}
	dev.ctx = Context(ctx)
	release := func() error {
		if r := call(d.cuDevicePrimaryCtxRelease, uintptr(dev.handle)); r != Success {
			return newCallError(r, "cuDevicePrimaryCtxRelease_v2", fmt.Sprintf("device %d", ordinal))
		}
		return nil
	}
	setup := func() error {
		if r := call(d.cuCtxSetCurrent, ctx); r != Success {
			return newCallError(r, "cuCtxSetCurrent", fmt.Sprintf("primary context of device %d", ordinal))
		}
		return nil
	}
	teardown := func() error {
		_ = call(d.cuCtxSetCurrent, 0)
		return nil
	}
	if dev.w, err = startWorker(setup, teardown); err != nil {
		_ = release()
		return nil, err
	}
	return dev, nil
}

// Do runs fn on the device's worker thread, with the device's primary
// context current, and returns fn's error. Calls from many goroutines are
// serialised. A Do made from inside fn (directly or through helpers) runs
// inline on the worker rather than deadlocking; the check compares OS thread
// ids, which is exact because the worker goroutine is locked to its thread.
// A panic in fn is re-raised in the caller. Do on a closed device returns
// ErrClosed. Do not nest Do calls across devices in a cycle (A's job waiting
// on B's job waiting on A): that deadlocks like any two mutexes. Do not call
// t.Fatal/t.FailNow (runtime.Goexit) inside fn: it ends the worker
// goroutine, after which the device reports itself closed; return an error
// from fn instead.
//
// Cost: a Do from another goroutine hands the job to a parked, locked OS
// thread and back, which is an OS-level wake-up each way (tens of µs round
// trip on the heavily loaded 2-core dev VM, against under 1 µs for an
// unlocked goroutine ping-pong; see docs/perf.md). So run a whole op
// sequence (or a whole step) per Do rather than one driver call per Do; an
// inline (nested) Do costs one gettid system call.
func (dev *Device) Do(fn func() error) error { return dev.w.do(fn) }

// Close stops the worker (after the job in progress) and releases the
// primary context. When the last retain is released the driver destroys the
// context and with it every allocation, module and stream made in it.
// Close must not be called from inside Do; later calls return the first
// call's result (the context is released exactly once).
func (dev *Device) Close() error {
	if err := dev.w.close(); err != nil {
		return err
	}
	dev.closeOnce.Do(func() {
		d, err := lib()
		if err != nil {
			dev.closeErr = err
			return
		}
		if r := call(d.cuDevicePrimaryCtxRelease, uintptr(dev.handle)); r != Success {
			dev.closeErr = newCallError(r, "cuDevicePrimaryCtxRelease_v2", fmt.Sprintf("device %d", dev.ordinal))
		}
	})
	return dev.closeErr
}

// Ordinal returns the device's ordinal.
func (dev *Device) Ordinal() int { return dev.ordinal }

// Handle returns the CUdevice handle.
func (dev *Device) Handle() DeviceHandle { return dev.handle }

// Context returns the device's primary context.
func (dev *Device) Context() Context { return dev.ctx }

// Name returns the device name, e.g. "NVIDIA H100 80GB HBM3".
func (dev *Device) Name() string { return dev.name }

// ComputeCapability returns the SM version, e.g. (9, 0) for Hopper.
func (dev *Device) ComputeCapability() (major, minor int) { return dev.major, dev.minor }

// SMCount returns the number of streaming multiprocessors, which sizes
// grid-stride launches (a few blocks per SM saturate memory bandwidth).
func (dev *Device) SMCount() int { return dev.sms }

// TotalMem returns the device memory size in bytes.
func (dev *Device) TotalMem() int64 { return dev.totalMem }

// Attribute returns any device attribute; it needs no context.
func (dev *Device) Attribute(attr DeviceAttribute) (int, error) {
	return DeviceGetAttribute(dev.handle, attr)
}

// String describes the device, e.g. "cuda:0 NVIDIA H100 (sm_90, 132 SMs, 79.1 GiB)".
func (dev *Device) String() string {
	return fmt.Sprintf("cuda:%d %s (sm_%d%d, %d SMs, %.1f GiB)", dev.ordinal, dev.name, dev.major, dev.minor,
		dev.sms, float64(dev.totalMem)/(1<<30))
}
