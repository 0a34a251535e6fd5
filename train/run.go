package train

import (
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sync/atomic"
	"time"

	"dlf/autodiff/optim"
	"dlf/data"
	"dlf/dlf"
	"dlf/tensor"
	"dlf/tensor/device"
)

// Seeds of the Philox streams besides the training noise (which uses the config's seed itself):
// the test set's dequantisation noise and the noise of the sample grids. Fixed offsets from the seed
// keep the streams disjoint, so evaluating or sampling never shifts the training noise, and the same
// test noise and sample noise are used every epoch, which makes epochs comparable.
const (
	TestSeedSalt   = 0x7465737400000000 // "test"
	SampleSeedSalt = 0x73616d7000000000 // "samp"
)

// Job is a training run to do: the model, the data and the options.
type Job struct {
	// Config is the model and optimizer configuration. To resume a results directory it must
	// define the same parameters as the checkpoint's (Inspect returns it).
	Config dlf.Config
	// Train and Test are the data; Test is evaluated every Options.TestEvery epochs.
	Train, Test *data.Dataset
	// DataSource says where the data came from, for the start-up line (default: Train.Source).
	DataSource string
	Options
}

// Hooks are how a run reports; every field may be nil.
type Hooks struct {
	// Log receives the run's report, a line at a time: what is trained where, where it resumes,
	// warnings about the results directory, test results, divergence, how it ended.
	Log io.Writer
	// EpochStart is called when an epoch starts (or resumes at batch done of steps).
	EpochStart func(epoch, steps, done int)
	// Step is called for every optimizer step, in order, with its metrics: at once on the CPU; on
	// CUDA, whose steps leave their loss on the device, at the next flush (a steps.csv row, an
	// evaluation, a checkpoint, Options.RefreshEvery).
	Step func(StepStats)
	// StepEnd is called when a step and the work that fell due after it (a flush, an evaluation, a
	// checkpoint) are done, before the next step starts: a clock for timing and accounting.
	StepEnd func(step int)
	// Break is called before a line goes to Log, so that a progress display can end its line.
	Break func()
	// Samples is called at the end of every Options.SampleEvery-th epoch, after the test
	// evaluation, to write sample grids and plots (the CLI's); an error stops the run, which
	// redoes the epoch end when resumed.
	Samples func(r *Run, epoch int) error
}

// StepStats are one step's metrics.
type StepStats struct {
	// Step is the number of optimizer steps done; EpochStep the number done in this epoch.
	Step, Epoch, EpochStep int
	// Loss is the training objective (bits/dim plus the L2 term); BitsPerDim without it.
	Loss, BitsPerDim float64
	// ImagesPerSec is this epoch's throughput so far; DataWait the fraction of it spent waiting
	// for the loader.
	ImagesPerSec, DataWait float64
	// LR is the learning rate used.
	LR float64
}

// Run is a training run in progress: its model on its device, the optimizer, the state.
type Run struct {
	o           Options
	cfg         dlf.Config
	hooks       Hooks
	dev         *device.Device
	m           *dlf.Model
	opt         *optim.Optimizer
	ema         *optim.EMA
	sched       optim.Schedule
	train, test *data.Dataset
	perEpoch    int
	st          State
	stop        atomic.Bool
	ctx         context.Context // Train's, while it runs
	ddp         *ddp            // nil for one rank
	source      string
	// procs is this process's membership of a one-process-per-rank job (Options.Dist "mpi" or
	// "nccl"), else nil.
	procs *procs
	// ckpts are the rolling checkpoints known to load, which KeepCheckpoints counts.
	ckpts *checkpointSet

	// def holds the steps whose metrics wait for a flush (deferred.go); strictThrough is the last
	// step of a replay, up to which every step reads its loss at once.
	def           deferred
	strictThrough int
	// sg is the captured step (graphstep.go); graphFailures counts failed captures, eagerSteps the
	// eager steps of this session (a capture needs one first).
	sg                        *stepGraph
	graphIn                   *graphInputs
	graphFailures, eagerSteps int

	stepsLog, trainLog, testLog *csvLog
	sessionStart                time.Time
	secondsBase                 float64
	lastSave                    time.Time
	lastSavedStep               int
}

