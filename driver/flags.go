package main

import (
	"errors"
	"fmt"
	"math"
	"path/filepath"
	"sort"
	"strconv"
	"strings"

	"dlf/data"
	"dlf/dlf"

	"github.com/urfave/cli/v2"
)

// deviceFlag selects the backend; "auto" takes the GPU when the driver finds one.
var deviceFlag = &cli.StringFlag{Name: "device", Value: "auto", Usage: "auto, cpu or cuda (auto: cuda when a GPU and the NVIDIA driver are present, else cpu)"}

// configFlag is a command-line flag that overrides one field of dlf.Config. Flags carry no default
// of their own: an unset flag leaves the preset's (or, when resuming, the checkpoint's) value, so
// that `--help` and the preset table stay the single source of defaults.
type configFlag struct {
	flag cli.Flag
	// arch marks fields that define the model's parameters: a checkpoint only loads into a model
	// with the same values, so changing one on resume is an error rather than an override.
	arch bool
	// apply copies the flag's value into cfg.
	apply func(c *cli.Context, cfg *dlf.Config)
}

func (f configFlag) name() string { return f.flag.Names()[0] }

func intField(name, usage string, arch bool, field func(*dlf.Config) *int) configFlag {
	return configFlag{flag: &cli.IntFlag{Name: name, Usage: usage, DefaultText: "the preset's"}, arch: arch,
		apply: func(c *cli.Context, cfg *dlf.Config) { *field(cfg) = c.Int(name) }}
}

func floatField(name, usage string, arch bool, field func(*dlf.Config) *float64) configFlag {
	return configFlag{flag: &cli.Float64Flag{Name: name, Usage: usage, DefaultText: "the preset's"}, arch: arch,
		apply: func(c *cli.Context, cfg *dlf.Config) { *field(cfg) = c.Float64(name) }}
}

func stringField(name, usage string, arch bool, field func(*dlf.Config) *string) configFlag {
	return configFlag{flag: &cli.StringFlag{Name: name, Usage: usage, DefaultText: "the preset's"}, arch: arch,
		apply: func(c *cli.Context, cfg *dlf.Config) { *field(cfg) = c.String(name) }}
}

func boolField(name, usage string, arch bool, field func(*dlf.Config) *bool) configFlag {
	return configFlag{flag: &cli.BoolFlag{Name: name, Usage: usage, DefaultText: "the preset's"}, arch: arch,
		apply: func(c *cli.Context, cfg *dlf.Config) { *field(cfg) = c.Bool(name) }}
}

