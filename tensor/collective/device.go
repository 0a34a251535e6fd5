package collective

import (
	"errors"
	"fmt"

	"dlf/kernels"
	"dlf/tensor/cuda/cu"
)

// DeviceRing is the ring all-reduce on CUDA devices of this process: rank r lives on devs[r]. Ranks
// may share a device (virtual ranks: separate streams and buffers on one GPU, which is how the ring
// is tested on single-GPU machines; a peer copy within one context is then a plain device-to-device
// copy).
//
// Per rank: its own stream, Depth staging buffers that the previous rank copies slices into, and
// two events per staging slot: "sent" (recorded on the sender's stream after the copy into the slot)
// and "freed" (recorded on the receiver's stream after the reduction kernel consumed the slot). The
// receiver's stream waits on "sent" before reducing; the sender's stream waits on "freed" before
// reusing the slot. cuStreamWaitEvent accepts an event of another context or device (CUDA Driver
// API reference, cuStreamWaitEvent: "The event may be from a different device than the input
// stream") and waits on the event's most recent cuEventRecord at the time of the call, so one event
// per slot serves every message that passes through that slot as long as the host enqueues the
// ops in message order, which AllReduce does.
//
// Transfers between different devices use cuMemcpyPeerAsync after cuCtxEnablePeerAccess in both
// directions when cuDeviceCanAccessPeer reports that each device can map the other's memory (CUDA
// Driver API reference, "Peer Context Memory Access": access is one-directional and enabled from the
// accessing context; CUDA_ERROR_PEER_ACCESS_ALREADY_ENABLED is success for us). Buffers are plain
// cuMemAlloc memory: pool allocations (cuMemAllocAsync) ignore cuCtxEnablePeerAccess (programming
// guide, stream-ordered allocator). Where peer access is not possible the slice is staged through
// page-locked host memory (cuMemAllocHost): cuMemcpyDtoHAsync on the sender's stream, an event, and
// cuMemcpyHtoDAsync on the receiver's stream — asynchronous only because the host memory is pinned.
//
// Every driver call of the ring, after its kernels are loaded, runs on the ring's own proxy thread
// (a cu.Worker), which makes each rank's context current as it goes, never on the devices' workers:
// so the ring can queue a bucket's all-reduce while a device worker is still busy queuing the
// backward pass that produces the next bucket (NCCL's proxy thread plays the same part). The
// methods are safe for concurrent use; they are serialised on that thread, which also keeps the
// host order of the queued operations that the one-event-per-slot scheme relies on.
type DeviceRing struct {
	opt   Options
	ranks []*devRank
	kern  map[*cu.Device]*kernels.Kernels
	w     *cu.Worker
	// Touched only on the proxy thread:
	cur   cu.Context // the context current on it
	stage int        // elements per staging buffer
	msg   int        // messages queued per link since the streams were last idle (slot reuse)
}

type devRank struct {
	dev    *cu.Device
	k      *kernels.Kernels
	stream cu.Stream
	// Receiving side: slots filled by the previous rank.
	stage  []cu.DevicePtr
	pinned [][]byte // per slot, when the link from the previous rank is host-staged
	sent   []cu.Event
	freed  []cu.Event
	// How the previous rank reaches this one.
	hostStaged bool
}

// NewDeviceRing builds a ring over devs (one entry per rank; repeat a device for virtual ranks),
// loading the kernels once per distinct device and enabling peer access where possible.
func NewDeviceRing(devs []*cu.Device, opt Options) (*DeviceRing, error) {
	if len(devs) < 1 {
		return nil, fmt.Errorf("collective: a ring needs at least 1 rank, got %d", len(devs))
	}
	g := &DeviceRing{opt: opt, kern: map[*cu.Device]*kernels.Kernels{}}
	var err error
	if g.w, err = cu.NewWorker(); err != nil {
		return nil, fmt.Errorf("collective: proxy thread: %w", err)
	}
	for r, dev := range devs {
		if dev == nil {
			g.Close()
			return nil, fmt.Errorf("collective: rank %d has no device", r)
		}
		k := g.kern[dev]
		if k == nil {
			var err error
			if k, err = kernels.Load(dev); err != nil {
				g.Close()
				return nil, fmt.Errorf("collective: rank %d: %w", r, err)
			}
			g.kern[dev] = k
		}
		rk := &devRank{dev: dev, k: k}
		g.ranks = append(g.ranks, rk)
		if err := g.on(rk, func() error {
			var err error
			rk.stream, err = cu.StreamCreate()
			return err
		}); err != nil {
			g.Close()
			return nil, fmt.Errorf("collective: rank %d: %w", r, err)
		}
	}
	for r, rk := range g.ranks {
		prev := g.ranks[(r+len(g.ranks)-1)%len(g.ranks)]
		if opt.HostStaged {
			rk.hostStaged = true
			continue
		}
		if prev.dev.Handle() == rk.dev.Handle() {
			// One GPU (the same Device, or two opened on one ordinal, which share its primary
			// context): a plain device-to-device copy, no peer access needed.
			continue
		}
		ok, err := g.peerPair(prev, rk)
		if err != nil {
			g.Close()
			return nil, fmt.Errorf("collective: peer access between ranks %d and %d: %w", (r+len(g.ranks)-1)%len(g.ranks), r, err)
		}
		rk.hostStaged = !ok
	}
	return g, nil
}

