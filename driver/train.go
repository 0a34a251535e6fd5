package main

import (
	"errors"
	"fmt"
	"io"
	"math"
	"os"
	"os/signal"
	"path/filepath"
	"sync/atomic"
	"syscall"
	"time"

	"dlf/autodiff"
	"dlf/autodiff/optim"
	"dlf/data"
	"dlf/dlf"
	"dlf/tensor"
	"dlf/train/fault"

	"github.com/urfave/cli/v2"
)

// Seeds of the Philox streams besides the training noise (which uses the config's seed itself):
// the test set's dequantisation noise and the noise of the sample grids. Fixed offsets from the
// seed keep the streams disjoint, so evaluating or sampling never shifts the training noise, and the
// same test noise and sample noise are used every epoch, which makes epochs comparable.
const (
	testSeedSalt   = 0x7465737400000000 // "test"
	sampleSeedSalt = 0x73616d7000000000 // "samp"
)

// cpuDefaults is the model `train` uses on the CPU when neither --preset nor a size flag is given.
// The mnist preset (depth 32, width 128, batch 256; 1.8M parameters) runs at about 25 images/s on a
// 2-core CPU, so an epoch takes ~40 minutes before the first samples appear. Depth 8, width 64 and
// batch 64 (0.17M parameters) trains at roughly 4× that rate, shows a falling loss within seconds
// and finishes an MNIST epoch in a few minutes (README, "Training"). --preset mnist trains the
// preset as published on any device.
var cpuDefaults = struct{ depth, width, batch int }{depth: 8, width: 64, batch: 64}

func trainCommand() *cli.Command {
	flags := append(problemFlags(),
		&cli.StringFlag{Name: "preset", Usage: "model and training preset: " + joinNames(dlf.PresetNames()) + " (default: the problem's)"},
		deviceFlag,
		&cli.StringFlag{Name: "results_dir", Usage: "where checkpoints, CSV logs, samples and plots go; rerunning on the same directory resumes (default: results/<preset>)"},
		&cli.IntFlag{Name: "num_epoch", Value: 10000, Usage: "epochs to train (the reference's default: until stopped)"},
		&cli.IntFlag{Name: "max_steps", Usage: "stop after this many optimizer steps in total (0: no limit)"},
		&cli.DurationFlag{Name: "max_time", Usage: "stop after this much training time in this session, e.g. 2m or 1h30m (0: no limit)"},
		&cli.StringFlag{Name: "nan_policy", Value: "stop", Usage: "on a non-finite loss: stop, or lower_lr (restore the last checkpoint, halve the learning rate, continue)"},
		&cli.IntFlag{Name: "keep_checkpoints", Value: 2, Usage: "rolling checkpoints kept (besides best.safetensors)"},
		&cli.DurationFlag{Name: "checkpoint_every", Value: 10 * time.Minute, Usage: "also checkpoint this often within an epoch"},
		&cli.IntFlag{Name: "print_per_steps", Value: 100, Usage: "steps between log lines when the output is not a terminal (and rows of steps.csv)"},
		&cli.IntFlag{Name: "test_per_epochs", Value: 1, Usage: "epochs between test-set evaluations"},
		&cli.IntFlag{Name: "valid_per_steps", Value: 0, Usage: "also evaluate the test set every this many steps (0: only at epoch ends)"},
		&cli.StringFlag{Name: "temperatures", Value: "0,0.5,0.7,0.8,0.9,1", Usage: "sampling temperatures of the per-epoch sample grids"},
		&cli.IntFlag{Name: "num_samples", Value: 100, Usage: "images per sample grid"},
		&cli.IntFlag{Name: "sample_per_epochs", Value: 1, Usage: "epochs between sample grids and loss-plot updates (0: never, e.g. for tiny --train_subset runs)"},
		&cli.IntFlag{Name: "train_subset", Usage: "train on the first N training images only (0: all), for quick experiments"},
		&cli.IntFlag{Name: "test_subset", Usage: "evaluate on the first N test images only (0: all)"},
		&cli.IntFlag{Name: "workers", Value: 2, Usage: "batch-assembling goroutines of the data loader"},
		&cli.IntFlag{Name: "num_gpus", Value: 1, Usage: "data-parallel replicas: N GPUs with --device cuda, N goroutine replicas with --device cpu; --batch_size is per replica"},
		&cli.BoolFlag{Name: "virtual_gpus", Usage: "with --device cuda, put all --num_gpus replicas on GPU 0 (own streams and memory): data-parallel training on a one-GPU machine, for testing"},
	)
	for _, f := range configFlags() {
		flags = append(flags, f.flag)
	}
	return &cli.Command{
		Name:  "train",
		Usage: "train a DLF or Glow model, resuming from --results_dir when it holds a checkpoint",
		Description: "Trains the preset of --problem (or --preset), overridden by the model and optimizer flags. " +
			"Writes train.csv, test.csv, steps.csv, loss.png, samples/, checkpoints/ and best.safetensors under --results_dir. " +
			"Ctrl-C saves a checkpoint and exits; a second Ctrl-C exits at once.",
		Flags:  flags,
		Action: runTrain,
	}
}