// configFlags lists every Config override, named as the reference implementation's flags where one
// exists (dlf-spec §6.1), otherwise as the Config field's JSON key.
func configFlags() []configFlag {
	return []configFlag{
		// Model.
		intField("num_bits_x", "bits per colour channel the model sees, 1..8", true, func(c *dlf.Config) *int { return &c.NumBits }),
		stringField("flow", "flow step: dlf (invconv → DLT) or glow (actnorm → invconv → coupling)", true, func(c *dlf.Config) *string { return &c.Flow }),
		intField("num_levels", "number of multi-scale levels L", true, func(c *dlf.Config) *int { return &c.Levels }),
		intField("depth", "flow steps per level", true, func(c *dlf.Config) *int { return &c.Depth }),
		intField("width", "hidden width of the hyper-networks", true, func(c *dlf.Config) *int { return &c.Width }),
		intField("num_parts", "K, the number of DLT channel parts: 2, 4, 6 or 8", true, func(c *dlf.Config) *int { return &c.Parts }),
		intField("decomposition", "0: non-inverse DLT, 1: inverse DLT", true, func(c *dlf.Config) *int { return &c.Decomposition }),
		boolField("affine_coupling", "make DLT part 1 the identity (an affine coupling; needs K=2)", true, func(c *dlf.Config) *bool { return &c.AffineCoupling }),
		stringField("flow_coupling", "Glow coupling: affine or additive", true, func(c *dlf.Config) *string { return &c.Coupling }),
		stringField("invconv", "1x1 convolution parameterisation: full or lu", true, func(c *dlf.Config) *string { return &c.InvConv }),
		boolField("invconv_bias", "add a bias after each 1x1 convolution", true, func(c *dlf.Config) *bool { return &c.InvConvBias }),
		stringField("init", "DLT initialisation: reference (bias 1, β = −3), identity (bias 0, β = 0) or data (identity, and the hyper-networks' actnorms set from the first batch as Glow's are)", true, func(c *dlf.Config) *string { return &c.Init }),
		boolField("conditioning", "class-conditional model (needs a labelled dataset)", true, func(c *dlf.Config) *bool { return &c.Conditioning }),
		floatField("l2_factor", "weight of the L2 term on the 1x1-conv weights", false, func(c *dlf.Config) *float64 { return &c.L2Factor }),
		boolField("recompute", "rebuild activations by inverting each step in the backward pass (memory O(1) in depth, ~1.7× time)", false, func(c *dlf.Config) *bool { return &c.Recompute }),
		stringField("precision", "arithmetic of the hyper-network convolutions: tf32 (tensor cores on CUDA; the same operand rounding on the CPU) or fp32; empty: tf32 on CUDA, fp32 on the CPU. Log-determinants, priors, 1x1 invertible convolutions and the optimizer stay fp32/fp64", false, func(c *dlf.Config) *string { return &c.Precision }),
		stringField("temperature_mode", "where sampling applies the temperature: top (DLF) or all (Glow)", false, func(c *dlf.Config) *string { return &c.Temperature }),
		// Optimisation.
		intField("batch_size", "images per step", false, func(c *dlf.Config) *int { return &c.BatchSize }),
		stringField("optimizer", "adamax or adam", false, func(c *dlf.Config) *string { return &c.Optimizer }),
		floatField("initial_lr", "learning rate at step 0", false, func(c *dlf.Config) *float64 { return &c.InitialLR }),
		floatField("lr", "floor of the learning-rate decay", false, func(c *dlf.Config) *float64 { return &c.LR }),
		intField("decay_steps", "steps per decay period: lr = max(initial_lr·decay_rate^(step/decay_steps), lr)", false, func(c *dlf.Config) *int { return &c.DecaySteps }),
		floatField("decay_rate", "learning-rate decay per decay_steps (1: constant)", false, func(c *dlf.Config) *float64 { return &c.DecayRate }),
		floatField("epochs_warmup", "linear learning-rate warm-up, in epochs (Glow)", false, func(c *dlf.Config) *float64 { return &c.WarmupEpochs }),
		floatField("beta1", "first-moment decay", false, func(c *dlf.Config) *float64 { return &c.Beta1 }),
		floatField("beta2", "second-moment decay (0: Glow's 1 − 1/iterations per epoch)", false, func(c *dlf.Config) *float64 { return &c.Beta2 }),
		floatField("weight_decay", "multiplicative weight decay per step (1: off)", false, func(c *dlf.Config) *float64 { return &c.WeightDecay }),
		floatField("clip_grad_norm", "bound on the global L2 norm of the gradients before each update (0: off)", false, func(c *dlf.Config) *float64 { return &c.ClipGradNorm }),
		boolField("eval_average", "evaluate and sample with the parameters' moving average (--polyak_decay) instead of the raw weights", false, func(c *dlf.Config) *bool { return &c.EvalAverage }),
		boolField("polyak_warmup", "ramp the moving average's decay up as min(polyak_decay, (1+t)/(10+t)) over the first updates", false, func(c *dlf.Config) *bool { return &c.PolyakWarmup }),
		floatField("polyak_decay", "decay of the parameters' moving average kept in checkpoints (0: off)", false, func(c *dlf.Config) *float64 { return &c.PolyakDecay }),
		{flag: &cli.Uint64Flag{Name: "seed", Usage: "seeds initialisation, data order and noise", DefaultText: "the preset's, 199512"},
			apply: func(c *cli.Context, cfg *dlf.Config) { cfg.Seed = c.Uint64("seed") }},
	}
}

// presetForProblem returns the preset a problem trains with when --preset is not given.
func presetForProblem(problem string) (string, bool) {
	info, ok := data.LookupProblem(problem)
	if !ok {
		return "", false
	}
	if _, err := dlf.Preset(info.Name); err == nil {
		return info.Name, true
	}
	return "", false
}

// problemFlags are the dataset flags shared by train, eval and interpolate.
func problemFlags() []cli.Flag {
	return []cli.Flag{
		&cli.StringFlag{Name: "problem", Usage: "dataset: " + strings.Join(data.Problems(), ", ")},
		&cli.StringFlag{Name: "data_dir", Usage: "directory holding the dataset's files (default: data/<problem>, where 'driver data fetch' puts it)"},
		&cli.IntFlag{Name: "image_size", Usage: "side length images are resized to (folder and celeba problems)"},
		&cli.BoolFlag{Name: "center_crop", Usage: "crop folder images to their centred square before resizing"},
		&cli.IntFlag{Name: "channels", Value: 3, Usage: "channels of folder images: 1 (gray) or 3 (RGB)"},
	}
}

// dataSpec says where a dataset is and how to decode it.
type dataSpec struct {
	problem string
	dir     string
	opts    data.Options
	// modeSet records an explicit --channels, which fitTo must not override.
	modeSet bool
}

