package cu

import (
	"fmt"
	"time"
	"unsafe"
)

// CUDA graphs: a stream's work is captured once (cuStreamBeginCapture_v2 … cuStreamEndCapture),
// instantiated (cuGraphInstantiateWithFlags) and then launched as a whole with one driver call
// (cuGraphLaunch), so the host cost of a step no longer grows with its kernel count. Every binding
// is optional: on a driver without graphs they return ErrUnsupported and the caller runs eagerly.
// Symbols, signatures and constants: ../shared/reference/graphs-tf32-mpi-nccl.md §1.

// Graph is a captured CUgraph; GraphExec an instantiated one.
type (
	Graph     uintptr
	GraphExec uintptr
)

// CaptureMode is CUstreamCaptureMode.
type CaptureMode int32

// The capture modes (cuda.h): Global forbids unsafe calls (allocation, synchronisation) in every
// thread while the capture runs, ThreadLocal only in the capturing thread, Relaxed only calls that
// conflict with the capture itself.
const (
	CaptureModeGlobal      CaptureMode = 0
	CaptureModeThreadLocal CaptureMode = 1
	CaptureModeRelaxed     CaptureMode = 2
)

// CaptureStatus is CUstreamCaptureStatus.
type CaptureStatus int32

// The capture states of a stream.
const (
	CaptureNone        CaptureStatus = 0
	CaptureActive      CaptureStatus = 1
	CaptureInvalidated CaptureStatus = 2
)

// GraphsSupported reports whether the loaded driver exports the graph API this package binds.
func GraphsSupported() bool {
	d, err := lib()
	return err == nil && d.cuStreamBeginCapture != 0 && d.cuStreamEndCapture != 0 && d.cuGraphInstantiate != 0 &&
		d.cuGraphLaunch != 0 && d.cuGraphExecDestroy != 0 && d.cuGraphDestroy != 0
}

// StreamBeginCapture starts capturing the work queued on s (not the legacy stream) into a graph.
// Except in Relaxed mode, StreamEndCapture must be called from the same OS thread: call both inside
// one Device.Do, or from one worker.
func StreamBeginCapture(s Stream, mode CaptureMode) error {
	d, err := lib()
	if err != nil {
		return err
	}
	if err := optional(d.cuStreamBeginCapture, "cuStreamBeginCapture_v2"); err != nil {
		return err
	}
	if r := call(d.cuStreamBeginCapture, uintptr(s), uintptr(mode)); r != Success {
		return newCallError(r, "cuStreamBeginCapture_v2", fmt.Sprintf("stream %#x, mode %d", uintptr(s), mode))
	}
	return nil
}

// StreamEndCapture ends the capture on s and returns the graph. A capture that an illegal call
// invalidated returns an error (CUDA_ERROR_STREAM_CAPTURE_INVALIDATED) and no graph.
func StreamEndCapture(s Stream) (Graph, error) {
	d, err := lib()
	if err != nil {
		return 0, err
	}
	if err := optional(d.cuStreamEndCapture, "cuStreamEndCapture"); err != nil {
		return 0, err
	}
	var g uintptr
	if r := call(d.cuStreamEndCapture, uintptr(s), uintptr(unsafe.Pointer(&g))); r != Success {
		return 0, newCallError(r, "cuStreamEndCapture", fmt.Sprintf("stream %#x", uintptr(s)))
	}
	if g == 0 {
		return 0, fmt.Errorf("cu: cuStreamEndCapture returned no graph")
	}
	return Graph(g), nil
}

// StreamIsCapturing returns s's capture state.
func StreamIsCapturing(s Stream) (CaptureStatus, error) {
	d, err := lib()
	if err != nil {
		return 0, err
	}
	if err := optional(d.cuStreamIsCapturing, "cuStreamIsCapturing"); err != nil {
		return 0, err
	}
	var st int32
	if r := call(d.cuStreamIsCapturing, uintptr(s), uintptr(unsafe.Pointer(&st))); r != Success {
		return 0, newCallError(r, "cuStreamIsCapturing", fmt.Sprintf("stream %#x", uintptr(s)))
	}
	return CaptureStatus(st), nil
}

// GraphInstantiate makes an executable graph of g (flags 0).
func GraphInstantiate(g Graph) (GraphExec, error) {
	d, err := lib()
	if err != nil {
		return 0, err
	}
	if err := optional(d.cuGraphInstantiate, "cuGraphInstantiateWithFlags"); err != nil {
		return 0, err
	}
	var e uintptr
	if r := call(d.cuGraphInstantiate, uintptr(unsafe.Pointer(&e)), uintptr(g), 0); r != Success {
		return 0, newCallError(r, "cuGraphInstantiateWithFlags", fmt.Sprintf("graph %#x", uintptr(g)))
	}
	return GraphExec(e), nil
}

// GraphLaunch queues the whole graph on s: one driver call.
func GraphLaunch(e GraphExec, s Stream) error {
	d, err := lib()
	if err != nil {
		return err
	}
	if err := optional(d.cuGraphLaunch, "cuGraphLaunch"); err != nil {
		return err
	}
	counts.graphs.Add(1)
	start := time.Now()
	r := call(d.cuGraphLaunch, uintptr(e), uintptr(s))
	counts.graphNanos.Add(uint64(time.Since(start)))
	if r != Success {
		return newCallError(r, "cuGraphLaunch", fmt.Sprintf("exec %#x, stream %#x", uintptr(e), uintptr(s)))
	}
	return nil
}

// GraphExecDestroy frees an executable graph (after its launches have finished).
func GraphExecDestroy(e GraphExec) error {
	d, err := lib()
	if err != nil {
		return err
	}
	if err := optional(d.cuGraphExecDestroy, "cuGraphExecDestroy"); err != nil {
		return err
	}
	if r := call(d.cuGraphExecDestroy, uintptr(e)); r != Success {
		return newCallError(r, "cuGraphExecDestroy", fmt.Sprintf("%#x", uintptr(e)))
	}
	return nil
}

// GraphDestroy frees a captured graph.
func GraphDestroy(g Graph) error {
	d, err := lib()
	if err != nil {
		return err
	}
	if err := optional(d.cuGraphDestroy, "cuGraphDestroy"); err != nil {
		return err
	}
	if r := call(d.cuGraphDestroy, uintptr(g)); r != Success {
		return newCallError(r, "cuGraphDestroy", fmt.Sprintf("%#x", uintptr(g)))
	}
	return nil
}
