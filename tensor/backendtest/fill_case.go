package backendtest

import (
	"fmt"
	"math"

	"dlf/tensor"
)

// actShapes are the NHWC activation shapes most families use: odd sizes, a single element, and the
// model's real shapes (MNIST 14×14×4 and 7×7×8, CIFAR 16×16×12 and 8×8×24) at small batch sizes.
var actShapes = [][]int{
	{3, 5, 7, 3},
	{1, 1, 1, 1},
	{2, 3, 3, 5},
	{2, 14, 14, 4},
	{2, 7, 7, 8},
	{2, 16, 16, 12},
	{2, 8, 8, 24},
}

// fdShapes are the small shapes of the finite-difference checks.
var fdShapes = [][]int{
	{2, 3, 4, 3},
	{1, 1, 1, 2},
}

func numel(s []int) int {
	n := 1
	for _, d := range s {
		n *= d
	}
	return n
}

// runMemory covers Fill, Copy, CopyChannels (and the slicing/concatenation built on it),
// Upload/Download with dtype conversion, Alloc/Free through New/Reshape/Release, and UnpackBytes.
func runMemory(s *suite, t tb) {
	s.op(t, "UnpackBytes", func(t tb, dt tensor.DType) {
		for _, n := range []int{1, 3, 4, 5, 784, 3*32*32*2 + 1, 64 * 64 * 3} {
			for _, shift := range []int{0, 3, 7} {
				s.leaf(t, dt, fmt.Sprintf("n%d_shift%d", n, shift), func(e *env) {
					e.describe("%d bytes >> %d", n, shift)
					// Every byte value appears; the word's top byte avoids 0x7f and 0xff, so that no
					// word is a NaN (a reference backend that keeps values as float64 may rewrite a
					// NaN's payload; the real backends copy bytes).
					b := make([]byte, n)
					for i := range b {
						b[i] = byte(e.rng.IntN(256))
						if i%4 == 3 && b[i]&0x7f == 0x7f {
							b[i] ^= 1
						}
					}
					if n >= 1024 {
						for v := range 256 {
							if v&0x7f != 0x7f {
								b[4*v+3] = byte(v)
							}
							b[4*v] = byte(v)
						}
					}
					words := tensor.PackBytes(nil, b)
					src := tensor.New(s.be, tensor.Float32, len(words))
					src.Upload(words)
					dst := e.poisoned(n)
					tensor.UnpackBytes(dst, src, shift)
					want := make([]float64, n)
					for i, v := range b {
						want[i] = float64(v >> shift)
					}
					e.expectExact("UnpackBytes", dst.Shape(), e.get(dst), want)
					src.Release()
				})
			}
		}
	})
	s.op(t, "Fill", func(t tb, dt tensor.DType) {
		shapes := append(append([][]int(nil), actShapes...), []int{7}, []int{100003})
		for _, sh := range shapes {
			s.leaf(t, dt, shapeName(sh), func(e *env) {
				v := e.scalar(0.1, 10)
				e.describe("v=%g", v)
				x := e.poisoned(sh...)
				got := e.get(x)
				for i, g := range got {
					if !math.IsNaN(g) {
						e.fatalf("Fill(NaN) left %g at %s", g, index(x.Shape(), i))
					}
				}
				tensor.Fill(x, v)
				want := make([]float64, len(got))
				for i := range want {
					want[i] = e.round(v)
				}
				e.expectExact("Fill", x.Shape(), e.get(x), want)
			})
		}
	})
	s.op(t, "Copy", func(t tb, dt tensor.DType) {
		for _, sh := range actShapes {
			for _, flat := range []bool{false, true} {
				name := shapeName(sh)
				dsh := sh
				if flat {
					dsh = []int{numel(sh) / sh[len(sh)-1], sh[len(sh)-1]}
					name += "_to" + shapeName(dsh)
				}
				s.leaf(t, dt, name, func(e *env) {
					xv := e.signed(numel(sh), 0.1, 10)
					x := e.tensor(xv, sh...)
					y := e.poisoned(dsh...)
					tensor.Copy(y, x)
					e.expectExact("Copy dst", y.Shape(), e.get(y), xv)
					e.expectExact("Copy src (must be unchanged)", x.Shape(), e.get(x), xv)
					z := e.own(tensor.Clone(x))
					e.expectExact("Clone", z.Shape(), e.get(z), xv)
				})
			}
		}
	})
	type ccCase struct {
		rows           []int
		srcC, dstC     int
		srcOff, dstOff int
		c              int
	}
	ccCases := []ccCase{
		{[]int{2, 3, 3}, 5, 7, 1, 2, 3},
		{[]int{3, 5, 7}, 3, 3, 0, 0, 3},
		{[]int{1, 1, 1}, 1, 2, 0, 1, 1},
		{[]int{2, 14, 14}, 4, 8, 0, 4, 4},
		{[]int{2, 16, 16}, 12, 6, 6, 0, 6},
		{[]int{2, 8, 8}, 24, 48, 0, 24, 24},
		{[]int{2, 7, 7}, 8, 8, 2, 5, 3},
		{[]int{6}, 10, 4, 9, 3, 1},
	}
	s.op(t, "CopyChannels", func(t tb, dt tensor.DType) {
		for _, cc := range ccCases {
			src := append(append([]int(nil), cc.rows...), cc.srcC)
			dst := append(append([]int(nil), cc.rows...), cc.dstC)
			name := fmt.Sprintf("%s_%d-%d_to_%s_at%d", shapeName(src), cc.srcOff, cc.srcOff+cc.c, shapeName(dst), cc.dstOff)
			s.leaf(t, dt, name, func(e *env) {
				// The destination's other channels must survive, so it starts from random values
				// rather than NaN; a missed or stray write then shows as a wrong value.
				sv := e.signed(numel(src), 0.1, 10)
				dv := e.signed(numel(dst), 0.1, 10)
				x, y := e.tensor(sv, src...), e.tensor(dv, dst...)
				tensor.CopyChannels(y, cc.dstOff, x, cc.srcOff, cc.c)
				want := append([]float64(nil), dv...)
				rows := numel(cc.rows)
				for r := 0; r < rows; r++ {
					for j := 0; j < cc.c; j++ {
						want[r*cc.dstC+cc.dstOff+j] = sv[r*cc.srcC+cc.srcOff+j]
					}
				}
				e.expectExact("CopyChannels dst", y.Shape(), e.get(y), want)
			})
		}
		// SliceChannels and ConcatChannels are CopyChannels underneath; check the pair inverts.
		for _, sh := range actShapes {
			c := sh[3]
			if c < 2 {
				continue
			}
			s.leaf(t, dt, shapeName(sh)+"_slice_concat", func(e *env) {
				xv := e.signed(numel(sh), 0.1, 10)
				x := e.tensor(xv, sh...)
				k := c / 2
				lo := e.own(tensor.SliceChannels(x, 0, k))
				hi := e.own(tensor.SliceChannels(x, k, c))
				y := e.poisoned(sh...)
				tensor.ConcatChannels(y, lo, hi)
				e.expectExact("ConcatChannels(SliceChannels)", y.Shape(), e.get(y), xv)
			})
		}
	})
	s.op(t, "UploadDownload", func(t tb, dt tensor.DType) {
		for _, sh := range [][]int{{1}, {7}, {2, 3, 3, 5}, {2, 16, 16, 12}} {
			s.leaf(t, dt, shapeName(sh), func(e *env) {
				n := numel(sh)
				// Values that float32 cannot hold exactly, to check the conversions round to nearest.
				raw := make([]float64, n)
				for i := range raw {
					raw[i] = (0.1 + e.rng.Float64()) * math.Pow(2, float64(e.rng.IntN(20)-10))
					if e.rng.IntN(2) == 0 {
						raw[i] = -raw[i]
					}
				}
				f32 := make([]float32, n)
				r32 := make([]float64, n)
				for i, v := range raw {
					f32[i] = float32(v)
					r32[i] = float64(f32[i])
				}
				x := e.own(tensor.New(e.be, e.dt, sh...))
				x.Upload(raw)
				e.expectExact("Upload([]float64) then Download([]float64)", x.Shape(), e.get(x), e.roundAll(raw))
				back32 := x.Float32s()
				w32 := make([]float64, n)
				g32 := make([]float64, n)
				for i := range w32 {
					w32[i] = float64(float32(e.round(raw[i])))
					g32[i] = float64(back32[i])
				}
				e.expectExact("Download([]float32)", x.Shape(), g32, w32)
				x.Upload(f32)
				e.expectExact("Upload([]float32)", x.Shape(), e.get(x), r32)
			})
		}
	})
	s.op(t, "AllocFree", func(t tb, dt tensor.DType) {
		s.leaf(t, dt, "reuse", func(e *env) {
			// Live tensors must keep their contents while others are released and reallocated.
			sizes := []int{1, 3, 64, 1000, 4097, 65536}
			var live []*tensor.Tensor
			var vals []float64
			for round := 0; round < 4; round++ {
				for i, n := range sizes {
					x := tensor.New(e.be, e.dt, n)
					v := e.round(float64(round*100+i) + 0.5)
					tensor.Fill(x, v)
					if i%2 == 0 {
						live = append(live, x)
						vals = append(vals, v)
					} else {
						x.Release()
					}
				}
			}
			for i, x := range live {
				want := make([]float64, x.Numel())
				for j := range want {
					want[j] = vals[i]
				}
				e.expectExact(fmt.Sprintf("live tensor %d after other releases", i), x.Shape(), e.get(x), want)
				x.Release()
			}
			// A reshape shares storage and keeps it alive after the original is released.
			xv := e.signed(24, 0.1, 10)
			x := tensor.New(e.be, e.dt, 2, 3, 4)
			x.Upload(e.toDType(xv))
			r := x.Reshape(6, -1)
			x.Release()
			for i := 0; i < 8; i++ {
				tensor.New(e.be, e.dt, 2, 3, 4).Release()
			}
			e.expectExact("Reshape after releasing the original", r.Shape(), e.get(r), xv)
			r.Release()
			if err := e.be.Err(); err != nil {
				e.fatalf("Err after allocations: %v", err)
			}
		})
	})
}

// toDType converts rounded values to the host slice type matching the dtype.
func (e *env) toDType(v []float64) any {
	if e.dt == tensor.Float32 {
		f := make([]float32, len(v))
		for i, x := range v {
			f[i] = float32(x)
		}
		return f
	}
	return append([]float64(nil), v...)
}
