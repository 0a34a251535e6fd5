package main

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"
)

// The full fault-injection matrix runs on the train package (train/faults_test.go). This test
// covers the CLI's part of it: bin/driver built with the faultinject tag is killed between two of
// its sample grids (the CLI writes them in train's Samples hook), rerun, and must end bit-identical
// to an uninterrupted run with one steps.csv row per step.

var (
	faultOnce sync.Once
	faultPath string
	faultErr  error
)

// faultBinary builds the driver with fault injection compiled in, once per test process.
func faultBinary(t *testing.T) string {
	t.Helper()
	faultOnce.Do(func() {
		faultPath = filepath.Join(fixtureDir, "driver-faultinject")
		cmd := exec.Command("go", "build", "-tags", "faultinject", "-o", faultPath, ".")
		cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
		if out, err := cmd.CombinedOutput(); err != nil {
			faultErr = fmt.Errorf("%v\n%s", err, out)
		}
	})
	if faultErr != nil {
		t.Fatalf("go build -tags faultinject: %v", faultErr)
	}
	return faultPath
}

// faultRun runs the binary with DLF_FAULT set (when non-empty) and a watchdog.
func faultRun(exe, spec string, args []string) (string, error) {
	cmd := exec.Command(exe, args...)
	cmd.Env = os.Environ()
	if spec != "" {
		cmd.Env = append(cmd.Env, "DLF_FAULT="+spec)
	}
	watchdog := time.AfterFunc(90*time.Second, func() { cmd.Process.Kill() })
	defer watchdog.Stop()
	out, err := cmd.CombinedOutput()
	return string(out), err
}

// TestKillBetweenSampleGrids kills the CLI between two sample grids of epoch 1 and resumes it.
func TestKillBetweenSampleGrids(t *testing.T) {
	dataDir := mnist(t)
	exe := faultBinary(t)
	args := func(res string) []string {
		return tinyTrain(dataDir, res, "--train_subset", "32", "--test_subset", "16", "--max_steps", "6")
	}
	ref, res := filepath.Join(t.TempDir(), "ref"), filepath.Join(t.TempDir(), "run")
	if out, err := faultRun(exe, "", args(ref)); err != nil {
		t.Fatalf("uninterrupted run: %v\n%s", err, out)
	}
	out, err := faultRun(exe, "samples:kill:3", args(res))
	var ee *exec.ExitError
	if !errors.As(err, &ee) || !strings.Contains(out, "fault: kill at samples") {
		t.Fatalf("want the run killed at its third grid, got %v\n%s", err, out)
	}
	out, err = faultRun(exe, "", args(res))
	if err != nil || !strings.Contains(out, "resuming at step 4,") || !strings.Contains(out, "--max_steps 6 reached at step 6") {
		t.Fatalf("resume: %v\n%s", err, out)
	}
	head, rows := readCSV(t, filepath.Join(res, "steps.csv"))
	if steps := column(t, head, rows, "step"); !slices.Equal(steps, []float64{1, 2, 3, 4, 5, 6}) {
		t.Errorf("steps.csv steps %v, want 1..6", steps)
	}
	for _, f := range []string{"checkpoints/step-000000006.safetensors", "best.safetensors"} {
		got, _ := readTensors(t, filepath.Join(res, f))
		want, _ := readTensors(t, filepath.Join(ref, f))
		for name, w := range want {
			if !bytes.Equal(got[name], w) {
				t.Errorf("%s: tensor %s differs from the uninterrupted run's", f, name)
			}
		}
	}
	if !exists(filepath.Join(res, "samples", "epoch_0001_T1.00.png")) {
		t.Error("the resumed run did not redo epoch 1's sample grids")
	}
}
