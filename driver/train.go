package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"os/signal"
	"path/filepath"
	"runtime"
	"strconv"
	"syscall"
	"time"

	"dlf/data"
	"dlf/dlf"
	"dlf/tensor/collective/nccl"
	"dlf/tensor/device"
	"dlf/train"
	"dlf/train/fault"

	"github.com/urfave/cli/v2"
)

// cpuDefaults is the model `train` uses on the CPU when neither --preset nor a size flag is given.
// The mnist preset (depth 32, width 128, batch 256; 1.8M parameters) runs at about 25 images/s on a
// 2-core CPU, so an epoch takes ~40 minutes before the first samples appear. Depth 8, width 64 and
// batch 64 (0.17M parameters) trains at roughly 4× that rate, shows a falling loss within seconds
// and finishes an MNIST epoch in a few minutes (README, "Training"). --preset mnist trains the
// preset as published on any device.
var cpuDefaults = struct{ depth, width, batch int }{depth: 8, width: 64, batch: 64}

// cpuMaxRanks caps cpuDefaultRanks, keeping each replica's share of the default batch of 64 at 16
// images or more. It is caution, not a measured limit: one thread's throughput is flat from batch
// 16 to 128 (docs/results.md, "Batch size against cores"), but only two replicas have been measured,
// and each added rank adds a share of the per-step all-reduce and of the wait for the slowest rank.
const cpuMaxRanks = 4

// cpuDefaultRanks is how many in-process data-parallel replicas the CPU default trains its batch
// of cpuDefaults.batch with on threads Go threads (GOMAXPROCS): one per thread, up to cpuMaxRanks,
// a power of two so the batch splits evenly. One replica per core is faster than one replica using
// every core because the CPU backend splits each op across threads, and at this model's size most
// ops are too small for that to pay (docs/perf.md, "Two cores: a replica per core"): on the 2-core
// dev machine one replica with 2 threads trains at 363–387 images/s, two replicas of 32 images with
// one thread each at 510–568 (1.40–1.47×), meeting only at the all-reduce of 166k gradients per step. A step is the
// update of one batch of 64 (the gradients are averaged; only the dequantisation noise is drawn per
// rank), so the recipe measured with one replica is unchanged.
func cpuDefaultRanks(threads int) int {
	r := 1
	for r*2 <= min(threads, cpuMaxRanks) {
		r *= 2
	}
	return r
}

