package main

import (
	"math"
	"path/filepath"
	"strings"
	"testing"

	"dlf/dlf"
)

// paramBits downloads every parameter of m as raw float32 bits, by name.
func paramBits(m *dlf.Model) map[string][]uint32 {
	out := map[string][]uint32{}
	for _, p := range m.Params() {
		v := p.Var.Value.Float32s()
		b := make([]uint32, len(v))
		for i, x := range v {
			b[i] = math.Float32bits(x)
		}
		out[p.Name] = b
	}
	return out
}

// captureReplicas makes every data-parallel run of the test append its replicas' parameters (as
// paramBits) to the returned slice when it finishes.
func captureReplicas(t *testing.T) *[][]map[string][]uint32 {
	var got [][]map[string][]uint32
	ddpFinished = func(ms []*dlf.Model) {
		var snap []map[string][]uint32
		for _, m := range ms {
			snap = append(snap, paramBits(m))
		}
		got = append(got, snap)
	}
	t.Cleanup(func() { ddpFinished = nil })
	return &got
}

// TestTrainDataParallel trains a tiny Glow (data-dependent actnorm init) with --num_gpus 2 on the
// CPU for a few steps, checks that the two replicas end bit-identical and that training moved them,
// then resumes the run for more steps with the same check.
func TestTrainDataParallel(t *testing.T) {
	dataDir := mnist(t)
	res := filepath.Join(t.TempDir(), "ddp")
	got := captureReplicas(t)
	// A resumed run takes its configuration from the checkpoint, so only the first names the preset.
	args := func(steps string, extra ...string) []string {
		return tinyTrain(dataDir, res, append([]string{"--train_subset", "96", "--test_subset", "16",
			"--batch_size", "8", "--num_gpus", "2", "--max_steps", steps}, extra...)...)
	}
	out := mustRun(t, args("3", "--preset", "glow-mnist")...)
	for _, want := range []string{"replicas: 2 data-parallel ranks", "96 training images (6 steps of 16 per epoch)", "--max_steps 3 reached at step 3"} {
		if !strings.Contains(out, want) {
			t.Errorf("train output lacks %q:\n%s", want, out)
		}
	}
	out = mustRun(t, args("5")...)
	for _, want := range []string{"resuming at step 3", "--max_steps 5 reached at step 5"} {
		if !strings.Contains(out, want) {
			t.Errorf("resumed train output lacks %q:\n%s", want, out)
		}
	}
	if len(*got) != 2 {
		t.Fatalf("the finish hook ran %d times, want 2 (one per run)", len(*got))
	}
	for run, snap := range *got {
		if len(snap) != 2 {
			t.Fatalf("run %d: %d replicas, want 2", run, len(snap))
		}
		for name, ref := range snap[0] {
			other := snap[1][name]
			if len(other) != len(ref) {
				t.Fatalf("run %d: parameter %s has %d elements on rank 1, %d on rank 0", run, name, len(other), len(ref))
			}
			for i := range ref {
				if ref[i] != other[i] {
					t.Fatalf("run %d: parameter %s[%d] differs: rank 0 %g, rank 1 %g", run, name, i,
						math.Float32frombits(ref[i]), math.Float32frombits(other[i]))
				}
			}
		}
	}
	// The resumed run must have changed the parameters (training happened on both runs).
	moved := false
	for name, a := range (*got)[0][0] {
		for i, v := range (*got)[1][0][name] {
			moved = moved || v != a[i]
		}
	}
	if !moved {
		t.Error("parameters after step 5 equal those after step 3: the resumed run did not train")
	}
	head, rows := readCSV(t, filepath.Join(res, "steps.csv"))
	steps := column(t, head, rows, "step")
	if len(steps) != 5 || steps[0] != 1 || steps[4] != 5 {
		t.Errorf("steps.csv steps %v, want 1..5", steps)
	}
	finite(t, "loss", column(t, head, rows, "loss")...)

	// Resuming with another world size is refused: the data position counts in shards.
	if _, err := runApp(t, tinyTrain(dataDir, res, "--train_subset", "96", "--test_subset", "16",
		"--batch_size", "8", "--num_gpus", "3", "--max_steps", "6")...); err == nil || !strings.Contains(err.Error(), "trained with --num_gpus 2") {
		t.Errorf("resume with --num_gpus 3: %v, want a refusal naming --num_gpus 2", err)
	}
}
