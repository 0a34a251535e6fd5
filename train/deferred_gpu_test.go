package train

import (
	"bytes"
	"context"
	"fmt"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"dlf/dlf"
	"dlf/tensor/cuda"
	"dlf/tensor/cuda/cu/gputest"
)

// trainCUDA trains job on CUDA; strict makes every step read its loss at once (the path the
// deferral must reproduce).
func trainCUDA(t *testing.T, job Job, strict bool, hooks Hooks) (Result, error) {
	t.Helper()
	job.Device = "cuda"
	r, err := New(job, hooks)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	if strict {
		r.strictThrough = 1 << 40
	}
	return r.Train(context.Background())
}

// TestGPUDeferredMatchesStrict: a CUDA run whose steps leave their losses on the device until a
// flush (print points every 3 steps, an epoch end, an evaluation every 4 steps, a stop in the middle
// of a print interval) writes the same steps.csv, train.csv and test.csv rows (clock columns aside)
// and the same checkpoints, bit for bit, as one whose steps read their losses at once, and reports
// every step to Hooks.Step in order with the same metrics.
func TestGPUDeferredMatchesStrict(t *testing.T) {
	gputest.Device(t)
	var runs [2]string
	var seen [2][]StepStats
	for i, strict := range []bool{false, true} {
		res := filepath.Join(t.TempDir(), fmt.Sprint(i))
		job := tinyJob(t, res, 64, 11) // 4 steps per epoch: epoch ends at 4 and 8, the run stops at 11
		job.LogEvery, job.ValidEvery, job.RefreshEvery, job.SampleEvery = 3, 4, 0, 0
		hooks := Hooks{Step: func(s StepStats) { seen[i] = append(seen[i], s) }}
		if _, err := trainCUDA(t, job, strict, hooks); err != nil {
			t.Fatal(err)
		}
		runs[i] = res
	}
	for _, f := range []string{"steps.csv", "train.csv", "test.csv"} {
		if g, w := csvRows(t, filepath.Join(runs[0], f)), csvRows(t, filepath.Join(runs[1], f)); !slices.Equal(g, w) || len(g) == 0 {
			t.Errorf("%s: deferred\n%v\nstrict\n%v", f, g, w)
		}
	}
	for _, f := range []string{filepath.Join("checkpoints", "step-000000011.safetensors"), "best.safetensors"} {
		got, want := tensorBytes(t, filepath.Join(runs[0], f)), tensorBytes(t, filepath.Join(runs[1], f))
		for name, w := range want {
			if !slices.Equal(got[name], w) {
				t.Fatalf("%s: tensor %s differs between the deferred and the strict run", f, name)
			}
		}
	}
	if len(seen[0]) != 11 || len(seen[1]) != 11 {
		t.Fatalf("Hooks.Step saw %d and %d steps, want 11", len(seen[0]), len(seen[1]))
	}
	for k := range seen[0] {
		a, b := seen[0][k], seen[1][k]
		if a.Step != k+1 || a.Step != b.Step || a.Loss != b.Loss || a.BitsPerDim != b.BitsPerDim || a.LR != b.LR || a.Epoch != b.Epoch || a.EpochStep != b.EpochStep {
			t.Errorf("Hooks.Step call %d: deferred %+v, strict %+v", k, a, b)
		}
	}
}

