package collective

import (
	"errors"
	"fmt"
	"sync"

	"dlf/tensor"
	"dlf/tensor/cuda"
	"dlf/tensor/cuda/cu"
)

// DeviceReducer averages parameter gradients across ranks that are all CUDA backends, without
// staging them through the host: it is the Reducer of a DeviceRing. Each rank's gradients are packed
// into per-bucket device buffers by device-to-device copies on the rank's backend stream (so they
// are ordered after the kernels that produced them, and a gradient block the backend frees and
// reuses afterwards is only overwritten after the copy), an event recorded on that stream marks a
// bucket as packed, the ring's streams wait on those events, the ring reduces the buckets with peer
// copies and its reduction kernel, and the averages are copied back into the gradient tensors on the
// backend stream, ahead of the optimizer step that reads them.
//
// The buckets are laid out exactly as Reducer lays them out (parameters in reverse order, the same
// bucket size), and DeviceRing runs HostRing's schedule, so for the same Options the averages are
// bit-identical to the host path's.
//
// One DeviceReducer serves all ranks; Rank(r) is rank r's view, with Ready and Wait like Reducer's.
// Wait is a barrier: the last rank to arrive runs every bucket's all-reduce (the ring's Do calls
// need every rank's device worker), so Wait must be called outside Device().Do — inside it, a rank
// that shares a device worker with another would block that rank's Ready and deadlock. Ready may be
// called inside Do. Every rank must Wait before any rank starts the next step.
type DeviceReducer struct {
	ring  *DeviceRing
	bes   []*cuda.Backend
	sizes []int
	loc   []bucketLoc
	bkts  [][]int // per bucket: member parameter indices
	lens  []int   // per bucket: elements
	ranks []*DeviceRankReducer

	mu      sync.Mutex
	arrived int
	done    chan struct{}
	err     error
}

// DeviceRankReducer is one rank's side of a DeviceReducer.
type DeviceRankReducer struct {
	d    *DeviceReducer
	rank int
	be   *cuda.Backend
	bufs []cu.DevicePtr // per bucket, cuMemAlloc memory (peer-copy capable)
	evs  []cu.Event     // per bucket: recorded on the backend stream once the bucket is packed

	mu      sync.Mutex
	got     []bool
	missing []int // per bucket: members not yet handed over this step
}

// NewDeviceReducer prepares the device reducer for ranks on backends bes (rank r on bes[r]; backends
// may share a device, as virtual ranks), parameters of the given element counts in registration
// order, buckets of about bucketElems elements (0: DefaultBucketElems) and ring options opt. Close
// releases the ring, buffers and events.
func NewDeviceReducer(bes []*cuda.Backend, sizes []int, bucketElems int, opt Options) (*DeviceReducer, error) {
	if len(bes) < 1 {
		return nil, fmt.Errorf("collective: device reducer needs at least 1 rank, got %d", len(bes))
	}
	if bucketElems < 1 {
		bucketElems = DefaultBucketElems
	}
	d := &DeviceReducer{bes: append([]*cuda.Backend(nil), bes...), sizes: append([]int(nil), sizes...), loc: make([]bucketLoc, len(sizes)), done: make(chan struct{})}
	cur := -1
	for i := len(sizes) - 1; i >= 0; i-- {
		if sizes[i] < 0 {
			return nil, fmt.Errorf("collective: parameter %d has %d elements", i, sizes[i])
		}
		if cur < 0 || (d.lens[cur] > 0 && d.lens[cur]+sizes[i] > bucketElems) {
			d.bkts, d.lens = append(d.bkts, nil), append(d.lens, 0)
			cur = len(d.bkts) - 1
		}
		d.loc[i] = bucketLoc{cur, d.lens[cur]}
		d.lens[cur] += sizes[i]
		d.bkts[cur] = append(d.bkts[cur], i)
	}
	devs := make([]*cu.Device, len(bes))
	for r, be := range bes {
		if be == nil {
			return nil, fmt.Errorf("collective: device reducer rank %d has no backend", r)
		}
		devs[r] = be.Device()
	}
	ring, err := NewDeviceRing(devs, opt)
	if err != nil {
		return nil, err
	}
	d.ring = ring
	for r, be := range bes {
		rr := &DeviceRankReducer{d: d, rank: r, be: be}
		d.ranks = append(d.ranks, rr)
		err := be.Device().Do(func() error {
			for _, n := range d.lens {
				p, err := cu.MemAlloc(int64(max(n, 1)) * 4)
				if err != nil {
					return fmt.Errorf("bucket of %d elements: %w", n, err)
				}
				rr.bufs = append(rr.bufs, p)
				// Ordering only: timing-disabled events are the cheapest to record and wait on.
				e, err := cu.EventCreate(cu.EventDisableTiming)
				if err != nil {
					return err
				}
				rr.evs = append(rr.evs, e)
			}
			return nil
		})
		if err != nil {
			_ = d.Close()
			return nil, fmt.Errorf("collective: device reducer rank %d: %w", r, err)
		}
		rr.reset()
	}
	return d, nil
}

