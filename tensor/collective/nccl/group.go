package nccl

import (
	"errors"
	"fmt"
	"runtime"
	"sync"
	"time"
	"unsafe"

	"dlf/kernels"
	"dlf/tensor"
	"dlf/tensor/collective"
	"dlf/tensor/cuda"
	"dlf/tensor/cuda/cu"
)

// Group is a communicator used as a collective.Group: host buffers go through a device staging
// buffer on the group's own stream of dev (copy in, the NCCL collective, copy out), and the host
// waits for the stream by polling it together with the communicator's asynchronous error, so a lost
// peer ends the wait with that error instead of hanging. It is for the few small collectives of a
// training step (losses and flags, once per step) and of start-up (parameters); gradients go
// through Reducer.
type Group struct {
	c   *Comm
	dev *cu.Device
	s   cu.Stream

	mu  sync.Mutex // one collective at a time: guards the staging buffer
	buf cu.DevicePtr
	cap int64
	k   *kernels.Kernels // loaded by the first averaging AllReduceTensor

	reasonMu sync.Mutex // separate from mu: Abort must not wait for a blocked collective
	reason   error
}

// NewGroup wraps c, whose ranks each run on dev (the device c was initialised on).
func NewGroup(c *Comm, dev *cu.Device) (*Group, error) {
	g := &Group{c: c, dev: dev}
	err := dev.Do(func() error {
		var err error
		g.s, err = cu.StreamCreate()
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("nccl: group stream: %w", err)
	}
	return g, nil
}

// Comm is the communicator.
func (g *Group) Comm() *Comm { return g.c }

// Rank is this process's rank.
func (g *Group) Rank() int { return g.c.Rank() }

// Size is the number of ranks.
func (g *Group) Size() int { return g.c.Size() }

// run stages n bytes of host through the device buffer: in copies host to the device (nil: no copy
// in), op queues the collective on the group's stream, and the result is copied back into host.
func (g *Group) run(host []byte, in bool, op func(buf cu.DevicePtr, s cu.Stream) error) error {
	g.mu.Lock()
	defer g.mu.Unlock()
	n := int64(len(host))
	return g.dev.Do(func() error {
		if n > g.cap {
			if g.buf != 0 {
				if err := cu.MemFree(g.buf); err != nil {
					return err
				}
				g.buf, g.cap = 0, 0
			}
			p, err := cu.MemAlloc(max(n, 256))
			if err != nil {
				return fmt.Errorf("nccl: staging buffer of %d bytes: %w", n, err)
			}
			g.buf, g.cap = p, max(n, 256)
		}
		if in && n > 0 {
			if err := cu.MemcpyHtoDAsync(g.buf, host, g.s); err != nil {
				return err
			}
		}
		if err := op(g.buf, g.s); err != nil {
			return err
		}
		if n > 0 {
			if err := cu.MemcpyDtoHAsync(host, g.buf, g.s); err != nil {
				return err
			}
		}
		err := g.c.Wait(g.s, nil)
		runtime.KeepAlive(host)
		return err
	})
}

// Wait returns once stream s has reached everything queued on it, polling it together with the
// communicator's asynchronous error: a peer found gone (or any asynchronous error) aborts the
// communicator and is returned, and so is an Abort from another goroutine. stop, when not nil, is
// polled too and ends the wait with its error. Call it with s's context current.
func (c *Comm) Wait(s cu.Stream, stop func() error) error {
	for spins := 0; ; spins++ {
		done, err := cu.StreamQuery(s)
		if err != nil {
			return err
		}
		if done {
			return nil
		}
		if err := c.AsyncError(); err != nil {
			_ = c.Abort()
			return err
		}
		if err := c.live("wait"); err != nil {
			return err
		}
		if stop != nil {
			if err := stop(); err != nil {
				return err
			}
		}
		if spins > 100 {
			time.Sleep(50 * time.Microsecond)
		}
	}
}

// Barrier is an all-reduce of one value.
func (g *Group) Barrier() error {
	return g.AllReduceFloat64([]float64{0}, collective.Sum)
}

// AllReduceFloat64 sums (or averages: the sum scaled by 1/Size afterwards) buf across the ranks.
func (g *Group) AllReduceFloat64(buf []float64, op collective.Op) error {
	if op != collective.Sum && op != collective.Avg {
		return fmt.Errorf("nccl: all-reduce op %v: want Sum or Avg", op)
	}
	if len(buf) == 0 {
		return nil
	}
	host := unsafe.Slice((*byte)(unsafe.Pointer(&buf[0])), len(buf)*8)
	err := g.run(host, true, func(p cu.DevicePtr, s cu.Stream) error {
		return g.c.AllReduce(p, p, len(buf), Float64, Sum, s)
	})
	if err != nil {
		return g.explain(err)
	}
	if op == collective.Avg && g.Size() > 1 {
		for i := range buf {
			buf[i] *= 1 / float64(g.Size())
		}
	}
	return nil
}

// BroadcastFloat32 copies root's buf to every rank.
func (g *Group) BroadcastFloat32(buf []float32, root int) error {
	if len(buf) == 0 {
		return nil
	}
	return g.BroadcastBytes(unsafe.Slice((*byte)(unsafe.Pointer(&buf[0])), len(buf)*4), root)
}

// BroadcastBytes copies root's buf to every rank.
func (g *Group) BroadcastBytes(buf []byte, root int) error {
	if root < 0 || root >= g.Size() {
		return fmt.Errorf("nccl: broadcast from rank %d of %d", root, g.Size())
	}
	if len(buf) == 0 {
		return nil
	}
	err := g.run(buf, g.Rank() == root, func(p cu.DevicePtr, s cu.Stream) error {
		return g.c.Broadcast(p, p, len(buf), Uint8, root, s)
	})
	return g.explain(err)
}

// Abort aborts the communicator; a collective blocked in another goroutine fails with reason.
func (g *Group) Abort(reason error) {
	g.reasonMu.Lock()
	if g.reason == nil {
		g.reason = reason
	}
	g.reasonMu.Unlock()
	_ = g.c.Abort()
}

// explain prefixes an error caused by Abort with the abort's reason.
func (g *Group) explain(err error) error {
	if err == nil {
		return nil
	}
	g.reasonMu.Lock()
	reason := g.reason
	g.reasonMu.Unlock()
	if reason != nil && !errors.Is(err, reason) {
		return fmt.Errorf("%w (%v)", reason, err)
	}
	return err
}

// Close frees the staging buffer and the stream and destroys the communicator (aborts it if it
// failed).
func (g *Group) Close() error {
	var errs []error
	errs = append(errs, g.dev.Do(func() error {
		var err error
		if g.s != 0 {
			err = errors.Join(g.c.Wait(g.s, nil), cu.StreamDestroy(g.s))
			g.s = 0
		}
		if g.buf != 0 {
			err = errors.Join(err, cu.MemFree(g.buf))
			g.buf = 0
		}
		return err
	}))
	if g.k != nil {
		errs = append(errs, g.k.Unload())
		g.k = nil
	}
	if g.c.AsyncError() != nil {
		errs = append(errs, g.c.Abort())
	} else {
		errs = append(errs, g.dev.Do(g.c.Destroy))
	}
	return errors.Join(errs...)
}

var _ collective.Group = (*Group)(nil)

// Join makes this process's communicator of id (rank of size) on backend be's device and wraps it
// as a Group whose stream is on that device.
func Join(l *Library, id UniqueID, size, rank int, be *cuda.Backend) (*Group, error) {
	dev := be.Device()
	var c *Comm
	err := dev.Do(func() error {
		var err error
		c, err = l.InitRank(id, size, rank)
		return err
	})
	if err != nil {
		return nil, err
	}
	g, err := NewGroup(c, dev)
	if err != nil {
		_ = c.Abort()
		return nil, err
	}
	return g, nil
}

// AllReduceTensor sums (or averages: the sum, then scale_f32 by 1/Size, as Reducer does) a float32
// CUDA tensor of the group's device across the ranks, in place, on the group's stream, and waits
// for it. The tensor's pending work on its backend stream is finished first.
func (g *Group) AllReduceTensor(t *tensor.Tensor, op collective.Op) error {
	if op != collective.Sum && op != collective.Avg {
		return fmt.Errorf("nccl: all-reduce op %v: want Sum or Avg", op)
	}
	p, be, err := cuda.DevicePtr(t)
	if err != nil {
		return err
	}
	if be.Device() != g.dev {
		return fmt.Errorf("nccl: tensor on %v, group on %v", be.Device(), g.dev)
	}
	n := t.Numel()
	g.mu.Lock()
	defer g.mu.Unlock()
	err = g.dev.Do(func() error {
		if err := cu.StreamSynchronize(be.Stream()); err != nil {
			return err
		}
		if err := g.c.AllReduce(p, p, n, Float32, Sum, g.s); err != nil {
			return err
		}
		if op == collective.Avg && g.Size() > 1 {
			if g.k == nil {
				var err error
				if g.k, err = kernels.Load(g.dev); err != nil {
					return err
				}
			}
			scale := float32(1 / float64(g.Size()))
			if err := g.k.ScaleF32(g.s, kernels.Grid1D(g.dev, int64(n), 256), cu.D1(256), 0, p, int64(n), scale); err != nil {
				return err
			}
		}
		return g.c.Wait(g.s, nil)
	})
	return g.explain(err)
}