// New validates the job, opens its device, builds the model and optimizer, and either resumes the
// newest good checkpoint of the results directory or starts a new run (Glow's data-dependent init,
// the step-0 checkpoint). Nothing is written before everything is validated. Close releases it.
func New(job Job, hooks Hooks) (*Run, error) {
	p, err := joinProcs(&job.Options)
	if err != nil {
		return nil, err
	}
	res, err := prepare(&job)
	if err != nil {
		p.close()
		return nil, err
	}
	o := job.Options
	var dev *device.Device
	switch {
	case p != nil:
		dev, err = p.openDevice(o)
	case o.Ranks > 1:
		dev, err = device.OpenRank(o.Device, 0, o.Ranks, o.VirtualGPUs)
	default:
		dev, err = device.Open(o.Device)
	}
	if err == nil && p != nil {
		if err = p.attach(dev, o.CollectiveTimeout); err != nil {
			_ = dev.Close()
		}
	}
	if err != nil {
		p.close()
		return nil, err
	}
	if p != nil && p.Rank != 0 {
		hooks = Hooks{} // rank 0 reports for the job
	}
	r := &Run{o: o, cfg: job.Config, hooks: hooks, dev: dev, train: job.Train, test: job.Test, st: newState(), source: job.DataSource, procs: p}
	if r.source == "" {
		r.source = job.Train.Source
	}
	if r.hooks.Log == nil {
		r.hooks.Log = io.Discard
	}
	r.perEpoch = r.train.N / o.Ranks / r.cfg.BatchSize
	r.st.World = o.Ranks
	if err := r.build(); err != nil {
		r.Close()
		return nil, err
	}
	if err := r.start(res); err != nil {
		r.Close()
		return nil, err
	}
	return r, nil
}

// lead reports whether this process writes the job's outputs: always in one process, rank 0's
// with one process per rank.
func (r *Run) lead() bool { return r.procs == nil || r.procs.Rank == 0 }

// prepare validates a job and inspects its results directory.
func prepare(job *Job) (*Resumable, error) {
	if err := job.Options.Validate(); err != nil {
		return nil, err
	}
	// One process per rank: each process has one rank, and procs.openDevice checks its GPU.
	if job.Dist != "mpi" && job.Dist != "nccl" {
		if err := device.CheckWorld(job.Device, job.Ranks, job.VirtualGPUs); err != nil {
			return nil, err
		}
	}
	if err := job.Config.Validate(); err != nil {
		return nil, fmt.Errorf("invalid model configuration: %v", err)
	}
	if job.Train == nil || job.Test == nil {
		return nil, fmt.Errorf("train: a job needs both a training and a test set")
	}
	for _, d := range []struct {
		ds    *data.Dataset
		split string
	}{{job.Train, "train"}, {job.Test, "test"}} {
		if err := CheckDataset(job.Config, d.ds, d.split); err != nil {
			return nil, err
		}
	}
	b, n := job.Config.BatchSize, job.Train.N
	if b > n {
		return nil, fmt.Errorf("--batch_size %d is larger than the %d training images", b, n)
	}
	if job.Ranks > 1 && b > n/job.Ranks {
		return nil, fmt.Errorf("--num_gpus %d, --batch_size %d: each replica's shard of the %d training images has only %d", job.Ranks, b, n, n/job.Ranks)
	}
	res, err := Inspect(job.Results)
	if err != nil || res == nil {
		return nil, err
	}
	return res, checkResume(res, job)
}

// build makes the model, optimizer, moving average and the other ranks.
func (r *Run) build() error {
	err := r.dev.Do(func() error {
		var err error
		r.m, r.opt, r.ema, err = newReplica(r.cfg, r.dev, r.perEpoch)
		return err
	})
	if err != nil {
		return err
	}
	r.sched = r.cfg.Schedule(r.perEpoch)
	// One process per rank always takes the data-parallel path, even in a world of one (mpirun -np 1,
	// or NCCL alone), whose step agreement the loop relies on.
	if r.o.Ranks > 1 || r.procs != nil {
		r.ddp, err = newDDP(r, r.o.Device, r.o.Ranks)
	}
	return err
}

