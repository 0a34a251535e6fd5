package dlf

import (
	"flag"
	"fmt"
	"math"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"dlf/tensor"
	"dlf/tensor/safetensors"
)

// updateTwin regenerates dlf/testdata/twin from reference/dlf_torch.py:
//
//	go test ./dlf/ -run TestPyTorchTwinGolden -update-twin
var updateTwin = flag.Bool("update-twin", false, "regenerate testdata/twin/*.safetensors with reference/dlf_torch.py (needs torch)")

// goldenCases are the golden-vector models: small enough to commit (tens of KiB each), at FP32
// and at TF32. Glow is compared at FP32 only: at TF32 its data-initialised actnorms amplify the
// rounding flips that summation-order differences cause (see TestGPUParity), beyond any tight bound.
var goldenCases = []struct {
	name string
	edit func(c *Config)
}{
	{"mnist-small-fp32", func(c *Config) {
		*c, _ = Preset("mnist")
		c.Depth, c.Width, c.Precision = 2, 16, PrecisionFP32
	}},
	{"mnist-small-tf32", func(c *Config) {
		*c, _ = Preset("mnist")
		c.Depth, c.Width, c.Precision = 2, 16, PrecisionTF32
	}},
	{"cifar10-small-k4-decomp1-tf32", func(c *Config) {
		*c, _ = Preset("cifar10")
		c.Depth, c.Width, c.Parts, c.Decomposition, c.Precision = 1, 16, 4, 1, PrecisionTF32
	}},
	{"glow-mnist-small-fp32", func(c *Config) {
		*c, _ = Preset("glow-mnist")
		c.Depth, c.Width, c.Precision = 2, 16, PrecisionFP32
	}},
}

// TestPyTorchTwinGolden checks the Go model against outputs of the PyTorch twin committed in
// dlf/testdata/twin, so the comparison runs where torch is not installed. Each file holds a
// randomly perturbed model (its state, config and precision in the metadata), a preprocessed batch
// ("input.x") and the twin's per-example objective, log-determinant, log-prior and latents
// ("torch.*", computed by dlf_torch.py --check, which rounds convolution operands to TF32 when the
// config says tf32). The Go model on the CPU must agree to 1e-4 relative, the bound of
// TestPyTorchTwin: at TF32 both sides multiply identical rounded operands and differ in summation
// order only.
func TestPyTorchTwinGolden(t *testing.T) {
	dir := filepath.Join("testdata", "twin")
	if *updateTwin {
		writeGolden(t, dir)
	}
	for _, gc := range goldenCases {
		t.Run(gc.name, func(t *testing.T) {
			f, err := safetensors.Read(filepath.Join(dir, gc.name+".safetensors"))
			if err != nil {
				t.Fatalf("%v (regenerate with: go test ./dlf/ -run TestPyTorchTwinGolden -update-twin)", err)
			}
			var cfg Config
			if err := f.MetaJSON("config", &cfg); err != nil {
				t.Fatal(err)
			}
			m, err := New(cfg, testBackend(), tensor.Float32)
			if err != nil {
				t.Fatal(err)
			}
			if err := m.LoadState(f, "input.", "torch."); err != nil {
				t.Fatal(err)
			}
			e, _ := f.Entry("input.x")
			x := tensor.New(m.Backend(), tensor.Float32, e.Shape...)
			if err := f.Load("input.x", x); err != nil {
				t.Fatal(err)
			}
			en, err := m.Encode(x, nil)
			if err != nil {
				t.Fatal(err)
			}
			defer en.Release()
			res, err := m.Forward(nil, x, nil)
			if err != nil {
				t.Fatal(err)
			}
			defer res.Release()
			compare := func(name string, got *tensor.Tensor) {
				diff, scale := goldenDiff(t, f, name, got)
				if diff > 1e-4*scale {
					t.Errorf("%s: Go and PyTorch (golden, %s) differ by %.3g (relative %.3g), scale %.3g", name, f.Meta["torch"], diff, diff/scale, scale)
				} else {
					t.Logf("%-9s max |Go − PyTorch golden| = %.2g (relative %.2g)", name, diff, diff/scale)
				}
			}
			compare("objective", res.Objective.Value)
			compare("logdet", en.LogDet)
			compare("logprior", en.LogPrior)
			for l, z := range en.Z {
				compare(fmt.Sprintf("z%d", l), z)
			}
			if cfg.Precision != PrecisionTF32 {
				return
			}
			// The TF32 golden must tell the precisions apart: the same model at FP32 is further
			// from it than the TF32 model is.
			d32, d := latentDiff(t, m, f, x, PrecisionFP32), latentDiff(t, m, f, x, PrecisionTF32)
			t.Logf("latents: max relative difference from the TF32 golden %.2g at TF32, %.2g at FP32", d, d32)
			if d32 <= 4*d {
				t.Errorf("the TF32 golden does not resolve the precision: FP32 model %.2g from it, TF32 model %.2g", d32, d)
			}
		})
	}
}

