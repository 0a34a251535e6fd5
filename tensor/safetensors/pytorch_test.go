package safetensors

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
)

// python is the interpreter with torch installed (Debian's, not a user-level one).
const python = "/usr/bin/python3"

// TestPyTorchReadsCheckpoint opens one of our checkpoints with reference/read_checkpoint.py (torch)
// and checks that every tensor's name, dtype, shape, first values and the metadata come back.
func TestPyTorchReadsCheckpoint(t *testing.T) {
	script, err := filepath.Abs("../../reference/read_checkpoint.py")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(script); err != nil {
		t.Skipf("skipping: %s not found: %v", script, err)
	}
	if _, err := os.Stat(python); err != nil {
		t.Skipf("skipping: %s is not installed", python)
	}
	r := newRand(t)
	ts := sampleTensors(r)
	meta := map[string]string{"step": "42", "config": `{"levels":2}`}
	path := filepath.Join(t.TempDir(), "ckpt.safetensors")
	if err := Write(path, ts, meta); err != nil {
		t.Fatal(err)
	}
	const nvals = 5
	out, err := exec.Command(python, script, path, "--values", strconv.Itoa(nvals), "--meta").CombinedOutput()
	if err != nil {
		// Importing torch is most of the script's run time, so its absence is detected here rather
		// than by a separate interpreter start.
		if strings.Contains(string(out), "No module named 'torch'") {
			t.Skipf("skipping: %s cannot import torch", python)
		}
		t.Fatalf("%s failed: %v\n%s", script, err, out)
	}
	lines := strings.Split(strings.TrimRight(string(out), "\n"), "\n")
	gotMeta := map[string]string{}
	for len(lines) > 0 && strings.HasPrefix(lines[0], "meta:\t") {
		f := strings.SplitN(lines[0], "\t", 3)
		gotMeta[f[1]] = f[2]
		lines = lines[1:]
	}
	if !maps(gotMeta, meta) {
		t.Errorf("metadata %v, want %v", gotMeta, meta)
	}
	torchName := map[string]string{"F32": "torch.float32", "F64": "torch.float64"}
	for _, h := range ts {
		if len(lines) < 2 {
			t.Fatalf("output ends before tensor %s:\n%s", h.Name, out)
		}
		code, _, _ := h.dtypeCode()
		want := fmt.Sprintf("%s\t%s\t%s\t%s", h.Name, code, torchName[code], pyList(h.Shape))
		if lines[0] != want {
			t.Errorf("line %q, want %q", lines[0], want)
		}
		vals := strings.Split(lines[1], "\t")
		if vals[0] != "  values:" {
			t.Fatalf("values line %q", lines[1])
		}
		vals = vals[1:]
		if len(vals) == 1 && vals[0] == "" {
			vals = nil
		}
		var wantVals []float64
		switch d := h.Data.(type) {
		case []float32:
			for _, v := range d[:min(nvals, len(d))] {
				wantVals = append(wantVals, float64(v))
			}
		case []float64:
			wantVals = d[:min(nvals, len(d))]
		}
		if len(vals) != len(wantVals) {
			t.Fatalf("%s: %d values printed, want %d", h.Name, len(vals), len(wantVals))
		}
		for i, s := range vals {
			v, err := strconv.ParseFloat(s, 64)
			// Python's repr round-trips, and float32 → float64 is exact, so equality is exact.
			if err != nil || v != wantVals[i] {
				t.Errorf("%s[%d] = %s, want %v", h.Name, i, s, wantVals[i])
			}
		}
		lines = lines[2:]
	}
	if len(lines) != 0 {
		t.Errorf("extra output: %q", lines)
	}
	t.Logf("torch read %d tensors:\n%s", len(ts), out)
}

// pyList formats a shape as Python prints a list: [2, 3].
func pyList(s []int) string {
	parts := make([]string, len(s))
	for i, d := range s {
		parts[i] = strconv.Itoa(d)
	}
	return "[" + strings.Join(parts, ", ") + "]"
}
