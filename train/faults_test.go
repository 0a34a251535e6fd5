package train

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"regexp"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"dlf/tensor/safetensors"
	"dlf/train/fault"
)

// The fault-injection matrix (issue 18): this package's test binary, built with the faultinject
// tag, runs a tiny training job as a child process (faultChild) and is stopped at every phase that
// train/fault names, once by SIGKILL and once by SIGINT, then rerun on the same results directory.
// Each case must resume from the newest checkpoint that loads, continue the step count, leave CSVs
// with exactly one row per step, epoch and evaluation, and end with parameters, optimizer state and
// best.safetensors bit-identical to an uninterrupted run's.

// childEnv marks the child process and carries its job: "results|ranks".
const childEnv = "DLF_TRAIN_FAULT_CHILD"

// faultSteps is the length of every run of the matrix: three epochs of two steps.
const faultSteps = 6

// faultChild runs the child's job the way bin/driver train does (SIGINT cancels the context) and
// exits: 0 when training ended normally or by the interrupt, 1 on an error.
func faultChild(spec string) {
	res, ranks, _ := strings.Cut(spec, "|")
	t := &testing.T{}
	job := tinyJob(t, res, 32, faultSteps)
	if ranks == "2" {
		job.Ranks, job.Config.BatchSize = 2, 8
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	hooks := Hooks{Log: os.Stdout, Samples: func(r *Run, epoch int) error {
		// Two "grids", as the CLI writes one per temperature.
		for k := range 2 {
			p := filepath.Join(r.Options().Results, fmt.Sprintf("grid_%d_%d.txt", epoch, k))
			if err := os.WriteFile(p, []byte("grid\n"), 0o644); err != nil {
				return err
			}
			fault.Point(fault.Samples)
		}
		return nil
	}}
	run, err := New(job, hooks)
	if err == nil {
		_, err = run.Train(ctx)
		run.Close()
	}
	if err != nil {
		fmt.Println("error:", err)
		os.Exit(1)
	}
	os.Exit(0)
}

var (
	childOnce sync.Once
	childPath string
	childErr  error
)

// childBinary builds this package's tests with fault injection compiled in, once per process.
func childBinary(t *testing.T) string {
	t.Helper()
	childOnce.Do(func() {
		childPath = filepath.Join(fixtureDir, "train-faultinject.test")
		cmd := exec.Command("go", "test", "-c", "-tags", "faultinject", "-o", childPath, ".")
		cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
		if out, err := cmd.CombinedOutput(); err != nil {
			childErr = fmt.Errorf("%v\n%s", err, out)
		}
	})
	if childErr != nil {
		t.Fatalf("go test -c -tags faultinject: %v", childErr)
	}
	return childPath
}

// runChild runs one training job in a child process, with DLF_FAULT set when spec is non-empty.
func runChild(t *testing.T, exe, res string, ranks int, spec string) (string, error) {
	t.Helper()
	cmd := exec.Command(exe, "-test.run=^$")
	cmd.Env = append(os.Environ(), childEnv+"="+res+"|"+strconv.Itoa(ranks), "DLF_TEST_MNIST="+mnistDir)
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
	ranks int
}

var faultCases = []faultCase{
	{fault.Step, 3, 1},
	{fault.CheckpointWritten, 1, 1}, // the first checkpoint of a new run
	{fault.CheckpointWritten, 4, 1},
	{fault.CheckpointSynced, 4, 1},
	{fault.CheckpointRenamed, 4, 1},
	{fault.BeforeTest, 2, 1},
	{fault.TestBatch, 2, 1},
	{fault.Samples, 3, 1},
	{fault.BestWritten, 2, 1},
	{fault.BestSynced, 2, 1},
	{fault.BestRenamed, 2, 1},
	{fault.CSVAppend, 5, 1},
	{fault.RankStep + "0", 3, 2},
	{fault.RankStep + "1", 3, 2},
}

// newestGood returns the step of the newest rolling checkpoint that reads and validates, or -1.
func newestGood(res string) int {
	cks, _ := ListCheckpoints(res)
	for _, p := range cks {
		if info, err := ReadCheckpointInfo(p); err == nil {
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
			if c := head[j]; c != "seconds" && c != "images_per_s" && c != "data_wait" {
				keep = append(keep, v)
			}
		}
		out = append(out, strings.Join(keep, ","))
	}
	return out
}

// tensorBytes returns every tensor of a safetensors file as its raw bytes.
func tensorBytes(t *testing.T, path string) map[string][]byte {
	t.Helper()
	f, err := safetensors.Read(path)
	if err != nil {
		t.Fatal(err)
	}
	out := map[string][]byte{}
	for _, name := range f.Names() {
		out[name], _ = f.Raw(name)
	}
	return out
}

// sameFiles compares what a resumed run left with the reference run's: the final checkpoint's and
// best.safetensors' tensors exactly, and the CSV rows (steps, epochs, losses as printed).
func sameFiles(t *testing.T, res, ref string) error {
	var errs []error
	for _, f := range []string{filepath.Join("checkpoints", fmt.Sprintf("step-%09d.safetensors", faultSteps)), "best.safetensors"} {
		got, want := tensorBytes(t, filepath.Join(res, f)), tensorBytes(t, filepath.Join(ref, f))
		if len(got) != len(want) {
			errs = append(errs, fmt.Errorf("%s: %d tensors, want %d", f, len(got), len(want)))
		}
		for name, w := range want {
			if !bytes.Equal(got[name], w) {
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

var (
	resumedAt   = regexp.MustCompile(`resuming at step (\d+),|\(new run\)`)
	interrupted = regexp.MustCompile(`interrupted at step (\d+)`)
	tornWrite   = regexp.MustCompile(`note: removed \S*/\.[^/ ]*\.tmp-\S*, an incomplete write`)
)

// TestFaultInjectionMatrix runs every phase × stop kind and logs the table.
func TestFaultInjectionMatrix(t *testing.T) {
	mnist(t, 32, 16)
	exe := childBinary(t)
	refs := map[int]string{}
	for _, ranks := range []int{1, 2} {
		refs[ranks] = filepath.Join(t.TempDir(), "ref")
		if out, err := runChild(t, exe, refs[ranks], ranks, ""); err != nil {
			t.Fatalf("uninterrupted run (%d ranks): %v\n%s", ranks, err, out)
		}
	}
	var mu sync.Mutex
	var table []string
	t.Cleanup(func() {
		sort.Strings(table)
		t.Logf("fault-injection matrix (%d cases):\n%-16s %-4s %-10s %-9s %-13s %s\n%s", len(table),
			"phase", "hit", "stop", "stopped", "resumed from", "bit-exact", strings.Join(table, "\n"))
	})
	for _, c := range faultCases {
		for _, kind := range []string{"kill", "interrupt"} {
			t.Run(c.phase+"/"+kind, func(t *testing.T) {
				t.Parallel()
				row := runFaultCase(t, exe, c, kind, refs[c.ranks])
				mu.Lock()
				table = append(table, row)
				mu.Unlock()
			})
		}
	}
}

// runFaultCase stops a run at one phase, resumes it, checks it, and returns its table row.
func runFaultCase(t *testing.T, exe string, c faultCase, kind, ref string) string {
	res := filepath.Join(t.TempDir(), "run")
	out, err := runChild(t, exe, res, c.ranks, fmt.Sprintf("%s:%s:%d", c.phase, kind, c.hit))
	if !strings.Contains(out, "fault: "+kind+" at "+c.phase) {
		t.Fatalf("the run never reached %s (hit %d): %v\n%s", c.phase, c.hit, err, out)
	}
	var ee *exec.ExitError
	stopped := "killed"
	if kind == "kill" {
		if !errors.As(err, &ee) || ee.ProcessState.Sys().(syscall.WaitStatus).Signal() != syscall.SIGKILL {
			t.Fatalf("want the run killed, got %v\n%s", err, out)
		}
	} else if m := interrupted.FindStringSubmatch(out); err != nil || m == nil {
		t.Fatalf("want a graceful stop, got %v\n%s", err, out)
	} else {
		stopped = "step " + m[1]
	}
	from := newestGood(res)
	out2, err := runChild(t, exe, res, c.ranks, "")
	if err != nil {
		t.Fatalf("resume failed: %v\n%s", err, out2)
	}
	m := resumedAt.FindStringSubmatch(out2)
	switch {
	case m == nil:
		t.Fatalf("the resumed run says neither where it resumed nor that it is new:\n%s", out2)
	case (from < 0) != (m[1] == "") || (from >= 0 && m[1] != strconv.Itoa(from)):
		t.Fatalf("resumed at %q, want step %d (the newest checkpoint that loads; -1: none):\n%s", m[0], from, out2)
	}
	if want := fmt.Sprintf("--max_steps %d reached at step %d", faultSteps, faultSteps); !strings.Contains(out2, want) {
		t.Fatalf("the resumed run did not continue to step %d:\n%s", faultSteps, out2)
	}
	// A write killed before its rename leaves a hidden temporary file: the resumed run removes it
	// and says so, naming it.
	torn := kind == "kill" && (strings.HasSuffix(c.phase, "_written") || strings.HasSuffix(c.phase, "_synced"))
	if torn && !tornWrite.MatchString(out2) {
		t.Errorf("the resumed run did not report removing the killed write's temporary file:\n%s", out2)
	}
	exact := "yes"
	if err := sameFiles(t, res, ref); err != nil {
		exact = "NO"
		t.Errorf("after a %s at %s: %v\nfirst run:\n%s\nresumed run:\n%s", kind, c.phase, err, out, out2)
	}
	fromS := "new run"
	if from >= 0 {
		fromS = "step " + strconv.Itoa(from)
	}
	return fmt.Sprintf("%-16s %-4d %-10s %-9s %-13s %s", c.phase, c.hit, kind, stopped, fromS, exact)
}