// TestGPUDeferredNonFinite diverges on purpose (learning rate 1e6) with deferred losses: the
// non-finite loss is found at a flush, after later steps have used it; the run must replay from its
// newest checkpoint with a check after every step and end exactly as a strict run does — the same
// step, the same layer, the same checkpoint named — and with lower_lr go on as the strict run does.
func TestGPUDeferredNonFinite(t *testing.T) {
	gputest.Device(t)
	for _, policy := range []string{"stop", "lower_lr"} {
		var errs [2]string
		var logs [2]bytes.Buffer
		for i, strict := range []bool{false, true} {
			dir := filepath.Join(t.TempDir(), fmt.Sprint(i))
			job := tinyJob(t, dir, 64, 12)
			job.Config.InitialLR, job.NumEpoch, job.SampleEvery, job.NaNPolicy = 1e6, 3, 0, policy
			job.LogEvery, job.RefreshEvery = 5, 0
			_, err := trainCUDA(t, job, strict, Hooks{Log: &logs[i]})
			if err != nil {
				errs[i] = strings.ReplaceAll(err.Error(), dir, "RESULTS")
			}
		}
		if errs[0] != errs[1] {
			t.Errorf("--nan_policy %s: deferred run ended with %q, strict with %q", policy, errs[0], errs[1])
		}
		if policy == "stop" && (!strings.Contains(errs[0], "training stopped at step") || !strings.Contains(errs[0], "layer")) {
			t.Errorf("--nan_policy stop: %q does not name the step and the layer", errs[0])
		}
		if !strings.Contains(logs[0].String(), "replaying from") {
			t.Errorf("--nan_policy %s: the deferred run did not replay:\n%s", policy, logs[0].String())
		}
		if policy == "lower_lr" && !strings.Contains(logs[0].String(), "continuing with the learning rate × 0.5") {
			t.Errorf("--nan_policy lower_lr: the deferred run did not restore and halve the rate:\n%s", logs[0].String())
		}
		t.Logf("--nan_policy %s: %s", policy, lastLines(logs[0].String(), 4))
	}
}

// TestGPUDeferredNonFiniteGradients: a tiny Glow recomputing its activations, with a coupling whose
// scale underflows (TestNonFiniteGradients), on CUDA. The deferred step cannot check its gradients,
// so its update poisons the parameters and the next loss is NaN; the flush replays from the
// checkpoint with every step checked, and the replay stops at the first step, before its update,
// naming the backward op — the same error as a run whose steps check at once.
func TestGPUDeferredNonFiniteGradients(t *testing.T) {
	gputest.Device(t)
	var errs [2]string
	var logs [2]bytes.Buffer
	for i, strict := range []bool{false, true} {
		dir := filepath.Join(t.TempDir(), fmt.Sprint(i))
		job := tinyJob(t, dir, 64, 6)
		glow, err := dlf.Preset("glow-mnist")
		if err != nil {
			t.Fatal(err)
		}
		glow.Depth, glow.Width, glow.BatchSize, glow.Recompute = 1, 8, 16, true
		glow.ImageH, glow.ImageW, glow.ImageC, glow.Problem = 28, 28, 1, "mnist"
		job.Config, job.Device, job.SampleEvery, job.LogEvery, job.RefreshEvery = glow, "cuda", 0, 3, 0
		r, err := New(job, Hooks{Log: &logs[i]})
		if err != nil {
			t.Fatal(err)
		}
		if strict {
			r.strictThrough = 1 << 40
		}
		if err := r.dev.Do(func() error {
			b := r.Model().Param("level1.step0.coupling.conv3.bias")
			v := b.Var.Value.Float64s()
			for k := 1; k < len(v); k += 2 {
				v[k] = -1000
			}
			b.Var.Value.Upload(v)
			// The run's step-0 checkpoint was written by New: rewrite it with the change, so that
			// the deferred run's replay starts from the same parameters.
			return saveCheckpoint(StepPath(dir, 0), r.m, r.opt, r.ema, r.st, rollingPhases)
		}); err != nil {
			t.Fatal(err)
		}
		if ck, err := ListCheckpoints(dir); err != nil || len(ck) != 1 {
			t.Fatalf("checkpoints after New: %v, %v", ck, err)
		}
		_, err = r.Train(context.Background())
		r.Close()
		if err == nil {
			t.Fatalf("strict %v: trained without an error", strict)
		}
		errs[i] = strings.ReplaceAll(err.Error(), dir, "RESULTS")
	}
	if errs[0] != errs[1] {
		t.Errorf("deferred run ended with %q, strict with %q", errs[0], errs[1])
	}
	for _, want := range []string{"step 1: the loss is finite", `op "affine_inverse" of the backward pass in layer level1.step0.coupling`} {
		if !strings.Contains(errs[0], want) {
			t.Errorf("%q lacks %q", errs[0], want)
		}
	}
	if !strings.Contains(logs[0].String(), "replaying from") {
		t.Errorf("the deferred run did not replay:\n%s", logs[0].String())
	}
}

