package nccl

import (
	"errors"
	"fmt"
	"sync"

	"dlf/kernels"
	"dlf/tensor"
	"dlf/tensor/collective"
	"dlf/tensor/cuda"
	"dlf/tensor/cuda/cu"
)

// Reducer averages one process's gradients with the other ranks' over NCCL, bucket by bucket while
// backward runs, without the host waiting for the device: the GPU counterpart of collective.Reducer
// for one process per rank. Gradients are packed into per-bucket device buffers by device-to-device
// copies on the backend's stream; when a bucket is complete an event marks it and the group's
// stream waits for that event, sums the bucket with ncclAllReduce in place and scales it by 1/N
// (scale_f32: the sum, then one multiply — for two ranks the same bits as the in-process device
// ring). Wait makes the backend stream wait for the group's stream and copies the averages back.
//
// Buckets are reduced strictly in bucket order on every rank (a bucket completed early waits for its
// predecessors), since NCCL needs every rank to issue a communicator's collectives in the same
// order; every collective of the communicator, the Group's host collectives included, goes on the
// Group's one stream for the same reason. The layout is collective.NewLayout's.
type Reducer struct {
	g   *Group
	be  *cuda.Backend
	k   *kernels.Kernels
	lay collective.Layout

	collective.DeviceBuckets          // per bucket: a buffer, and an event recorded once it is packed
	end                      cu.Event // recorded on the group's stream after the step's last bucket

	mu      sync.Mutex
	got     []bool
	missing []int
	ready   []bool
	next    int // the next bucket to reduce this step
	err     error
}

// NewReducer prepares the reducer for the parameters of the given sizes (registration order) on
// backend be, whose device must be the group's.
func NewReducer(g *Group, be *cuda.Backend, sizes []int, bucketElems int) (*Reducer, error) {
	if be.Device() != g.dev {
		return nil, fmt.Errorf("nccl: reducer on %v, group on %v", be.Device(), g.dev)
	}
	lay, err := collective.NewLayout(sizes, bucketElems)
	if err != nil {
		return nil, err
	}
	r := &Reducer{g: g, be: be, lay: lay}
	if r.k, err = kernels.Load(g.dev); err != nil {
		return nil, err
	}
	err = g.dev.Do(func() error {
		var err error
		if r.end, err = cu.EventCreate(cu.EventDisableTiming); err != nil {
			return err
		}
		r.DeviceBuckets, err = collective.NewDeviceBuckets(lay.Lens)
		return err
	})
	if err != nil {
		_ = r.Close()
		return nil, fmt.Errorf("nccl: reducer: %w", err)
	}
	r.reset()
	return r, nil
}

// Buckets returns the number of buckets.
func (r *Reducer) Buckets() int { return len(r.lay.Lens) }

func (r *Reducer) reset() {
	r.got = make([]bool, len(r.lay.Sizes))
	r.missing = make([]int, len(r.lay.Lens))
	r.ready = make([]bool, len(r.lay.Lens))
	for b, m := range r.lay.Members {
		r.missing[b] = len(m)
	}
	r.next, r.err = 0, nil
}