// peerPair enables peer access both ways between a's and b's devices when the hardware allows it.
// Access is enabled from the accessing context (cuCtxEnablePeerAccess acts on the current one).
func (g *DeviceRing) peerPair(a, b *devRank) (bool, error) {
	ab, err := cu.DeviceCanAccessPeer(a.dev.Handle(), b.dev.Handle())
	if err != nil {
		return false, err
	}
	ba, err := cu.DeviceCanAccessPeer(b.dev.Handle(), a.dev.Handle())
	if err != nil || !ab || !ba {
		return false, err
	}
	if err := g.on(a, func() error { return cu.CtxEnablePeerAccess(b.dev.Context()) }); err != nil {
		return false, err
	}
	if err := g.on(b, func() error { return cu.CtxEnablePeerAccess(a.dev.Context()) }); err != nil {
		return false, err
	}
	return true, nil
}

// on runs fn on the proxy thread with rk's context current (inline when already on it).
func (g *DeviceRing) on(rk *devRank, fn func() error) error {
	return g.w.Do(func() error {
		if ctx := rk.dev.Context(); g.cur != ctx {
			if err := cu.CtxSetCurrent(ctx); err != nil {
				return err
			}
			g.cur = ctx
		}
		return fn()
	})
}

// Ranks returns the number of ranks.
func (g *DeviceRing) Ranks() int { return len(g.ranks) }

// HostStaged reports whether the link into rank r goes through pinned host memory (no peer access).
func (g *DeviceRing) HostStaged(r int) bool { return g.ranks[r].hostStaged }

// ensureStage gives every rank Depth staging slots of at least n elements, with their events.
func (g *DeviceRing) ensureStage(n int) error {
	if n <= g.stage && len(g.ranks[0].sent) > 0 {
		return nil
	}
	if err := g.sync(); err != nil {
		return err
	}
	d := g.opt.depth()
	n = max(n, g.stage, 1)
	for _, rk := range g.ranks {
		err := g.on(rk, func() error {
			rk.freeStage()
			for range d {
				p, err := cu.MemAlloc(int64(n) * 4)
				if err != nil {
					return err
				}
				rk.stage = append(rk.stage, p)
				if rk.hostStaged {
					h, err := cu.MemAllocHost(n * 4)
					if err != nil {
						return err
					}
					rk.pinned = append(rk.pinned, h)
				}
				if rk.sent == nil || len(rk.sent) < d {
					// Ordering only: timing-disabled events are the cheapest to record and wait on.
					e1, err := cu.EventCreate(cu.EventDisableTiming)
					if err != nil {
						return err
					}
					e2, err := cu.EventCreate(cu.EventDisableTiming)
					if err != nil {
						return err
					}
					rk.sent, rk.freed = append(rk.sent, e1), append(rk.freed, e2)
				}
			}
			return nil
		})
		if err != nil {
			return fmt.Errorf("collective: staging buffers of %d elements: %w", n, err)
		}
	}
	g.stage = n
	return nil
}

func (rk *devRank) freeStage() {
	for _, p := range rk.stage {
		_ = cu.MemFree(p)
	}
	for _, h := range rk.pinned {
		_ = cu.MemFreeHost(h)
	}
	rk.stage, rk.pinned = nil, nil
}