// Buckets returns the number of buckets.
func (d *DeviceReducer) Buckets() int { return len(d.bkts) }

// Rank returns rank r's side.
func (d *DeviceReducer) Rank(r int) *DeviceRankReducer { return d.ranks[r] }

// Close waits for the ring and frees its streams, the bucket buffers and the events.
func (d *DeviceReducer) Close() error {
	var errs []error
	if d.ring != nil {
		errs = append(errs, d.ring.Close())
		d.ring = nil
	}
	for _, rr := range d.ranks {
		errs = append(errs, rr.be.Device().Do(func() error {
			// The backend stream may still be unpacking from the buckets.
			err := cu.StreamSynchronize(rr.be.Stream())
			for _, p := range rr.bufs {
				err = errors.Join(err, cu.MemFree(p))
			}
			for _, e := range rr.evs {
				err = errors.Join(err, cu.EventDestroy(e))
			}
			rr.bufs, rr.evs = nil, nil
			return err
		}))
	}
	d.ranks = nil
	return errors.Join(errs...)
}

// reset starts a new step for this rank: every bucket waits for all its members again.
func (rr *DeviceRankReducer) reset() {
	rr.got = make([]bool, len(rr.d.sizes))
	rr.missing = make([]int, len(rr.d.bkts))
	for b, m := range rr.d.bkts {
		rr.missing[b] = len(m)
	}
}

