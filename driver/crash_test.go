package main

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"dlf/tensor/safetensors"
	"dlf/train"
)

// Regression tests of issue 18's four findings. Each reproduces what a user saw on a results
// directory; the fault-injection matrix (faults_test.go) covers every phase and stop kind.

// readTensors returns every tensor of a safetensors file as its raw bytes, and the metadata.
func readTensors(t *testing.T, path string) (map[string][]byte, map[string]string) {
	t.Helper()
	f, err := safetensors.Read(path)
	if err != nil {
		t.Fatal(err)
	}
	out := map[string][]byte{}
	for _, name := range f.Names() {
		out[name], _ = f.Raw(name)
	}
	return out, f.Meta
}

// rewriteTrainState rewrites a checkpoint with its training state changed by edit.
func rewriteTrainState(t *testing.T, path string, edit func(*train.State)) {
	t.Helper()
	f, err := safetensors.Read(path)
	if err != nil {
		t.Fatal(err)
	}
	var ts []safetensors.HostTensor
	for _, name := range f.Names() {
		e, _ := f.Entry(name)
		switch e.DType {
		case "F32":
			v, _ := f.Float32(name, e.Shape)
			ts = append(ts, safetensors.F32(name, v, e.Shape...))
		case "F64":
			v, _ := f.Float64(name, e.Shape)
			ts = append(ts, safetensors.F64(name, v, e.Shape...))
		}
	}
	var st train.State
	if err := json.Unmarshal([]byte(f.Meta["train"]), &st); err != nil {
		t.Fatal(err)
	}
	edit(&st)
	b, _ := json.Marshal(st)
	f.Meta["train"] = string(b)
	if err := safetensors.Write(path, ts, f.Meta); err != nil {
		t.Fatal(err)
	}
}

// TestResumePendingEpochEnd is finding 1: a run stopped between the epoch-end checkpoint and the end
// of the test evaluation left a checkpoint with the epoch end pending, and every resume panicked in
// the progress line, which only a live loop had created. The resumed run must redo the epoch end
// once: one test row for the epoch, not two.
func TestResumePendingEpochEnd(t *testing.T) {
	dataDir := mnist(t)
	res := filepath.Join(t.TempDir(), "run")
	args := tinyTrain(dataDir, res, "--train_subset", "32", "--test_subset", "16")
	mustRun(t, append(args, "--max_steps", "2")...)
	// The state a stop in the window leaves: the newest checkpoint says epoch 0's end is pending.
	rewriteTrainState(t, train.StepPath(res, 2), func(s *train.State) { s.PendingEpochEnd = 0 })
	out := mustRun(t, append(args, "--max_steps", "3")...)
	for _, want := range []string{"resuming at step 2,", "test:    epoch 0, step 2:", "--max_steps 3 reached at step 3"} {
		if !strings.Contains(out, want) {
			t.Errorf("resumed run's output lacks %q:\n%s", want, out)
		}
	}
	head, rows := readCSV(t, filepath.Join(res, "test.csv"))
	if got := column(t, head, rows, "step"); len(got) != 1 || got[0] != 2 {
		t.Errorf("test.csv steps %v, want one row at step 2", got)
	}
}

