package dlf

import (
	"errors"
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

// python is Debian's interpreter, the one CI installs torch for.
const python = "/usr/bin/python3"

// twinScript returns the path of reference/dlf_torch.py, or skips the test when it or a torch-enabled
// python is missing.
func twinScript(t *testing.T) string {
	t.Helper()
	script, err := filepath.Abs("../reference/dlf_torch.py")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(script); err != nil {
		t.Skipf("skipping: %v", err)
	}
	if out, err := exec.Command(python, "-c", "import torch").CombinedOutput(); err != nil {
		t.Skipf("skipping: %s cannot import torch: %v %s", python, err, strings.TrimSpace(string(out)))
	}
	return script
}

// TestPyTorchTwin saves a randomly perturbed model and a preprocessed batch, has
// reference/dlf_torch.py (PyTorch, float32) compute the per-example objective, log-determinant,
// log-prior and every latent, and requires agreement with the Go model to 1e-4 relative: the mnist
// preset and a small CIFAR-10 configuration, both decompositions, plus K=4, class conditioning and
// the Glow step.
func TestPyTorchTwin(t *testing.T) {
	script := twinScript(t)
	smallCIFAR := func(c *Config) {
		p, _ := Preset("cifar10")
		*c = p
		c.Depth, c.Width = 3, 32
	}
	cases := []struct {
		name string
		edit func(c *Config)
	}{
		{"mnist/decomp=0", func(c *Config) { *c, _ = Preset("mnist") }},
		{"mnist/decomp=1", func(c *Config) { *c, _ = Preset("mnist"); c.Decomposition = 1 }},
		{"cifar10-small/decomp=0", smallCIFAR},
		{"cifar10-small/decomp=1", func(c *Config) { smallCIFAR(c); c.Decomposition = 1 }},
		{"cifar10-small/K=4/decomp=1/lu/bias", func(c *Config) {
			smallCIFAR(c)
			c.Parts, c.Decomposition, c.InvConv, c.InvConvBias = 4, 1, InvConvLU, true
		}},
		{"mnist-small/conditional/affine-coupling", func(c *Config) {
			*c, _ = Preset("mnist")
			c.Depth, c.Width, c.Conditioning, c.AffineCoupling = 3, 32, true, true
		}},
		{"glow-cifar10-small", func(c *Config) { *c, _ = Preset("glow-cifar10"); c.Depth, c.Width = 3, 32 }},
		{"glow-mnist-small/additive", func(c *Config) {
			*c, _ = Preset("glow-mnist")
			c.Depth, c.Width, c.Coupling = 3, 32, CouplingAdditive
		}},
	}
	// Every case is saved first and evaluated by one python process: importing torch dominates
	// the script's run time.
	type prepared struct {
		name    string
		m       *Model
		en      *Encoding
		res     *Result
		in, out string
	}
	dir := t.TempDir()
	var runs []prepared
	for i, tc := range cases {
		var cfg Config
		tc.edit(&cfg)
		cfg.Seed = uint64(100 + i)
		m, err := New(cfg, testBackend(), tensor.Float32)
		if err != nil {
			t.Fatalf("%s: %v", tc.name, err)
		}
		r := rand.New(rand.NewPCG(uint64(i), 77))
		const n = 3
		imgs := make([]uint8, n*cfg.Dims())
		for j := range imgs {
			imgs[j] = uint8(r.IntN(256))
		}
		x, _, err := m.Preprocess(imgs, n, false, 5, 0)
		if err != nil {
			t.Fatal(err)
		}
		var cond *tensor.Tensor
		if cfg.Conditioning {
			if cond, err = m.OneHot([]int32{1, 7, 3}); err != nil {
				t.Fatal(err)
			}
		}
		if err := m.DataInit(x, cond); err != nil {
			t.Fatal(err)
		}
		// Move off the init, where the hyper-networks' output convs are zero and would hide every
		// hidden layer from the comparison.
		perturb(r, m.Params(), 0.02)
		en, err := m.Encode(x, cond)
		if err != nil {
			t.Fatal(err)
		}
		res, err := m.Forward(nil, x, cond)
		if err != nil {
			t.Fatal(err)
		}
		p := prepared{name: tc.name, m: m, en: en, res: res,
			in: filepath.Join(dir, fmt.Sprintf("in%d.safetensors", i)), out: filepath.Join(dir, fmt.Sprintf("out%d.safetensors", i))}
		ts := append(m.State(), safetensors.FromTensor("input.x", x))
		if cond != nil {
			ts = append(ts, safetensors.FromTensor("input.cond", cond))
		}
		if err := safetensors.Write(p.in, ts, map[string]string{"config": cfg.JSON()}); err != nil {
			t.Fatal(err)
		}
		runs = append(runs, p)
	}
	args := []string{script, "--check"}
	for _, p := range runs {
		args = append(args, p.in)
	}
	args = append(args, "--out")
	for _, p := range runs {
		args = append(args, p.out)
	}
	if o, err := exec.Command(python, args...).CombinedOutput(); err != nil {
		t.Fatalf("%s: %v\n%s", script, err, o)
	}
	for _, p := range runs {
		t.Run(p.name, func(t *testing.T) {
			defer p.en.Release()
			defer p.res.Release()
			f, err := safetensors.Read(p.out)
			if err != nil {
				t.Fatal(err)
			}
			compare := func(name string, got *tensor.Tensor) {
				want, err := f.Float32(name, got.Shape())
				if err != nil {
					t.Fatal(err)
				}
				g := got.Float64s()
				var diff, scale float64
				for j := range g {
					diff = max(diff, math.Abs(g[j]-float64(want[j])))
					scale = max(scale, math.Abs(float64(want[j])))
				}
				if diff > 1e-4*scale {
					t.Errorf("%s: Go and PyTorch differ by %.3g (relative %.3g), scale %.3g", name, diff, diff/scale, scale)
				} else {
					t.Logf("%-9s max |Go − PyTorch| = %.2g (relative %.2g)", name, diff, diff/scale)
				}
			}
			compare("objective", p.res.Objective.Value)
			compare("logdet", p.en.LogDet)
			compare("logprior", p.en.LogPrior)
			for l, z := range p.en.Z {
				compare(fmt.Sprintf("z%d", l), z)
			}
			obj := p.res.Objective.Value.Float64s()
			t.Logf("params %d, objective[0] %.6g nats (%.4g bits/dim)", p.m.NumParams(), obj[0], -obj[0]/(float64(p.m.cfg.Dims())*math.Ln2))
		})
	}
}

// TestPyTorchTwinBench runs the twin's --bench mode on a tiny config and checks its JSON, including
// that the twin builds a model with as many parameters as ours.
func TestPyTorchTwinBench(t *testing.T) {
	script := twinScript(t)
	cfg, _ := Preset("mnist")
	cfg.Depth, cfg.Width = 2, 16
	path := filepath.Join(t.TempDir(), "config.json")
	if err := os.WriteFile(path, []byte(cfg.JSON()), 0o644); err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command(python, script, "--bench", "--config", path, "--batch", "2", "--iters", "1", "--warmup", "0").Output()
	if err != nil {
		var ee *exec.ExitError
		if errors.As(err, &ee) {
			t.Fatalf("%v\n%s", err, ee.Stderr)
		}
		t.Fatal(err)
	}
	s := string(out)
	for _, key := range []string{`"fwd_bwd_ms_median"`, `"images_per_s"`, fmt.Sprintf(`"params": %d`, cfg.NumParams())} {
		if !strings.Contains(s, key) {
			t.Errorf("bench JSON lacks %s: %s", key, s)
		}
	}
}
