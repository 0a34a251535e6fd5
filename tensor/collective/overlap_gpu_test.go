package collective

import (
	"math"
	"sync"
	"testing"
	"time"

	"dlf/tensor"
	"dlf/tensor/cuda"
	"dlf/tensor/cuda/cu"
	"dlf/tensor/cuda/cu/gputest"
)

// TestGPUDeviceReducerOverlapsBackward checks that DeviceReducer queues each bucket's all-reduce
// while the devices' workers are still busy, which is what lets the ring overlap the backward pass:
// two virtual ranks on device 0 hand over all their gradients from inside one Device.Do (as the
// trainer's backward pass does, holding the device worker), and every bucket must be queued on the
// ring before that Do returns. Then Wait delivers the float64 mean, for three steps in a row with no
// host synchronisation between them (the buckets and staging slots are reused across steps).
func TestGPUDeviceReducerOverlapsBackward(t *testing.T) {
	dev := gputest.Device(t)
	r := newRand(t)
	const N = 2
	sizes := []int{700, 1, 333, 1024, 90, 5}
	bes := make([]*cuda.Backend, N)
	for k := range bes {
		be, err := cuda.NewOnDevice(dev)
		if err != nil {
			t.Fatal(err)
		}
		defer be.Close()
		bes[k] = be
	}
	d, err := NewDeviceReducer(bes, sizes, 500, Options{SliceElems: 64, Depth: 2})
	if err != nil {
		t.Fatal(err)
	}
	defer func() {
		if err := d.Close(); err != nil {
			t.Error(err)
		}
	}()
	if d.Buckets() < 3 {
		t.Fatalf("only %d buckets: the test needs several", d.Buckets())
	}
	queued := func() int {
		d.mu.Lock()
		defer d.mu.Unlock()
		return d.queued
	}
	for step := range 3 {
		vals := make([][][]float32, N) // [rank][param]
		grads := make([][]*tensor.Tensor, N)
		for k := range N {
			vals[k] = make([][]float32, len(sizes))
			for i, n := range sizes {
				vals[k][i] = randBufs[float32](r, 1, n)[0]
				grads[k] = append(grads[k], tensor.FromFloat32(bes[k], vals[k][i], n))
			}
		}
		var inside int
		err := dev.Do(func() error {
			// Reverse registration order, like a backward pass.
			for i := len(sizes) - 1; i >= 0; i-- {
				for k := range N {
					if err := d.Rank(k).Ready(i, grads[k][i]); err != nil {
						return err
					}
				}
			}
			deadline := time.Now().Add(30 * time.Second)
			for queued() < d.Buckets() && time.Now().Before(deadline) {
				time.Sleep(time.Millisecond)
			}
			inside = queued()
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
		if inside != d.Buckets() {
			t.Fatalf("step %d: %d of %d buckets queued on the ring while the device worker was busy; want all", step, inside, d.Buckets())
		}
		var wg sync.WaitGroup
		errs := make([]error, N)
		for k := range N {
			wg.Go(func() { errs[k] = d.Rank(k).Wait(grads[k]) })
		}
		wg.Wait()
		for k, err := range errs {
			if err != nil {
				t.Fatalf("step %d rank %d: %v", step, k, err)
			}
		}
		for i := range sizes {
			for k := range N {
				got := grads[k][i].Float32s()
				for j := range got {
					want := (float64(vals[0][i][j]) + float64(vals[1][i][j])) / N
					mag := (math.Abs(float64(vals[0][i][j])) + math.Abs(float64(vals[1][i][j]))) / N
					if math.Abs(float64(got[j])-want) > 2*0x1p-24*mag {
						t.Fatalf("step %d rank %d parameter %d[%d]: %g, float64 mean %g", step, k, i, j, got[j], want)
					}
				}
			}
		}
		for k := range N {
			for _, g := range grads[k] {
				g.Release()
			}
		}
	}
}

// TestGPUDeviceRingBackToBack queues several all-reduces with Enqueue and synchronises once: the
// staging slots then carry messages of different calls, and a slot may only be refilled after its
// receiver consumed the previous call's message.
func TestGPUDeviceRingBackToBack(t *testing.T) {
	dev := gputest.Device(t)
	r := newRand(t)
	const ranks = 3
	sizes := []int{1000, 7, 4099, 2}
	g, err := NewDeviceRing([]*cu.Device{dev, dev, dev}, Options{SliceElems: 50, Depth: 2})
	if err != nil {
		t.Fatal(err)
	}
	defer g.Close()
	bufs := make([][][]float32, len(sizes))
	ptrs := make([][]cu.DevicePtr, len(sizes))
	for c, n := range sizes {
		bufs[c] = randBufs[float32](r, ranks, n)
		ptrs[c] = make([]cu.DevicePtr, ranks)
		if err := dev.Do(func() error {
			for k := range ranks {
				var err error
				if ptrs[c][k], err = cu.MemAlloc(int64(n) * 4); err != nil {
					return err
				}
				if err := cu.MemcpyHtoD(ptrs[c][k], bufs[c][k]); err != nil {
					return err
				}
			}
			return nil
		}); err != nil {
			t.Fatal(err)
		}
	}
	for c, n := range sizes {
		if err := g.Enqueue(ptrs[c], n, Sum); err != nil {
			t.Fatal(err)
		}
	}
	if err := g.Sync(); err != nil {
		t.Fatal(err)
	}
	for c := range sizes {
		want, mag := reference(bufs[c], Sum)
		if err := dev.Do(func() error {
			for k, p := range ptrs[c] {
				if err := cu.MemcpyDtoH(bufs[c][k], p); err != nil {
					return err
				}
				if err := cu.MemFree(p); err != nil {
					return err
				}
			}
			return nil
		}); err != nil {
			t.Fatal(err)
		}
		checkAllReduce(t, bufs[c], want, mag, 0x1p-24)
	}
}
