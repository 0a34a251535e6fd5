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
// staging them through the host, and overlaps the averaging with the backward pass: it is the Reducer
// of a DeviceRing. Each rank's gradients are packed into per-bucket device buffers by
// device-to-device copies on the rank's backend stream (so they are ordered after the kernels that
// produced them, and a gradient block the backend frees and reuses afterwards is only overwritten
// after the copy), and an event recorded on that stream marks a bucket as packed. As soon as every
// rank has packed a bucket, a proxy goroutine queues its all-reduce on the ring (whose own thread
// issues the driver calls, so this does not wait for the device workers, which are still queuing the
// rest of the backward pass): the ring's streams wait on the packing events, reduce with peer copies
// and the reduction kernel, and record an end event per rank after the step's last bucket. Wait then
// makes each backend stream wait on its end event and copies the averages back into the gradient
// tensors, ahead of the optimizer step that reads them. Nothing synchronises the host with a
// device during a step.
//
// The buckets are laid out exactly as Reducer lays them out (parameters in reverse order, the same
// bucket size), and DeviceRing runs HostRing's schedule, so for the same Options the averages are
// bit-identical to the host path's.
//
// One DeviceReducer serves all ranks; Rank(r) is rank r's view, with Ready and Wait like Reducer's.
// Ready may be called inside Device().Do (the backward pass's gradient hook). Wait is a barrier
// across the ranks: call it outside Do, since a rank that shares a device worker with another (virtual
// ranks) would otherwise keep that rank from finishing its backward pass. Every rank's Wait must have
// returned before any rank hands over the next step's gradients.
type DeviceReducer struct {
	ring  *DeviceRing
	bes   []*cuda.Backend
	sizes []int
	loc   []bucketLoc
	bkts  [][]int // per bucket: member parameter indices
	lens  []int   // per bucket: elements
	ranks []*DeviceRankReducer

	work  chan int      // buckets packed on every rank, in the order they completed
	proxy chan struct{} // closed when the proxy goroutine has stopped

	mu     sync.Mutex
	packed []int         // per bucket: ranks that have packed it this step
	queued int           // buckets queued on the ring this step
	left   int           // ranks that have passed this step's barrier
	done   chan struct{} // closed once the step's buckets are all queued and the end events recorded
	err    error         // the step's first proxy error
}

// DeviceRankReducer is one rank's side of a DeviceReducer.
type DeviceRankReducer struct {
	d    *DeviceReducer
	rank int
	be   *cuda.Backend
	// DeviceBuckets: per bucket, a buffer and an event recorded on the backend stream once packed.
	DeviceBuckets
	end cu.Event // recorded on the ring's stream of this rank after the step's last bucket

	mu      sync.Mutex
	got     []bool
	missing []int // per bucket: members not yet handed over this step
}

// NewDeviceReducer prepares the device reducer for ranks on backends bes (rank r on bes[r]; backends
// may share a device, as virtual ranks), parameters of the given element counts in registration
// order, buckets of about bucketElems elements (0: DefaultBucketElems) and ring options opt. Close
// stops the proxy and releases the ring, buffers and events.
func NewDeviceReducer(bes []*cuda.Backend, sizes []int, bucketElems int, opt Options) (*DeviceReducer, error) {
	if len(bes) < 1 {
		return nil, fmt.Errorf("collective: device reducer needs at least 1 rank, got %d", len(bes))
	}
	lay, err := NewLayout(sizes, bucketElems)
	if err != nil {
		return nil, err
	}
	d := &DeviceReducer{bes: append([]*cuda.Backend(nil), bes...), sizes: lay.Sizes, loc: make([]bucketLoc, len(sizes)), bkts: lay.Members, lens: lay.Lens, done: make(chan struct{})}
	for i := range sizes {
		d.loc[i] = bucketLoc{lay.Bucket[i], lay.Offset[i]}
	}
	d.packed = make([]int, len(d.bkts))
	ring, err := NewBackendRing(bes, opt)
	if err != nil {
		return nil, err
	}
	d.ring = ring
	for r, be := range bes {
		rr := &DeviceRankReducer{d: d, rank: r, be: be}
		d.ranks = append(d.ranks, rr)
		err := be.Device().Do(func() error {
			// Ordering only: timing-disabled events are the cheapest to record and wait on.
			var err error
			if rr.end, err = cu.EventCreate(cu.EventDisableTiming); err != nil {
				return err
			}
			rr.DeviceBuckets, err = NewDeviceBuckets(d.lens)
			return err
		})
		if err != nil {
			_ = d.Close()
			return nil, fmt.Errorf("collective: device reducer rank %d: %w", r, err)
		}
		rr.reset()
	}
	if len(d.bkts) == 0 {
		close(d.done) // nothing to reduce: every step's barrier is open
	}
	d.work = make(chan int, len(d.bkts))
	d.proxy = make(chan struct{})
	go d.runProxy()
	return d, nil
}

