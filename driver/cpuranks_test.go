package main

import (
	"path/filepath"
	"runtime"
	"strings"
	"testing"
)

// TestCPUDefaultRanks checks the CPU default's replica count for a range of thread counts: one per
// thread, a power of two, at most cpuMaxRanks.
func TestCPUDefaultRanks(t *testing.T) {
	for threads, want := range map[int]int{1: 1, 2: 2, 3: 2, 4: 4, 6: 4, 16: 4, 96: 4} {
		got := cpuDefaultRanks(threads)
		if got != want {
			t.Errorf("cpuDefaultRanks(%d) = %d, want %d", threads, got, want)
		}
		if cpuDefaults.batch%got != 0 {
			t.Errorf("cpuDefaultRanks(%d) = %d does not divide the batch of %d", threads, got, cpuDefaults.batch)
		}
	}
}

// TestCPUDefaultReplicas trains the CPU default (no size flags) on two threads: it runs as two
// replicas of 32 images, a second invocation without --num_gpus resumes it with two, and one with
// --num_gpus 1 is refused naming the count to use, leaving the checkpoint resumable.
func TestCPUDefaultReplicas(t *testing.T) {
	prev := runtime.GOMAXPROCS(2)
	defer runtime.GOMAXPROCS(prev)
	res := filepath.Join(t.TempDir(), "run")
	args := []string{"train", "--device", "cpu", "--data_dir", mnist(t), "--results_dir", res,
		"--train_subset", "128", "--test_subset", "16", "--sample_per_epochs", "0", "--print_per_steps", "1"}
	out := mustRun(t, append(args, "--max_steps", "1")...)
	for _, want := range []string{"2 ranks × 1 thread,", "batch 64 as 2 in-process replicas of 32", "64 per step"} {
		if !strings.Contains(out, want) {
			t.Errorf("first run's output lacks %q:\n%s", want, out)
		}
	}
	if _, err := runApp(t, append(args, "--max_steps", "2", "--num_gpus", "1")...); err == nil || !strings.Contains(err.Error(), "resume with --num_gpus 2") {
		t.Errorf("resume with --num_gpus 1: err = %v, want one asking for --num_gpus 2", err)
	}
	out = mustRun(t, append(args, "--max_steps", "2")...)
	if !strings.Contains(out, "2 ranks × 1 thread,") || !strings.Contains(out, "step 2 ") {
		t.Errorf("resume without --num_gpus did not train step 2 on 2 ranks:\n%s", out)
	}
}
