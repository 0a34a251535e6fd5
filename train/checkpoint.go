package train

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"

	"dlf/autodiff/optim"
	"dlf/data"
	"dlf/dlf"
	"dlf/tensor/safetensors"
	"dlf/train/fault"
)

// Checkpoint metadata keys (safetensors "__metadata__"), next to optim's optimizer and EMA keys.
const (
	metaFormat = "format"
	metaConfig = "config"
	metaTrain  = "train"
	// formatV1 names this layout; a file without it was not written by the driver.
	formatV1 = "dlf-driver/1"
)

// State is everything besides tensors that a resumed run needs to continue exactly where the
// interrupted one stopped.
type State struct {
	// Step is the number of optimizer updates done.
	Step int `json:"step"`
	// Pos is the loader position of the next batch (its Epoch is the current epoch).
	Pos data.Position `json:"position"`
	// NoiseOffset is the next unused Philox offset of the dequantisation noise stream.
	NoiseOffset uint64 `json:"noise_offset"`
	// Seconds is the training wall time of every session so far (the CSVs' clock).
	Seconds float64 `json:"seconds"`
	// BestTest is the lowest test bits/dim seen, at BestStep (−1: none yet).
	BestTest float64 `json:"best_test_bits"`
	BestStep int     `json:"best_step"`
	// LRScale multiplies the schedule; --nan_policy lower_lr halves it after a non-finite loss.
	LRScale float64 `json:"lr_scale"`
	// Sums accumulate the current epoch's training metrics for its train.csv row.
	Sums EpochSums `json:"epoch_sums"`
	// PendingEpochEnd is an epoch whose end-of-epoch work (test, samples, plot) has not finished
	// (−1: none); a resumed run does it first.
	PendingEpochEnd int `json:"pending_epoch_end"`
	// World is the number of data-parallel ranks (--num_gpus) the run trains with; 0 (checkpoints
	// of single-device runs before the field existed) means 1.
	World int `json:"world,omitempty"`
}

// EpochSums are running sums of per-step metrics, weighted by batch size.
type EpochSums struct {
	Loss   float64 `json:"loss"`
	Bits   float64 `json:"bits_x"`
	L2     float64 `json:"l2_loss"`
	Images int     `json:"images"`
}

func (s *EpochSums) add(loss, bits, l2 float64, n int) {
	s.Loss += loss * float64(n)
	s.Bits += bits * float64(n)
	s.L2 += l2 * float64(n)
	s.Images += n
}

func (s EpochSums) mean() (loss, bits, l2 float64) {
	if s.Images == 0 {
		return 0, 0, 0
	}
	n := float64(s.Images)
	return s.Loss / n, s.Bits / n, s.L2 / n
}

func newState() State {
	return State{BestStep: -1, LRScale: 1, PendingEpochEnd: -1}
}

// allParams returns every model tensor (trainable or buffer) under its checkpoint name, the list
// optim.SaveCheckpoint and LoadCheckpoint write and read; forWrite takes the read-only view.
func allParams(m *dlf.Model, forWrite bool) []optim.Param {
	var ps []*dlf.Param
	if forWrite {
		ps = m.ParamsView()
	} else {
		ps = m.Params()
	}
	out := make([]optim.Param, len(ps))
	for i, p := range ps {
		out[i] = optim.Param{Name: p.Name, Var: p.Var}
	}
	return out
}

// writePhases names the fault-injection points of one kind of checkpoint write, by
// safetensors.Stage.
type writePhases [3]string

var (
	rollingPhases = writePhases{fault.CheckpointWritten, fault.CheckpointSynced, fault.CheckpointRenamed}
	bestPhases    = writePhases{fault.BestWritten, fault.BestSynced, fault.BestRenamed}
)

// saveCheckpoint writes the model, optimizer, EMA and state to path atomically; phases name the
// write's fault-injection points.
func saveCheckpoint(path string, m *dlf.Model, opt *optim.Optimizer, ema *optim.EMA, st State, phases writePhases) error {
	cfg := m.Config()
	sj, err := json.Marshal(st)
	if err != nil {
		return err
	}
	meta := map[string]string{metaFormat: formatV1, metaConfig: cfg.JSON(), metaTrain: string(sj)}
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return err
	}
	ts, all, err := optim.CheckpointContents(allParams(m, true), opt, ema, meta)
	if err == nil {
		err = safetensors.WriteObserved(path, ts, all, func(s safetensors.Stage) { fault.Point(phases[s]) })
	}
	if err != nil {
		return fmt.Errorf("saving checkpoint %s: %w", path, err)
	}
	return nil
}