// TestGPUGraphMatchesEager trains 20 steps with every step's forward and backward replayed as a
// CUDA graph and 20 steps launching every op from Go: the losses of every step, the logs and the
// step-20 checkpoint (parameters, Adamax moments) are the same bits. A second graph run stops at
// step 12 and resumes to 20 (a new capture in the new session) and ends identical too.
func TestGPUGraphMatchesEager(t *testing.T) {
	gputest.Device(t)
	dirs := map[string]string{}
	for _, mode := range []string{"eager", "graph", "graph-resumed"} {
		res := filepath.Join(t.TempDir(), mode)
		dirs[mode] = res
		job := tinyJob(t, res, 96, 20) // 6 steps per epoch
		// The moving average with warm-up: its per-step rate is written before each replay.
		job.Config.PolyakWarmup = true
		job.LogEvery, job.RefreshEvery, job.SampleEvery, job.CUDAGraph = 1, 0, 0, mode != "eager"
		if mode == "graph-resumed" {
			first := job
			first.MaxSteps = 12
			if _, err := trainCUDA(t, first, false, Hooks{}); err != nil {
				t.Fatal(err)
			}
		}
		before := cuda.ReadCounters()
		if _, err := trainCUDA(t, job, false, Hooks{}); err != nil {
			t.Fatal(err)
		}
		replays := cuda.ReadCounters().Sub(before).GraphLaunches
		if (mode == "eager") != (replays == 0) {
			t.Fatalf("%s run: %d graph launches", mode, replays)
		}
		t.Logf("%s run: %d graph launches", mode, replays)
	}
	for _, mode := range []string{"graph", "graph-resumed"} {
		for _, f := range []string{"steps.csv", "train.csv", "test.csv"} {
			if g, w := csvRows(t, filepath.Join(dirs[mode], f)), csvRows(t, filepath.Join(dirs["eager"], f)); !slices.Equal(g, w) || len(g) == 0 {
				t.Errorf("%s: %s differs from the eager run's:\n%v\n%v", mode, f, g, w)
			}
		}
		ck := filepath.Join("checkpoints", "step-000000020.safetensors")
		got, want := tensorBytes(t, filepath.Join(dirs[mode], ck)), tensorBytes(t, filepath.Join(dirs["eager"], ck))
		for name, w := range want {
			if !slices.Equal(got[name], w) {
				t.Fatalf("%s: tensor %s of the step-20 checkpoint differs from the eager run's", mode, name)
			}
		}
	}
}

// TestGPUGraphFallback: a driver that refuses stream capture (the emulator with DLF_EMU_NO_GRAPHS=1)
// makes the run say once why it trains eagerly, and train on, with the same results as an eager run.
func TestGPUGraphFallback(t *testing.T) {
	if dev := gputest.Device(t); !strings.Contains(dev.Name(), "emulator") {
		t.Skipf("%s: refusing capture needs the CUDA emulator (DLF_EMU_NO_GRAPHS)", dev.Name())
	}
	var logs [2]bytes.Buffer
	dirs := [2]string{filepath.Join(t.TempDir(), "refused"), filepath.Join(t.TempDir(), "eager")}
	for i, graph := range []bool{true, false} {
		if i == 0 {
			t.Setenv("DLF_EMU_NO_GRAPHS", "1")
		} else {
			t.Setenv("DLF_EMU_NO_GRAPHS", "")
		}
		job := tinyJob(t, dirs[i], 64, 7)
		job.RefreshEvery, job.SampleEvery, job.CUDAGraph = 0, 0, graph
		if _, err := trainCUDA(t, job, false, Hooks{Log: &logs[i]}); err != nil {
			t.Fatal(err)
		}
	}
	if n := strings.Count(logs[0].String(), "cuda graph:"); n != 1 || !strings.Contains(logs[0].String(), "training runs eagerly") {
		t.Errorf("want one line saying why the run is eager, got %d:\n%s", n, logs[0].String())
	}
	if g, w := csvRows(t, filepath.Join(dirs[0], "steps.csv")), csvRows(t, filepath.Join(dirs[1], "steps.csv")); !slices.Equal(g, w) {
		t.Errorf("steps.csv differs from the eager run's:\n%v\n%v", g, w)
	}
	t.Logf("%s", lastLines(logs[0].String(), 3))
}