// start describes the job, then resumes or initialises it and opens the logs.
func (r *Run) start(res *Resumable) error {
	o, cfg, out := r.o, r.cfg, r.hooks.Log
	fmt.Fprintf(out, "model:   %s\n", Describe(cfg, r.m.NumParams()))
	fmt.Fprintf(out, "device:  %s; convolutions in %s\n", r.dev.Desc, cfg.ConvPrecision(r.m.Backend()))
	if o.Ranks > 1 {
		how := "gradients averaged by a ring all-reduce"
		if r.procs != nil {
			how = r.procs.how
		}
		fmt.Fprintf(out, "replicas: %d data-parallel ranks, %s; batch %d per rank (%d per step), rank 0 writes the results\n",
			o.Ranks, how, cfg.BatchSize, o.Ranks*cfg.BatchSize)
	}
	fmt.Fprintf(out, "data:    %s: %d training images (%d steps of %d per epoch), %d test images, from %s\n",
		cfg.Problem, r.train.N, r.perEpoch, o.Ranks*cfg.BatchSize, r.test.N, r.source)
	report := func(line string) { fmt.Fprintln(out, line) }
	r.ckpts = &checkpointSet{results: o.Results, good: map[string]bool{}, report: report}
	if r.lead() {
		if err := os.MkdirAll(o.Results, 0o755); err != nil {
			return fmt.Errorf("--results_dir: %v", err)
		}
		if err := tidyResults(o.Results, report); err != nil {
			return fmt.Errorf("--results_dir %s: %v", o.Results, err)
		}
	}
	if res != nil {
		if err := r.resume(res, report); err != nil {
			return err
		}
	} else if err := r.begin(); err != nil {
		return err
	}
	if r.lead() {
		if err := writeConfigJSON(o.Results, cfg, report); err != nil {
			return err
		}
		if err := r.openLogs(); err != nil {
			return err
		}
	}
	r.sessionStart = time.Now()
	r.secondsBase = r.st.Seconds
	if res == nil {
		// Step 0 is the checkpoint a non-finite loss falls back to before any other exists.
		if err := r.save(); err != nil {
			return err
		}
	}
	r.lastSave, r.lastSavedStep = time.Now(), r.st.Step
	return nil
}

// resume moves the damaged checkpoints aside and loads the newest good one into every rank.
func (r *Run) resume(res *Resumable, report func(string)) error {
	for _, d := range res.Damaged {
		if !r.lead() {
			break
		}
		msg, err := quarantine(d.Path, d.Err)
		if err != nil {
			return err
		}
		report(msg)
	}
	r.ckpts.add(res.From.Path)
	var info CheckpointInfo
	err := r.dev.Do(func() error {
		var err error
		info, err = LoadCheckpoint(res.From.Path, r.m, r.opt, r.ema)
		return err
	})
	if err == nil && r.ddp != nil {
		err = r.ddp.loadReplicas(res.From.Path)
	}
	if err != nil {
		return err
	}
	r.st = info.State
	fmt.Fprintf(r.hooks.Log, "results: %s (resuming at step %d, epoch %d, batch %d of %d)\n", r.o.Results, r.st.Step, r.st.Pos.Epoch, r.st.Pos.Index, r.perEpoch)
	return nil
}

// newReplica builds a model with its optimizer and (when the config asks for one) moving average
// on dev; it runs inside dev's work unit.
func newReplica(cfg dlf.Config, dev *device.Device, perEpoch int) (*dlf.Model, *optim.Optimizer, *optim.EMA, error) {
	m, err := dlf.New(cfg, dev.Backend, tensor.Float32)
	if err != nil {
		return nil, nil, nil, err
	}
	opt, err := optim.New(cfg.OptimConfig(perEpoch), m.OptimParams())
	if err != nil {
		return nil, nil, nil, err
	}
	var ema *optim.EMA
	switch {
	case cfg.PolyakDecay > 0 && cfg.PolyakWarmup:
		ema, err = optim.NewEMAWarmup(cfg.PolyakDecay, m.OptimParams())
	case cfg.PolyakDecay > 0:
		ema, err = optim.NewEMA(cfg.PolyakDecay, m.OptimParams())
	}
	return m, opt, ema, err
}

// batchInput preprocesses a batch's images with the dequantisation noise of stream seed at
// offset, and builds its class condition (nil for an unconditional model); it returns the next
// unused noise offset. The caller releases x and cond.
func batchInput(m *dlf.Model, images []uint8, n int, labels []int32, seed, offset uint64) (x, cond *tensor.Tensor, next uint64, err error) {
	if x, next, err = m.Preprocess(images, n, false, seed, offset); err != nil {
		return nil, nil, offset, err
	}
	if cond, err = Condition(m, labels); err != nil {
		x.Release()
		return nil, nil, offset, err
	}
	return x, cond, next, nil
}

// begin starts a new run: Glow's data-dependent initialisation, copied to every rank.
func (r *Run) begin() error {
	fmt.Fprintf(r.hooks.Log, "results: %s (new run)\n", r.o.Results)
	if !r.m.NeedsDataInit() {
		return nil
	}
	if r.lead() {
		if err := r.dataInit(); err != nil {
			return err
		}
	}
	if r.ddp != nil {
		return r.ddp.broadcastParams()
	}
	return nil
}

