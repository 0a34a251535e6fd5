package collective

import (
	"testing"

	"dlf/tensor/cuda/cu"
	"dlf/tensor/cuda/cu/gputest"
)

// TestGPUDeviceRingAllReduce runs the device ring with N = 2, 3, 4 virtual ranks on device 0
// (separate streams, staging buffers and data buffers) against the float64 reference, for sizes that
// divide by N, do not, and are smaller than N, with slices small enough that the staging slots are
// reused many times, over both transports: peer copies (cuMemcpyPeerAsync, within one context) and
// the pinned-host staging that links without peer access use.
func TestGPUDeviceRingAllReduce(t *testing.T) {
	dev := gputest.Device(t)
	r := newRand(t)
	for _, ranks := range []int{2, 3, 4} {
		for _, c := range []struct {
			sliceElems int
			hostStaged bool
		}{{5, false}, {0, false}, {7, true}, {0, true}} {
			sliceElems := c.sliceElems
			devs := make([]*cu.Device, ranks)
			for i := range devs {
				devs[i] = dev
			}
			g, err := NewDeviceRing(devs, Options{SliceElems: sliceElems, Depth: 2, HostStaged: c.hostStaged})
			if err != nil {
				t.Fatal(err)
			}
			for _, n := range testSizes {
				if sliceElems > 0 && n > 5000 {
					continue
				}
				for _, op := range []Op{Sum, Avg} {
					bufs := randBufs[float32](r, ranks, n)
					want, mag := reference(bufs, op)
					ptrs := make([]cu.DevicePtr, ranks)
					err := dev.Do(func() error {
						for k := range ptrs {
							p, err := cu.MemAlloc(int64(n) * 4)
							if err != nil {
								return err
							}
							ptrs[k] = p
							if err := cu.MemcpyHtoD(p, bufs[k]); err != nil {
								return err
							}
						}
						return nil
					})
					if err != nil {
						t.Fatal(err)
					}
					if err := g.AllReduce(ptrs, n, op); err != nil {
						t.Fatalf("ranks %d n %d %v host-staged %v: %v", ranks, n, op, c.hostStaged, err)
					}
					for k := range ranks {
						if g.HostStaged(k) != c.hostStaged {
							t.Fatalf("rank %d: HostStaged %v, want %v", k, g.HostStaged(k), c.hostStaged)
						}
					}
					err = dev.Do(func() error {
						for k, p := range ptrs {
							if err := cu.MemcpyDtoH(bufs[k], p); err != nil {
								return err
							}
							if err := cu.MemFree(p); err != nil {
								return err
							}
						}
						return nil
					})
					if err != nil {
						t.Fatal(err)
					}
					checkAllReduce(t, bufs, want, mag, 0x1p-24)
				}
			}
			if err := g.Close(); err != nil {
				t.Fatal(err)
			}
		}
	}
}

// TestGPUDeviceRingMatchesHostRing checks that the device ring and the CPU ring produce the same
// float32 values (same schedule, same rounding order), so CPU-tested training runs carry over.
func TestGPUDeviceRingMatchesHostRing(t *testing.T) {
	dev := gputest.Device(t)
	r := newRand(t)
	const ranks, n = 3, 1001
	bufs := randBufs[float32](r, ranks, n)
	host := make([][]float32, ranks)
	for k := range bufs {
		host[k] = append([]float32(nil), bufs[k]...)
	}
	hr, _ := NewHostRing[float32](ranks, Options{SliceElems: 64})
	runHost(t, hr, host, Avg)
	g, err := NewDeviceRing([]*cu.Device{dev, dev, dev}, Options{SliceElems: 64})
	if err != nil {
		t.Fatal(err)
	}
	defer g.Close()
	ptrs := make([]cu.DevicePtr, ranks)
	if err := dev.Do(func() error {
		for k := range ptrs {
			var err error
			if ptrs[k], err = cu.MemAlloc(n * 4); err != nil {
				return err
			}
			if err := cu.MemcpyHtoD(ptrs[k], bufs[k]); err != nil {
				return err
			}
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	if err := g.AllReduce(ptrs, n, Avg); err != nil {
		t.Fatal(err)
	}
	got := make([]float32, n)
	if err := dev.Do(func() error {
		defer func() {
			for _, p := range ptrs {
				_ = cu.MemFree(p)
			}
		}()
		return cu.MemcpyDtoH(got, ptrs[1])
	}); err != nil {
		t.Fatal(err)
	}
	for i := range got {
		if got[i] != host[1][i] {
			t.Fatalf("element %d: device ring %g, host ring %g", i, got[i], host[1][i])
		}
	}
}
