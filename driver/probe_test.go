package main

import (
	"math/rand/v2"
	"testing"

	"dlf/autodiff"
	"dlf/dlf"
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
	var recs []*opRecord
	pb := newProbe(be, func(r *opRecord, run func()) { recs = append(recs, r); run() })

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
	var conv *opRecord
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

// TestLayerAttribution runs a small model's forward and backward through the probe and checks that
// every op lands in a layer of the model and that each flow step's layers are seen.
func TestLayerAttribution(t *testing.T) {
	cfg, err := dlf.Preset("mnist")
	if err != nil {
		t.Fatal(err)
	}
	cfg.Depth, cfg.Width, cfg.BatchSize = 2, 8, 4
	var lt *layerTracker
	seen := map[string]int{}
	pb := newProbe(cpu.New(), func(r *opRecord, run func()) {
		if lt != nil {
			l, _ := lt.observe(r)
			seen[l]++
		}
		run()
	})
	m, err := dlf.New(cfg, pb, tensor.Float32)
	if err != nil {
		t.Fatal(err)
	}
	rng := rand.New(rand.NewPCG(1, 2))
	imgs := make([]uint8, 4*cfg.Dims())
	for i := range imgs {
		imgs[i] = uint8(rng.IntN(256))
	}
	x, _, err := m.Preprocess(imgs, 4, false, 1, 0)
	if err != nil {
		t.Fatal(err)
	}
	lt = newLayerTracker(m, "input")
	tp := autodiff.NewTape()
	res, err := m.Forward(tp, x, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := tp.Backward(res.Loss); err != nil {
		t.Fatal(err)
	}
	res.Release()
	for _, want := range []string{"level0.step0.invconv", "level0.step0.dlt", "level0.step1.dlt", "level0.split", "level1.step1.invconv", "level1.step1.dlt", "top"} {
		if seen[want] == 0 {
			t.Errorf("no op attributed to %s (seen %v)", want, seen)
		}
	}
	for l := range seen {
		if l != "input" && layerGroup(l) == l && l != "top" {
			t.Errorf("op attributed to %q, which is no layer of the model", l)
		}
	}
}

func TestNames(t *testing.T) {
	for in, want := range map[string]string{
		"level0.step3.dlt.part1.conv1.weight": "level0.step3.dlt",
		"level2.step10.invconv.weight":        "level2.step10.invconv",
		"level1.split.conv.bias":              "level1.split",
		"top.conv.logs":                       "top",
	} {
		if got := layerOf(in); got != want {
			t.Errorf("layerOf(%q) = %q, want %q", in, got, want)
		}
	}
	for in, want := range map[string]string{"level0.step3.dlt": "L0 dlt", "level1.split": "L1 split prior", "top": "top prior"} {
		if got := layerGroup(in); got != want {
			t.Errorf("layerGroup(%q) = %q, want %q", in, got, want)
		}
	}
	for n, want := range map[int]string{0: "0", 999: "999", 1000: "1,000", 1828648: "1,828,648", -12345: "-12,345"} {
		if got := commas(n); got != want {
			t.Errorf("commas(%d) = %q, want %q", n, got, want)
		}
	}
}
