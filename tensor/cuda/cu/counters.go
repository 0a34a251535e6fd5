package cu

import "sync/atomic"

// Counters counts the driver calls that decide how much a step costs the host and how often the
// host waits for the GPU: the step accounting of `bin/driver bench --host` and of the tests that keep
// host round trips from creeping back into the training step. Every binding below counts itself,
// on a real driver and on the emulator alike; the cost is one atomic add per call.
type Counters struct {
	// Launches is cuLaunchKernel calls.
	Launches uint64
	// Syncs is cuStreamSynchronize, cuCtxSynchronize and cuEventSynchronize calls: the host waits.
	Syncs uint64
	// CopiesDtoH, CopiesHtoD and CopiesDtoD are synchronous copies (cuMemcpyDtoH, cuMemcpyHtoD,
	// cuMemcpyDtoD): the host waits for them too.
	CopiesDtoH, CopiesHtoD, CopiesDtoD uint64
	// AsyncCopies is copies queued on a stream (cuMemcpy*Async, cuMemcpyPeerAsync, cuMemset*Async).
	AsyncCopies uint64
	// Allocs and Frees are driver allocations and frees of device or pinned host memory
	// (cuMemAlloc, cuMemAllocAsync, cuMemAllocHost and their frees); a caching allocator's reuse
	// makes none.
	Allocs, Frees uint64
	// Hops is Device.Do calls made from another thread than the device's worker: each is a hand-off
	// to the worker and a wait for it (a round trip between goroutines, not a GPU wait).
	Hops uint64
	// GraphLaunches is cuGraphLaunch calls: one replays a whole captured graph. GraphLaunchNanos is
	// the time spent inside them: on a GPU the call only queues the graph, on the CUDA emulator it
	// runs the whole replay, which a host-time measurement there must leave out.
	GraphLaunches, GraphLaunchNanos uint64
}

// Blocking is the calls that make the host wait for the device: synchronisations and synchronous
// copies.
func (c Counters) Blocking() uint64 { return c.Syncs + c.CopiesDtoH + c.CopiesHtoD + c.CopiesDtoD }

// Sub returns c − o, field by field (the calls made between two readings).
func (c Counters) Sub(o Counters) Counters {
	return Counters{
		Launches: c.Launches - o.Launches, Syncs: c.Syncs - o.Syncs,
		CopiesDtoH: c.CopiesDtoH - o.CopiesDtoH, CopiesHtoD: c.CopiesHtoD - o.CopiesHtoD, CopiesDtoD: c.CopiesDtoD - o.CopiesDtoD,
		AsyncCopies: c.AsyncCopies - o.AsyncCopies, Allocs: c.Allocs - o.Allocs, Frees: c.Frees - o.Frees, Hops: c.Hops - o.Hops,
		GraphLaunches: c.GraphLaunches - o.GraphLaunches, GraphLaunchNanos: c.GraphLaunchNanos - o.GraphLaunchNanos,
	}
}

var counts struct {
	launches, syncs, dtoh, htod, dtod, async, allocs, frees, hops, graphs, graphNanos atomic.Uint64
}

// ReadCounters returns the counts since the process started.
func ReadCounters() Counters {
	return Counters{
		Launches: counts.launches.Load(), Syncs: counts.syncs.Load(),
		CopiesDtoH: counts.dtoh.Load(), CopiesHtoD: counts.htod.Load(), CopiesDtoD: counts.dtod.Load(),
		AsyncCopies: counts.async.Load(), Allocs: counts.allocs.Load(), Frees: counts.frees.Load(), Hops: counts.hops.Load(),
		GraphLaunches: counts.graphs.Load(), GraphLaunchNanos: counts.graphNanos.Load(),
	}
}
