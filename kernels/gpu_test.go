package kernels_test

import (
	"fmt"
	"math"
	"math/rand/v2"
	"testing"

	"dlf/kernels"
	"dlf/tensor/cuda/cu"
	"dlf/tensor/cuda/cu/gputest"
)

// loaded returns the kernels on the test device, loaded once.
var loadedKernels *kernels.Kernels

func load(t *testing.T) (*cu.Device, *kernels.Kernels) {
	t.Helper()
	dev := gputest.Device(t)
	if loadedKernels == nil {
		k, err := kernels.Load(dev)
		if err != nil {
			t.Fatalf("kernels.Load: %v", err)
		}
		loadedKernels = k
	}
	return dev, loadedKernels
}

func randFloats(r *rand.Rand, n int) []float32 {
	s := make([]float32, n)
	for i := range s {
		s[i] = float32(r.NormFloat64())
	}
	return s
}

// upload copies host to a new device buffer.
func upload(host []float32) (cu.DevicePtr, error) {
	p, err := cu.MemAlloc(int64(4 * max(len(host), 1)))
	if err != nil {
		return 0, err
	}
	return p, cu.MemcpyHtoD(p, host)
}

func TestGPUKernelsLoadAll(t *testing.T) {
	dev, k := load(t)
	err := dev.Do(func() error {
		for _, ki := range kernels.Table {
			f, err := k.Function(ki.Name)
			if err != nil {
				return err
			}
			regs, err := cu.FuncGetAttribute(f, cu.FuncAttrNumRegs)
			if err != nil {
				return err
			}
			t.Logf("%-20s %3d registers  %s", ki.Name, regs, ki.Signature())
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}

// TestGPUFillCopyMatchCPU launches fill_f32 and copy_f32 over lengths that
// are not multiples of the block, with grids too small to cover them in one
// pass (exercising the grid-stride loop), into NaN-poisoned buffers, and
// compares with plain Go loops.
func TestGPUFillCopyMatchCPU(t *testing.T) {
	dev, k := load(t)
	r := rand.New(rand.NewPCG(5, 6))
	for _, n := range []int{1, 255, 257, 100003} {
		for _, gridX := range []uint32{1, 3, uint32(kernels.Grid1D(dev, int64(n), 256).X)} {
			v := float32(r.NormFloat64())
			src := randFloats(r, n)
			poison := make([]float32, n+16)
			for i := range poison {
				poison[i] = float32(math.NaN())
			}
			gotFill := make([]float32, n+16)
			gotCopy := make([]float32, n+16)
			err := dev.Do(func() error {
				dst, err := upload(poison)
				if err != nil {
					return err
				}
				defer cu.MemFree(dst)
				dst2, err := upload(poison)
				if err != nil {
					return err
				}
				defer cu.MemFree(dst2)
				s, err := upload(src)
				if err != nil {
					return err
				}
				defer cu.MemFree(s)
				if err := k.FillF32(0, cu.D1(gridX), cu.D1(256), 0, dst, int64(n), v); err != nil {
					return err
				}
				if err := k.CopyF32(0, cu.D1(gridX), cu.D1(256), 0, dst2, s, int64(n)); err != nil {
					return err
				}
				if err := cu.CtxSynchronize(); err != nil {
					return err
				}
				if err := cu.MemcpyDtoH(gotFill, dst); err != nil {
					return err
				}
				return cu.MemcpyDtoH(gotCopy, dst2)
			})
			if err != nil {
				t.Fatal(err)
			}
			for i := 0; i < n+16; i++ {
				wantFill, wantCopy := v, float32(math.NaN())
				if i < n {
					wantCopy = src[i]
				} else {
					wantFill = float32(math.NaN())
				}
				if !same(gotFill[i], wantFill) || !same(gotCopy[i], wantCopy) {
					t.Fatalf("n=%d grid=%d element %d: fill %v (want %v), copy %v (want %v)", n, gridX, i, gotFill[i], wantFill, gotCopy[i], wantCopy)
				}
			}
		}
	}
}

func same(a, b float32) bool {
	return a == b || math.IsNaN(float64(a)) && math.IsNaN(float64(b))
}

// copyChannelsCPU is copy_channels_f32's CPU twin.
func copyChannelsCPU(dst, src []float32, rows, dstC, dstOff, srcC, srcOff, c int) {
	for row := 0; row < rows; row++ {
		for j := 0; j < c; j++ {
			dst[row*dstC+dstOff+j] = src[row*srcC+srcOff+j]
		}
	}
}

func TestGPUCopyChannelsMatchesCPU(t *testing.T) {
	dev, k := load(t)
	r := rand.New(rand.NewPCG(7, 8))
	cases := []struct{ rows, dstC, dstOff, srcC, srcOff, c int }{
		{1, 1, 0, 1, 0, 1},
		{7, 6, 3, 6, 0, 3},        // second half of a 6-channel tensor gets the first half
		{1000, 12, 0, 24, 12, 12}, // split: upper 12 of 24 channels into a 12-channel tensor
		{4096, 48, 16, 16, 0, 16}, // concat: a 16-channel tensor into the middle of 48
		{333, 5, 4, 3, 2, 1},
	}
	for _, c := range cases {
		name := fmt.Sprintf("%+v", c)
		src := randFloats(r, c.rows*c.srcC)
		dstInit := randFloats(r, c.rows*c.dstC)
		want := append([]float32(nil), dstInit...)
		copyChannelsCPU(want, src, c.rows, c.dstC, c.dstOff, c.srcC, c.srcOff, c.c)
		got := make([]float32, len(want))
		err := dev.Do(func() error {
			d, err := upload(dstInit)
			if err != nil {
				return err
			}
			defer cu.MemFree(d)
			s, err := upload(src)
			if err != nil {
				return err
			}
			defer cu.MemFree(s)
			s1, err := cu.StreamCreate()
			if err != nil {
				return err
			}
			defer cu.StreamDestroy(s1)
			grid := kernels.Grid1D(dev, int64(c.rows*c.c), 256)
			if err := k.CopyChannelsF32(s1, grid, cu.D1(256), 0, d, s, int64(c.rows),
				int32(c.dstC), int32(c.dstOff), int32(c.srcC), int32(c.srcOff), int32(c.c)); err != nil {
				return err
			}
			if err := cu.StreamSynchronize(s1); err != nil {
				return err
			}
			return cu.MemcpyDtoH(got, d)
		})
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		for i := range want {
			if got[i] != want[i] {
				t.Fatalf("%s: element %d (row %d, channel %d) = %v, want %v", name, i, i/c.dstC, i%c.dstC, got[i], want[i])
			}
		}
	}
}
