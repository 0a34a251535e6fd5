package train

import (
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"sort"
	"time"

	"dlf/data"
	"dlf/dlf"
	"dlf/tensor/cuda"
)

// StepCost is what one training step cost the host on a CUDA device: the driver calls it made
// (launches, host-blocking synchronisations and copies, allocations, hand-offs to the device's
// worker, tensor downloads) and its wall time. On the CUDA emulator in counting mode
// (DLF_EMU_SKIP_KERNELS=1: launches are checked, not run) the wall time is the host's own time:
// Go, the tape, the launchers and the driver calls.
type StepCost struct {
	Step     int
	Counters cuda.Counters
	Wall     time.Duration
}

// Accounting is the cost of the steps of an Account run.
type Accounting struct {
	Config dlf.Config
	// Steps are the steps after the first (whose cost includes the allocator's first fill).
	Steps []StepCost
	// PrintEvery is the steps between print points (steps.csv rows, the progress line).
	PrintEvery int
}

// Account trains cfg from scratch on CUDA for steps steps on random images (no data on disk, no
// test evaluation, no epoch end, checkpoints only at the start and the end, a print point every
// printEvery steps), with each step replayed as a CUDA graph or run eagerly, and returns the cost of
// every step but the first. It is how the step engine's
// host round trips are counted, without a GPU on the emulator: `bin/driver bench --host`, and the
// tests that keep the count from creeping back.
func Account(cfg dlf.Config, steps, printEvery int, graph bool) (*Accounting, error) {
	if steps < 2 || printEvery < 1 {
		return nil, fmt.Errorf("train: accounting needs at least 2 steps and a print interval ≥ 1 (got %d, %d)", steps, printEvery)
	}
	dir, err := os.MkdirTemp("", "dlf-account-")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(dir)
	random := func(n int) *data.Dataset {
		rng := rand.New(rand.NewPCG(uint64(n), 5))
		d := &data.Dataset{N: n, H: cfg.ImageH, W: cfg.ImageW, C: cfg.ImageC, Source: "random images"}
		d.Images = make([]uint8, n*d.ImageSize())
		for i := range d.Images {
			d.Images[i] = uint8(rng.IntN(256))
		}
		d.Labels = make([]int32, n)
		for i := range d.Labels {
			d.Labels[i] = int32(rng.IntN(max(cfg.NumClasses, 1)))
		}
		return d
	}
	o := DefaultOptions()
	o.Results, o.Device, o.MaxSteps, o.LogEvery = dir, "cuda", steps, printEvery
	o.NumEpoch, o.SampleEvery, o.CheckpointEvery, o.RefreshEvery, o.CUDAGraph = 1, 0, 1000*time.Hour, 0, graph
	// One epoch longer than the run, so no epoch end (test evaluation, samples) falls inside it.
	job := Job{Config: cfg, Train: random(cfg.BatchSize * (steps + 2)), Test: random(cfg.BatchSize), Options: o, DataSource: "random images"}
	acc := &Accounting{Config: cfg, PrintEvery: printEvery}
	var last cuda.Counters
	var lastT time.Time
	hooks := Hooks{StepEnd: func(step int) {
		now, c := time.Now(), cuda.ReadCounters()
		if step > 1 {
			acc.Steps = append(acc.Steps, StepCost{Step: step, Counters: c.Sub(last), Wall: now.Sub(lastT)})
		}
		last, lastT = c, now
	}}
	r, err := New(job, hooks)
	if err != nil {
		return nil, err
	}
	defer r.Close()
	if _, err := r.Train(context.Background()); err != nil {
		return nil, err
	}
	if len(acc.Steps) != steps-1 {
		return nil, fmt.Errorf("train: accounting saw %d steps, want %d", len(acc.Steps)+1, steps)
	}
	return acc, nil
}

// Between returns the steps that are not print points (whose cost is what every step pays).
func (a *Accounting) Between() []StepCost {
	var out []StepCost
	for _, s := range a.Steps {
		if s.Step%a.PrintEvery != 0 {
			out = append(out, s)
		}
	}
	return out
}

// MedianHost is the median of the steps' wall time minus the time inside cuGraphLaunch: the host's
// own time per step on the emulator, where that call runs the replay (on a GPU it only queues it).
func MedianHost(steps []StepCost) time.Duration {
	h := make([]StepCost, len(steps))
	for i, s := range steps {
		h[i] = s
		h[i].Wall -= time.Duration(s.Counters.GraphLaunchNanos)
	}
	return MedianWall(h)
}

// MedianWall is the median wall time of steps.
func MedianWall(steps []StepCost) time.Duration {
	if len(steps) == 0 {
		return 0
	}
	w := make([]time.Duration, len(steps))
	for i, s := range steps {
		w[i] = s.Wall
	}
	sort.Slice(w, func(i, j int) bool { return w[i] < w[j] })
	return w[len(w)/2]
}