// Ready hands over parameter i's final gradient for this step (nil means zero): a copy into its
// bucket is queued on the backend stream, so the caller may release g at once. Completed buckets
// are reduced in bucket order. It may be called inside the backend device's Do (the backward pass's
// gradient hook).
func (r *Reducer) Ready(i int, g *tensor.Tensor) error {
	if i < 0 || i >= len(r.lay.Sizes) {
		return fmt.Errorf("nccl: gradient of parameter %d of %d", i, len(r.lay.Sizes))
	}
	var src cu.DevicePtr
	if g != nil {
		p, err := collective.GradientPtr(r.be, g, i, r.lay.Sizes[i])
		if err != nil {
			return fmt.Errorf("nccl: %w", err)
		}
		src = p
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.got[i] {
		return fmt.Errorf("nccl: gradient of parameter %d handed over twice in one step", i)
	}
	r.got[i] = true
	b := r.lay.Bucket[i]
	r.missing[b]--
	last := r.missing[b] == 0
	s := r.be.Stream()
	err := r.be.Err()
	if err == nil {
		err = r.g.dev.Do(func() error {
			n := int64(r.lay.Sizes[i])
			dst := r.Bufs[b] + cu.DevicePtr(r.lay.Offset[i]*4)
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
			if !last {
				return nil
			}
			if err := cu.EventRecord(r.Packed[b], s); err != nil {
				return err
			}
			r.ready[b] = true
			return r.issue()
		})
	}
	if err != nil {
		err = fmt.Errorf("nccl: gradient of parameter %d: %w", i, err)
		if r.err == nil {
			r.err = err
		}
	}
	return err
}

// issue queues the all-reduce of every packed bucket whose predecessors are queued (r.mu held, on
// the device's worker).
func (r *Reducer) issue() error {
	gs := r.g.s
	size := r.g.Size()
	for r.next < len(r.lay.Lens) && r.ready[r.next] {
		b := r.next
		r.next++
		n := r.lay.Lens[b]
		if n == 0 || size == 1 {
			continue
		}
		if err := cu.StreamWaitEvent(gs, r.Packed[b]); err != nil {
			return err
		}
		if err := r.g.c.AllReduce(r.Bufs[b], r.Bufs[b], n, Float32, Sum, gs); err != nil {
			return r.g.explain(fmt.Errorf("bucket %d: %w", b, err))
		}
		scale := float32(1 / float64(size))
		if err := r.k.ScaleF32(gs, kernels.Grid1D(r.g.dev, int64(n), 256), cu.D1(256), 0, r.Bufs[b], int64(n), scale); err != nil {
			return err
		}
	}
	return nil
}

// Wait finishes the step: parameters not handed over count as zero, and grads[i] (this backend's
// tensors, sizes as given to NewReducer) receive the averages by copies queued on the backend
// stream after it waits for the group's stream. It returns without waiting for the device.
func (r *Reducer) Wait(grads []*tensor.Tensor) error {
	var errs []error
	if len(grads) != len(r.lay.Sizes) {
		errs = append(errs, fmt.Errorf("nccl: Wait with %d gradients for %d parameters", len(grads), len(r.lay.Sizes)))
	}
	for i := range r.lay.Sizes {
		r.mu.Lock()
		missing := !r.got[i]
		r.mu.Unlock()
		if missing {
			if err := r.Ready(i, nil); err != nil {
				errs = append(errs, err)
			}
		}
	}
	r.mu.Lock()
	errs = append(errs, r.err)
	if r.next != len(r.lay.Lens) && r.err == nil {
		errs = append(errs, fmt.Errorf("nccl: internal error: %d of %d buckets reduced", r.next, len(r.lay.Lens)))
	}
	r.reset()
	r.mu.Unlock()
	if err := errors.Join(errs...); err != nil {
		return err
	}
	ptrs := make([]cu.DevicePtr, len(grads))
	for i, g := range grads {
		if g == nil || g.Numel() != r.lay.Sizes[i] {
			return fmt.Errorf("nccl: Wait: gradient tensor %d is missing or has the wrong size", i)
		}
		p, be, err := cuda.DevicePtr(g)
		if err != nil {
			return fmt.Errorf("nccl: Wait: gradient tensor %d: %w", i, err)
		}
		if be != r.be {
			return fmt.Errorf("nccl: Wait: gradient tensor %d lives on backend %s, not the reducer's", i, be.Name())
		}
		ptrs[i] = p
	}
	s := r.be.Stream()
	return r.g.dev.Do(func() error {
		// The backend stream continues once the group's stream has the averages; the next step's
		// packing copies come after these unpacking copies on the same stream.
		if err := cu.EventRecord(r.end, r.g.s); err != nil {
			return err
		}
		if err := cu.StreamWaitEvent(s, r.end); err != nil {
			return err
		}
		for i, p := range ptrs {
			if n := int64(r.lay.Sizes[i]); n > 0 {
				src := r.Bufs[r.lay.Bucket[i]] + cu.DevicePtr(r.lay.Offset[i]*4)
				if err := cu.MemcpyDtoDAsync(p, src, n*4, s); err != nil {
					return err
				}
			}
		}
		return nil
	})
}

// Close waits for the streams and frees the buffers, events and kernels (not the group).
func (r *Reducer) Close() error {
	err := r.g.dev.Do(func() error {
		err := errors.Join(cu.StreamSynchronize(r.be.Stream()), r.DeviceBuckets.Free())
		if r.end != 0 {
			err = errors.Join(err, cu.EventDestroy(r.end))
		}
		r.end = 0
		return err
	})
	if r.k != nil {
		err = errors.Join(err, r.k.Unload())
		r.k = nil
	}
	return err
}
