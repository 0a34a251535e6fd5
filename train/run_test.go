package train

import (
	"bytes"
	"context"
	"fmt"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

// trainTo runs job to its budget with hooks, cancelling the context after step cancelAt (0: never),
// and returns the result and rank 0's parameters.
func trainTo(t *testing.T, job Job, hooks Hooks, cancelAt int) (Result, map[string][]uint32) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	if cancelAt > 0 {
		hooks.Step = func(s StepStats) {
			if s.Step == cancelAt {
				cancel()
			}
		}
	}
	r, err := New(job, hooks)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	res, err := r.Train(ctx)
	if err != nil {
		t.Fatal(err)
	}
	var bits map[string][]uint32
	_ = r.Device().Do(func() error { bits = paramBits(r.Model()); return nil })
	return res, bits
}

// TestCancelAndResumeIsBitExact stops runs by cancelling their context at a step inside an epoch,
// at an epoch's last step (its test evaluation is cut short and redone on resume) and in the next
// epoch, resumes each, and requires the parameters and the logs of an uninterrupted run.
func TestCancelAndResumeIsBitExact(t *testing.T) {
	const steps = 8 // two epochs of four
	ref := filepath.Join(t.TempDir(), "ref")
	_, want := trainTo(t, tinyJob(t, ref, 64, steps), Hooks{}, 0)
	for _, stopAt := range []int{1, 4, 6} {
		res := filepath.Join(t.TempDir(), fmt.Sprint(stopAt))
		got, _ := trainTo(t, tinyJob(t, res, 64, steps), Hooks{}, stopAt)
		if got.Reason != "interrupted" || got.Step != stopAt || got.Checkpoint != StepPath(res, stopAt) {
			t.Fatalf("stop at %d: %+v", stopAt, got)
		}
		var log bytes.Buffer
		end, params := trainTo(t, tinyJob(t, res, 64, steps), Hooks{Log: &log}, 0)
		if end.Step != steps || !strings.Contains(log.String(), fmt.Sprintf("resuming at step %d,", stopAt)) {
			t.Fatalf("stop at %d, resumed: %+v\n%s", stopAt, end, log.String())
		}
		for name, w := range want {
			if !slices.Equal(params[name], w) {
				t.Fatalf("stop at %d: parameter %s differs from the uninterrupted run's", stopAt, name)
			}
		}
		for _, f := range []string{"steps.csv", "train.csv", "test.csv"} {
			if g, w := csvRows(t, filepath.Join(res, f)), csvRows(t, filepath.Join(ref, f)); !slices.Equal(g, w) {
				t.Errorf("stop at %d: %s\n%v\nwant\n%v", stopAt, f, g, w)
			}
		}
	}
}

// TestNewRefusesBadJobs checks that a job that cannot train is refused before anything is written,
// with a message naming what is wrong.
func TestNewRefusesBadJobs(t *testing.T) {
	for _, c := range []struct {
		edit func(*Job)
		want string
	}{
		{func(j *Job) { j.Config.ImageH, j.Config.ImageW = 32, 32 }, "are 28×28×1 but the model is for 32×32×1 images"},
		{func(j *Job) { j.Config.BatchSize = 64 }, "--batch_size 64 is larger than the 32 training images"},
		{func(j *Job) { j.Ranks, j.Config.BatchSize = 2, 32 }, "each replica's shard of the 32 training images has only 16"},
		{func(j *Job) { j.Test = nil }, "needs both a training and a test set"},
		{func(j *Job) { j.Config.Conditioning, j.Config.NumClasses = true, 3 }, "but the model knows 3 classes"},
		{func(j *Job) { j.Config.Depth = 0 }, "invalid model configuration"},
		{func(j *Job) { j.KeepCheckpoints = 0 }, "--keep_checkpoints 0"},
		{func(j *Job) { j.VirtualGPUs = true }, "--virtual_gpus needs --device cuda"},
	} {
		res := filepath.Join(t.TempDir(), "run")
		job := tinyJob(t, res, 32, 1)
		c.edit(&job)
		if r, err := New(job, Hooks{}); err == nil || !strings.Contains(err.Error(), c.want) {
			if r != nil {
				r.Close()
			}
			t.Errorf("want an error containing %q, got %v", c.want, err)
		}
		if exists(res) {
			t.Errorf("a refused job (%q) created %s", c.want, res)
		}
	}
}

// TestNonFinitePolicies diverges on purpose (learning rate 1e6): "stop" must end with an error
// naming the step, the layer and the last good checkpoint; "lower_lr" must restore and halve the
// rate, repeatedly.
func TestNonFinitePolicies(t *testing.T) {
	job := tinyJob(t, filepath.Join(t.TempDir(), "stop"), 64, 0)
	job.Config.InitialLR, job.NumEpoch, job.SampleEvery = 1e6, 1, 0
	r, err := New(job, Hooks{})
	if err != nil {
		t.Fatal(err)
	}
	_, err = r.Train(context.Background())
	r.Close()
	if err == nil || !strings.Contains(err.Error(), "training stopped at step") || !strings.Contains(err.Error(), "step-000000000.safetensors") ||
		!(strings.Contains(err.Error(), "layer level") || strings.Contains(err.Error(), "layer top")) {
		t.Errorf("--nan_policy stop: %v", err)
	}
	job.Results, job.NaNPolicy = filepath.Join(t.TempDir(), "lower"), "lower_lr"
	var log bytes.Buffer
	if r, err = New(job, Hooks{Log: &log}); err != nil {
		t.Fatal(err)
	}
	_, _ = r.Train(context.Background())
	r.Close()
	if !strings.Contains(log.String(), "continuing with the learning rate × 0.5") || !strings.Contains(log.String(), "× 0.25") {
		t.Errorf("--nan_policy lower_lr did not restore and halve the rate:\n%s", log.String())
	}
}

// TestResumeRefusals checks the settings a checkpoint cannot be resumed with: another architecture,
// batch size or world size, or a training set too small for its data position; each refusal names
// the setting, and the results directory is left as it was.
func TestResumeRefusals(t *testing.T) {
	res := filepath.Join(t.TempDir(), "run")
	trainTo(t, tinyJob(t, res, 64, 3), Hooks{}, 0) // stops at batch 3 of 4
	before, _ := ListCheckpoints(res)
	for _, c := range []struct {
		edit func(*Job)
		want string
	}{
		{func(j *Job) { j.Config.Depth = 2 }, "depth 1 there, 2 here"},
		{func(j *Job) { j.Config.BatchSize = 8 }, "--batch_size 8: the run in " + res + " uses batch size 16"},
		{func(j *Job) { j.Ranks = 2; j.Config.BatchSize = 16 }, "trained with --num_gpus 1"},
		{func(j *Job) { j.Train = firstN(t, j.Train, 32) }, "at batch 3 of an epoch, but the training set has only 2 batches"},
	} {
		job := tinyJob(t, res, 64, 5)
		c.edit(&job)
		if r, err := New(job, Hooks{}); err == nil || !strings.Contains(err.Error(), c.want) {
			if r != nil {
				r.Close()
			}
			t.Errorf("want an error containing %q, got %v", c.want, err)
		}
	}
	if after, _ := ListCheckpoints(res); !slices.Equal(before, after) {
		t.Errorf("checkpoints %v became %v", before, after)
	}
}