// runProxy queues each bucket's all-reduce on the ring as soon as every rank has packed it, and after
// a step's last bucket records every rank's end event.
func (d *DeviceReducer) runProxy() {
	defer close(d.proxy)
	N := len(d.ranks)
	evs := make([]cu.Event, N)
	bufs := make([]cu.DevicePtr, N)
	for b := range d.work {
		for r, rr := range d.ranks {
			evs[r], bufs[r] = rr.Packed[b], rr.Bufs[b]
		}
		err := d.ring.After(evs)
		if err == nil {
			err = d.ring.Enqueue(bufs, d.lens[b], Avg)
		}
		if err != nil {
			err = fmt.Errorf("collective: bucket %d: %w", b, err)
		}
		d.mu.Lock()
		d.queued++
		last := d.queued == len(d.bkts)
		d.mu.Unlock()
		if last {
			for r, rr := range d.ranks {
				evs[r] = rr.end
			}
			err = errors.Join(err, d.ring.Record(evs))
		}
		d.mu.Lock()
		if d.err == nil {
			d.err = err
		}
		if last {
			close(d.done)
		}
		d.mu.Unlock()
	}
}

// bucketPacked counts rank's packing of bucket b and hands the bucket to the proxy once every rank
// has packed it.
func (d *DeviceReducer) bucketPacked(b int) {
	d.mu.Lock()
	d.packed[b]++
	all := d.packed[b] == len(d.ranks)
	d.mu.Unlock()
	if all {
		d.work <- b // buffered for every bucket: never blocks
	}
}

// Buckets returns the number of buckets.
func (d *DeviceReducer) Buckets() int { return len(d.bkts) }

// Rank returns rank r's side.
func (d *DeviceReducer) Rank(r int) *DeviceRankReducer { return d.ranks[r] }