// AllReduce reduces n float32 elements at bufs[r] (device memory of rank r's device, allocated with
// cuMemAlloc, e.g. a CUDA backend tensor) across the ranks and leaves the result in every buffer.
// The buffers must hold their final values when it is called (synchronise the stream that wrote
// them); it returns once the ring's streams are done.
func (g *DeviceRing) AllReduce(bufs []cu.DevicePtr, n int, op Op) error {
	if err := g.Enqueue(bufs, n, op); err != nil {
		return err
	}
	return g.Sync()
}

// Enqueue queues the all-reduce of AllReduce on the ranks' streams and returns without waiting;
// Sync waits (or Record marks the end for other streams). The buffers must not be touched until
// then. Successive calls may follow each other without a Sync: a staging slot is reused only after
// its receiver's stream has consumed the previous message in it, whichever call queued that.
func (g *DeviceRing) Enqueue(bufs []cu.DevicePtr, n int, op Op) error {
	return g.w.Do(func() error { return g.enqueue(bufs, n, op) })
}

func (g *DeviceRing) enqueue(bufs []cu.DevicePtr, n int, op Op) error {
	N := len(g.ranks)
	if len(bufs) != N {
		return fmt.Errorf("collective: %d buffers for a ring of %d ranks", len(bufs), N)
	}
	if op != Sum && op != Avg {
		return fmt.Errorf("collective: unknown reduction %v", op)
	}
	if n < 0 {
		return fmt.Errorf("collective: all-reduce of %d elements", n)
	}
	if N == 1 || n == 0 {
		return nil
	}
	p := newPlan(n, N, g.opt.SliceElems)
	if err := g.ensureStage(p.maxSlice()); err != nil {
		return err
	}
	scale := float32(1)
	if op == Avg {
		scale = float32(1 / float64(N))
	}
	plans := make([][]ringStep, N)
	for r := range plans {
		plans[r] = steps(r, N)
	}
	d := g.opt.depth()
	// g.msg counts the messages per link (the same on every link) since the streams were last
	// idle; it carries over from earlier calls, whose messages may still occupy the slots.
	for i := range plans[0] {
		for k := 0; k < p.slices; k++ {
			slot := g.msg % d
			for r, rk := range g.ranks {
				next := g.ranks[(r+1)%N]
				st := plans[r][i]
				src, dst := p.slice(st.send, k), p.slice(plans[(r+1)%N][i].recv, k)
				if src.len() != dst.len() {
					return fmt.Errorf("collective: internal error: rank %d sends %d elements, rank %d expects %d", r, src.len(), (r+1)%N, dst.len())
				}
				if err := g.send(rk, next, bufs[r], src, slot, g.msg >= d); err != nil {
					return fmt.Errorf("collective: rank %d → %d: %w", r, (r+1)%N, err)
				}
				nst := plans[(r+1)%N][i]
				sc := float32(1)
				if nst.last {
					sc = scale
				}
				if err := g.recv(next, bufs[(r+1)%N], dst, slot, nst.kind, sc); err != nil {
					return fmt.Errorf("collective: rank %d: %w", (r+1)%N, err)
				}
			}
			g.msg++
		}
	}
	return nil
}

// send copies slice s of the sender's buffer into the receiver's staging slot, on the sender's
// stream, after the receiver has freed the slot (reuse), and records the slot's "sent" event.
func (g *DeviceRing) send(from, to *devRank, buf cu.DevicePtr, s span, slot int, reuse bool) error {
	bytes := int64(s.len()) * 4
	srcPtr := buf + cu.DevicePtr(s.lo*4)
	return g.on(from, func() error {
		if reuse {
			if err := cu.StreamWaitEvent(from.stream, to.freed[slot]); err != nil {
				return err
			}
		}
		var err error
		switch {
		case bytes == 0:
		case to.hostStaged:
			err = cu.MemcpyDtoHAsync(to.pinned[slot][:bytes], srcPtr, from.stream)
		default:
			// Same device: a device-to-device copy; different devices: a peer copy over the link.
			err = cu.MemcpyPeerAsync(to.stage[slot], to.dev.Context(), srcPtr, from.dev.Context(), bytes, from.stream)
		}
		if err != nil {
			return err
		}
		return cu.EventRecord(to.sent[slot], from.stream)
	})
}

