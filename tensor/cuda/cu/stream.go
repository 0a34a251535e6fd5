package cu

import (
	"fmt"
	"unsafe"
)

// StreamCreate creates a non-blocking stream (CU_STREAM_NON_BLOCKING): it
// does not synchronise with the legacy default stream, so work queued on
// stream 0 by other code cannot stall it. Call inside Device.Do.
func StreamCreate() (Stream, error) {
	d, err := lib()
	if err != nil {
		return 0, err
	}
	var s uintptr
	if r := call(d.cuStreamCreate, uintptr(unsafe.Pointer(&s)), streamNonBlocking); r != Success {
		return 0, newCallError(r, "cuStreamCreate", "CU_STREAM_NON_BLOCKING")
	}
	return Stream(s), nil
}

// StreamDestroy destroys s; work already queued still completes. Call
// inside Device.Do.
func StreamDestroy(s Stream) error {
	d, err := lib()
	if err != nil {
		return err
	}
	if r := call(d.cuStreamDestroy, uintptr(s)); r != Success {
		return newCallError(r, "cuStreamDestroy_v2", fmt.Sprintf("%#x", uintptr(s)))
	}
	return nil
}

// StreamSynchronize waits until all work in s is done; errors of
// asynchronous kernels surface here. Call inside Device.Do.
func StreamSynchronize(s Stream) error {
	d, err := lib()
	if err != nil {
		return err
	}
	counts.syncs.Add(1)
	if r := call(d.cuStreamSynchronize, uintptr(s)); r != Success {
		return newCallError(r, "cuStreamSynchronize", fmt.Sprintf("%#x", uintptr(s)))
	}
	return nil
}

// StreamQuery reports whether all work in s is done (CUDA_ERROR_NOT_READY
// means "not yet", not an error). Call inside Device.Do.
func StreamQuery(s Stream) (bool, error) {
	d, err := lib()
	if err != nil {
		return false, err
	}
	switch r := call(d.cuStreamQuery, uintptr(s)); r {
	case Success:
		return true, nil
	case ErrorNotReady:
		return false, nil
	default:
		return false, newCallError(r, "cuStreamQuery", fmt.Sprintf("%#x", uintptr(s)))
	}
}

// StreamWaitEvent makes future work in s wait for e's last record; e may
// belong to another device. Call inside Device.Do.
func StreamWaitEvent(s Stream, e Event) error {
	d, err := lib()
	if err != nil {
		return err
	}
	if r := call(d.cuStreamWaitEvent, uintptr(s), uintptr(e), 0); r != Success {
		return newCallError(r, "cuStreamWaitEvent", fmt.Sprintf("stream %#x, event %#x", uintptr(s), uintptr(e)))
	}
	return nil
}

// EventCreate creates an event. Use EventDisableTiming for pure ordering.
// Call inside Device.Do.
func EventCreate(flags EventFlags) (Event, error) {
	d, err := lib()
	if err != nil {
		return 0, err
	}
	var e uintptr
	if r := call(d.cuEventCreate, uintptr(unsafe.Pointer(&e)), uintptr(flags)); r != Success {
		return 0, newCallError(r, "cuEventCreate", fmt.Sprintf("flags %#x", uint32(flags)))
	}
	return Event(e), nil
}

// EventRecord records e at the current end of s. Call inside Device.Do.
func EventRecord(e Event, s Stream) error {
	d, err := lib()
	if err != nil {
		return err
	}
	if r := call(d.cuEventRecord, uintptr(e), uintptr(s)); r != Success {
		return newCallError(r, "cuEventRecord", fmt.Sprintf("event %#x, stream %#x", uintptr(e), uintptr(s)))
	}
	return nil
}

// EventSynchronize waits for e's last record to complete. Call inside
// Device.Do.
func EventSynchronize(e Event) error {
	d, err := lib()
	if err != nil {
		return err
	}
	counts.syncs.Add(1)
	if r := call(d.cuEventSynchronize, uintptr(e)); r != Success {
		return newCallError(r, "cuEventSynchronize", fmt.Sprintf("%#x", uintptr(e)))
	}
	return nil
}

// EventQuery reports whether e's last record has completed. Call inside
// Device.Do.
func EventQuery(e Event) (bool, error) {
	d, err := lib()
	if err != nil {
		return false, err
	}
	switch r := call(d.cuEventQuery, uintptr(e)); r {
	case Success:
		return true, nil
	case ErrorNotReady:
		return false, nil
	default:
		return false, newCallError(r, "cuEventQuery", fmt.Sprintf("%#x", uintptr(e)))
	}
}

// EventDestroy destroys e. Call inside Device.Do.
func EventDestroy(e Event) error {
	d, err := lib()
	if err != nil {
		return err
	}
	if r := call(d.cuEventDestroy, uintptr(e)); r != Success {
		return newCallError(r, "cuEventDestroy_v2", fmt.Sprintf("%#x", uintptr(e)))
	}
	return nil
}

// EventElapsedTime returns the milliseconds between two completed records
// (resolution about 0.5 µs). Both events need timing enabled. Call inside
// Device.Do.
func EventElapsedTime(start, end Event) (float32, error) {
	d, err := lib()
	if err != nil {
		return 0, err
	}
	// The result comes back through a float* (no float passes by value,
	// which SyscallN could not place correctly).
	var ms float32
	if r := call(d.cuEventElapsedTime, uintptr(unsafe.Pointer(&ms)), uintptr(start), uintptr(end)); r != Success {
		return 0, newCallError(r, "cuEventElapsedTime", fmt.Sprintf("start %#x, end %#x", uintptr(start), uintptr(end)))
	}
	return ms, nil
}
