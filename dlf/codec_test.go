package dlf

import (
	"math"
	"path/filepath"
	"strings"
	"testing"

	"dlf/autodiff"
	"dlf/tensor"
	"dlf/tensor/safetensors"
)

// TestPreprocess checks n_bits reduction, scaling and the dequantisation noise against a direct
// computation with the Philox definition.
func TestPreprocess(t *testing.T) {
	for _, bits := range []int{8, 5} {
		cfg := smallConfig(2, 0)
		cfg.NumBits = bits
		m, err := New(cfg, testBackend(), tensor.Float64)
		if err != nil {
			t.Fatal(err)
		}
		n := 2
		imgs := make([]uint8, n*cfg.Dims())
		r := testRand(t, 41)
		for i := range imgs {
			imgs[i] = uint8(r.IntN(256))
		}
		x, next, err := m.Preprocess(imgs, n, false, 9, 3)
		if err != nil {
			t.Fatal(err)
		}
		if next != 3+tensor.PhiloxBlocks(len(imgs)) {
			t.Errorf("next offset %d", next)
		}
		bins := float64(int(1) << bits)
		got := x.Float64s()
		for i, p := range imgs {
			blk := tensor.PhiloxBlock(9, 3, uint64(i/4))
			u := tensor.PhiloxUniform(blk[i%4])
			want := (float64(p>>(8-bits))+u)/bins - 0.5
			if math.Abs(got[i]-want) > 1e-15 {
				t.Fatalf("bits %d: element %d = %v, want %v", bits, i, got[i], want)
			}
		}
		// Postprocess inverts the quantisation: every pixel comes back as its bin's representative.
		back := m.Postprocess(x)
		for i, p := range imgs {
			if want := uint8(int(p>>(8-bits)) << (8 - bits)); back[i] != want {
				t.Fatalf("bits %d: postprocess of pixel %d (%d) = %d, want %d", bits, i, p, back[i], want)
			}
		}
		// PreprocessInto writes the same values into a given tensor (twice: the kept noise buffer
		// is reused) and rejects a destination of another shape.
		for range 2 {
			dst := tensor.New(m.be, tensor.Float64, n, cfg.ImageH, cfg.ImageW, cfg.ImageC)
			if next2, err := m.PreprocessInto(dst, imgs, n, false, 9, 3); err != nil || next2 != next {
				t.Fatalf("PreprocessInto: next %d (want %d), %v", next2, next, err)
			}
			for i, v := range dst.Float64s() {
				if v != got[i] {
					t.Fatalf("PreprocessInto element %d = %v, Preprocess gave %v", i, v, got[i])
				}
			}
			dst.Release()
		}
		wrong := tensor.New(m.be, tensor.Float64, n, cfg.ImageH*cfg.ImageW*cfg.ImageC)
		if _, err := m.PreprocessInto(wrong, imgs, n, false, 0, 0); err == nil || !strings.Contains(err.Error(), "destination") {
			t.Errorf("destination of another shape: %v", err)
		}
		wrong.Release()
		if _, _, err := m.Preprocess(imgs[:10], n, false, 0, 0); err == nil || !strings.Contains(err.Error(), "10 bytes") {
			t.Errorf("short batch: %v", err)
		}
		if bits < 8 {
			if _, _, err := m.Preprocess(imgs, n, true, 0, 0); err == nil || !strings.Contains(err.Error(), "-bit value") {
				t.Errorf("unreduced bytes passed as reduced: %v", err)
			}
		}
	}
}

// TestStateRoundTrip saves a model to safetensors, loads it into a fresh one and compares encodings;
// a checkpoint of another configuration is rejected with the tensor named.
func TestStateRoundTrip(t *testing.T) {
	cfg := smallConfig(2, 0)
	cfg.Flow, cfg.InvConv = FlowGlow, InvConvLU
	a, _ := New(cfg, testBackend(), tensor.Float32)
	x := randTensor(a.be, tensor.Float32, testRand(t, 42), 0.3, 2, 8, 8, 2)
	if err := a.DataInit(x, nil); err != nil {
		t.Fatal(err)
	}
	perturb(testRand(t, 43), a.Params(), 0.05)
	path := filepath.Join(t.TempDir(), "m.safetensors")
	if err := safetensors.Write(path, a.State(), map[string]string{"config": cfg.JSON()}); err != nil {
		t.Fatal(err)
	}
	f, err := safetensors.Read(path)
	if err != nil {
		t.Fatal(err)
	}
	cfg.Seed++ // different init, then overwritten by the checkpoint
	b, _ := New(cfg, a.be, tensor.Float32)
	if !b.NeedsDataInit() {
		t.Fatal("fresh Glow model does not need data init")
	}
	if err := b.LoadState(f); err != nil {
		t.Fatal(err)
	}
	if b.NeedsDataInit() {
		t.Error("the checkpoint's actnorm flags did not load")
	}
	ea, err := a.Encode(x, nil)
	if err != nil {
		t.Fatal(err)
	}
	eb, err := b.Encode(x, nil)
	if err != nil {
		t.Fatal(err)
	}
	for l := range ea.Z {
		if d, _ := maxAbsDiff(ea.Z[l].Float64s(), eb.Z[l].Float64s()); d != 0 {
			t.Errorf("latent %d differs by %g after loading", l, d)
		}
	}
	other := smallConfig(4, 0)
	c, _ := New(other, testBackend(), tensor.Float32)
	if err := c.LoadState(f); err == nil || !strings.Contains(err.Error(), "lacks tensor") {
		t.Errorf("loading a Glow checkpoint into a DLF model: %v", err)
	}
}

