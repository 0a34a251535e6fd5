package train

import (
	"context"
	"math"
	"path/filepath"
	"strings"
	"testing"

	"dlf/dlf"
)

// trainReplicas runs a job to its budget and returns every replica's parameters at the end.
func trainReplicas(t *testing.T, job Job) []map[string][]uint32 {
	t.Helper()
	r, err := New(job, Hooks{})
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	if _, err := r.Train(context.Background()); err != nil {
		t.Fatal(err)
	}
	var snap []map[string][]uint32
	for i, m := range r.Replicas() {
		if err := r.ddpDevice(i).Do(func() error { snap = append(snap, paramBits(m)); return nil }); err != nil {
			t.Fatal(err)
		}
	}
	return snap
}

// ddpDevice is rank i's device.
func (r *Run) ddpDevice(i int) interface{ Do(func() error) error } {
	if r.ddp == nil {
		return r.dev
	}
	return r.ddp.ranks[i].dev
}

// sameReplicas fails unless every replica equals rank 0 bit for bit.
func sameReplicas(t *testing.T, what string, snap []map[string][]uint32) {
	t.Helper()
	for r := 1; r < len(snap); r++ {
		for name, ref := range snap[0] {
			other := snap[r][name]
			if len(other) != len(ref) {
				t.Fatalf("%s: parameter %s has %d elements on rank %d, %d on rank 0", what, name, len(other), r, len(ref))
			}
			for i := range ref {
				if ref[i] != other[i] {
					t.Fatalf("%s: parameter %s[%d] differs: rank 0 %g, rank %d %g", what, name, i,
						math.Float32frombits(ref[i]), r, math.Float32frombits(other[i]))
				}
			}
		}
	}
}

// ddpJob is a tiny Glow (data-dependent actnorm init) with two CPU ranks of batch 8.
func ddpJob(t *testing.T, results string, steps int) Job {
	job := tinyJob(t, results, 96, steps)
	glow, err := dlf.Preset("glow-mnist")
	if err != nil {
		t.Fatal(err)
	}
	glow.Depth, glow.Width, glow.BatchSize = 1, 8, 8
	glow.ImageH, glow.ImageW, glow.ImageC, glow.Problem = 28, 28, 1, "mnist"
	job.Config, job.Ranks = glow, 2
	return job
}

// TestTrainDataParallel trains with two CPU ranks for a few steps, checks that the replicas end
// bit-identical and that training moved them, then resumes the run for more steps with the same
// check, and refuses to resume with another world size.
func TestTrainDataParallel(t *testing.T) {
	res := filepath.Join(t.TempDir(), "ddp")
	first := trainReplicas(t, ddpJob(t, res, 3))
	second := trainReplicas(t, ddpJob(t, res, 5))
	if len(first) != 2 || len(second) != 2 {
		t.Fatalf("%d and %d replicas, want 2", len(first), len(second))
	}
	sameReplicas(t, "after step 3", first)
	sameReplicas(t, "after step 5", second)
	moved := false
	for name, a := range first[0] {
		for i, v := range second[0][name] {
			moved = moved || v != a[i]
		}
	}
	if !moved {
		t.Error("parameters after step 5 equal those after step 3: the resumed run did not train")
	}
	if steps := csvColumn(t, filepath.Join(res, "steps.csv"), "step"); len(steps) != 5 || steps[0] != 1 || steps[4] != 5 {
		t.Errorf("steps.csv steps %v, want 1..5", steps)
	}
	// Resuming with another world size is refused: the data position counts in shards.
	job := ddpJob(t, res, 6)
	job.Ranks = 3
	if _, err := New(job, Hooks{}); err == nil || !strings.Contains(err.Error(), "trained with --num_gpus 2") {
		t.Errorf("resume with 3 ranks: %v, want a refusal naming --num_gpus 2", err)
	}
	job.Ranks, job.Config.Width = 2, 16
	if _, err := New(job, Hooks{}); err == nil || !strings.Contains(err.Error(), "width 8 there, 16 here") {
		t.Errorf("resume with another width: %v, want a refusal naming the width", err)
	}
}

// TestReplicaDivergenceIsCaught changes one element of rank 1's parameters: identical must name the
// rank, parameter and element, and a checkpoint must be refused, since it would stand for every rank.
func TestReplicaDivergenceIsCaught(t *testing.T) {
	res := filepath.Join(t.TempDir(), "ddp")
	r, err := New(ddpJob(t, res, 1), Hooks{})
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	if err := r.ddp.identical(); err != nil {
		t.Fatalf("fresh replicas: %v", err)
	}
	rk := r.ddp.ranks[1]
	p := rk.m.Params()[0]
	_ = rk.dev.Do(func() error {
		v := p.Var.Value.Float32s()
		v[0] = math.Nextafter32(v[0], 10)
		p.Var.Value.Upload(v)
		return nil
	})
	err = r.ddp.identical()
	if err == nil || !strings.Contains(err.Error(), "rank 1 parameter "+p.Name+"[0]") {
		t.Errorf("identical after a change on rank 1: %v", err)
	}
	if err := r.save(); err == nil || !strings.Contains(err.Error(), "data-parallel replicas diverged") {
		t.Errorf("save with diverged replicas: %v", err)
	}
	if rankSeed(7, 0) != 7 || rankSeed(7, 1) == rankSeed(7, 2) || rankSeed(7, 1) == 7 {
		t.Errorf("rank seeds 7→%d, %d, %d: rank 0 must keep the seed, the others differ", rankSeed(7, 0), rankSeed(7, 1), rankSeed(7, 2))
	}
}
