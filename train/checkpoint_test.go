package train

import (
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"dlf/dlf"
	"dlf/tensor"
	"dlf/tensor/safetensors"
)

// goodCheckpoint writes a small checkpoint with training state at step s, as a run would.
func goodCheckpoint(t *testing.T, results string, s int) string {
	t.Helper()
	job := tinyJob(t, results, 32, 0)
	meta := map[string]string{metaFormat: formatV1, metaConfig: job.Config.JSON(), metaTrain: fmt.Sprintf(`{"step":%d,"lr_scale":1,"best_step":-1,"pending_epoch_end":-1}`, s)}
	p := StepPath(results, s)
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := safetensors.Write(p, []safetensors.HostTensor{safetensors.F32("w", []float32{1, 2, 3}, 3)}, meta); err != nil {
		t.Fatal(err)
	}
	return p
}

// TestCheckpointSetPrune checks that only good checkpoints count toward keep: a damaged file is
// moved aside (reported once, never deleted), an unverified good one is verified and counted, and
// the oldest good ones beyond keep are deleted.
func TestCheckpointSetPrune(t *testing.T) {
	res := t.TempDir()
	for _, s := range []int{2, 4, 6} {
		goodCheckpoint(t, res, s)
	}
	damaged := StepPath(res, 8)
	if err := os.WriteFile(damaged, []byte("not a safetensors file"), 0o644); err != nil {
		t.Fatal(err)
	}
	var reports []string
	set := &checkpointSet{results: res, good: map[string]bool{}, report: func(s string) { reports = append(reports, s) }}
	set.add(StepPath(res, 6))
	if err := set.prune(2); err != nil {
		t.Fatal(err)
	}
	cks, _ := ListCheckpoints(res)
	if want := []string{StepPath(res, 6), StepPath(res, 4)}; fmt.Sprint(cks) != fmt.Sprint(want) {
		t.Errorf("after prune(2): %v, want %v", cks, want)
	}
	if len(reports) != 1 || !strings.Contains(reports[0], damaged+" is damaged") || !exists(damaged+damagedSuffix) {
		t.Errorf("damaged file: reports %q, kept aside %v", reports, exists(damaged+damagedSuffix))
	}
	if err := set.prune(2); err != nil || len(reports) != 1 {
		t.Errorf("a second prune: %v, reports %q", err, reports)
	}
}