// goldenDiff returns the largest |got − golden| of the twin's output name and the largest |golden|.
func goldenDiff(t *testing.T, f *safetensors.File, name string, got *tensor.Tensor) (diff, scale float64) {
	t.Helper()
	want, err := f.Float32("torch."+name, got.Shape())
	if err != nil {
		t.Fatal(err)
	}
	g := got.Float64s()
	for j := range g {
		diff = max(diff, math.Abs(g[j]-float64(want[j])))
		scale = max(scale, math.Abs(float64(want[j])))
	}
	return diff, scale
}

// latentDiff rebuilds m's model at precision prec with m's parameters and returns the largest
// relative difference of its latents from the golden ones.
func latentDiff(t *testing.T, m *Model, f *safetensors.File, x *tensor.Tensor, prec string) float64 {
	t.Helper()
	cfg := m.Config()
	cfg.Precision = prec
	m2, err := New(cfg, m.Backend(), tensor.Float32)
	if err != nil {
		t.Fatal(err)
	}
	if err := m2.LoadState(f, "input.", "torch."); err != nil {
		t.Fatal(err)
	}
	en, err := m2.Encode(x, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer en.Release()
	worst := 0.0
	for l, z := range en.Z {
		d, s := goldenDiff(t, f, fmt.Sprintf("z%d", l), z)
		worst = max(worst, d/s)
	}
	return worst
}

// writeGolden builds each golden case (seeded: the same files every time for the same code),
// has the twin evaluate it, and writes inputs and outputs into one file per case.
func writeGolden(t *testing.T, dir string) {
	script := twinScript(t)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	tmp := t.TempDir()
	for i, gc := range goldenCases {
		var cfg Config
		gc.edit(&cfg)
		cfg.Seed = uint64(300 + i)
		m, err := New(cfg, testBackend(), tensor.Float32)
		if err != nil {
			t.Fatal(err)
		}
		r := rand.New(rand.NewPCG(uint64(i), 303))
		const n = 3
		imgs := make([]uint8, n*cfg.Dims())
		for j := range imgs {
			imgs[j] = uint8(r.IntN(256))
		}
		x, _, err := m.Preprocess(imgs, n, false, 5, 0)
		if err != nil {
			t.Fatal(err)
		}
		if err := m.DataInit(x, nil); err != nil {
			t.Fatal(err)
		}
		perturb(r, m.Params(), 0.02)
		in, out := filepath.Join(tmp, "in.safetensors"), filepath.Join(tmp, "out.safetensors")
		ts := append(m.State(), safetensors.FromTensor("input.x", x))
		if err := safetensors.Write(in, ts, map[string]string{"config": cfg.JSON()}); err != nil {
			t.Fatal(err)
		}
		if o, err := exec.Command(python, script, "--check", in, "--out", out).CombinedOutput(); err != nil {
			t.Fatalf("%s: %v\n%s", script, err, o)
		}
		res, err := safetensors.Read(out)
		if err != nil {
			t.Fatal(err)
		}
		for _, name := range res.Names() {
			e, _ := res.Entry(name)
			v, err := res.Float32(name, e.Shape)
			if err != nil {
				t.Fatal(err)
			}
			ts = append(ts, safetensors.F32("torch."+name, v, e.Shape...))
		}
		meta := map[string]string{
			"config":    cfg.JSON(),
			"torch":     res.Meta["torch"],
			"generator": "go test ./dlf/ -run TestPyTorchTwinGolden -update-twin (reference/dlf_torch.py --check)",
		}
		path := filepath.Join(dir, gc.name+".safetensors")
		if err := safetensors.Write(path, ts, meta); err != nil {
			t.Fatal(err)
		}
		t.Logf("wrote %s (torch %s)", path, strings.TrimSpace(res.Meta["torch"]))
	}
}
