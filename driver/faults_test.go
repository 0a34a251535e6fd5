package main

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"dlf/train"
	"dlf/train/fault"
)

// The fault-injection matrix (issue 18): bin/driver built with the faultinject tag is stopped at
// every named phase (train/fault), once by SIGKILL and once by SIGINT, then rerun on the same
// results directory. Each case must resume from the newest checkpoint that loads, continue the step
// count, leave CSVs with exactly one row per step, epoch and evaluation, and end with parameters,
// optimizer state and best.safetensors bit-identical to an uninterrupted run's.

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
func faultRun(t *testing.T, exe, spec string, args []string) (string, error) {
	t.Helper()
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

// faultCase is one phase of the matrix and the hit at which it stops the run (chosen so that the
// stop falls in the second epoch, after checkpoints exist).
type faultCase struct {
	phase string
	hit   int
	ddp   bool
}

var faultCases = []faultCase{
	{fault.Step, 3, false},
	{fault.CheckpointWritten, 1, false}, // the first checkpoint of a new run
	{fault.CheckpointWritten, 4, false},
	{fault.CheckpointSynced, 4, false},
	{fault.CheckpointRenamed, 4, false},
	{fault.BeforeTest, 2, false},
	{fault.TestBatch, 2, false},
	{fault.Samples, 3, false},
	{fault.BestWritten, 2, false},
	{fault.BestSynced, 2, false},
	{fault.BestRenamed, 2, false},
	{fault.CSVAppend, 5, false},
	{fault.RankStep + "0", 3, true},
	{fault.RankStep + "1", 3, true},
}

// faultSteps is the length of every run of the matrix: three epochs of two steps.
const faultSteps = 6

func faultArgs(dataDir, res string, ddp bool) []string {
	extra := []string{"--train_subset", "32", "--test_subset", "16", "--max_steps", strconv.Itoa(faultSteps),
		"--checkpoint_every", "1000h"}
	if ddp {
		extra = append(extra, "--num_gpus", "2", "--batch_size", "8")
	}
	return tinyTrain(dataDir, res, extra...)
}

// newestGood returns the step of the newest rolling checkpoint that reads and validates, or -1.
func newestGood(res string) int {
	cks, _ := train.ListCheckpoints(res)
	for _, p := range cks {
		if info, err := train.ReadCheckpointInfo(p); err == nil {
			return info.State.Step
		}
	}
	return -1
}

// csvRows returns a CSV log's rows without the columns that depend on the clock.
func csvRows(t *testing.T, path string) []string {
	t.Helper()
	head, rows := readCSV(t, path)
	var out []string
	for _, r := range rows {
		var keep []string
		for j, v := range r {
			switch head[j] {
			case "seconds", "images_per_s", "data_wait":
			default:
				keep = append(keep, v)
			}
		}
		out = append(out, strings.Join(keep, ","))
	}
	return out
}

// sameFiles compares what a resumed run left with the reference run's: the final checkpoint's and
// best.safetensors' tensors bit for bit, and the CSV rows (steps, epochs, losses as printed).
func sameFiles(t *testing.T, res, ref string) error {
	var errs []error
	for _, f := range []string{filepath.Join("checkpoints", fmt.Sprintf("step-%09d.safetensors", faultSteps)), "best.safetensors"} {
		got, _ := readTensors(t, filepath.Join(res, f))
		want, _ := readTensors(t, filepath.Join(ref, f))
		if len(got) != len(want) {
			errs = append(errs, fmt.Errorf("%s: %d tensors, want %d", f, len(got), len(want)))
		}
		for name, w := range want {
			if !slices.Equal(got[name], w) {
				errs = append(errs, fmt.Errorf("%s: tensor %s differs from the uninterrupted run's", f, name))
				break
			}
		}
	}
	for _, f := range []string{"steps.csv", "train.csv", "test.csv"} {
		got, want := csvRows(t, filepath.Join(res, f)), csvRows(t, filepath.Join(ref, f))
		if !slices.Equal(got, want) {
			errs = append(errs, fmt.Errorf("%s rows\n%v\nwant\n%v", f, got, want))
		}
	}
	return errors.Join(errs...)
}

// TestFaultInjectionMatrix runs every phase × stop kind and prints the table.
func TestFaultInjectionMatrix(t *testing.T) {
	dataDir := mnist(t)
	exe := faultBinary(t)
	refs := map[bool]string{}
	for _, ddp := range []bool{false, true} {
		refs[ddp] = filepath.Join(t.TempDir(), "ref")
		if out, err := faultRun(t, exe, "", faultArgs(dataDir, refs[ddp], ddp)); err != nil {
			t.Fatalf("uninterrupted run (ddp %v): %v\n%s", ddp, err, out)
		}
	}
	var mu sync.Mutex
	var table []string
	t.Cleanup(func() {
		sort.Strings(table)
		t.Logf("fault-injection matrix (%d cases):\n%-16s %-4s %-10s %-9s %-13s %s\n%s", len(table),
			"phase", "hit", "stop", "stopped", "resumed from", "bit-exact", strings.Join(table, "\n"))
	})
	resumed := regexp.MustCompile(`resuming at step (\d+),|\(new run\)`)
	for _, c := range faultCases {
		for _, kind := range []string{"kill", "interrupt"} {
			t.Run(c.phase+"/"+kind, func(t *testing.T) {
				t.Parallel()
				res := filepath.Join(t.TempDir(), "run")
				args := faultArgs(dataDir, res, c.ddp)
				out, err := faultRun(t, exe, fmt.Sprintf("%s:%s:%d", c.phase, kind, c.hit), args)
				if !strings.Contains(out, "fault: "+kind+" at "+c.phase) {
					t.Fatalf("the run never reached %s (hit %d): %v\n%s", c.phase, c.hit, err, out)
				}
				var ee *exec.ExitError
				switch {
				case kind == "kill" && !(errors.As(err, &ee) && strings.Contains(ee.Error(), "killed")):
					t.Fatalf("want the run killed, got %v\n%s", err, out)
				case kind == "interrupt" && (err != nil || !strings.Contains(out, "interrupted at step")):
					t.Fatalf("want a graceful stop, got %v\n%s", err, out)
				}
				stopped := "?"
				if m := regexp.MustCompile(`interrupted at step (\d+)`).FindStringSubmatch(out); m != nil {
					stopped = "step " + m[1]
				} else if kind == "kill" {
					stopped = "killed"
				}
				from := newestGood(res)
				out2, err := faultRun(t, exe, "", args)
				if err != nil {
					t.Fatalf("resume failed: %v\n%s", err, out2)
				}
				m := resumed.FindStringSubmatch(out2)
				switch {
				case m == nil:
					t.Fatalf("the resumed run says neither where it resumed nor that it is new:\n%s", out2)
				case from < 0 && m[1] != "":
					t.Fatalf("resumed at step %s though no checkpoint loads:\n%s", m[1], out2)
				case from >= 0 && m[1] != strconv.Itoa(from):
					t.Fatalf("resumed at %q, want step %d (the newest checkpoint that loads):\n%s", m[0], from, out2)
				}
				if want := fmt.Sprintf("--max_steps %d reached at step %d", faultSteps, faultSteps); !strings.Contains(out2, want) {
					t.Fatalf("the resumed run did not continue to step %d:\n%s", faultSteps, out2)
				}
				// A write killed before its rename leaves a hidden temporary file: the resumed run
				// removes it and says so, naming it.
				torn := kind == "kill" && (strings.HasSuffix(c.phase, "_written") || strings.HasSuffix(c.phase, "_synced"))
				if torn && !regexp.MustCompile(`note: removed \S*/\.[^/ ]*\.tmp-\S*, an incomplete write`).MatchString(out2) {
					t.Errorf("the resumed run did not report removing the killed write's temporary file:\n%s", out2)
				}
				exact := "yes"
				if err := sameFiles(t, res, refs[c.ddp]); err != nil {
					exact = "NO"
					t.Errorf("after a %s at %s: %v\nfirst run:\n%s\nresumed run:\n%s", kind, c.phase, err, out, out2)
				}
				fromS := "new run"
				if from >= 0 {
					fromS = "step " + strconv.Itoa(from)
				}
				mu.Lock()
				table = append(table, fmt.Sprintf("%-16s %-4d %-10s %-9s %-13s %s", c.phase, c.hit, kind, stopped, fromS, exact))
				mu.Unlock()
			})
		}
	}
}
