package cuda

import (
	"math"
	"math/rand/v2"
	"testing"

	"dlf/tensor"
)

// TestTF32RoundingBitwise checks that the tensor-core kernels round operands exactly as
// tensor.RoundTF32 (and so the CPU backend's TF32 mode) does: a GEMM with K = 1 and b = 1 makes
// every output a single exact product, c = round(a)·1, compared bit for bit — ties, carries into
// the exponent, negatives and random patterns. On a GPU this pins the hardware's cvt.rna.tf32.f32
// to the Go rounding; on the emulator, the emulator's model of it.
func TestTF32RoundingBitwise(t *testing.T) {
	be := newTestBackend(t)
	var vals []float32
	for _, b := range []uint32{0x3f801000, 0xbf801000, 0x3f800fff, 0x3fffffff, 0x3f802fff, 0x40401000, 0x00001000, 0x3e7ff000} {
		vals = append(vals, math.Float32frombits(b))
	}
	rng := rand.New(rand.NewPCG(rand.Uint64(), 2))
	for len(vals) < 4096 {
		// Normal numbers well inside the range (an exponent of -60..60), any mantissa.
		b := rng.Uint32()&0x807fffff | uint32(67+rng.IntN(121))<<23
		vals = append(vals, math.Float32frombits(b))
	}
	for _, shape := range [][3]int{{len(vals), 1, 1}, {len(vals) / 32, 1, 32}, {len(vals) / 64, 1, 64}} {
		m, n := shape[0], shape[2]
		a := tensor.New(be, tensor.Float32, m, 1)
		a.Upload(vals[:m])
		ones := make([]float32, n)
		for i := range ones {
			ones[i] = 1
		}
		b := tensor.New(be, tensor.Float32, 1, n)
		b.Upload(ones)
		c := tensor.New(be, tensor.Float32, m, n)
		tensor.GemmPrecision(tensor.TF32, false, false, 1, a, b, 0, c)
		got := c.Float32s()
		if err := be.Sync(); err != nil {
			t.Fatal(err)
		}
		for i := 0; i < m; i++ {
			want := tensor.RoundTF32(vals[i])
			for j := 0; j < n; j++ {
				if g := got[i*n+j]; math.Float32bits(g) != math.Float32bits(want) {
					t.Fatalf("M=%d N=%d: c[%d,%d] = %#08x, want RoundTF32(%#08x) = %#08x", m, n, i, j,
						math.Float32bits(g), math.Float32bits(vals[i]), math.Float32bits(want))
				}
			}
		}
	}
}