// trainOpts are the driver's own training options (not part of the model config).
type trainOpts struct {
	results     string
	numEpoch    int
	maxSteps    int
	maxTime     time.Duration
	nanPolicy   string
	keep        int
	ckptEvery   time.Duration
	printEvery  int
	testEvery   int
	validEvery  int
	temps       []float64
	gridN       int
	sampleEvery int
	trainSubset int
	testSubset  int
	workers     int
	deviceKind  string
	presetName  string
	cpuReduced  bool
	resumeFrom  *checkpointInfo
	// damaged are the checkpoints newer than resumeFrom that cannot be resumed, with why; the run
	// moves them aside (never deletes them) and reports each once.
	damaged []damagedCheckpoint
	// world is --num_gpus: the number of data-parallel ranks (ddp.go).
	world int
	// virtual is --virtual_gpus: every CUDA rank on GPU 0.
	virtual bool
}

func parseTrainOpts(c *cli.Context) (trainOpts, error) {
	o := trainOpts{
		numEpoch: c.Int("num_epoch"), maxSteps: c.Int("max_steps"), maxTime: c.Duration("max_time"),
		nanPolicy: c.String("nan_policy"), keep: c.Int("keep_checkpoints"), ckptEvery: c.Duration("checkpoint_every"),
		printEvery: c.Int("print_per_steps"), testEvery: c.Int("test_per_epochs"), validEvery: c.Int("valid_per_steps"),
		gridN: c.Int("num_samples"), sampleEvery: c.Int("sample_per_epochs"), trainSubset: c.Int("train_subset"), testSubset: c.Int("test_subset"), workers: c.Int("workers"),
	}
	switch {
	case o.numEpoch < 1:
		return o, fmt.Errorf("--num_epoch %d: want at least 1", o.numEpoch)
	case o.maxSteps < 0:
		return o, fmt.Errorf("--max_steps %d is negative", o.maxSteps)
	case o.maxTime < 0:
		return o, fmt.Errorf("--max_time %v is negative", o.maxTime)
	case o.nanPolicy != "stop" && o.nanPolicy != "lower_lr":
		return o, fmt.Errorf("--nan_policy %q: want stop or lower_lr", o.nanPolicy)
	case o.keep < 1:
		return o, fmt.Errorf("--keep_checkpoints %d: want at least 1", o.keep)
	case o.ckptEvery <= 0:
		return o, fmt.Errorf("--checkpoint_every %v: want a positive duration", o.ckptEvery)
	case o.printEvery < 1:
		return o, fmt.Errorf("--print_per_steps %d: want at least 1", o.printEvery)
	case o.testEvery < 1:
		return o, fmt.Errorf("--test_per_epochs %d: want at least 1", o.testEvery)
	case o.validEvery < 0:
		return o, fmt.Errorf("--valid_per_steps %d is negative", o.validEvery)
	case o.gridN < 1:
		return o, fmt.Errorf("--num_samples %d: want at least 1", o.gridN)
	case o.sampleEvery < 0:
		return o, fmt.Errorf("--sample_per_epochs %d is negative", o.sampleEvery)
	case o.trainSubset < 0 || o.testSubset < 0:
		return o, fmt.Errorf("--train_subset and --test_subset must not be negative")
	case o.workers < 1:
		return o, fmt.Errorf("--workers %d: want at least 1", o.workers)
	}
	o.world, o.virtual = c.Int("num_gpus"), c.Bool("virtual_gpus")
	var err error
	if o.temps, err = parseTemperatures(c.String("temperatures")); err != nil {
		return o, err
	}
	if o.deviceKind, err = resolveDevice(c.String("device")); err != nil {
		return o, err
	}
	if err := checkWorld(o.deviceKind, o.world, o.virtual); err != nil {
		return o, err
	}
	return o, nil
}

// damagedCheckpoint is a rolling checkpoint that failed to load, and why.
type damagedCheckpoint struct {
	path string
	err  error
}

// trainPlan is a validated training job: everything is checked, nothing is written yet.
type trainPlan struct {
	o           trainOpts
	cfg         dlf.Config
	spec        dataSpec
	train, test *data.Dataset
}