// TestTidyResults checks that incomplete writes are removed with a note and foreign files are
// reported and left alone.
func TestTidyResults(t *testing.T) {
	res := t.TempDir()
	goodCheckpoint(t, res, 1)
	files := map[string]bool{ // path → should survive
		filepath.Join(CheckpointDir(res), ".step-000000002.safetensors.tmp-123"): false,
		filepath.Join(res, ".best.safetensors.tmp-9"):                            false,
		filepath.Join(CheckpointDir(res), "notes.txt"):                           true,
		filepath.Join(CheckpointDir(res), "step-000000003.safetensors.damaged"):  true,
	}
	for p := range files {
		if err := os.WriteFile(p, []byte("x"), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	var reports []string
	if err := tidyResults(res, func(s string) { reports = append(reports, s) }); err != nil {
		t.Fatal(err)
	}
	for p, keep := range files {
		if exists(p) != keep {
			t.Errorf("%s: exists %v, want %v", p, exists(p), keep)
		}
	}
	all := strings.Join(reports, "\n")
	if len(reports) != 3 || !strings.Contains(all, "ignoring "+filepath.Join(CheckpointDir(res), "notes.txt")) || strings.Count(all, "an incomplete write") != 2 {
		t.Errorf("reports:\n%s", all)
	}
}

// TestInspect checks the three states of a results directory: new, resumable past damaged files,
// and holding nothing resumable.
func TestInspect(t *testing.T) {
	res := t.TempDir()
	if r, err := Inspect(res); r != nil || err != nil {
		t.Errorf("empty directory: %v, %v", r, err)
	}
	goodCheckpoint(t, res, 3)
	bad := StepPath(res, 5)
	if err := os.WriteFile(bad, []byte{1, 2, 3}, 0o644); err != nil {
		t.Fatal(err)
	}
	r, err := Inspect(res)
	if err != nil || r == nil || r.From.State.Step != 3 || len(r.Damaged) != 1 || r.Damaged[0].Path != bad {
		t.Fatalf("Inspect: %+v, %v", r, err)
	}
	if !exists(bad) {
		t.Error("Inspect changed the directory")
	}
	if err := os.Remove(StepPath(res, 3)); err != nil {
		t.Fatal(err)
	}
	if _, err := Inspect(res); err == nil || !strings.Contains(err.Error(), "none can be resumed") {
		t.Errorf("only a damaged checkpoint: %v", err)
	}
}

// TestResolveCheckpoint checks --checkpoint's forms: a file, a results directory (best, last), and
// the errors.
func TestResolveCheckpoint(t *testing.T) {
	res := t.TempDir()
	if _, err := ResolveCheckpoint(res, "best"); err == nil || !strings.Contains(err.Error(), "without checkpoints") {
		t.Errorf("an empty directory: %v", err)
	}
	p2, p4 := goodCheckpoint(t, res, 2), goodCheckpoint(t, res, 4)
	for _, c := range []struct{ arg, which, want string }{{res, "last", p4}, {res, "best", p4}, {p2, "best", p2}} {
		if got, err := ResolveCheckpoint(c.arg, c.which); err != nil || got != c.want {
			t.Errorf("ResolveCheckpoint(%s, %s) = %s, %v; want %s", c.arg, c.which, got, err, c.want)
		}
	}
	if err := os.WriteFile(BestPath(res), []byte("x"), 0o644); err != nil {
		t.Fatal(err)
	}
	if got, _ := ResolveCheckpoint(res, "best"); got != BestPath(res) {
		t.Errorf("best with best.safetensors present: %s", got)
	}
	for _, c := range []struct{ arg, which, want string }{
		{"", "best", "--checkpoint is required"}, {filepath.Join(res, "nosuch"), "best", "does not exist"}, {res, "newest", `--which "newest"`},
	} {
		if _, err := ResolveCheckpoint(c.arg, c.which); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("ResolveCheckpoint(%q, %q): %v, want %q", c.arg, c.which, err, c.want)
		}
	}
}

// TestReadCheckpointInfoRefusesForeignFiles checks that files without dlf's metadata, with a broken
// configuration or with out-of-range training state are refused, naming the file.
func TestReadCheckpointInfoRefusesForeignFiles(t *testing.T) {
	dir := t.TempDir()
	job := tinyJob(t, dir, 32, 0)
	cfg := job.Config.JSON()
	w := []safetensors.HostTensor{safetensors.F32("w", []float32{1}, 1)}
	for _, c := range []struct {
		meta map[string]string
		want string
	}{
		{map[string]string{}, "was not written by dlf"},
		{map[string]string{metaConfig: "{"}, "invalid model configuration"},
		{map[string]string{metaConfig: cfg, metaTrain: "[1]"}, "training state"},
		{map[string]string{metaConfig: cfg, metaTrain: `{"step":-4,"lr_scale":1}`}, "out of range"},
	} {
		p := filepath.Join(dir, "x.safetensors")
		if err := safetensors.Write(p, w, c.meta); err != nil {
			t.Fatal(err)
		}
		if _, err := ReadCheckpointInfo(p); err == nil || !strings.Contains(err.Error(), c.want) || !strings.Contains(err.Error(), p) {
			t.Errorf("meta %v: %v, want an error naming %s and containing %q", c.meta, err, p, c.want)
		}
	}
	info, err := func() (CheckpointInfo, error) {
		p := filepath.Join(dir, "y.safetensors")
		if err := safetensors.Write(p, w, map[string]string{metaConfig: cfg}); err != nil {
			t.Fatal(err)
		}
		return ReadCheckpointInfo(p)
	}()
	if err != nil || info.HasTrain || info.State.BestStep != -1 {
		t.Errorf("a file with a config and no training state: %+v, %v", info, err)
	}
}

// TestCheckpointRoundTrip loads a trained run's last checkpoint into a fresh model and requires
// every parameter back exactly and the state where the run stopped; a model of another width must
// be refused, naming the file.
func TestCheckpointRoundTrip(t *testing.T) {
	res := filepath.Join(t.TempDir(), "run")
	job := tinyJob(t, res, 32, 3)
	_, want := trainTo(t, job, Hooks{}, 0)
	path := StepPath(res, 3)
	dev, m, _ := evalModel(t)
	info, err := LoadCheckpoint(path, m, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	// Two steps per epoch: after step 3 the next batch is epoch 1's second.
	if st := info.State; st.Step != 3 || st.Pos.Epoch != 1 || st.Pos.Index != 1 || st.NoiseOffset == 0 || !info.HasTrain {
		t.Errorf("state %+v", st)
	}
	for name, got := range paramBits(m) {
		if !slices.Equal(got, want[name]) {
			t.Errorf("parameter %s differs after the round trip", name)
		}
	}
	job.Config.Width = 16
	other, err := dlf.New(job.Config, dev.Backend, tensor.Float32)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := LoadCheckpoint(path, other, nil, nil); err == nil || !strings.Contains(err.Error(), path) {
		t.Errorf("loading into a wider model: %v, want an error naming %s", err, path)
	}
}