// Close releases the replicas, the process group and the device.
func (r *Run) Close() error {
	r.closeLogs()
	if r.ddp != nil {
		r.ddp.close()
		r.ddp = nil
	}
	// The process group before the device: an NCCL communicator lives on it.
	r.procs.close()
	r.procs = nil
	if r.dev == nil {
		return nil
	}
	if r.sg != nil || r.graphIn != nil {
		_ = r.dev.Do(func() error {
			if r.sg != nil {
				r.sg.release()
			}
			if r.graphIn != nil {
				r.graphIn.release()
			}
			return nil
		})
		r.sg, r.graphIn = nil, nil
	}
	if r.def.own.buf != nil {
		_ = r.dev.Do(func() error {
			r.def.own.release()
			return nil
		})
	}
	err := r.dev.Close()
	r.dev = nil
	return err
}

// Model returns rank 0's model (for sampling from a Hooks.Samples callback, say).
func (r *Run) Model() *dlf.Model { return r.m }

// Device returns rank 0's device; model work must run inside its Do.
func (r *Run) Device() *device.Device { return r.dev }

// State returns the training state: step, data position, best test result.
func (r *Run) State() State { return r.st }

// Config returns the model configuration being trained.
func (r *Run) Config() dlf.Config { return r.cfg }

// Options returns the run's options.
func (r *Run) Options() Options { return r.o }

// Replicas returns every rank's model, rank 0's first (one model without data parallelism).
func (r *Run) Replicas() []*dlf.Model {
	if r.ddp == nil {
		return []*dlf.Model{r.m}
	}
	ms := make([]*dlf.Model, len(r.ddp.ranks))
	for i, rk := range r.ddp.ranks {
		ms[i] = rk.m
	}
	return ms
}

// Describe is the one-line summary of a model.
func Describe(cfg dlf.Config, params int) string {
	kind := fmt.Sprintf("DLF (K=%d, %s)", cfg.Parts, map[int]string{0: "non-inverse", 1: "inverse"}[cfg.Decomposition])
	if cfg.Flow == dlf.FlowGlow {
		kind = fmt.Sprintf("Glow (%s coupling, %s invconv)", cfg.Coupling, cfg.InvConv)
	}
	cond := ""
	if cfg.Conditioning {
		cond = ", class-conditional"
	}
	return fmt.Sprintf("%s, %d levels × depth %d, width %d%s, %d-bit, %s; %s parameters",
		kind, cfg.Levels, cfg.Depth, cfg.Width, cond, cfg.NumBits, cfg.Optimizer, dlf.FormatCount(params))
}

// dataInit runs Glow's data-dependent actnorm initialisation on a fixed sample of training images
// (Glow's n_batch_init = 256, or fewer for small sets).
func (r *Run) dataInit() error {
	n := min(256, r.train.N)
	perm := data.EpochPermutation(r.train.N, r.cfg.Seed^0x696e6974, 0) // "init"
	sub, err := r.train.Subset(perm[:n])
	if err != nil {
		return err
	}
	return r.dev.Do(func() error {
		x, cond, _, err := batchInput(r.m, sub.Images, n, sub.Labels, r.cfg.Seed^0x696e6974, 0)
		if err != nil {
			return err
		}
		defer release(x, cond)
		return r.m.DataInit(x, cond)
	})
}

// Condition returns the one-hot class condition of a batch for a class-conditional model, and nil
// for an unconditional one, so every caller feeds Forward and DataInit the same way.
func Condition(m *dlf.Model, labels []int32) (*tensor.Tensor, error) {
	if !m.Config().Conditioning {
		return nil, nil
	}
	return m.OneHot(labels)
}

func release(ts ...*tensor.Tensor) {
	for _, x := range ts {
		if x != nil {
			x.Release()
		}
	}
}

// writeConfigJSON writes the run's configuration to results/config.json for people and tools. The
// checkpoint, not this file, is what a resumed run trusts; a config.json that no longer parses is
// kept as config.json.damaged and reported before it is replaced.
func writeConfigJSON(results string, cfg dlf.Config, report func(string)) error {
	path := filepath.Join(results, "config.json")
	if old, err := os.ReadFile(path); err == nil {
		if _, perr := dlf.ParseConfig(old); perr != nil {
			if err := os.Rename(path, path+damagedSuffix); err != nil {
				return fmt.Errorf("moving the damaged %s aside: %v", path, err)
			}
			report(fmt.Sprintf("warning: %s is damaged (%v); kept it as %s and wrote the configuration of the checkpoint", path, perr, filepath.Base(path)+damagedSuffix))
		}
	}
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, []byte(cfg.JSON()+"\n"), 0o644); err != nil {
		return err
	}
	return os.Rename(tmp, path)
}