// planTrain validates every flag, the dataset and any checkpoint to resume before work starts.
func planTrain(c *cli.Context) (*trainPlan, error) {
	if c.NArg() > 0 {
		return nil, fmt.Errorf("train takes no arguments, got %q (flags go before arguments and start with --)", c.Args().First())
	}
	o, err := parseTrainOpts(c)
	if err != nil {
		return nil, err
	}
	problem := "mnist"
	if c.IsSet("problem") {
		problem = c.String("problem")
	}
	o.presetName = c.String("preset")
	if o.presetName == "" {
		o.presetName, _ = presetForProblem(problem)
	}
	o.results = c.String("results_dir")
	if o.results == "" {
		name := o.presetName
		if name == "" {
			name = problem
		}
		o.results = filepath.Join("results", name)
	}

	// A results directory with checkpoints is resumed: its configuration wins over the preset, and
	// flags may only change what does not define the parameters.
	cks, err := listCheckpoints(o.results)
	if err != nil {
		return nil, fmt.Errorf("--results_dir %s: %v", o.results, err)
	}
	for _, p := range cks {
		info, err := readCheckpointInfo(p)
		if err == nil && info.hasTrain {
			o.resumeFrom = &info
			break
		}
		if err == nil {
			err = fmt.Errorf("%s has no training state", p)
		}
		o.damaged = append(o.damaged, damagedCheckpoint{p, err})
	}
	if len(cks) > 0 && o.resumeFrom == nil {
		return nil, fmt.Errorf("--results_dir %s holds checkpoints but none can be resumed (%v); use another --results_dir", o.results, o.damaged[0].err)
	}

	var cfg dlf.Config
	var spec dataSpec
	if r := o.resumeFrom; r != nil {
		cfg = r.cfg
		if c.IsSet("problem") && problem != cfg.Problem {
			if info, ok := data.LookupProblem(problem); !ok || info.Name != cfg.Problem {
				return nil, fmt.Errorf("--results_dir %s holds a %s run, not %s; use another --results_dir", o.results, cfg.Problem, problem)
			}
		}
		if spec, err = parseDataSpec(c, cfg.Problem); err != nil {
			return nil, err
		}
		spec.fitTo(cfg)
		if c.IsSet("preset") {
			pc, err := dlf.Preset(o.presetName)
			if err != nil {
				return nil, fmt.Errorf("--preset: %v", trimPkg(err))
			}
			shapeFromProblem(&pc, spec)
			pc.ImageH, pc.ImageW, pc.ImageC = cfg.ImageH, cfg.ImageW, cfg.ImageC
			if d := archDiff(cfg, pc); d != "" {
				return nil, fmt.Errorf("--results_dir %s holds a checkpoint of another configuration than --preset %s (%s); use another --results_dir", o.results, o.presetName, d)
			}
		}
		for _, f := range configFlags() {
			if !c.IsSet(f.name()) {
				continue
			}
			prev := cfg
			f.apply(c, &cfg)
			if d := archDiff(prev, cfg); f.arch && d != "" {
				return nil, fmt.Errorf("--results_dir %s holds a checkpoint of another configuration (%s); use another --results_dir, or drop --%s to resume", o.results, d, f.name())
			}
			if f.name() == "batch_size" && cfg.BatchSize != prev.BatchSize {
				return nil, fmt.Errorf("--batch_size %d: the run in %s uses batch size %d, and its data position counts in those batches; use another --results_dir", cfg.BatchSize, o.results, prev.BatchSize)
			}
		}
	} else {
		if spec, err = parseDataSpec(c, problem); err != nil {
			return nil, err
		}
		if o.presetName == "" {
			return nil, fmt.Errorf("--problem %s has no preset: choose a model with --preset (one of %s)", spec.problem, joinNames(dlf.PresetNames()))
		}
		if cfg, err = dlf.Preset(o.presetName); err != nil {
			return nil, fmt.Errorf("--preset: %v", trimPkg(err))
		}
		shapeFromProblem(&cfg, spec)
		if o.deviceKind == "cpu" && !c.IsSet("preset") && !c.IsSet("depth") && !c.IsSet("width") && !c.IsSet("batch_size") {
			cfg.Depth, cfg.Width, cfg.BatchSize = cpuDefaults.depth, cpuDefaults.width, cpuDefaults.batch
			o.cpuReduced = true
		}
		for _, f := range configFlags() {
			if c.IsSet(f.name()) {
				f.apply(c, &cfg)
			}
		}
	}
	if cfg.BatchSize < 1 {
		return nil, fmt.Errorf("--batch_size %d: want at least 1", cfg.BatchSize)
	}
	if cfg.ImageH > 0 {
		if err := configError(cfg.Validate()); err != nil {
			return nil, err
		}
	}

	// The data: present, of the model's shape, labelled when conditioning, big enough for a batch.
	train, err := spec.open("train")
	if err != nil {
		return nil, err
	}
	if cfg.ImageH == 0 {
		cfg.ImageH, cfg.ImageW, cfg.ImageC = train.H, train.W, train.C
		if err := configError(cfg.Validate()); err != nil {
			return nil, err
		}
	}
	test, err := spec.open("test")
	if err != nil {
		if spec.problem != "folder" {
			return nil, err
		}
		// An image folder without test/: hold out 5% of it (at least one image) for evaluation.
		var terr error
		if train, test, terr = data.CarveValidation(train, data.ValSplit{Count: max(1, train.N/20), Seed: cfg.Seed}); terr != nil {
			return nil, fmt.Errorf("--data_dir %s: %v", spec.dir, trimPkg(terr))
		}
	}
	if train, err = subset(train, o.trainSubset, "--train_subset"); err != nil {
		return nil, err
	}
	if test, err = subset(test, o.testSubset, "--test_subset"); err != nil {
		return nil, err
	}
	for _, d := range []struct {
		ds    *data.Dataset
		split string
	}{{train, "train"}, {test, "test"}} {
		if err := checkDatasetFits(&cfg, d.ds, d.split); err != nil {
			return nil, err
		}
	}
	if cfg.BatchSize > train.N {
		return nil, fmt.Errorf("--batch_size %d is larger than the %d training images", cfg.BatchSize, train.N)
	}
	if o.world > 1 && cfg.BatchSize > train.N/o.world {
		return nil, fmt.Errorf("--num_gpus %d, --batch_size %d: each replica's shard of the %d training images has only %d", o.world, cfg.BatchSize, train.N, train.N/o.world)
	}
	if r := o.resumeFrom; r != nil {
		if w := max(1, r.state.World); w != o.world {
			return nil, fmt.Errorf("--num_gpus %d: the run in %s was trained with --num_gpus %d, and its data position counts in that many shards; resume with --num_gpus %d or use another --results_dir", o.world, o.results, w, w)
		}
		if per := train.N / o.world / cfg.BatchSize; r.state.Pos.Index > per {
			return nil, fmt.Errorf("the checkpoint in %s is at batch %d of an epoch, but the training set has only %d batches (another --train_subset?)", o.results, r.state.Pos.Index, per)
		}
	}
	return &trainPlan{o: o, cfg: cfg, spec: spec, train: train, test: test}, nil
}