// Ready hands over parameter i's final gradient for this step (nil means zero). It queues a
// device-to-device copy into the parameter's bucket on the backend stream, so the caller keeps g and
// may release it at once; once the bucket's last member is queued, the bucket's event is recorded.
// Each parameter may be handed over once per step.
func (rr *DeviceRankReducer) Ready(i int, g *tensor.Tensor) error {
	d := rr.d
	if i < 0 || i >= len(d.sizes) {
		return fmt.Errorf("collective: rank %d: gradient of parameter %d of %d", rr.rank, i, len(d.sizes))
	}
	var src cu.DevicePtr
	if g != nil {
		if g.Numel() != d.sizes[i] {
			return fmt.Errorf("collective: rank %d: gradient of parameter %d has %d elements, want %d", rr.rank, i, g.Numel(), d.sizes[i])
		}
		p, be, err := cuda.DevicePtr(g)
		if err != nil {
			return fmt.Errorf("collective: rank %d: gradient of parameter %d: %w", rr.rank, i, err)
		}
		if be != rr.be {
			return fmt.Errorf("collective: rank %d: gradient of parameter %d lives on backend %s, not this rank's", rr.rank, i, be.Name())
		}
		src = p
	}
	if err := rr.be.Err(); err != nil {
		return fmt.Errorf("collective: rank %d: %w", rr.rank, err)
	}
	rr.mu.Lock()
	defer rr.mu.Unlock()
	if rr.got[i] {
		return fmt.Errorf("collective: rank %d: gradient of parameter %d handed over twice in one step", rr.rank, i)
	}
	rr.got[i] = true
	l := d.loc[i]
	n := int64(d.sizes[i])
	dst := rr.bufs[l.bucket] + cu.DevicePtr(l.off*4)
	rr.missing[l.bucket]--
	last := rr.missing[l.bucket] == 0
	s := rr.be.Stream()
	err := rr.be.Device().Do(func() error {
		if n > 0 {
			var err error
			if g == nil {
				err = cu.MemsetD32Async(dst, 0, n, s)
			} else {
				err = cu.MemcpyDtoDAsync(dst, src, n*4, s)
			}
			if err != nil {
				return err
			}
		}
		if last {
			return cu.EventRecord(rr.evs[l.bucket], s)
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("collective: rank %d: pack gradient of parameter %d: %w", rr.rank, i, err)
	}
	return nil
}

// Wait finishes the step for this rank: parameters not handed over count as zero gradients, the
// rank waits until every rank has arrived, the buckets are all-reduced on the devices (by the last
// rank to arrive), and grads[i] (non-nil CUDA tensors of this rank's backend, Numel as given to
// NewDeviceReducer) receive the averages, by copies queued on the backend stream. Call it outside
// Device().Do (see DeviceReducer).
func (rr *DeviceRankReducer) Wait(grads []*tensor.Tensor) error {
	d := rr.d
	if len(grads) != len(d.sizes) {
		return fmt.Errorf("collective: rank %d: Wait with %d gradients for %d parameters", rr.rank, len(grads), len(d.sizes))
	}
	var errs []error
	for i := range d.sizes {
		rr.mu.Lock()
		missing := !rr.got[i]
		rr.mu.Unlock()
		if missing {
			if err := rr.Ready(i, nil); err != nil {
				// Keep going: the other ranks need this one at the barrier; a bucket left unpacked
				// has no fresh event and the step's result is discarded with the error.
				errs = append(errs, err)
				rr.mu.Lock()
				rr.got[i] = true
				rr.mu.Unlock()
			}
		}
	}
	d.mu.Lock()
	d.arrived++
	done := d.done
	if d.arrived == len(d.ranks) {
		d.err = d.reduce()
		d.arrived = 0
		d.done = make(chan struct{})
		close(done)
	}
	d.mu.Unlock()
	<-done
	d.mu.Lock()
	rerr := d.err
	d.mu.Unlock()
	rr.mu.Lock()
	rr.reset()
	rr.mu.Unlock()
	if err := errors.Join(append(errs, rerr)...); err != nil {
		return err
	}
	ptrs := make([]cu.DevicePtr, len(grads))
	for i, g := range grads {
		if g == nil || g.Numel() != d.sizes[i] {
			return fmt.Errorf("collective: rank %d: Wait: gradient tensor %d is missing or has the wrong size", rr.rank, i)
		}
		p, be, err := cuda.DevicePtr(g)
		if err != nil {
			return fmt.Errorf("collective: rank %d: Wait: gradient tensor %d: %w", rr.rank, i, err)
		}
		if be != rr.be {
			return fmt.Errorf("collective: rank %d: Wait: gradient tensor %d lives on backend %s, not this rank's", rr.rank, i, be.Name())
		}
		ptrs[i] = p
	}
	s := rr.be.Stream()
	err := rr.be.Device().Do(func() error {
		for i, p := range ptrs {
			if n := int64(d.sizes[i]); n > 0 {
				l := d.loc[i]
				if err := cu.MemcpyDtoDAsync(p, rr.bufs[l.bucket]+cu.DevicePtr(l.off*4), n*4, s); err != nil {
					return err
				}
			}
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("collective: rank %d: unpack averaged gradients: %w", rr.rank, err)
	}
	return nil
}

// reduce all-reduces every bucket across the ranks, in bucket order, each after its packing copies
// (events), and waits for the ring. It runs on the last rank to reach Wait; the backend streams'
// later copies out of the buckets are then ordered by this host synchronisation.
func (d *DeviceReducer) reduce() error {
	N := len(d.ranks)
	evs := make([]cu.Event, N)
	bufs := make([]cu.DevicePtr, N)
	for b, n := range d.lens {
		for r, rr := range d.ranks {
			evs[r], bufs[r] = rr.evs[b], rr.bufs[b]
		}
		if err := d.ring.After(evs); err != nil {
			return errors.Join(fmt.Errorf("collective: bucket %d: %w", b, err), d.ring.Sync())
		}
		if err := d.ring.Enqueue(bufs, n, Avg); err != nil {
			return errors.Join(fmt.Errorf("collective: bucket %d: %w", b, err), d.ring.Sync())
		}
	}
	return d.ring.Sync()
}