func trainCommand() *cli.Command {
	flags := append(problemFlags(),
		&cli.StringFlag{Name: "preset", Usage: "model and training preset: " + joinNames(dlf.PresetNames()) + " (default: the problem's)"},
		&cli.StringFlag{Name: "recipe", Value: dlf.RecipeFast, Usage: "training recipe of a new run: fast (dlf's default, chosen from measured curves: Adam 1e-3 (Glow: 5e-4) after a 0.1-epoch warm-up halving every 4000 steps to 1e-4, identity DLT init with data-initialised hyper-network actnorms (--init data), gradient norm clipped at 20, evaluation and samples with the warmed-up 0.999 moving average, activations kept (no --recompute)) or reference (the preset's published recipe: DLF's Adamax 0.05 with decay from the reference init; Glow's Adamax 1e-3 after 10 warm-up epochs, recomputing activations). Flags below override single settings; a resumed run keeps its checkpoint's"},
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
		&cli.IntFlag{Name: "num_gpus", Value: 1, Usage: "data-parallel replicas: N GPUs with --device cuda, N goroutine replicas with --device cpu; --batch_size is per replica. Unless this is set, the CPU default model (no --preset or size flag) splits its batch of 64 over one replica per thread, up to 4"},
		&cli.StringFlag{Name: "dist", Value: "auto", Usage: "how data-parallel ranks run: inproc (every rank in this process); mpi (one process per rank under mpirun -np N or srun, gradients averaged by Open MPI; rank 0 writes the results); nccl (one GPU process per rank under mpirun, torchrun or srun, gradients averaged by NCCL on the GPUs); or auto (under a launcher: nccl with --device cuda when NCCL loads, else mpi; without one: inproc)"},
		&cli.BoolFlag{Name: "cuda_graph", Value: true, Usage: "on one CUDA device, capture the training step's forward and backward pass once and replay it as one CUDA graph per step (--cuda_graph=false: launch every op from Go; the numbers are the same bits)"},
		&cli.DurationFlag{Name: "refresh_every", Value: time.Second, Usage: "on CUDA, read the steps' losses for the progress line at most this often (0: only at --print_per_steps rows); every read waits for the GPU, steps between reads never do"},
		&cli.DurationFlag{Name: "collective_timeout", Value: 30 * time.Minute, Usage: "with one process per rank, abort the job when a step's collectives wait this long for another rank (a lost rank is caught at once by the launcher or the rendezvous; this catches a stuck one); must exceed rank 0's test evaluation"},
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

// distMode resolves --dist auto for device kind: under a launcher — mpirun (it sets
// OMPI_COMM_WORLD_SIZE), torchrun (RANK and WORLD_SIZE > 1) or srun with several tasks
// (SLURM_NTASKS > 1) — nccl on CUDA when NCCL loads, else mpi (which explains itself when MPI
// cannot serve that launcher); without one, inproc. Other values pass through to
// train.Options.Validate.
func distMode(v, kind string) string {
	if v != "auto" {
		return v
	}
	many := func(name string) bool { n, err := strconv.Atoi(os.Getenv(name)); return err == nil && n > 1 }
	if os.Getenv("OMPI_COMM_WORLD_SIZE") == "" && !many("WORLD_SIZE") && !many("SLURM_NTASKS") {
		return "inproc"
	}
	if kind == "cuda" {
		if _, err := nccl.Load(); err == nil {
			return "nccl"
		}
	}
	return "mpi"
}

// trainPlan is a validated training job plus the CLI's own output settings.
type trainPlan struct {
	job  train.Job
	spec dataSpec
	// temps and gridN are the sample grids' temperatures and size.
	temps []float64
	gridN int
	// problem is --problem (default mnist); presetName and cpuReduced explain the model choice.
	problem    string
	presetName string
	cpuReduced bool
}

// parseTrainOpts reads the options of the training loop and the CLI's output flags.
func parseTrainOpts(c *cli.Context) (*trainPlan, error) {
	p := &trainPlan{gridN: c.Int("num_samples"), problem: "mnist", presetName: c.String("preset")}
	if c.IsSet("problem") {
		p.problem = c.String("problem")
	}
	if p.presetName == "" {
		p.presetName, _ = presetForProblem(p.problem)
	}
	results := c.String("results_dir")
	if results == "" {
		name := p.presetName
		if name == "" {
			name = p.problem
		}
		results = filepath.Join("results", name)
	}
	kind, err := device.Resolve(c.String("device"))
	if err != nil {
		return nil, err
	}
	o := train.Options{
		Results: results, Device: kind,
		NumEpoch: c.Int("num_epoch"), MaxSteps: c.Int("max_steps"), MaxTime: c.Duration("max_time"),
		NaNPolicy: c.String("nan_policy"), KeepCheckpoints: c.Int("keep_checkpoints"), CheckpointEvery: c.Duration("checkpoint_every"),
		LogEvery: c.Int("print_per_steps"), TestEvery: c.Int("test_per_epochs"), ValidEvery: c.Int("valid_per_steps"),
		SampleEvery: c.Int("sample_per_epochs"), Workers: c.Int("workers"), Ranks: c.Int("num_gpus"), VirtualGPUs: c.Bool("virtual_gpus"),
		Dist: distMode(c.String("dist"), kind), CollectiveTimeout: c.Duration("collective_timeout"), RefreshEvery: c.Duration("refresh_every"), CUDAGraph: c.Bool("cuda_graph"),
	}
	if err := o.Validate(); err != nil {
		return nil, err
	}
	switch {
	case p.gridN < 1:
		return nil, fmt.Errorf("--num_samples %d: want at least 1", p.gridN)
	case c.Int("train_subset") < 0 || c.Int("test_subset") < 0:
		return nil, fmt.Errorf("--train_subset and --test_subset must not be negative")
	}
	if p.temps, err = parseTemperatures(c.String("temperatures")); err != nil {
		return nil, err
	}
	if o.Dist != "mpi" && o.Dist != "nccl" { // one process per rank: each checks its own GPU
		if err := device.CheckWorld(o.Device, o.Ranks, o.VirtualGPUs); err != nil {
			return nil, err
		}
	}
	p.job.Options = o
	return p, nil
}

// planTrain validates every flag, the dataset and any checkpoint to resume before work starts.
func planTrain(c *cli.Context) (*trainPlan, error) {
	if c.NArg() > 0 {
		return nil, fmt.Errorf("train takes no arguments, got %q (flags go before arguments and start with --)", c.Args().First())
	}
	p, err := parseTrainOpts(c)
	if err != nil {
		return nil, err
	}
	// A results directory with checkpoints is resumed: its configuration wins over the preset, and
	// flags may only change what does not define the parameters.
	resume, err := train.Inspect(p.job.Results)
	if err != nil {
		return nil, err
	}
	if resume != nil {
		// A run trained with several in-process replicas (the CPU default's, or an explicit
		// --num_gpus) resumes with as many unless --num_gpus says otherwise: its data position
		// counts in per-replica batches (train.New refuses a mismatch).
		if w := resume.From.State.World; w > 1 && !c.IsSet("num_gpus") && p.job.Dist == "inproc" {
			if err := device.CheckWorld(p.job.Device, w, p.job.VirtualGPUs); err != nil {
				return nil, fmt.Errorf("--results_dir %s was trained with %d data-parallel replicas: %v", p.job.Results, w, err)
			}
			p.job.Ranks = w
		}
		p.job.Config, p.spec, err = resumedConfig(c, p, resume.From.Config, p.problem)
	} else {
		p.job.Config, p.spec, err = newConfig(c, p, p.problem)
	}
	if err != nil {
		return nil, err
	}
	if cfg := p.job.Config; cfg.BatchSize < 1 {
		return nil, fmt.Errorf("--batch_size %d: want at least 1", cfg.BatchSize)
	} else if cfg.ImageH > 0 {
		if err := configError(cfg.Validate()); err != nil {
			return nil, err
		}
	}
	if err := openData(c, p); err != nil {
		return nil, err
	}
	return p, nil
}

// resumedConfig is the configuration of the checkpoint being resumed, with the flags that may change
// on resume applied; a flag that would change the parameters or the data position is an error.
func resumedConfig(c *cli.Context, p *trainPlan, cfg dlf.Config, problem string) (dlf.Config, dataSpec, error) {
	results := p.job.Results
	if c.IsSet("problem") && problem != cfg.Problem {
		if info, ok := data.LookupProblem(problem); !ok || info.Name != cfg.Problem {
			return cfg, dataSpec{}, fmt.Errorf("--results_dir %s holds a %s run, not %s; use another --results_dir", results, cfg.Problem, problem)
		}
	}
	spec, err := parseDataSpec(c, cfg.Problem)
	if err != nil {
		return cfg, spec, err
	}
	spec.fitTo(cfg)
	if c.IsSet("preset") {
		pc, err := dlf.Preset(p.presetName)
		if err != nil {
			return cfg, spec, fmt.Errorf("--preset: %v", trimPkg(err))
		}
		shapeFromProblem(&pc, spec)
		pc.ImageH, pc.ImageW, pc.ImageC = cfg.ImageH, cfg.ImageW, cfg.ImageC
		if d := dlf.ArchDiff(cfg, pc); d != "" {
			return cfg, spec, fmt.Errorf("--results_dir %s holds a checkpoint of another configuration than --preset %s (%s); use another --results_dir", results, p.presetName, d)
		}
	}
	for _, f := range configFlags() {
		if !c.IsSet(f.name()) {
			continue
		}
		prev := cfg
		f.apply(c, &cfg)
		if d := dlf.ArchDiff(prev, cfg); f.arch && d != "" {
			return cfg, spec, fmt.Errorf("--results_dir %s holds a checkpoint of another configuration (%s); use another --results_dir, or drop --%s to resume", results, d, f.name())
		}
		if f.name() == "batch_size" && cfg.BatchSize != prev.BatchSize {
			return cfg, spec, fmt.Errorf("--batch_size %d: the run in %s uses batch size %d, and its data position counts in those batches; use another --results_dir", cfg.BatchSize, results, prev.BatchSize)
		}
	}
	return cfg, spec, nil
}

// newConfig is the configuration of a new run: the preset (reduced on the CPU unless a size is
// chosen), shaped for the problem, with every model flag applied.
func newConfig(c *cli.Context, p *trainPlan, problem string) (dlf.Config, dataSpec, error) {
	spec, err := parseDataSpec(c, problem)
	if err != nil {
		return dlf.Config{}, spec, err
	}
	if p.presetName == "" {
		return dlf.Config{}, spec, fmt.Errorf("--problem %s has no preset: choose a model with --preset (one of %s)", spec.problem, joinNames(dlf.PresetNames()))
	}
	cfg, err := dlf.Preset(p.presetName)
	if err != nil {
		return cfg, spec, fmt.Errorf("--preset: %v", trimPkg(err))
	}
	shapeFromProblem(&cfg, spec)
	if p.job.Device == "cpu" && !c.IsSet("preset") && !c.IsSet("depth") && !c.IsSet("width") && !c.IsSet("batch_size") {
		cfg.Depth, cfg.Width, cfg.BatchSize = cpuDefaults.depth, cpuDefaults.width, cpuDefaults.batch
		p.cpuReduced = true
		if !c.IsSet("num_gpus") && p.job.Dist == "inproc" {
			p.job.Ranks = cpuDefaultRanks(runtime.GOMAXPROCS(0))
			cfg.BatchSize /= p.job.Ranks
		}
	}
	if err := dlf.ApplyRecipe(&cfg, c.String("recipe")); err != nil {
		return cfg, spec, fmt.Errorf("--recipe: %v", trimPkg(err))
	}
	for _, f := range configFlags() {
		if c.IsSet(f.name()) {
			f.apply(c, &cfg)
		}
	}
	return cfg, spec, nil
}

// openData reads the training and test sets (an image folder without test/ holds out 5% of its
// images, at least one), shapes a configuration whose image size comes from the data, and applies
// --train_subset and --test_subset. The data are checked against the model, the batch size and
// the checkpoint by train.New, before it writes anything.
func openData(c *cli.Context, p *trainPlan) error {
	cfg, spec := &p.job.Config, p.spec
	trainSet, err := spec.open("train")
	if err != nil {
		return err
	}
	if cfg.ImageH == 0 {
		cfg.ImageH, cfg.ImageW, cfg.ImageC = trainSet.H, trainSet.W, trainSet.C
		if err := configError(cfg.Validate()); err != nil {
			return err
		}
	}
	testSet, err := spec.open("test")
	if err != nil {
		if spec.problem != "folder" {
			return err
		}
		var terr error
		if trainSet, testSet, terr = data.CarveValidation(trainSet, data.ValSplit{Count: max(1, trainSet.N/20), Seed: cfg.Seed}); terr != nil {
			return fmt.Errorf("--data_dir %s: %v", spec.dir, trimPkg(terr))
		}
	}
	if trainSet, err = subset(trainSet, c.Int("train_subset"), "--train_subset"); err != nil {
		return err
	}
	if testSet, err = subset(testSet, c.Int("test_subset"), "--test_subset"); err != nil {
		return err
	}
	p.job.Train, p.job.Test, p.job.DataSource = trainSet, testSet, spec.dir
	return nil
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

// runTrain trains as the flags say. The first SIGINT or SIGTERM stops after the current step with a
// checkpoint; a second exits at once.
func runTrain(c *cli.Context) error {
	p, err := planTrain(c)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	sigc := make(chan os.Signal, 2)
	signal.Notify(sigc, os.Interrupt, syscall.SIGTERM)
	defer signal.Stop(sigc)
	go func() {
		n := 0
		for range sigc {
			if n++; n > 1 {
				fmt.Fprintln(c.App.ErrWriter, "\ninterrupted again: exiting without saving")
				os.Exit(130)
			}
			cancel()
			fmt.Fprintln(c.App.ErrWriter, "\ninterrupt: saving a checkpoint after the current step (Ctrl-C again to quit at once)")
		}
	}()
	return trainWith(ctx, p, c.App.Writer)
}

// trainWith runs a planned job with the CLI's progress line, sample grids and loss plot.
func trainWith(ctx context.Context, p *trainPlan, out io.Writer) error {
	prog := newProgress(out, p.job.LogEvery)
	hooks := train.Hooks{
		Log:        out,
		EpochStart: prog.beginEpoch,
		Step:       func(s train.StepStats) { prog.update(s) },
		Break:      prog.breakLine,
		Samples:    func(r *train.Run, epoch int) error { return writeEpochSamples(r, epoch, p, out) },
	}
	run, err := train.New(p.job, hooks)
	if err != nil {
		return err
	}
	defer run.Close()
	if p.cpuReduced {
		full, _ := dlf.Preset(p.presetName)
		cfg := p.job.Config
		batch := fmt.Sprintf("batch %d", cfg.BatchSize)
		if r := p.job.Ranks; r > 1 {
			batch = fmt.Sprintf("batch %d as %d in-process replicas of %d (--num_gpus 1: one replica on every thread)", r*cfg.BatchSize, r, cfg.BatchSize)
		}
		fmt.Fprintf(out, "note:    the CPU default: the %s preset at depth %d, width %d, %s; --preset %s trains the full %s-parameter model\n",
			p.presetName, cfg.Depth, cfg.Width, batch, p.presetName, dlf.FormatCount(full.NumParams()))
	}
	_, err = run.Train(ctx)
	return err
}

// writeEpochSamples writes an epoch's sample grids, one per temperature, and the loss plot.
func writeEpochSamples(r *train.Run, epoch int, p *trainPlan, out io.Writer) error {
	start := time.Now()
	o, cfg := r.Options(), r.Config()
	var paths []string
	for _, temp := range p.temps {
		path := filepath.Join(o.Results, "samples", fmt.Sprintf("epoch_%04d_T%.2f.png", epoch, temp))
		if err := writeSampleGrid(r.Device(), r.Model(), p.gridN, temp, cfg.Seed^train.SampleSeedSalt, path); err != nil {
			return err
		}
		paths = append(paths, path)
		fault.Point(fault.Samples)
	}
	plotPath := filepath.Join(o.Results, "loss.png")
	flow := fmt.Sprintf("DLF K=%d", cfg.Parts)
	if cfg.Flow == dlf.FlowGlow {
		flow = "Glow"
	}
	// The images of one step: every rank's batch (State().World counts the ranks, however they run).
	title := fmt.Sprintf("%s: %s, %d levels × depth %d, width %d, batch %d (%s parameters)",
		cfg.Problem, flow, cfg.Levels, cfg.Depth, cfg.Width, max(1, r.State().World)*cfg.BatchSize, dlf.FormatCount(r.Model().NumParams()))
	if err := writeLossPlot(o.Results, plotPath, title); err != nil {
		return err
	}
	fmt.Fprintf(out, "samples: %d grids of %d in %s (T = %s); loss curve %s [%.1fs]\n", len(paths), p.gridN, filepath.Dir(paths[0]), fmtTemps(p.temps), plotPath, time.Since(start).Seconds())
	return nil
}