// subset keeps the first n images of ds (n = 0: all).
func subset(ds *data.Dataset, n int, flag string) (*data.Dataset, error) {
	if n == 0 || n >= ds.N {
		return ds, nil
	}
	idx := make([]int, n)
	for i := range idx {
		idx[i] = i
	}
	out, err := ds.Subset(idx)
	if err != nil {
		return nil, fmt.Errorf("%s %d: %v", flag, n, trimPkg(err))
	}
	return out, nil
}

// trainer runs a planned job.
type trainer struct {
	o           trainOpts
	cfg         dlf.Config
	dev         *device
	m           *dlf.Model
	opt         *optim.Optimizer
	ema         *optim.EMA
	sched       optim.Schedule
	train, test *data.Dataset
	perEpoch    int
	st          trainState
	out         io.Writer
	stop        *atomic.Bool
	prog        *progress
	ddp         *ddp // nil for a single device
	// ckpts are the rolling checkpoints known to load, which --keep_checkpoints counts.
	ckpts *checkpointSet

	stepsLog, trainLog, testLog *csvLog
	sessionStart                time.Time
	secondsBase                 float64
	lastSave                    time.Time
	lastSavedStep               int
}

func runTrain(c *cli.Context) error {
	plan, err := planTrain(c)
	if err != nil {
		return err
	}
	out := c.App.Writer
	stop := &atomic.Bool{}
	sigc := make(chan os.Signal, 2)
	signal.Notify(sigc, os.Interrupt, syscall.SIGTERM)
	done := make(chan struct{})
	defer func() {
		signal.Stop(sigc)
		close(done)
	}()
	go func() {
		n := 0
		for {
			select {
			case <-sigc:
				n++
				if n > 1 {
					fmt.Fprintln(c.App.ErrWriter, "\ninterrupted again: exiting without saving")
					os.Exit(130)
				}
				stop.Store(true)
				fmt.Fprintln(c.App.ErrWriter, "\ninterrupt: saving a checkpoint after the current step (Ctrl-C again to quit at once)")
			case <-done:
				return
			}
		}
	}()
	return trainWith(plan, out, stop)
}

