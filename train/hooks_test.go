package train

import (
	"bytes"
	"context"
	"fmt"
	"path/filepath"
	"strings"
	"testing"

	"dlf/dlf"
)

// TestHooks checks what a run reports through its hooks: the start-up lines, one Step call per
// step with consistent counters, EpochStart at each epoch (and at the resumed position), Samples at
// every SampleEvery-th epoch end, Break before every report line that follows progress.
func TestHooks(t *testing.T) {
	res := filepath.Join(t.TempDir(), "run")
	job := tinyJob(t, res, 48, 7) // three steps per epoch
	job.SampleEvery = 2
	var log bytes.Buffer
	var steps []StepStats
	var epochs, samples []string
	breaks := 0
	hooks := Hooks{
		Log:        &log,
		EpochStart: func(e, n, done int) { epochs = append(epochs, fmt.Sprintf("%d:%d/%d", e, done, n)) },
		Step:       func(s StepStats) { steps = append(steps, s) },
		Break:      func() { breaks++ },
		Samples:    func(r *Run, e int) error { samples = append(samples, fmt.Sprint(e)); return nil },
	}
	r, err := New(job, hooks)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := r.Train(context.Background()); err != nil {
		t.Fatal(err)
	}
	r.Close()
	for _, want := range []string{"model:   DLF (K=2, non-inverse), 2 levels × depth 1, width 8, 8-bit, adamax;", "device:  cpu (",
		"data:    mnist: 48 training images (3 steps of 16 per epoch), 16 test images", "(new run)", "test:    epoch 1, step 6:"} {
		if !strings.Contains(log.String(), want) {
			t.Errorf("the log lacks %q:\n%s", want, log.String())
		}
	}
	if len(steps) != 7 {
		t.Fatalf("%d Step calls, want 7", len(steps))
	}
	for i, s := range steps {
		if s.Step != i+1 || s.Epoch != i/3 || s.EpochStep != i%3+1 || !(s.Loss > 0) || s.LR <= 0 {
			t.Errorf("Step call %d: %+v", i, s)
		}
	}
	if got := strings.Join(epochs, " "); got != "0:0/3 1:0/3 2:0/3" {
		t.Errorf("EpochStart calls %q", got)
	}
	if got := strings.Join(samples, " "); got != "1" {
		t.Errorf("Samples at epochs %q, want 1 (every second epoch)", got)
	}
	if breaks < 3 {
		t.Errorf("Break called %d times; want it before each test line and the final report", breaks)
	}
	// Resumed at step 7 (epoch 2, batch 1 of 3): the epoch restarts at its position.
	epochs = nil
	job.MaxSteps = 8
	if r, err = New(job, hooks); err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	if _, err := r.Train(context.Background()); err != nil {
		t.Fatal(err)
	}
	if got := strings.Join(epochs, " "); got != "2:1/3" {
		t.Errorf("EpochStart on resume %q, want 2:1/3", got)
	}
}

// TestDescribe checks the model summary line for the two flows and for class conditioning.
func TestDescribe(t *testing.T) {
	cfg, err := dlf.Preset("glow-mnist")
	if err != nil {
		t.Fatal(err)
	}
	cfg.Conditioning = true
	got := Describe(cfg, 1828648)
	for _, want := range []string{"Glow (", " coupling, ", " invconv)", ", class-conditional", "; 1,828,648 parameters"} {
		if !strings.Contains(got, want) {
			t.Errorf("Describe(glow-mnist, conditional) = %q, lacks %q", got, want)
		}
	}
	cfg, _ = dlf.Preset("mnist")
	cfg.Decomposition = 1
	if got := Describe(cfg, 7); !strings.HasPrefix(got, "DLF (K=2, inverse), ") || strings.Contains(got, "conditional") {
		t.Errorf("Describe(mnist, inverse) = %q", got)
	}
}
