package probe

import (
	"math/rand/v2"
	"testing"

	"dlf/tensor"
	"dlf/tensor/cpu"
)

func randTensor(be tensor.Backend, rng *rand.Rand, shape ...int) *tensor.Tensor {
	t := tensor.New(be, tensor.Float64, shape...)
	v := make([]float64, t.Numel())
	for i := range v {
		v[i] = rng.NormFloat64()
	}
	t.Upload(v)
	return t
}

// TestProbeIsTransparent runs a GEMM and a convolution directly and through the probe: the results
// must be identical, and the recorded FLOP and byte counts must match the textbook formulas.
func TestProbeIsTransparent(t *testing.T) {
	rng := rand.New(rand.NewPCG(7, 8))
	be := cpu.New()
	var recs []*Record
	pb := New(be, func(r *Record, run func()) { recs = append(recs, r); run() })

	// c[5×7] = a[3×5]ᵀ·b[3×7] (batch 1 via 2-D operands).
	av, bv := randTensor(be, rng, 3, 5).Float64s(), randTensor(be, rng, 3, 7).Float64s()
	a, b := tensor.FromFloat64(be, av, 3, 5), tensor.FromFloat64(be, bv, 3, 7)
	want := tensor.New(be, tensor.Float64, 5, 7)
	tensor.Gemm(true, false, 1, a, b, 0, want)
	pa, pbt := tensor.FromFloat64(pb, av, 3, 5), tensor.FromFloat64(pb, bv, 3, 7)
	got := tensor.New(pb, tensor.Float64, 5, 7)
	recs = nil
	tensor.Gemm(true, false, 1, pa, pbt, 0, got)
	if len(recs) != 1 || recs[0].Op != "gemm" {
		t.Fatalf("records %v, want one gemm", recs)
	}
	if f := recs[0].Flops; f != 2*5*7*3 {
		t.Errorf("gemm flops %v, want %v", f, 2*5*7*3)
	}
	if by := recs[0].Bytes; by != 8*(15+21+35) {
		t.Errorf("gemm bytes %v, want %v", by, 8*(15+21+35))
	}
	for i, w := range want.Float64s() {
		if g := got.Float64s()[i]; g != w {
			t.Fatalf("gemm through the probe: element %d = %v, direct %v", i, g, w)
		}
	}

	// A 3×3 edge-bias convolution [2,6,5,4] → [2,6,5,3]: 2·N·H·W·K²·(Cin+1)·Cout FLOPs.
	p := tensor.ConvParams{K: 3, EdgeBias: true}
	xv, wv := randTensor(be, rng, 2, 6, 5, 4).Float64s(), randTensor(be, rng, 3, 3, 5, 3).Float64s()
	yd := tensor.New(be, tensor.Float64, 2, 6, 5, 3)
	tensor.Conv2D(p, yd, tensor.FromFloat64(be, xv, 2, 6, 5, 4), tensor.FromFloat64(be, wv, 3, 3, 5, 3), nil)
	yp := tensor.New(pb, tensor.Float64, 2, 6, 5, 3)
	recs = nil
	tensor.Conv2D(p, yp, tensor.FromFloat64(pb, xv, 2, 6, 5, 4), tensor.FromFloat64(pb, wv, 3, 3, 5, 3), nil)
	var conv *Record
	for _, r := range recs {
		if r.Op == "conv2d k3" {
			conv = r
		}
	}
	if conv == nil {
		t.Fatalf("no conv2d k3 record in %v", recs)
	}
	if want := 2.0 * 2 * 6 * 5 * 9 * 5 * 3; conv.Flops != want {
		t.Errorf("conv flops %v, want %v", conv.Flops, want)
	}
	for i, w := range yd.Float64s() {
		if g := yp.Float64s()[i]; g != w {
			t.Fatalf("conv through the probe: element %d = %v, direct %v", i, g, w)
		}
	}
}
