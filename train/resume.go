package train

import (
	"fmt"

	"dlf/data"
	"dlf/dlf"
)

// Resumable is what a results directory holds to resume from, as Inspect finds it.
type Resumable struct {
	// From is the newest rolling checkpoint that loads and has training state.
	From CheckpointInfo
	// Damaged are the newer checkpoints that do not, with why; New moves them aside (never
	// deleting them) and reports each once.
	Damaged []DamagedCheckpoint
}

// DamagedCheckpoint is a rolling checkpoint that cannot be resumed, and why.
type DamagedCheckpoint struct {
	Path string
	Err  error
}

// Inspect reads a results directory without changing it: nil when it holds no checkpoint (a new
// run), the checkpoint to resume from otherwise, and an error when it holds checkpoints of which
// none can be resumed.
func Inspect(results string) (*Resumable, error) {
	cks, err := ListCheckpoints(results)
	if err != nil {
		return nil, fmt.Errorf("--results_dir %s: %v", results, err)
	}
	if len(cks) == 0 {
		return nil, nil
	}
	r := &Resumable{}
	for _, p := range cks {
		info, err := ReadCheckpointInfo(p)
		if err == nil && info.HasTrain {
			r.From = info
			return r, nil
		}
		if err == nil {
			err = fmt.Errorf("%s has no training state", p)
		}
		r.Damaged = append(r.Damaged, DamagedCheckpoint{p, err})
	}
	return nil, fmt.Errorf("--results_dir %s holds checkpoints but none can be resumed (%v); use another --results_dir", results, r.Damaged[0].Err)
}

// checkResume refuses to resume a checkpoint with settings that would not continue it exactly.
func checkResume(r *Resumable, job *Job) error {
	from, o := r.From, job.Options
	if d := dlf.ArchDiff(from.Config, job.Config); d != "" {
		return fmt.Errorf("--results_dir %s holds a checkpoint of another configuration (%s); use another --results_dir", o.Results, d)
	}
	if from.Config.BatchSize != job.Config.BatchSize {
		return fmt.Errorf("--batch_size %d: the run in %s uses batch size %d, and its data position counts in those batches; use another --results_dir", job.Config.BatchSize, o.Results, from.Config.BatchSize)
	}
	if w := max(1, from.State.World); w != o.Ranks {
		return fmt.Errorf("--num_gpus %d: the run in %s was trained with --num_gpus %d, and its data position counts in that many shards; resume with --num_gpus %d or use another --results_dir", o.Ranks, o.Results, w, w)
	}
	if per := job.Train.N / o.Ranks / job.Config.BatchSize; from.State.Pos.Index > per {
		return fmt.Errorf("the checkpoint in %s is at batch %d of an epoch, but the training set has only %d batches (another --train_subset?)", o.Results, from.State.Pos.Index, per)
	}
	return nil
}

// CheckDataset checks a dataset split against the model's image shape and conditioning.
func CheckDataset(cfg dlf.Config, ds *data.Dataset, split string) error {
	if ds.H != cfg.ImageH || ds.W != cfg.ImageW || ds.C != cfg.ImageC {
		return fmt.Errorf("the %s images of %s are %d×%d×%d but the model is for %d×%d×%d images", split, ds.Source, ds.H, ds.W, ds.C, cfg.ImageH, cfg.ImageW, cfg.ImageC)
	}
	if cfg.Conditioning {
		if ds.Labels == nil {
			return fmt.Errorf("--conditioning needs class labels, but the %s split of %s has none", split, ds.Source)
		}
		for i, l := range ds.Labels {
			if int(l) >= cfg.NumClasses {
				return fmt.Errorf("image %d of %s has label %d, but the model knows %d classes", i, ds.Source, l, cfg.NumClasses)
			}
		}
	}
	return nil
}
