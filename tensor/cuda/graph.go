package cuda

import (
	"errors"
	"fmt"

	"dlf/tensor/cuda/cu"
)

// Graph is a captured sequence of this backend's ops: Replay queues all of them with one driver
// call (cuGraphLaunch), so the host cost no longer grows with the number of kernels. The graph
// names the device memory its ops used when they were captured, so the tensors it reads must be
// filled before each replay (static inputs, e.g. by Upload) and the tensors it writes are read
// after it (static outputs); the memory of the tensors allocated or freed during the capture stays
// reserved for the graph (a private pool) until Close.
type Graph struct {
	b    *Backend
	g    cu.Graph
	exec cu.GraphExec
	pool *graphPool
	// Launches is the number of kernel launches a replay stands for (counted at capture).
	Launches uint64
}

// ErrGraphsUnsupported reports a driver without the CUDA graph API.
var ErrGraphsUnsupported = errors.New("cuda: this CUDA driver has no graph API (cuStreamBeginCapture_v2 …); running eagerly")

// Capture records the ops fn queues on the backend into a graph, without running them, and
// returns it instantiated. fn must queue device work only: an op that needs the host — reading a
// value back (Item, Float32s, Download), a synchronisation, a host copy, a new allocation from the
// driver — makes the capture fail with an error naming it, and leaves the backend as it was, so the
// caller can fall back to eager execution. Run the work once eagerly first, so that the caching
// allocator already holds every block the capture needs. The capture runs in THREAD_LOCAL mode on
// the device's worker thread: other backends and threads are not affected.
func (b *Backend) Capture(fn func() error) (*Graph, error) {
	if !cu.GraphsSupported() {
		return nil, ErrGraphsUnsupported
	}
	if err := b.Err(); err != nil {
		return nil, err
	}
	gr := &Graph{b: b, pool: &graphPool{}}
	var capErr error
	err := b.dev.Do(func() error {
		b.drainFrees()
		before := cu.ReadCounters()
		if err := cu.StreamBeginCapture(b.stream, cu.CaptureModeThreadLocal); err != nil {
			return err
		}
		b.alloc.mu.Lock()
		b.alloc.capture = gr.pool
		b.alloc.mu.Unlock()
		capErr = fn()
		b.drainFrees() // frees queued by fn's ops belong to the capture
		b.alloc.mu.Lock()
		b.alloc.capture = nil
		b.alloc.mu.Unlock()
		g, endErr := cu.StreamEndCapture(b.stream)
		gr.Launches = cu.ReadCounters().Launches - before.Launches
		if endErr != nil {
			return endErr
		}
		gr.g = g
		exec, err := cu.GraphInstantiate(g)
		if err != nil {
			_ = cu.GraphDestroy(g)
			return err
		}
		gr.exec = exec
		return nil
	})
	// An op of fn that failed recorded its error on the backend; nothing ran, so the backend is as
	// it was before the capture.
	opErr := b.clearErr()
	if err == nil && capErr == nil && opErr == nil {
		return gr, nil
	}
	if gr.exec != 0 || gr.g != 0 {
		_ = gr.Close()
	} else {
		b.alloc.closePool(gr.pool)
	}
	return nil, fmt.Errorf("cuda: %s: capture failed, the work runs eagerly: %w", b.name, errors.Join(capErr, opErr, err))
}

// clearErr returns and forgets the recorded failure (after a failed capture, whose ops never ran;
// a sticky device error is kept).
func (b *Backend) clearErr() error {
	b.errMu.Lock()
	defer b.errMu.Unlock()
	err := b.err
	if err != nil && !cu.IsSticky(err) {
		b.err = nil
		b.failed.Store(false)
	}
	return err
}

// Replay queues the whole graph on the backend's stream: one driver call, no host work per op.
func (g *Graph) Replay() {
	g.b.run("GraphReplay", func() error { return cu.GraphLaunch(g.exec, g.b.stream) })
}

// Close waits for the replays queued, frees the graph and gives its memory back to the allocator.
func (g *Graph) Close() error {
	if g.pool == nil {
		return nil
	}
	err := g.b.dev.Do(func() error {
		err := cu.StreamSynchronize(g.b.stream)
		if g.exec != 0 {
			err = errors.Join(err, cu.GraphExecDestroy(g.exec))
		}
		if g.g != 0 {
			err = errors.Join(err, cu.GraphDestroy(g.g))
		}
		return err
	})
	g.b.alloc.closePool(g.pool)
	g.pool, g.exec, g.g = nil, 0, 0
	return err
}