// trainWith builds the model and runs the job; stop requests a clean stop.
func trainWith(plan *trainPlan, out io.Writer, stop *atomic.Bool) error {
	o, cfg := plan.o, plan.cfg
	var dev *device
	var err error
	if o.world > 1 {
		dev, err = openRankDevice(o.deviceKind, 0, o.world, o.virtual)
	} else {
		dev, err = openDevice(o.deviceKind)
	}
	if err != nil {
		return err
	}
	defer dev.close()
	t := &trainer{o: o, cfg: cfg, dev: dev, train: plan.train, test: plan.test, out: out, stop: stop, st: newTrainState()}
	t.perEpoch = t.train.N / o.world / cfg.BatchSize
	t.st.World = o.world

	err = dev.do(func() error {
		var err error
		if t.m, err = dlf.New(cfg, dev.be, tensor.Float32); err != nil {
			return configError(err)
		}
		if t.opt, err = optim.New(cfg.OptimConfig(t.perEpoch), t.m.OptimParams()); err != nil {
			return err
		}
		if cfg.PolyakDecay > 0 {
			if t.ema, err = optim.NewEMA(cfg.PolyakDecay, t.m.OptimParams()); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return err
	}
	t.sched = cfg.Schedule(t.perEpoch)
	if o.world > 1 {
		if t.ddp, err = newDDP(t, o.deviceKind, o.world); err != nil {
			return err
		}
		defer t.ddp.close()
		if ddpFinished != nil {
			defer func() {
				ms := make([]*dlf.Model, len(t.ddp.ranks))
				for i, rk := range t.ddp.ranks {
					ms[i] = rk.m
				}
				ddpFinished(ms)
			}()
		}
	}

	// Describe the job before the first step, as the reference does (parameter count first).
	fmt.Fprintf(out, "model:   %s\n", describeModel(cfg, t.m.NumParams()))
	if o.cpuReduced {
		full, _ := dlf.Preset(o.presetName)
		fmt.Fprintf(out, "         (the CPU default: the %s preset at depth %d, width %d, batch %d; --preset %s trains the full %s-parameter model)\n",
			o.presetName, cfg.Depth, cfg.Width, cfg.BatchSize, o.presetName, commas(full.NumParams()))
	}
	fmt.Fprintf(out, "device:  %s\n", dev.desc)
	if o.world > 1 {
		fmt.Fprintf(out, "replicas: %d data-parallel ranks, gradients averaged by a ring all-reduce; batch %d per rank (%d per step), rank 0 writes the results\n",
			o.world, cfg.BatchSize, o.world*cfg.BatchSize)
	}
	fmt.Fprintf(out, "data:    %s: %d training images (%d steps of %d per epoch), %d test images, from %s\n",
		cfg.Problem, t.train.N, t.perEpoch, o.world*cfg.BatchSize, t.test.N, plan.spec.dir)

	if err := os.MkdirAll(o.results, 0o755); err != nil {
		return fmt.Errorf("--results_dir: %v", err)
	}
	report := func(line string) { fmt.Fprintln(out, line) }
	t.ckpts = &checkpointSet{results: o.results, good: map[string]bool{}, report: report}
	if err := tidyResults(o.results, report); err != nil {
		return fmt.Errorf("--results_dir %s: %v", o.results, err)
	}
	if r := o.resumeFrom; r != nil {
		for _, d := range o.damaged {
			msg, err := quarantine(d.path, d.err)
			if err != nil {
				return err
			}
			report(msg)
		}
		t.ckpts.add(r.path)
		var info checkpointInfo
		err := dev.do(func() error {
			var err error
			info, err = loadCheckpoint(r.path, t.m, t.opt, t.ema)
			return err
		})
		if err == nil && t.ddp != nil {
			err = t.ddp.loadReplicas(r.path)
		}
		if err != nil {
			return err
		}
		t.st = info.state
		fmt.Fprintf(out, "results: %s (resuming at step %d, epoch %d, batch %d of %d)\n", o.results, t.st.Step, t.st.Pos.Epoch, t.st.Pos.Index, t.perEpoch)
	} else {
		fmt.Fprintf(out, "results: %s (new run)\n", o.results)
		if t.m.NeedsDataInit() {
			if err := t.dataInit(); err != nil {
				return err
			}
			if t.ddp != nil {
				if err := t.ddp.broadcastParams(); err != nil {
					return err
				}
			}
		}
	}
	if err := writeConfigJSON(o.results, cfg, report); err != nil {
		return err
	}
	if err := t.openLogs(); err != nil {
		return err
	}
	defer t.closeLogs()

	t.sessionStart = time.Now()
	t.secondsBase = t.st.Seconds
	if o.resumeFrom == nil {
		// Step 0 is the checkpoint a non-finite loss falls back to before any other exists.
		if err := t.save(); err != nil {
			return err
		}
	}
	t.lastSave, t.lastSavedStep = time.Now(), t.st.Step
	return t.run()
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
			report(fmt.Sprintf("warning: %s is damaged (%v); kept it as %s and wrote the configuration of the checkpoint", path, trimPkg(perr), filepath.Base(path)+damagedSuffix))
		}
	}
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, []byte(cfg.JSON()+"\n"), 0o644); err != nil {
		return err
	}
	return os.Rename(tmp, path)
}

// openLogs opens the CSV logs, dropping the rows past the state's step: a resumed run writes them
// again, and a new run (step 0) starts its logs afresh. With an epoch end pending, that epoch's test
// row (written at the same step, after the checkpoint) is dropped too, since the epoch end is redone.
func (t *trainer) openLogs() error {
	t.closeLogs()
	keepTest := t.st.Step
	if t.st.PendingEpochEnd >= 0 {
		keepTest--
	}
	var err error
	if t.stepsLog, err = openCSV(filepath.Join(t.o.results, "steps.csv"), stepColumns, t.st.Step); err != nil {
		return err
	}
	if t.trainLog, err = openCSV(filepath.Join(t.o.results, "train.csv"), metricColumns, t.st.Step); err != nil {
		return err
	}
	t.testLog, err = openCSV(filepath.Join(t.o.results, "test.csv"), metricColumns, keepTest)
	return err
}

// closeLogs closes whichever CSV logs are open.
func (t *trainer) closeLogs() {
	for _, l := range []**csvLog{&t.stepsLog, &t.trainLog, &t.testLog} {
		(*l).close()
		*l = nil
	}
}

// describeModel is the one-line summary printed at start-up.
func describeModel(cfg dlf.Config, params int) string {
	kind := fmt.Sprintf("DLF (K=%d, %s)", cfg.Parts, map[int]string{0: "non-inverse", 1: "inverse"}[cfg.Decomposition])
	if cfg.Flow == dlf.FlowGlow {
		kind = fmt.Sprintf("Glow (%s coupling, %s invconv)", cfg.Coupling, cfg.InvConv)
	}
	cond := ""
	if cfg.Conditioning {
		cond = ", class-conditional"
	}
	return fmt.Sprintf("%s, %d levels × depth %d, width %d%s, %d-bit, %s; %s parameters",
		kind, cfg.Levels, cfg.Depth, cfg.Width, cond, cfg.NumBits, cfg.Optimizer, commas(params))
}

// dataInit runs Glow's data-dependent actnorm initialisation on a fixed sample of training images
// (Glow's n_batch_init = 256, or fewer for small sets).
func (t *trainer) dataInit() error {
	n := min(256, t.train.N)
	perm := data.EpochPermutation(t.train.N, t.cfg.Seed^0x696e6974, 0) // "init"
	sub, err := t.train.Subset(perm[:n])
	if err != nil {
		return err
	}
	return t.dev.do(func() error {
		x, _, err := t.m.Preprocess(sub.Images, n, false, t.cfg.Seed^0x696e6974, 0)
		if err != nil {
			return err
		}
		defer x.Release()
		cond, err := condition(t.m, sub.Labels)
		if err != nil {
			return err
		}
		defer release(cond)
		return t.m.DataInit(x, cond)
	})
}