// TestDamagedCheckpointKeepsGoodOnes is finding 2: with the newest checkpoint truncated, the resumed
// run counted the damaged file toward --keep_checkpoints and deleted the older good one. Now the
// damaged file is moved aside (kept, reported once, naming it) and two good checkpoints remain.
func TestDamagedCheckpointKeepsGoodOnes(t *testing.T) {
	dataDir := mnist(t)
	res := filepath.Join(t.TempDir(), "run")
	args := tinyTrain(dataDir, res, "--train_subset", "32", "--test_subset", "16", "--sample_per_epochs", "0")
	mustRun(t, append(args, "--max_steps", "4")...)
	newest := train.StepPath(res, 4)
	b, err := os.ReadFile(newest)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(newest, b[:len(b)/2], 0o644); err != nil {
		t.Fatal(err)
	}
	// Also a foreign file, which must be reported and left alone.
	foreign := filepath.Join(train.CheckpointDir(res), "notes.txt")
	if err := os.WriteFile(foreign, []byte("mine"), 0o644); err != nil {
		t.Fatal(err)
	}
	// Resumed from step 2 and stopped at step 3, the run saves step 3: on the old main, pruning then
	// counted the damaged step 4 and deleted step 2.
	out := mustRun(t, append(args, "--max_steps", "3")...)
	for _, want := range []string{"resuming at step 2,", "warning: " + newest + " is damaged", "ignoring " + foreign} {
		if n := strings.Count(out, want); n != 1 {
			t.Errorf("the output has %q %d times, want once:\n%s", want, n, out)
		}
	}
	cks, err := train.ListCheckpoints(res)
	if err != nil {
		t.Fatal(err)
	}
	if want := []string{train.StepPath(res, 3), train.StepPath(res, 2)}; fmt.Sprint(cks) != fmt.Sprint(want) {
		t.Errorf("checkpoints %v, want %v", cks, want)
	}
	for _, p := range cks {
		if _, err := train.ReadCheckpointInfo(p); err != nil {
			t.Errorf("%s: %v", p, err)
		}
	}
	// The next run has nothing damaged to report.
	if out := mustRun(t, append(args, "--max_steps", "4")...); strings.Contains(out, "damaged") {
		t.Errorf("a damaged checkpoint was reported again:\n%s", out)
	}
	if !exists(newest+".damaged") || !exists(foreign) {
		t.Errorf("the damaged checkpoint (kept as %s: %v) or the foreign file (%v) was deleted", newest+".damaged", exists(newest+".damaged"), exists(foreign))
	}
}

// TestDamagedConfigJSONReported is finding 3: a config.json that no longer parses was silently
// overwritten from the checkpoint. It is now kept as config.json.damaged, and the run says so.
func TestDamagedConfigJSONReported(t *testing.T) {
	dataDir := mnist(t)
	res := filepath.Join(t.TempDir(), "run")
	args := tinyTrain(dataDir, res, "--train_subset", "32", "--test_subset", "16", "--sample_per_epochs", "0")
	mustRun(t, append(args, "--max_steps", "1")...)
	cfgPath := filepath.Join(res, "config.json")
	bad := []byte("{\"flow\": \"dlf\", \"depth\": ")
	if err := os.WriteFile(cfgPath, bad, 0o644); err != nil {
		t.Fatal(err)
	}
	out := mustRun(t, append(args, "--max_steps", "2")...)
	if !strings.Contains(out, "warning: "+cfgPath+" is damaged") || !strings.Contains(out, "config.json.damaged") {
		t.Errorf("the damaged config.json was not reported:\n%s", out)
	}
	if kept, err := os.ReadFile(cfgPath + ".damaged"); err != nil || string(kept) != string(bad) {
		t.Errorf("the damaged config.json was not kept: %q, %v", kept, err)
	}
	if b, err := os.ReadFile(cfgPath); err != nil || !strings.Contains(string(b), "\"depth\": 1") {
		t.Errorf("config.json was not rewritten from the checkpoint: %q, %v", b, err)
	}
}

// TestUnknownCommand is finding 4: `driver nosuch` printed "No help topic for 'nosuch'".
func TestUnknownCommand(t *testing.T) {
	out, err := runApp(t, "nosuch")
	if err == nil {
		t.Fatalf("driver nosuch succeeded:\n%s", out)
	}
	msg := err.Error()
	if !strings.Contains(msg, `unknown command "nosuch"`) || !strings.Contains(msg, "train, eval, sample") || strings.Contains(out, "No help topic") {
		t.Errorf("driver nosuch: %q\n%s", msg, out)
	}
}