// CheckpointInfo is a checkpoint's metadata, read without building a model.
type CheckpointInfo struct {
	// Path is the file.
	Path string
	// Config is the model configuration the file was trained with.
	Config dlf.Config
	// State is the training state (newState's defaults when HasTrain is false).
	State State
	// HasTrain is false for files without training state (e.g. written by other tools).
	HasTrain bool
}

// ReadCheckpointInfo reads and validates a checkpoint's metadata.
func ReadCheckpointInfo(path string) (CheckpointInfo, error) {
	// The header alone gives the metadata and catches a truncated file; the data are read once,
	// by the LoadCheckpoint that follows.
	f, err := safetensors.ReadHeader(path)
	if err != nil {
		return CheckpointInfo{}, fmt.Errorf("cannot read checkpoint: %v", err)
	}
	return checkpointInfoFrom(path, f.Meta)
}

func checkpointInfoFrom(path string, meta map[string]string) (CheckpointInfo, error) {
	raw, ok := meta[metaConfig]
	if !ok {
		return CheckpointInfo{}, fmt.Errorf("checkpoint %s has no %q metadata: it was not written by dlf", path, metaConfig)
	}
	cfg, err := dlf.ParseConfig([]byte(raw))
	if err != nil {
		return CheckpointInfo{}, fmt.Errorf("checkpoint %s holds an invalid model configuration: %v", path, err)
	}
	info := CheckpointInfo{Path: path, Config: cfg, State: newState()}
	if s, ok := meta[metaTrain]; ok {
		if err := json.Unmarshal([]byte(s), &info.State); err != nil {
			return CheckpointInfo{}, fmt.Errorf("checkpoint %s: training state %q: %v", path, s, err)
		}
		if info.State.Step < 0 || info.State.Pos.Epoch < 0 || info.State.Pos.Index < 0 || !(info.State.LRScale > 0) {
			return CheckpointInfo{}, fmt.Errorf("checkpoint %s: training state %q is out of range", path, s)
		}
		info.HasTrain = true
	}
	return info, nil
}

// LoadCheckpoint restores the model (and optimizer and EMA when non-nil) from path.
func LoadCheckpoint(path string, m *dlf.Model, opt *optim.Optimizer, ema *optim.EMA) (CheckpointInfo, error) {
	meta, err := optim.LoadCheckpoint(path, allParams(m, false), opt, ema)
	if err != nil {
		return CheckpointInfo{}, fmt.Errorf("cannot load checkpoint %s: %v", path, err)
	}
	return checkpointInfoFrom(path, meta)
}

// CheckpointDir is where train keeps its rolling checkpoints.
func CheckpointDir(results string) string { return filepath.Join(results, "checkpoints") }

// BestPath is the checkpoint with the lowest test bits/dim.
func BestPath(results string) string { return filepath.Join(results, "best.safetensors") }

// StepPath names the rolling checkpoint of a step.
func StepPath(results string, step int) string {
	return filepath.Join(CheckpointDir(results), fmt.Sprintf("step-%09d.safetensors", step))
}

// stepOf parses a rolling checkpoint's file name, step-NNNNNNNNN.safetensors.
func stepOf(name string) (int, bool) {
	if !strings.HasPrefix(name, "step-") || !strings.HasSuffix(name, ".safetensors") {
		return 0, false
	}
	n, err := strconv.Atoi(strings.TrimSuffix(strings.TrimPrefix(name, "step-"), ".safetensors"))
	return n, err == nil && n >= 0
}

func isStepName(name string) bool { _, ok := stepOf(name); return ok }

// ListCheckpoints returns the rolling checkpoints of a results directory, newest (highest step)
// first.
func ListCheckpoints(results string) ([]string, error) {
	ents, err := os.ReadDir(CheckpointDir(results))
	if os.IsNotExist(err) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	type ck struct {
		step int
		path string
	}
	var cks []ck
	for _, e := range ents {
		n, ok := stepOf(e.Name())
		if e.IsDir() || !ok {
			continue
		}
		cks = append(cks, ck{n, filepath.Join(CheckpointDir(results), e.Name())})
	}
	sort.Slice(cks, func(i, j int) bool { return cks[i].step > cks[j].step })
	out := make([]string, len(cks))
	for i, c := range cks {
		out[i] = c.path
	}
	return out, nil
}