// recv waits for the slot's "sent" event on the receiver's stream, brings a host-staged slice on
// to the device, reduces or copies it into the receiver's buffer and records "freed".
func (g *DeviceRing) recv(rk *devRank, buf cu.DevicePtr, s span, slot int, kind stepKind, scale float32) error {
	n := int64(s.len())
	dst := buf + cu.DevicePtr(s.lo*4)
	return g.on(rk, func() error {
		if err := cu.StreamWaitEvent(rk.stream, rk.sent[slot]); err != nil {
			return err
		}
		if n > 0 {
			if rk.hostStaged {
				if err := cu.MemcpyHtoDAsync(rk.stage[slot], rk.pinned[slot][:n*4], rk.stream); err != nil {
					return err
				}
			}
			var err error
			if kind == copyStep {
				err = cu.MemcpyDtoDAsync(dst, rk.stage[slot], n*4, rk.stream)
			} else {
				err = rk.k.RingReduceF32(rk.stream, kernels.Grid1D(rk.dev, n, 256), cu.D1(256), 0, dst, rk.stage[slot], n, scale)
			}
			if err != nil {
				return err
			}
		}
		return cu.EventRecord(rk.freed[slot], rk.stream)
	})
}

// After orders the ring's next operations after the producers of the buffers: rank r's stream waits
// for evs[r], an event recorded on the stream that wrote rank r's buffer (e.g. a CUDA backend's
// stream), so Enqueue may follow without a host synchronisation. A zero event is skipped. The wait
// binds to each event's latest record at the time of this call (cuStreamWaitEvent).
func (g *DeviceRing) After(evs []cu.Event) error {
	return g.perRankEvent(evs, "wait for its buffer's producer", func(rk *devRank, e cu.Event) error {
		return cu.StreamWaitEvent(rk.stream, e)
	})
}

// Record records evs[r] on rank r's ring stream, after everything queued so far, so that another
// stream (the consumer of the reduced buffer) can wait for the ring with cuStreamWaitEvent instead
// of the host waiting with Sync. A zero event is skipped.
func (g *DeviceRing) Record(evs []cu.Event) error {
	return g.perRankEvent(evs, "mark the end of its all-reduces", func(rk *devRank, e cu.Event) error {
		return cu.EventRecord(e, rk.stream)
	})
}

// perRankEvent runs fn(rank, evs[r]) for every rank with a non-zero event, on the proxy thread.
func (g *DeviceRing) perRankEvent(evs []cu.Event, what string, fn func(*devRank, cu.Event) error) error {
	if len(evs) != len(g.ranks) {
		return fmt.Errorf("collective: %d events for a ring of %d ranks", len(evs), len(g.ranks))
	}
	return g.w.Do(func() error {
		for r, rk := range g.ranks {
			if evs[r] == 0 {
				continue
			}
			if err := g.on(rk, func() error { return fn(rk, evs[r]) }); err != nil {
				return fmt.Errorf("collective: rank %d: %s: %w", r, what, err)
			}
		}
		return nil
	})
}

// Sync waits for every rank's stream.
func (g *DeviceRing) Sync() error { return g.w.Do(g.sync) }

func (g *DeviceRing) sync() error {
	var errs []error
	for r, rk := range g.ranks {
		if rk.stream == 0 {
			continue
		}
		if err := g.on(rk, func() error { return cu.StreamSynchronize(rk.stream) }); err != nil {
			errs = append(errs, fmt.Errorf("collective: rank %d: %w", r, err))
		}
	}
	if len(errs) == 0 {
		// Every slot is free again: the next message needs no wait on a "freed" event.
		g.msg = 0
	}
	return errors.Join(errs...)
}

// Close waits for the streams and frees the ring's streams, events and staging buffers (the kernels
// modules are unloaded too) and stops the proxy thread. The ring cannot be used afterwards.
func (g *DeviceRing) Close() error {
	if g.w == nil {
		return nil
	}
	err := g.Sync()
	for _, rk := range g.ranks {
		_ = g.on(rk, func() error {
			rk.freeStage()
			for _, e := range append(rk.sent, rk.freed...) {
				_ = cu.EventDestroy(e)
			}
			rk.sent, rk.freed = nil, nil
			if rk.stream != 0 {
				_ = cu.StreamDestroy(rk.stream)
				rk.stream = 0
			}
			return nil
		})
	}
	for _, k := range g.kern {
		_ = k.Unload()
	}
	err = errors.Join(err, g.w.Close())
	g.ranks, g.kern, g.w = nil, nil, nil
	return err
}
