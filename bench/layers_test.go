package bench

import (
	"math/rand/v2"
	"testing"

	"dlf/autodiff"
	"dlf/dlf"
	"dlf/tensor"
	"dlf/tensor/cpu"
	"dlf/tensor/probe"
)

// TestLayerAttribution runs a small model's forward and backward through the probe and checks that
// every op lands in a layer of the model and that each flow step's layers are seen.
func TestLayerAttribution(t *testing.T) {
	cfg, err := dlf.Preset("mnist")
	if err != nil {
		t.Fatal(err)
	}
	cfg.Depth, cfg.Width, cfg.BatchSize = 2, 8, 4
	var lt *dlf.LayerTracker
	seen := map[string]int{}
	pb := probe.New(cpu.New(), func(r *probe.Record, run func()) {
		if lt != nil {
			l, _ := lt.Observe(r.Inputs)
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
	lt = dlf.NewLayerTracker(m, "input")
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
		if l != "input" && LayerGroup(l) == l && l != "top" {
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
		if got := dlf.LayerOf(in); got != want {
			t.Errorf("LayerOf(%q) = %q, want %q", in, got, want)
		}
	}
	for in, want := range map[string]string{"level0.step3.dlt": "L0 dlt", "level1.split": "L1 split prior", "top": "top prior"} {
		if got := LayerGroup(in); got != want {
			t.Errorf("LayerGroup(%q) = %q, want %q", in, got, want)
		}
	}
	for n, want := range map[int]string{0: "0", 999: "999", 1000: "1,000", 1828648: "1,828,648", -12345: "-12,345"} {
		if got := dlf.FormatCount(n); got != want {
			t.Errorf("FormatCount(%d) = %q, want %q", n, got, want)
		}
	}
}