// TestSampleTemperature checks that sampling at T = 0 decodes the priors' means, that sampling is a
// pure function of (seed, offset), and that mode "top" scales only the top level.
func TestSampleTemperature(t *testing.T) {
	m := newTestModel(t, modelCases()[0], tensor.Float64)
	x1, off, err := m.Sample(2, 0.7, TemperatureAll, nil, 5, 0)
	if err != nil {
		t.Fatal(err)
	}
	x2, _, _ := m.Sample(2, 0.7, TemperatureAll, nil, 5, 0)
	if d, _ := maxAbsDiff(x1.Float64s(), x2.Float64s()); d != 0 {
		t.Errorf("same seed, different samples (%g)", d)
	}
	// Encoding a sample gives back ε with the temperature applied: T·N(0,1) at every level for
	// "all", only at the top for "top".
	for _, mode := range []string{TemperatureAll, TemperatureTop} {
		const T = 0.3
		x, _, err := m.Sample(64, T, mode, nil, 6, off)
		if err != nil {
			t.Fatal(err)
		}
		en, _ := m.Encode(x, nil)
		for l, e := range en.Eps {
			v := e.Float64s()
			s := 0.0
			for _, f := range v {
				s += f * f
			}
			std := math.Sqrt(s / float64(len(v)))
			want := 1.0
			if mode == TemperatureAll || l == len(en.Eps)-1 {
				want = T
			}
			if math.Abs(std-want) > 0.1*want {
				t.Errorf("mode %s level %d: ε std %.3f, want %.2f", mode, l, std, want)
			}
		}
		en.Release()
	}
	if _, _, err := m.Sample(2, -1, "", nil, 0, 0); err == nil {
		t.Error("negative temperature accepted")
	}
	if _, _, err := m.Sample(2, 1, "warm", nil, 0, 0); err == nil {
		t.Error("bad temperature mode accepted")
	}
}

// TestInterpolate checks that the end points of a latent interpolation reproduce the inputs.
func TestInterpolate(t *testing.T) {
	m := newTestModel(t, modelCases()[2], tensor.Float64)
	r := testRand(t, 44)
	a := randTensor(m.be, tensor.Float64, r, 0.3, 1, 4, 4, 4)
	b := randTensor(m.be, tensor.Float64, r, 0.3, 1, 4, 4, 4)
	out, err := m.Interpolate(a, b, nil, []float64{0, 0.5, 1})
	if err != nil {
		t.Fatal(err)
	}
	if d, _ := maxAbsDiff(out[0].Float64s(), a.Float64s()); d > 1e-10 {
		t.Errorf("t=0 differs from a by %g", d)
	}
	if d, _ := maxAbsDiff(out[2].Float64s(), b.Float64s()); d > 1e-10 {
		t.Errorf("t=1 differs from b by %g", d)
	}
	if d, _ := maxAbsDiff(out[1].Float64s(), a.Float64s()); d < 1e-3 {
		t.Errorf("midpoint equals a")
	}
}

// TestInputErrors checks that misuse a caller can cause returns errors naming the problem.
func TestInputErrors(t *testing.T) {
	cfg := smallConfig(2, 0)
	cfg.Conditioning = true
	m, _ := New(cfg, testBackend(), tensor.Float64)
	x := randTensor(m.be, tensor.Float64, testRand(t, 45), 0.3, 2, 8, 8, 2)
	if _, err := m.Forward(autodiff.NoGrad(), x, nil); err == nil || !strings.Contains(err.Error(), "class-conditional") {
		t.Errorf("missing condition: %v", err)
	}
	bad := randTensor(m.be, tensor.Float64, testRand(t, 46), 0.3, 2, 8, 4, 2)
	if _, err := m.Encode(bad, nil); err == nil || !strings.Contains(err.Error(), "[N 8 8 2]") {
		t.Errorf("wrong image shape: %v", err)
	}
	if _, err := m.OneHot([]int32{1, 3}); err == nil || !strings.Contains(err.Error(), "label 3 of example 1") {
		t.Errorf("out-of-range label: %v", err)
	}
	if _, err := New(Config{}, testBackend(), tensor.Float32); err == nil {
		t.Error("zero Config accepted")
	}
	en, _ := m.Encode(x, mustOneHot(t, m, 2))
	if _, err := m.Decode(en.Z[:1], mustOneHot(t, m, 2)); err == nil || !strings.Contains(err.Error(), "one per level") {
		t.Errorf("too few latents: %v", err)
	}
}

func mustOneHot(t *testing.T, m *Model, n int) *tensor.Tensor {
	labels := make([]int32, n)
	c, err := m.OneHot(labels)
	if err != nil {
		t.Fatal(err)
	}
	return c
}
