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
type DeviceRing struct {
	opt   Options
	ranks []*devRank
	kern  map[*cu.Device]*kernels.Kernels
	stage int // elements per staging buffer
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
		if err := dev.Do(func() error {
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
		if prev.dev == rk.dev {
			continue
		}
		ok, err := peerPair(prev.dev, rk.dev)
		if err != nil {
			g.Close()
			return nil, fmt.Errorf("collective: peer access between ranks %d and %d: %w", (r+len(g.ranks)-1)%len(g.ranks), r, err)
		}
		rk.hostStaged = !ok
	}
	return g, nil
}

// peerPair enables peer access both ways between a and b when the hardware allows it.
func peerPair(a, b *cu.Device) (bool, error) {
	ab, err := cu.DeviceCanAccessPeer(a.Handle(), b.Handle())
	if err != nil {
		return false, err
	}
	ba, err := cu.DeviceCanAccessPeer(b.Handle(), a.Handle())
	if err != nil || !ab || !ba {
		return false, err
	}
	if err := a.Do(func() error { return cu.CtxEnablePeerAccess(b.Context()) }); err != nil {
		return false, err
	}
	if err := b.Do(func() error { return cu.CtxEnablePeerAccess(a.Context()) }); err != nil {
		return false, err
	}
	return true, nil
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
	if err := g.Sync(); err != nil {
		return err
	}
	d := g.opt.depth()
	n = max(n, g.stage, 1)
	for _, rk := range g.ranks {
		err := rk.dev.Do(func() error {
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
// Sync waits. The buffers must not be touched until then.
func (g *DeviceRing) Enqueue(bufs []cu.DevicePtr, n int, op Op) error {
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
	msg := 0 // messages per link so far; the same on every link
	for i := range plans[0] {
		for k := 0; k < p.slices; k++ {
			slot := msg % d
			for r, rk := range g.ranks {
				next := g.ranks[(r+1)%N]
				st := plans[r][i]
				src, dst := p.slice(st.send, k), p.slice(plans[(r+1)%N][i].recv, k)
				if src.len() != dst.len() {
					return fmt.Errorf("collective: internal error: rank %d sends %d elements, rank %d expects %d", r, src.len(), (r+1)%N, dst.len())
				}
				if err := g.send(rk, next, bufs[r], src, slot, msg >= d); err != nil {
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
			msg++
		}
	}
	return nil
}

// send copies slice s of the sender's buffer into the receiver's staging slot, on the sender's
// stream, after the receiver has freed the slot (reuse), and records the slot's "sent" event.
func (g *DeviceRing) send(from, to *devRank, buf cu.DevicePtr, s span, slot int, reuse bool) error {
	bytes := int64(s.len()) * 4
	srcPtr := buf + cu.DevicePtr(s.lo*4)
	return from.dev.Do(func() error {
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
	return rk.dev.Do(func() error {
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
	if len(evs) != len(g.ranks) {
		return fmt.Errorf("collective: %d events for a ring of %d ranks", len(evs), len(g.ranks))
	}
	for r, rk := range g.ranks {
		if evs[r] == 0 {
			continue
		}
		if err := rk.dev.Do(func() error { return cu.StreamWaitEvent(rk.stream, evs[r]) }); err != nil {
			return fmt.Errorf("collective: rank %d: wait for its buffer's producer: %w", r, err)
		}
	}
	return nil
}

// Sync waits for every rank's stream.
func (g *DeviceRing) Sync() error {
	var errs []error
	for r, rk := range g.ranks {
		if rk.stream == 0 {
			continue
		}
		if err := rk.dev.Do(func() error { return cu.StreamSynchronize(rk.stream) }); err != nil {
			errs = append(errs, fmt.Errorf("collective: rank %d: %w", r, err))
		}
	}
	return errors.Join(errs...)
}

// Close waits for the streams and frees the ring's streams, events and staging buffers (the kernels
// modules are unloaded too). The ring cannot be used afterwards.
func (g *DeviceRing) Close() error {
	err := g.Sync()
	for _, rk := range g.ranks {
		_ = rk.dev.Do(func() error {
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
	g.ranks, g.kern = nil, nil
	return err
}