// Close stops the proxy, waits for the ring and frees its streams, the bucket buffers and the events.
func (d *DeviceReducer) Close() error {
	var errs []error
	if d.work != nil {
		close(d.work)
		<-d.proxy
		d.work = nil
	}
	if d.ring != nil {
		errs = append(errs, d.ring.Close())
		d.ring = nil
	}
	for _, rr := range d.ranks {
		errs = append(errs, rr.be.Device().Do(func() error {
			// The backend stream may still be unpacking from the buckets.
			err := cu.StreamSynchronize(rr.be.Stream())
			err = errors.Join(err, rr.DeviceBuckets.Free())
			if rr.end != 0 {
				err = errors.Join(err, cu.EventDestroy(rr.end))
			}
			rr.end = 0
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
// may release it at once; once the bucket's last member is queued, the bucket's event is recorded and
// the bucket counts as packed by this rank (even if queuing failed: the error is returned, and the
// step must be discarded, but the other ranks are not left waiting). Each parameter may be handed over
// once per step.
func (rr *DeviceRankReducer) Ready(i int, g *tensor.Tensor) error {
	d := rr.d
	if i < 0 || i >= len(d.sizes) {
		return fmt.Errorf("collective: rank %d: gradient of parameter %d of %d", rr.rank, i, len(d.sizes))
	}
	var src cu.DevicePtr
	if g != nil {
		p, err := GradientPtr(rr.be, g, i, d.sizes[i])
		if err != nil {
			return fmt.Errorf("collective: rank %d: %w", rr.rank, err)
		}
		src = p
	}
	rr.mu.Lock()
	if rr.got[i] {
		rr.mu.Unlock()
		return fmt.Errorf("collective: rank %d: gradient of parameter %d handed over twice in one step", rr.rank, i)
	}
	rr.got[i] = true
	l := d.loc[i]
	rr.missing[l.bucket]--
	last := rr.missing[l.bucket] == 0
	rr.mu.Unlock()
	err := rr.be.Err()
	if err == nil {
		n := int64(d.sizes[i])
		dst := rr.Bufs[l.bucket] + cu.DevicePtr(l.off*4)
		s := rr.be.Stream()
		err = rr.be.Device().Do(func() error {
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
				return cu.EventRecord(rr.Packed[l.bucket], s)
			}
			return nil
		})
	}
	if last {
		d.bucketPacked(l.bucket)
	}
	if err != nil {
		return fmt.Errorf("collective: rank %d: pack gradient of parameter %d: %w", rr.rank, i, err)
	}
	return nil
}

// Wait finishes the step for this rank: parameters not handed over count as zero gradients, the
// rank waits until every bucket's all-reduce has been queued (which needs every rank's gradients),
// and grads[i] (non-nil CUDA tensors of this rank's backend, Numel as given to NewDeviceReducer)
// receive the averages, by copies queued on the backend stream after it waits for the ring's end
// event: Wait returns without waiting for the devices. Call it outside Device().Do (see
// DeviceReducer).
func (rr *DeviceRankReducer) Wait(grads []*tensor.Tensor) error {
	d := rr.d
	var errs []error
	if len(grads) != len(d.sizes) {
		errs = append(errs, fmt.Errorf("collective: rank %d: Wait with %d gradients for %d parameters", rr.rank, len(grads), len(d.sizes)))
	}
	for i := range d.sizes {
		rr.mu.Lock()
		missing := !rr.got[i]
		rr.mu.Unlock()
		if missing {
			// Ready counts the parameter even when queuing its zeros fails, so the barrier below
			// is always reached by every rank and the ring never waits for a bucket forever.
			if err := rr.Ready(i, nil); err != nil {
				errs = append(errs, err)
			}
		}
	}
	d.mu.Lock()
	done := d.done
	d.mu.Unlock()
	<-done
	d.mu.Lock()
	errs = append(errs, d.err)
	d.left++
	if d.left == len(d.ranks) {
		// The last rank through the barrier starts the next step.
		clear(d.packed)
		d.queued, d.left, d.err = 0, 0, nil
		if len(d.bkts) > 0 {
			d.done = make(chan struct{})
		}
	}
	d.mu.Unlock()
	rr.mu.Lock()
	rr.reset()
	rr.mu.Unlock()
	if err := errors.Join(errs...); err != nil {
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
		// The backend stream continues once the ring has written this rank's averages; the next
		// step's packing copies into the buckets come after these unpacking copies on the same
		// stream, so they cannot overwrite a bucket the ring is still reading.
		if err := cu.StreamWaitEvent(s, rr.end); err != nil {
			return err
		}
		for i, p := range ptrs {
			if n := int64(d.sizes[i]); n > 0 {
				l := d.loc[i]
				if err := cu.MemcpyDtoDAsync(p, rr.Bufs[l.bucket]+cu.DevicePtr(l.off*4), n*4, s); err != nil {
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

// DeviceBuckets are one rank's gradient buckets on its device: a cuMemAlloc buffer per bucket
// (plain allocations, so peer copies work) and an event per bucket that marks it packed. The device
// reducers of this package and of tensor/collective/nccl share them.
type DeviceBuckets struct {
	Bufs   []cu.DevicePtr
	Packed []cu.Event
}

// NewDeviceBuckets allocates buckets of the given element counts; call inside the device's Do. On
// an error, what was allocated is in the returned value for Free.
func NewDeviceBuckets(lens []int) (DeviceBuckets, error) {
	var b DeviceBuckets
	for _, n := range lens {
		p, err := cu.MemAlloc(int64(max(n, 1)) * 4)
		if err != nil {
			return b, fmt.Errorf("bucket of %d elements: %w", n, err)
		}
		b.Bufs = append(b.Bufs, p)
		e, err := cu.EventCreate(cu.EventDisableTiming)
		if err != nil {
			return b, err
		}
		b.Packed = append(b.Packed, e)
	}
	return b, nil
}

// Free releases the buffers and events; call inside the device's Do after the streams using them
// are done.
func (b *DeviceBuckets) Free() error {
	var err error
	for _, p := range b.Bufs {
		err = errors.Join(err, cu.MemFree(p))
	}
	for _, e := range b.Packed {
		err = errors.Join(err, cu.EventDestroy(e))
	}
	b.Bufs, b.Packed = nil, nil
	return err
}

// GradientPtr returns the device address of gradient g of parameter i (size elements), which must
// be a CUDA tensor of backend be.
func GradientPtr(be *cuda.Backend, g *tensor.Tensor, i, size int) (cu.DevicePtr, error) {
	if g.Numel() != size {
		return 0, fmt.Errorf("gradient of parameter %d has %d elements, want %d", i, g.Numel(), size)
	}
	p, gbe, err := cuda.DevicePtr(g)
	if err != nil {
		return 0, fmt.Errorf("gradient of parameter %d: %w", i, err)
	}
	if gbe != be {
		return 0, fmt.Errorf("gradient of parameter %d lives on backend %s, not this rank's", i, gbe.Name())
	}
	return p, nil
}