// TestGPUDeferredDataParallel: two data-parallel ranks on CUDA (virtual ranks on device 0, their
// gradients averaged by collective.DeviceReducer) leave their losses on the device between print
// points — no host-blocking call and no download in such a step — and write the same logs and end
// with the same replicas, bit for bit, as the same run whose steps read every rank's loss at once.
// With a diverging learning rate the deferred run replays from its checkpoint and stops exactly
// where and how the strict run stops.
func TestGPUDeferredDataParallel(t *testing.T) {
	gputest.Device(t)
	var dirs [2]string
	var snaps [2][]map[string][]uint32
	for i, strict := range []bool{false, true} {
		dirs[i] = filepath.Join(t.TempDir(), fmt.Sprint(i))
		job := ddpJob(t, dirs[i], 10)
		job.Train = firstN(t, job.Train, 64) // 4 steps of 2×8 per epoch: epoch ends at steps 4 and 8
		job.Device, job.VirtualGPUs, job.SampleEvery, job.NumEpoch = "cuda", true, 0, 5
		job.LogEvery, job.ValidEvery, job.RefreshEvery = 4, 0, 0
		var last cuda.Counters
		blocking := 0
		hooks := Hooks{StepEnd: func(step int) {
			c := cuda.ReadCounters()
			// Steps 1, 4 and 8 are flush points (a print point, epoch ends); the others must not wait.
			if d := c.Sub(last); !strict && step != 1 && step != 4 && step != 8 && (d.Blocking() > 0 || d.Reads > 0) {
				blocking++
				t.Logf("step %d: %d host-blocking calls, %d downloads", step, d.Blocking(), d.Reads)
			}
			last = c
		}}
		r, err := New(job, hooks)
		if err != nil {
			t.Fatal(err)
		}
		if strict {
			r.strictThrough = 1 << 40
		}
		if _, err := r.Train(context.Background()); err != nil {
			t.Fatal(err)
		}
		for k, m := range r.Replicas() {
			if err := r.ddpDevice(k).Do(func() error { snaps[i] = append(snaps[i], paramBits(m)); return nil }); err != nil {
				t.Fatal(err)
			}
		}
		r.Close()
		if blocking > 0 {
			t.Errorf("deferred data-parallel run: %d steps between print points synchronised the host", blocking)
		}
	}
	for _, f := range []string{"steps.csv", "train.csv", "test.csv"} {
		if g, w := csvRows(t, filepath.Join(dirs[0], f)), csvRows(t, filepath.Join(dirs[1], f)); !slices.Equal(g, w) || len(g) == 0 {
			t.Errorf("%s: deferred\n%v\nstrict\n%v", f, g, w)
		}
	}
	sameReplicas(t, "deferred run", snaps[0])
	for name, w := range snaps[1][0] {
		if !slices.Equal(snaps[0][0][name], w) {
			t.Fatalf("parameter %s differs between the deferred and the strict data-parallel run", name)
		}
	}

	var errs [2]string
	var logs [2]bytes.Buffer
	for i, strict := range []bool{false, true} {
		dir := filepath.Join(t.TempDir(), fmt.Sprint("nan", i))
		job := ddpJob(t, dir, 8)
		job.Train = firstN(t, job.Train, 64)
		job.Device, job.VirtualGPUs, job.SampleEvery = "cuda", true, 0
		job.Config.InitialLR, job.NumEpoch, job.NaNPolicy, job.LogEvery, job.RefreshEvery = 1e6, 3, "stop", 5, 0
		_, err := trainCUDA(t, job, strict, Hooks{Log: &logs[i]})
		if err != nil {
			errs[i] = strings.ReplaceAll(err.Error(), dir, "RESULTS")
		}
	}
	if errs[0] != errs[1] || errs[0] == "" {
		t.Errorf("diverging data-parallel runs: deferred ended with %q, strict with %q", errs[0], errs[1])
	}
	if !strings.Contains(logs[0].String(), "replaying from") {
		t.Errorf("the deferred data-parallel run did not replay:\n%s", logs[0].String())
	}
	t.Logf("diverging: %s", lastLines(logs[0].String(), 3))
}