// condition returns the one-hot class condition of a batch for a class-conditional model, and nil
// for an unconditional one, so every caller feeds Forward and DataInit the same way.
func condition(m *dlf.Model, labels []int32) (*tensor.Tensor, error) {
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

// nonFiniteParam returns the first parameter holding a NaN or infinity, or "".
func nonFiniteParam(m *dlf.Model) string {
	for _, p := range m.Params() {
		if ok, _ := allFinite(p.Var.Value); !ok {
			return p.Name
		}
	}
	return ""
}

// save writes the rolling checkpoint of the current step and prunes old ones. It refuses to save
// parameters that are not finite (an update diverged without the loss showing it yet), so that the
// checkpoint a non-finite loss falls back to is always a good one.
func (t *trainer) save() error {
	t.st.Seconds = t.seconds()
	if t.ddp != nil {
		// The checkpoint stands for every rank only if they are still in lockstep.
		if err := t.ddp.identical(); err != nil {
			return fmt.Errorf("step %d: data-parallel replicas diverged: %v", t.st.Step, err)
		}
	}
	var err error
	bad := ""
	derr := t.dev.do(func() error {
		if bad = nonFiniteParam(t.m); bad != "" {
			return nil
		}
		err = saveCheckpoint(stepPath(t.o.results, t.st.Step), t.m, t.opt, t.ema, t.st, rollingPhases)
		return nil
	})
	if bad != "" {
		return &nonFiniteError{step: t.st.Step, where: fmt.Sprintf("the update made parameter %s (layer %s) non-finite", bad, layerOf(bad))}
	}
	if err = errors.Join(err, derr); err != nil {
		return err
	}
	t.lastSave, t.lastSavedStep = time.Now(), t.st.Step
	t.ckpts.add(stepPath(t.o.results, t.st.Step))
	return t.ckpts.prune(t.o.keep)
}

// seconds is the training wall time of all sessions.
func (t *trainer) seconds() float64 {
	if t.sessionStart.IsZero() {
		return t.st.Seconds
	}
	return t.secondsBase + time.Since(t.sessionStart).Seconds()
}

// nonFiniteError reports a loss that is NaN or infinite, or an update that made a parameter so
// (loss 0).
type nonFiniteError struct {
	step  int
	loss  float64
	where string
}

func (e *nonFiniteError) Error() string {
	if !math.IsNaN(e.loss) && !math.IsInf(e.loss, 0) {
		return fmt.Sprintf("step %d: %s", e.step, e.where)
	}
	return fmt.Sprintf("step %d: the loss is %v: %s", e.step, e.loss, e.where)
}

// run trains until a budget, the epoch count or an interrupt stops it, recovering from non-finite
// losses as --nan_policy says.
func (t *trainer) run() error {
	for {
		err := t.loop()
		var nf *nonFiniteError
		if !errors.As(err, &nf) {
			return err
		}
		if t.prog != nil {
			t.prog.breakLine()
		}
		last, lerr := listCheckpoints(t.o.results)
		if lerr != nil || len(last) == 0 {
			return fmt.Errorf("%v; and no checkpoint to restore: %v", nf, lerr)
		}
		if t.o.nanPolicy == "stop" {
			info, _ := readCheckpointInfo(last[0])
			return fmt.Errorf("training stopped at %v; the last good checkpoint is %s (step %d): rerun to resume from it, with --nan_policy lower_lr or a lower --initial_lr", nf, last[0], info.state.Step)
		}
		fmt.Fprintf(t.out, "diverged at %v\n", nf)
		scale := t.st.LRScale
		var info checkpointInfo
		err = t.dev.do(func() error {
			var err error
			info, err = loadCheckpoint(last[0], t.m, t.opt, t.ema)
			if bad := nonFiniteParam(t.m); err == nil && bad != "" {
				err = fmt.Errorf("its parameter %s is not finite", bad)
			}
			return err
		})
		if err == nil && t.ddp != nil {
			err = t.ddp.loadReplicas(last[0])
		}
		if err != nil {
			return fmt.Errorf("%v; restoring %s failed: %v", nf, last[0], err)
		}
		secs := t.seconds()
		t.st = info.state
		t.st.LRScale = min(scale, info.state.LRScale) / 2
		t.secondsBase, t.sessionStart = secs, time.Now()
		if t.st.LRScale < 1.0/1024 {
			return fmt.Errorf("training stopped at %v; the learning rate was already lowered 10 times; the last good checkpoint is %s", nf, last[0])
		}
		fmt.Fprintf(t.out, "restored %s (step %d); continuing with the learning rate × %g\n", last[0], t.st.Step, t.st.LRScale)
		// Drop log rows of the abandoned steps.
		if err := t.openLogs(); err != nil {
			return err
		}
		if err := t.save(); err != nil {
			return err
		}
	}
}

// budgetReached returns why training should stop now, or "".
func (t *trainer) budgetReached() string {
	if t.o.maxSteps > 0 && t.st.Step >= t.o.maxSteps {
		return fmt.Sprintf("--max_steps %d reached", t.o.maxSteps)
	}
	if t.o.maxTime > 0 && time.Since(t.sessionStart) >= t.o.maxTime {
		return fmt.Sprintf("--max_time %v reached", t.o.maxTime)
	}
	return ""
}

// finish saves a checkpoint and says how the run ended.
func (t *trainer) finish(why string) error {
	if t.prog != nil {
		t.prog.breakLine()
	}
	if t.st.Step != t.lastSavedStep || t.st.PendingEpochEnd >= 0 {
		if err := t.save(); err != nil {
			return err
		}
	}
	fmt.Fprintf(t.out, "%s at step %d (epoch %d, batch %d of %d); checkpoint %s\n", why, t.st.Step, t.st.Pos.Epoch, t.st.Pos.Index, t.perEpoch, stepPath(t.o.results, t.st.Step))
	if t.st.BestStep >= 0 {
		fmt.Fprintf(t.out, "best test bits/dim %.4f at step %d (%s)\n", t.st.BestTest, t.st.BestStep, bestPath(t.o.results))
	}
	return nil
}

// loop is the training loop from the current state.
func (t *trainer) loop() error {
	// The progress line exists before anything can print, including a resumed run's pending epoch
	// end, which runs before the first step.
	t.prog = newProgress(t.out, t.o.printEvery)
	if e := t.st.PendingEpochEnd; e >= 0 {
		if err := t.epochEnd(e); err != nil {
			return err
		}
	}
	var loader *data.Loader
	var err error
	if t.ddp != nil {
		if err := t.ddp.openLoaders(t); err != nil {
			return err
		}
		loader = t.ddp.ranks[0].loader
		defer func() {
			for _, rk := range t.ddp.ranks {
				rk.closeLoader()
			}
		}()
	} else {
		loader, err = data.NewLoader(t.train, data.LoaderConfig{
			BatchSize: t.cfg.BatchSize, Shuffle: true, Seed: t.cfg.Seed, Epochs: t.o.numEpoch,
			DropLast: true, Workers: t.o.workers, Start: t.st.Pos,
		})
		if err != nil {
			return err
		}
		defer loader.Close()
	}
	epoch := -1
	var epochImages int
	var epochStart time.Time
	for {
		if t.stop.Load() {
			return t.finish("interrupted")
		}
		if why := t.budgetReached(); why != "" {
			return t.finish(why)
		}
		b, err := loader.Next()
		if err == io.EOF {
			return t.finish(fmt.Sprintf("finished %d epochs", t.o.numEpoch))
		}
		if err != nil {
			return err
		}
		if b.Pos.Epoch != epoch {
			epoch = b.Pos.Epoch
			t.prog.beginEpoch(epoch, t.perEpoch, b.Pos.Index)
			loader.ResetStats()
			epochImages, epochStart = 0, time.Now()
		}
		lr := t.sched.LR(t.st.Step) * t.st.LRScale
		var r stepResult
		images := b.N
		if t.ddp != nil {
			bs, err := t.ddp.nextBatches(b)
			if err != nil {
				return err
			}
			r, err = t.stepDDP(bs, lr)
			if err != nil {
				return err
			}
			images *= len(bs)
		} else if r, err = t.step(b, lr); err != nil {
			return err
		}
		t.st.Step++
		t.st.Pos = b.Next
		t.st.Sums.add(r.loss, r.bits, r.l2, images)
		epochImages += images
		ips := float64(epochImages) / time.Since(epochStart).Seconds()
		wait := loader.Stats().WaitFraction()
		t.prog.update(stepStats{Step: t.st.Step, EpochStep: b.Pos.Index + 1, Loss: r.loss, BitsPerDim: r.bits, ImagesPerSec: ips, DataWait: wait, LR: lr})
		if t.st.Step%t.o.printEvery == 0 || t.st.Step == 1 {
			if err := t.stepsLog.write(epoch, t.st.Step, r.loss, r.bits, r.l2, lr, ips, wait, t.seconds()); err != nil {
				return err
			}
		}
		if t.o.validEvery > 0 && t.st.Step%t.o.validEvery == 0 && !b.EpochEnd {
			if _, err := t.testRow(epoch); err != nil {
				return err
			}
		}
		if b.EpochEnd {
			loss, bits, l2 := t.st.Sums.mean()
			if err := t.trainLog.write(epoch, t.st.Step, loss, bits, 0.0, l2, t.seconds()); err != nil {
				return err
			}
			t.st.Sums = epochSums{}
			t.st.PendingEpochEnd = epoch
			if err := t.save(); err != nil {
				return err
			}
			fault.Point(fault.BeforeTest)
			if err := t.epochEnd(epoch); err != nil {
				return err
			}
		} else if time.Since(t.lastSave) >= t.o.ckptEvery {
			if err := t.save(); err != nil {
				return err
			}
		}
	}
}

// stepResult is one step's metrics.
type stepResult struct {
	loss, bits, l2 float64
}

// step trains on one batch: preprocess with the next dequantisation noise, forward, backward,
// optimizer and EMA update, all as one unit of device work. A non-finite loss leaves the model
// untouched and returns a *nonFiniteError naming the layer.
func (t *trainer) step(b *data.Batch, lr float64) (stepResult, error) {
	var r stepResult
	var next uint64
	bad := false
	err := t.dev.do(func() error {
		x, off, err := t.m.Preprocess(b.Images, b.N, false, t.cfg.Seed, t.st.NoiseOffset)
		if err != nil {
			return err
		}
		defer x.Release()
		cond, err := condition(t.m, b.Labels)
		if err != nil {
			return err
		}
		defer release(cond)
		tp := autodiff.NewTape()
		res, err := t.m.Forward(tp, x, cond)
		if err != nil {
			tp.Release()
			return err
		}
		r.loss = res.Loss.Value.Item()
		if res.L2 != nil {
			r.l2 = res.L2.Value.Item()
		}
		r.bits = r.loss - r.l2
		if math.IsNaN(r.loss) || math.IsInf(r.loss, 0) {
			tp.Release()
			res.Release()
			bad = true
			return nil
		}
		if err := tp.Backward(res.Loss); err != nil {
			res.Release()
			return err
		}
		res.Release()
		fault.Point(fault.Step)
		t.opt.Step(lr)
		t.opt.ZeroGrad()
		if t.ema != nil {
			t.ema.Update()
		}
		next = off
		return t.dev.be.Err()
	})
	if err != nil {
		return r, fmt.Errorf("step %d: %w", t.st.Step+1, err)
	}
	if bad {
		var where string
		_ = t.dev.do(func() error {
			where = locateNonFinite(t.m, t.dev.be, b.Images, b.N, b.Labels, t.cfg.Seed, t.st.NoiseOffset)
			return nil
		})
		return r, &nonFiniteError{step: t.st.Step + 1, loss: r.loss, where: where}
	}
	t.st.NoiseOffset = next
	return r, nil
}

// testRow evaluates the test set and appends a row to test.csv; it reports false when an interrupt
// cut the evaluation short (no row is written then).
func (t *trainer) testRow(epoch int) (bool, error) {
	t.prog.breakLine()
	start := time.Now()
	ev, err := evaluate(t.dev, t.m, t.test, t.cfg.BatchSize, t.cfg.Seed^testSeedSalt, 1, t.stop)
	if err != nil {
		return false, err
	}
	if ev.images < t.test.N {
		return false, nil
	}
	if err := t.testLog.write(epoch, t.st.Step, ev.bits+ev.l2, ev.bits, 0.0, ev.l2, t.seconds()); err != nil {
		return false, err
	}
	mark := ""
	if t.st.BestStep < 0 || ev.bits < t.st.BestTest {
		t.st.BestTest, t.st.BestStep = ev.bits, t.st.Step
		var serr error
		derr := t.dev.do(func() error {
			serr = saveCheckpoint(bestPath(t.o.results), t.m, t.opt, t.ema, t.st, bestPhases)
			return nil
		})
		if err := errors.Join(serr, derr); err != nil {
			return false, err
		}
		mark = " (best so far)"
	}
	fmt.Fprintf(t.out, "test:    epoch %d, step %d: %.4f bits/dim on %d images%s [%.1fs]\n", epoch, t.st.Step, ev.bits, ev.images, mark, time.Since(start).Seconds())
	return true, nil
}

// epochEnd does the end-of-epoch work: test evaluation, sample grids, loss plot. It can be cut
// short by an interrupt, in which case the state keeps PendingEpochEnd and a resumed run redoes it.
func (t *trainer) epochEnd(epoch int) error {
	if (epoch+1)%t.o.testEvery == 0 {
		ok, err := t.testRow(epoch)
		if err != nil || !ok {
			return err
		}
	}
	if t.stop.Load() {
		return nil
	}
	if t.o.sampleEvery == 0 || (epoch+1)%t.o.sampleEvery != 0 {
		t.st.PendingEpochEnd = -1
		return t.save()
	}
	start := time.Now()
	var paths []string
	for _, temp := range t.o.temps {
		path := filepath.Join(t.o.results, "samples", fmt.Sprintf("epoch_%04d_T%.2f.png", epoch, temp))
		if err := writeSampleGrid(t.dev, t.m, t.o.gridN, temp, t.cfg.Seed^sampleSeedSalt, path); err != nil {
			return err
		}
		paths = append(paths, path)
		fault.Point(fault.Samples)
	}
	plotPath := filepath.Join(t.o.results, "loss.png")
	flow := fmt.Sprintf("DLF K=%d", t.cfg.Parts)
	if t.cfg.Flow == dlf.FlowGlow {
		flow = "Glow"
	}
	title := fmt.Sprintf("%s: %s, %d levels × depth %d, width %d, batch %d (%s parameters)",
		t.cfg.Problem, flow, t.cfg.Levels, t.cfg.Depth, t.cfg.Width, t.cfg.BatchSize, commas(t.m.NumParams()))
	if err := writeLossPlot(t.o.results, plotPath, title); err != nil {
		return err
	}
	fmt.Fprintf(t.out, "samples: %d grids of %d in %s (T = %s); loss curve %s [%.1fs]\n", len(paths), t.o.gridN, filepath.Dir(paths[0]), fmtTemps(t.o.temps), plotPath, time.Since(start).Seconds())
	t.st.PendingEpochEnd = -1
	return t.save()
}