// damagedSuffix is added to the name of a checkpoint that cannot be loaded: moved aside, it no longer
// counts as a checkpoint, and nothing deletes it.
const damagedSuffix = ".damaged"

// quarantine moves a damaged checkpoint aside (never deleting it) and returns the one line that
// reports it.
func quarantine(path string, why error) (string, error) {
	dst := path + damagedSuffix
	if err := os.Rename(path, dst); err != nil {
		return "", fmt.Errorf("moving the damaged checkpoint %s aside: %v", path, err)
	}
	return fmt.Sprintf("warning: %s is damaged (%v); moved it to %s, it no longer counts as a checkpoint", path, why, filepath.Base(dst)), nil
}

// checkpointSet is the rolling checkpoints of a results directory that are known to load: verified
// when first counted, or written by this process. Only these count toward --keep_checkpoints, so a
// damaged file can never push a good one out.
type checkpointSet struct {
	results string
	good    map[string]bool
	// report receives the line about each damaged file moved aside.
	report func(string)
}

// add records a checkpoint known to be good.
func (s *checkpointSet) add(path string) { s.good[path] = true }

// prune deletes all but the newest keep good rolling checkpoints. A file it has not seen before is
// verified first; a damaged one is moved aside and reported.
func (s *checkpointSet) prune(keep int) error {
	cks, err := ListCheckpoints(s.results)
	if err != nil {
		return err
	}
	kept := 0
	for _, p := range cks {
		if !s.good[p] {
			if _, err := ReadCheckpointInfo(p); err != nil {
				msg, qerr := quarantine(p, err)
				if qerr != nil {
					return qerr
				}
				s.report(msg)
				continue
			}
			s.good[p] = true
		}
		if kept < keep {
			kept++
			continue
		}
		if err := os.Remove(p); err != nil && !os.IsNotExist(err) {
			return err
		}
		delete(s.good, p)
	}
	return nil
}

// tidyResults reports, once per run, what in a results directory is not a checkpoint of this run:
// incomplete writes of a stopped process (hidden temporary files of the atomic writers, removed) and
// foreign files in checkpoints/ (left alone).
func tidyResults(results string, report func(string)) error {
	for _, dir := range []string{results, CheckpointDir(results), filepath.Join(results, "samples")} {
		ents, err := os.ReadDir(dir)
		if os.IsNotExist(err) {
			continue
		}
		if err != nil {
			return err
		}
		for _, e := range ents {
			name := e.Name()
			p := filepath.Join(dir, name)
			switch {
			case strings.HasPrefix(name, ".") && strings.Contains(name, ".tmp-"):
				if err := os.Remove(p); err != nil {
					return fmt.Errorf("removing %s: %v", p, err)
				}
				report(fmt.Sprintf("note: removed %s, an incomplete write of a stopped run", p))
			case dir == CheckpointDir(results) && !isStepName(name) && !strings.HasSuffix(name, damagedSuffix):
				report(fmt.Sprintf("note: ignoring %s: not a checkpoint name (step-NNNNNNNNN.safetensors)", p))
			}
		}
	}
	return nil
}

// ResolveCheckpoint turns --checkpoint (a file, or a results directory whose best or newest
// checkpoint is meant) into a file path.
func ResolveCheckpoint(arg, which string) (string, error) {
	if arg == "" {
		return "", fmt.Errorf("--checkpoint is required: a .safetensors file or a training results directory")
	}
	st, err := os.Stat(arg)
	if err != nil {
		return "", fmt.Errorf("--checkpoint %s does not exist", arg)
	}
	if !st.IsDir() {
		return arg, nil
	}
	switch which {
	case "best":
		if _, err := os.Stat(BestPath(arg)); err == nil {
			return BestPath(arg), nil
		}
		fallthrough
	case "last":
		cks, err := ListCheckpoints(arg)
		if err != nil {
			return "", fmt.Errorf("--checkpoint %s: %v", arg, err)
		}
		if len(cks) == 0 {
			return "", fmt.Errorf("--checkpoint %s is a directory without checkpoints (no best.safetensors, nothing in checkpoints/)", arg)
		}
		return cks[0], nil
	}
	return "", fmt.Errorf("--which %q: want best or last", which)
}