// parseDataSpec reads the dataset flags; problem is the name to use when --problem is unset.
func parseDataSpec(c *cli.Context, problem string) (dataSpec, error) {
	if c.IsSet("problem") {
		problem = c.String("problem")
	}
	info, ok := data.LookupProblem(problem)
	if !ok {
		return dataSpec{}, fmt.Errorf("--problem %q is not a known dataset (have %s)", problem, strings.Join(data.Problems(), ", "))
	}
	s := dataSpec{problem: info.Name, dir: c.String("data_dir"), modeSet: c.IsSet("channels")}
	if s.dir == "" {
		s.dir = filepath.Join("data", info.Name)
	}
	s.opts = data.Options{Path: s.dir, Size: c.Int("image_size"), CenterCrop: c.Bool("center_crop")}
	if s.opts.Size < 0 {
		return dataSpec{}, fmt.Errorf("--image_size %d is negative", s.opts.Size)
	}
	switch c.Int("channels") {
	case 1:
		s.opts.Mode = data.ModeGray
	case 3:
		s.opts.Mode = data.ModeRGB
	default:
		return dataSpec{}, fmt.Errorf("--channels %d: want 1 (gray) or 3 (RGB)", c.Int("channels"))
	}
	return s, nil
}

// open loads one split, turning the data package's error into a sentence that names the flag.
func (s dataSpec) open(split string) (*data.Dataset, error) {
	ds, err := data.Open(s.problem, "", split, s.opts)
	if err != nil {
		return nil, fmt.Errorf("cannot read the %s split of %s from --data_dir %s: %v", split, s.problem, s.dir, strings.TrimPrefix(err.Error(), "data: "))
	}
	return ds, nil
}

// shapeFromProblem sets cfg's image shape and class count from the problem, before any data is read
// where the problem fixes them.
func shapeFromProblem(cfg *dlf.Config, s dataSpec) {
	info, _ := data.LookupProblem(s.problem)
	cfg.Problem = info.Name
	if info.Shape.H > 0 {
		cfg.ImageH, cfg.ImageW, cfg.ImageC = info.Shape.H, info.Shape.W, info.Shape.C
	} else if s.opts.Size == 0 {
		// The images decide (celeba TFRecords, an image folder at its native size): 0 until read.
		cfg.ImageH, cfg.ImageW, cfg.ImageC = 0, 0, 0
	} else {
		cfg.ImageH, cfg.ImageW = s.opts.Size, s.opts.Size
		cfg.ImageC = info.Shape.C
		if cfg.ImageC == 0 {
			cfg.ImageC = 1
			if s.opts.Mode == data.ModeRGB {
				cfg.ImageC = 3
			}
		}
	}
	if info.Classes > 0 {
		cfg.NumClasses = info.Classes
	}
}

// fitTo makes a problem whose image shape comes from the data (celeba, folder) decode to a trained
// model's size and channels unless --image_size or --channels say otherwise.
func (s *dataSpec) fitTo(cfg dlf.Config) {
	info, _ := data.LookupProblem(s.problem)
	if info.Shape.H != 0 {
		return
	}
	if s.opts.Size == 0 && cfg.ImageH == cfg.ImageW {
		s.opts.Size = cfg.ImageH
	}
	if !s.modeSet && cfg.ImageC == 1 {
		s.opts.Mode = data.ModeGray
	}
}

// configError rewrites dlf.Config.Validate's field errors as one sentence naming the flags.
func configError(err error) error {
	if err == nil {
		return nil
	}
	var msgs []string
	var walk func(error)
	walk = func(e error) {
		if j, ok := e.(interface{ Unwrap() []error }); ok {
			for _, x := range j.Unwrap() {
				walk(x)
			}
			return
		}
		var fe *dlf.FieldError
		if errors.As(e, &fe) {
			msgs = append(msgs, fmt.Sprintf("--%s: %s", fe.Field, fe.Msg))
			return
		}
		msgs = append(msgs, e.Error())
	}
	walk(err)
	return fmt.Errorf("invalid model configuration: %s", strings.Join(msgs, "; "))
}

// parseTemperatures parses a comma-separated list of non-negative temperatures.
func parseTemperatures(s string) ([]float64, error) {
	var out []float64
	for _, f := range strings.Split(s, ",") {
		f = strings.TrimSpace(f)
		if f == "" {
			continue
		}
		v, err := strconv.ParseFloat(f, 64)
		if err != nil || v < 0 || math.IsNaN(v) || math.IsInf(v, 0) {
			return nil, fmt.Errorf("--temperatures: %q is not a non-negative number", f)
		}
		out = append(out, v)
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("--temperatures: empty list")
	}
	return out, nil
}

// sortedKeys returns a map's keys in order, for stable messages.
func sortedKeys[V any](m map[string]V) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}
