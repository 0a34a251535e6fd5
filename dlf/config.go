package dlf

import (
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"sort"
	"strconv"
	"strings"

	"dlf/tensor"
)

// Flow names the kind of flow step a model is built from.
const (
	// FlowDLF is DLF's step: invertible 1x1 conv → dynamic linear transformation (dlf-spec §2.4).
	FlowDLF = "dlf"
	// FlowGlow is Glow's step: actnorm → invertible 1x1 conv → coupling (dlf-spec §5).
	FlowGlow = "glow"
)

// Invertible 1x1 convolution parameterisations (dlf-spec §2.4, §5).
const (
	// InvConvFull stores the whole C×C matrix W (DLF, and Glow's active code path).
	InvConvFull = "full"
	// InvConvLU stores W = P·L·(U + diag(sign·exp(log s))) with P and sign fixed.
	InvConvLU = "lu"
)

// Glow coupling kinds (dlf-spec §5).
const (
	// CouplingAffine is Glow's affine coupling with scale sigmoid(r + 2).
	CouplingAffine = "affine"
	// CouplingAdditive is Glow's additive coupling z2 += NN(z1).
	CouplingAdditive = "additive"
)

// Initialisation schemes of the DLT hyper-networks and priors.
const (
	// InitReference copies the reference code: output-conv bias 1, β = −3 (dlf-spec §2.8).
	InitReference = "reference"
	// InitIdentity makes every DLT the identity at initialisation: output-conv bias 0, β = 0
	// (tanh(0) = 0, so μ' = 0 and ℓ = 0), as Glow's zero-initialised couplings are.
	InitIdentity = "identity"
	// InitData is InitIdentity with the hyper-networks' actnorms initialised from data as Glow's
	// are (zero mean, unit variance per channel on the first batch, Kingma & Dhariwal 2018, §3.1)
	// instead of DLF's fixed bias and logs −1, which scale every hidden activation by exp(−3).
	InitData = "data"
)

// Temperature modes of sampling (dlf-spec §2.9).
const (
	// TemperatureTop scales only the top-level ε, as DLF's training-time visualisation does.
	TemperatureTop = "top"
	// TemperatureAll scales ε at every level, as Glow does.
	TemperatureAll = "all"
)

// Optimizers.
const (
	OptimAdamax = "adamax"
	OptimAdam   = "adam"
)

// Config describes a model and how to train it. The JSON keys are the reference implementation's
// flag names where one exists (dlf-spec §6.1), so a config reads like the reference's command line.
// Fill it from a preset (Preset) and override fields; Validate reports every bad field.
type Config struct {
	// Problem is the dataset name (informational: data.Open resolves it).
	Problem string `json:"problem"`
	// ImageH, ImageW, ImageC are the image shape the model is built for.
	ImageH int `json:"image_h"`
	ImageW int `json:"image_w"`
	ImageC int `json:"image_c"`
	// NumBits is n_bits of the preprocessing (dlf-spec §2.1), 1..8.
	NumBits int `json:"num_bits_x"`

	// Flow is FlowDLF or FlowGlow.
	Flow string `json:"flow"`
	// Levels is L, the number of multi-scale levels (dlf-spec §2.3).
	Levels int `json:"num_levels"`
	// Depth is the number of flow steps per level.
	Depth int `json:"depth"`
	// Width is the hidden width of every hyper-network (and of Glow's coupling networks).
	Width int `json:"width"`
	// Parts is K, the number of DLT channel parts: 2, 4, 6 or 8 (dlf-spec §1.1). Glow ignores it.
	Parts int `json:"num_parts"`
	// Decomposition is 0 for the non-inverse DLT (parameters from the previous input part) and 1
	// for the inverse DLT (from the previous output part) (dlf-spec §1.2, §1.3).
	Decomposition int `json:"decomposition"`
	// AffineCoupling makes part 1 of a K=2 DLT the identity: a RealNVP/Glow affine coupling with
	// DLF's bounded exp scale (dlf-spec §1.6).
	AffineCoupling bool `json:"affine_coupling"`
	// Coupling is CouplingAffine or CouplingAdditive (Glow only).
	Coupling string `json:"flow_coupling"`
	// InvConv is InvConvFull or InvConvLU.
	InvConv string `json:"invconv"`
	// InvConvBias adds a per-channel bias after the 1x1 conv (dlf-spec §2.4).
	InvConvBias bool `json:"invconv_bias"`
	// Init is InitReference or InitIdentity (DLF only; Glow's own inits are always used for Glow).
	Init string `json:"init"`
	// Conditioning feeds a one-hot class label into every hyper-network, every first-part vector and
	// the top prior (dlf-spec §1.6 step 4, §1.7).
	Conditioning bool `json:"conditioning"`
	// NumClasses is the size of the one-hot condition (needed with Conditioning).
	NumClasses int `json:"num_classes"`

	// L2Factor weights the L2 term on the 1x1-conv weights (dlf-spec §2.7); 0 disables it.
	L2Factor float64 `json:"l2_factor"`
	// Recompute rebuilds each flow step's input from its output in the backward pass instead of
	// keeping activations (Glow's gradient checkpointing, done by inversion), so activation memory
	// does not grow with depth.
	Recompute bool `json:"recompute"`
	// Temperature is TemperatureTop or TemperatureAll: where sampling applies the temperature.
	Temperature string `json:"temperature_mode"`
	// Precision is the arithmetic of the hyper-networks' convolutions: PrecisionFP32, PrecisionTF32
	// (operands rounded to TF32, fp32 sums: tensor cores on CUDA, the same rounding on the CPU) or
	// PrecisionAuto (""), which is TF32 on CUDA and FP32 on the CPU, as PyTorch's defaults for
	// convolutions are. Log-determinants, priors, the invertible 1×1 convolution, reductions and the
	// optimizer are FP32/FP64 whatever it says (see ConvPrecision).
	Precision string `json:"precision,omitempty"`

	// BatchSize is the per-device batch size.
	BatchSize int `json:"batch_size"`
	// Optimizer is OptimAdamax or OptimAdam.
	Optimizer string `json:"optimizer"`
	// InitialLR is the learning rate at step 0 (after warm-up, for Glow).
	InitialLR float64 `json:"initial_lr"`
	// LR is the floor of DLF's exponential decay; with DecayRate 1 it is unused.
	LR float64 `json:"lr"`
	// DecaySteps and DecayRate give lr(step) = max(InitialLR·DecayRate^(step/DecaySteps), LR)
	// (dlf-spec §3.1). DecayRate 1 means a constant rate (Glow).
	DecaySteps int     `json:"decay_steps"`
	DecayRate  float64 `json:"decay_rate"`
	// WarmupEpochs is Glow's linear warm-up: the rate is multiplied by min(1, epochs done / WarmupEpochs).
	WarmupEpochs float64 `json:"epochs_warmup"`
	// Beta1, Beta2 and Epsilon are the Adam/Adamax moments' constants. Beta2 = 0 means Glow's rule
	// 1 − 1/(iterations per epoch); DLF hard-codes 1 − 1/1000 (dlf-spec §3.1).
	Beta1   float64 `json:"beta1"`
	Beta2   float64 `json:"beta2"`
	Epsilon float64 `json:"epsilon"`
	// WeightDecay is the reference's multiplicative factor on the weights each step (1 = off).
	WeightDecay float64 `json:"weight_decay"`
	// ClipGradNorm bounds the global L2 norm of the gradients before each update (0 = off; the
	// reference does not clip).
	ClipGradNorm float64 `json:"clip_grad_norm,omitempty"`
	// EvalAverage evaluates the test set and draws the sample grids with the parameters' moving
	// average (PolyakDecay) swapped in, instead of the raw weights (the reference evaluates the raw
	// weights); checkpoints always hold both.
	EvalAverage bool `json:"eval_average,omitempty"`
	// PolyakWarmup lowers the moving average's decay over the first updates to
	// min(PolyakDecay, (1+t)/(10+t)) (TensorFlow's rule with num_updates), so that the average
	// forgets the initial weights early (the reference's average keeps the constant decay).
	PolyakWarmup bool `json:"polyak_warmup,omitempty"`
	// PolyakDecay is the decay of the exponential moving average of the parameters (0 = off).
	PolyakDecay float64 `json:"polyak_epochs_decay"`
	// Seed seeds parameter initialisation, data order and dequantisation noise.
	Seed uint64 `json:"seed"`
}

// The precisions of Config.Precision.
const (
	PrecisionAuto = ""
	PrecisionFP32 = "fp32"
	PrecisionTF32 = "tf32"
)

// ConvPrecision resolves Precision for backend be: TF32 or FP32 as given, and for PrecisionAuto
// TF32 on a CUDA device, FP32 elsewhere.
func (c *Config) ConvPrecision(be tensor.Backend) tensor.Precision {
	switch c.Precision {
	case PrecisionTF32:
		return tensor.TF32
	case PrecisionAuto:
		if strings.HasPrefix(be.Name(), "cuda") {
			return tensor.TF32
		}
	}
	return tensor.FP32
}

// DefaultConfig returns the reference's argparse defaults (dlf-spec §6.1) for CIFAR-10.
func DefaultConfig() Config {
	return Config{
		Problem: "cifar10", ImageH: 32, ImageW: 32, ImageC: 3, NumBits: 8,
		Flow: FlowDLF, Levels: 3, Depth: 32, Width: 512, Parts: 2, Decomposition: 0,
		Coupling: CouplingAffine, InvConv: InvConvFull, Init: InitReference,
		Temperature: TemperatureTop,
		BatchSize:   32, Optimizer: OptimAdamax, InitialLR: 0.05, LR: 0.005,
		DecaySteps: 1000, DecayRate: 0.93, Beta1: 0.9, Beta2: 1 - 1.0/1000, Epsilon: 1e-8,
		WeightDecay: 1, PolyakDecay: 0.999, Seed: 199512,
	}
}

// glowTraining switches a config to Glow's training setup (dlf-spec §5): Adamax at a constant 0.001
// after a 10-epoch linear warm-up, β2 = 1 − 1/(iterations per epoch), batch 64 at 32×32.
func glowTraining(c *Config) {
	c.Flow = FlowGlow
	c.InvConv = InvConvLU
	c.Coupling = CouplingAffine
	c.Optimizer = OptimAdamax
	c.InitialLR, c.LR = 0.001, 0.001
	c.DecayRate, c.DecaySteps = 1, 1000
	c.WarmupEpochs = 10
	c.Beta2 = 0
	c.Temperature = TemperatureAll
	c.Recompute = true // Glow's default --gradient_checkpointing 1
}

// The preset constructors. DLF rows follow the reference README commands (dlf-spec §3); glow-* rows
// follow Glow's example runs (dlf-spec §5).

func mnistPreset() Config {
	c := DefaultConfig()
	c.Problem, c.ImageH, c.ImageW, c.ImageC, c.NumClasses = "mnist", 28, 28, 1, 10
	c.Levels, c.Width, c.BatchSize = 2, 128, 256
	return c
}

func fashionPreset() Config {
	c := mnistPreset()
	c.Problem = "fashion-mnist"
	return c
}

func cifarPreset() Config {
	c := DefaultConfig()
	c.NumClasses = 10
	return c
}

// cifarK returns the CIFAR-10 run with K parts at the README's width for that K.
func cifarK(k, width int) func() Config {
	return func() Config {
		c := cifarPreset()
		c.Parts, c.Width = k, width
		return c
	}
}

func imagenet32Preset() Config {
	c := DefaultConfig()
	c.Problem = "imagenet32"
	return c
}

func imagenet64Preset() Config {
	c := DefaultConfig()
	c.Problem, c.ImageH, c.ImageW = "imagenet64", 64, 64
	c.Levels, c.Width, c.InvConvBias, c.BatchSize = 4, 384, true, 24
	return c
}

func celebaPreset() Config {
	c := DefaultConfig()
	c.Problem, c.ImageH, c.ImageW = "celeba", 256, 256
	c.Levels, c.Width, c.BatchSize, c.L2Factor = 6, 128, 4, 0.1
	return c
}

// glow turns a DLF preset into the Glow baseline for the same data: Glow's step and training setup,
// with the batch size and any other overrides applied by edit.
func glow(base func() Config, edit func(c *Config)) func() Config {
	return func() Config {
		c := base()
		glowTraining(&c)
		edit(&c)
		return c
	}
}

// presets maps preset names to constructors. It is never modified.
var presets = map[string]func() Config{
	"mnist":         mnistPreset,
	"fashion-mnist": fashionPreset,
	"cifar10":       cifarPreset,
	"cifar10-k4":    cifarK(4, 308),
	"cifar10-k6":    cifarK(6, 256),
	"imagenet32":    imagenet32Preset,
	"imagenet64":    imagenet64Preset,
	"celeba256":     celebaPreset,
	// Glow's MNIST pads to 32×32×3 (dlf-spec §2.10); ours stays 28×28×1 at the DLF run's size so
	// that the two models are compared on the same data.
	"glow-mnist":         glow(mnistPreset, func(c *Config) { c.BatchSize = 64 }),
	"glow-fashion-mnist": glow(fashionPreset, func(c *Config) { c.BatchSize = 64 }),
	"glow-cifar10":       glow(cifarPreset, func(c *Config) { c.BatchSize = 64 }),
	"glow-imagenet32":    glow(imagenet32Preset, func(c *Config) { c.Depth, c.BatchSize = 48, 64 }),
	"glow-imagenet64": glow(imagenet64Preset, func(c *Config) {
		c.Depth, c.Width, c.InvConvBias, c.BatchSize = 48, 512, false, 16
	}),
	"glow-celeba256": glow(celebaPreset, func(c *Config) {
		c.Width, c.NumBits, c.Coupling, c.BatchSize, c.L2Factor = 512, 5, CouplingAdditive, 1, 0
	}),
}

// PresetNames returns the preset names in sorted order.
func PresetNames() []string {
	names := make([]string, 0, len(presets))
	for n := range presets {
		names = append(names, n)
	}
	sort.Strings(names)
	return names
}

// Preset returns the named preset's Config. The aliases "cifar10-k2" (= cifar10) and the reference's
// problem names "imagenet32x32", "imagenet64x64" and "celeba" are accepted.
func Preset(name string) (Config, error) {
	switch name {
	case "cifar10-k2":
		name = "cifar10"
	case "imagenet32x32":
		name = "imagenet32"
	case "imagenet64x64":
		name = "imagenet64"
	case "celeba":
		name = "celeba256"
	}
	f, ok := presets[name]
	if !ok {
		return Config{}, fmt.Errorf("dlf: unknown preset %q (have %s)", name, strings.Join(PresetNames(), ", "))
	}
	return f(), nil
}

// FieldError is one invalid Config field.
type FieldError struct {
	// Field is the JSON name of the field.
	Field string
	// Msg says what is wrong and what would be valid.
	Msg string
}

// Error formats the error as "config field <name>: <msg>".
func (e *FieldError) Error() string { return fmt.Sprintf("config field %s: %s", e.Field, e.Msg) }

// Validate checks every field and returns nil or the errors.Join of one *FieldError per bad field.
func (c *Config) Validate() error {
	var errs []error
	bad := func(field, format string, args ...any) {
		errs = append(errs, &FieldError{Field: field, Msg: fmt.Sprintf(format, args...)})
	}
	if c.ImageH <= 0 || c.ImageW <= 0 || c.ImageC <= 0 {
		bad("image_h/image_w/image_c", "image shape %d×%d×%d must be positive", c.ImageH, c.ImageW, c.ImageC)
	}
	if c.NumBits < 1 || c.NumBits > 8 {
		bad("num_bits_x", "%d is not in 1..8", c.NumBits)
	}
	if c.Flow != FlowDLF && c.Flow != FlowGlow {
		bad("flow", "%q is neither %q nor %q", c.Flow, FlowDLF, FlowGlow)
	}
	if c.Levels < 1 {
		bad("num_levels", "%d, want at least 1", c.Levels)
	} else if c.ImageH > 0 && c.ImageW > 0 {
		// One squeeze in preprocessing and one per split: L squeezes halve H and W L times.
		f := 1 << c.Levels
		if c.Levels > 30 || c.ImageH%f != 0 || c.ImageW%f != 0 {
			bad("num_levels", "%d levels squeeze the image %d times, so H and W must be divisible by %d; %d×%d is not",
				c.Levels, c.Levels, f, c.ImageH, c.ImageW)
		}
	}
	if c.Precision != PrecisionAuto && c.Precision != PrecisionFP32 && c.Precision != PrecisionTF32 {
		bad("precision", "%q is not %q, %q or empty (auto)", c.Precision, PrecisionFP32, PrecisionTF32)
	}
	if c.Depth < 1 {
		bad("depth", "%d, want at least 1 flow step per level", c.Depth)
	}
	if c.Width < 1 {
		bad("width", "%d, want a positive hidden width", c.Width)
	}
	if c.Flow == FlowDLF {
		switch c.Parts {
		case 2, 4, 6, 8:
			if c.ImageC > 0 && c.Levels >= 1 && c.Levels <= 30 {
				for l := 0; l < c.Levels; l++ {
					ch := c.ImageC * 4 << l
					if ch%c.Parts != 0 {
						bad("num_parts", "K=%d does not divide the %d channels at level %d (image channels %d × 4 × 2^%d)",
							c.Parts, ch, l, c.ImageC, l)
						break
					}
				}
			}
		default:
			bad("num_parts", "K=%d, want one of 2, 4, 6, 8", c.Parts)
		}
		if c.Decomposition != 0 && c.Decomposition != 1 {
			bad("decomposition", "%d, want 0 (non-inverse) or 1 (inverse)", c.Decomposition)
		}
		if c.AffineCoupling && c.Parts != 2 {
			bad("affine_coupling", "needs num_parts 2, have %d", c.Parts)
		}
		if c.Init != InitReference && c.Init != InitIdentity && c.Init != InitData {
			bad("init", "%q is not one of %q, %q, %q", c.Init, InitReference, InitIdentity, InitData)
		}
	}
	if c.Flow == FlowGlow && c.Coupling != CouplingAffine && c.Coupling != CouplingAdditive {
		bad("flow_coupling", "%q is neither %q nor %q", c.Coupling, CouplingAffine, CouplingAdditive)
	}
	if c.InvConv != InvConvFull && c.InvConv != InvConvLU {
		bad("invconv", "%q is neither %q nor %q", c.InvConv, InvConvFull, InvConvLU)
	}
	if c.Conditioning && c.NumClasses < 1 {
		bad("num_classes", "%d, conditioning needs the number of classes", c.NumClasses)
	}
	if c.NumClasses < 0 {
		bad("num_classes", "%d is negative", c.NumClasses)
	}
	if c.L2Factor < 0 || math.IsNaN(c.L2Factor) {
		bad("l2_factor", "%g, want ≥ 0", c.L2Factor)
	}
	if c.Temperature != TemperatureTop && c.Temperature != TemperatureAll {
		bad("temperature_mode", "%q is neither %q nor %q", c.Temperature, TemperatureTop, TemperatureAll)
	}
	if c.BatchSize < 1 {
		bad("batch_size", "%d, want at least 1", c.BatchSize)
	}
	if c.Optimizer != OptimAdamax && c.Optimizer != OptimAdam {
		bad("optimizer", "%q is neither %q nor %q", c.Optimizer, OptimAdamax, OptimAdam)
	}
	if !(c.InitialLR > 0) {
		bad("initial_lr", "%g, want > 0", c.InitialLR)
	}
	if c.LR < 0 || math.IsNaN(c.LR) {
		bad("lr", "%g, want ≥ 0", c.LR)
	}
	if c.DecaySteps < 1 {
		bad("decay_steps", "%d, want ≥ 1", c.DecaySteps)
	}
	if !(c.DecayRate > 0 && c.DecayRate <= 1) {
		bad("decay_rate", "%g, want in (0, 1]", c.DecayRate)
	}
	if c.WarmupEpochs < 0 || math.IsNaN(c.WarmupEpochs) {
		bad("epochs_warmup", "%g, want ≥ 0", c.WarmupEpochs)
	}
	if !(c.Beta1 >= 0 && c.Beta1 < 1) {
		bad("beta1", "%g, want in [0, 1)", c.Beta1)
	}
	if !(c.Beta2 >= 0 && c.Beta2 < 1) {
		bad("beta2", "%g, want in [0, 1) (0: Glow's 1 − 1/iterations per epoch)", c.Beta2)
	}
	if !(c.Epsilon > 0) {
		bad("epsilon", "%g, want > 0", c.Epsilon)
	}
	if !(c.WeightDecay > 0 && c.WeightDecay <= 1) {
		bad("weight_decay", "%g, want in (0, 1] (a multiplicative factor; 1 = off)", c.WeightDecay)
	}
	if !(c.PolyakDecay >= 0 && c.PolyakDecay < 1) {
		bad("polyak_epochs_decay", "%g, want in [0, 1)", c.PolyakDecay)
	}
	if !(c.ClipGradNorm >= 0) || math.IsInf(c.ClipGradNorm, 0) {
		bad("clip_grad_norm", "%g, want a finite value ≥ 0 (0 = off)", c.ClipGradNorm)
	}
	return errors.Join(errs...)
}

// ChannelsAt returns the number of channels and the spatial size of the flow steps at level l.
func (c *Config) ChannelsAt(l int) (h, w, ch int) {
	return c.ImageH >> (l + 1), c.ImageW >> (l + 1), c.ImageC * 4 << l
}

// identityDLT reports whether the DLTs, split priors and top prior start at the identity (InitIdentity,
// and InitData, which only adds the hyper-networks' data-initialised actnorms).
func (c *Config) identityDLT() bool { return c.Init == InitIdentity || c.Init == InitData }

// Dims returns D = H·W·C of the image, the denominator of bits per dimension.
func (c *Config) Dims() int { return c.ImageH * c.ImageW * c.ImageC }

// JSON returns the config as indented JSON.
func (c *Config) JSON() string {
	b, err := json.MarshalIndent(c, "", "  ")
	if err != nil {
		panic(err) // a struct of plain fields always marshals
	}
	return string(b)
}

// ParseConfig decodes a JSON config, rejecting unknown fields, and validates it.
func ParseConfig(b []byte) (Config, error) {
	var c Config
	dec := json.NewDecoder(strings.NewReader(string(b)))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&c); err != nil {
		return Config{}, fmt.Errorf("dlf: config JSON: %w", err)
	}
	if err := c.Validate(); err != nil {
		return Config{}, err
	}
	return c, nil
}

// ArchDiff returns the first field that defines the parameters (their names and shapes) or the function they compute in which a and b differ, as "name: a vs b".
func ArchDiff(a, b Config) string {
	type field struct {
		name string
		a, b any
	}
	fs := []field{
		{"image shape", fmt.Sprintf("%d×%d×%d", a.ImageH, a.ImageW, a.ImageC), fmt.Sprintf("%d×%d×%d", b.ImageH, b.ImageW, b.ImageC)},
		{"num_bits_x", a.NumBits, b.NumBits}, {"flow", a.Flow, b.Flow}, {"num_levels", a.Levels, b.Levels},
		{"depth", a.Depth, b.Depth}, {"width", a.Width, b.Width}, {"num_parts", a.Parts, b.Parts},
		{"decomposition", a.Decomposition, b.Decomposition}, {"affine_coupling", a.AffineCoupling, b.AffineCoupling},
		{"flow_coupling", a.Coupling, b.Coupling}, {"invconv", a.InvConv, b.InvConv},
		{"invconv_bias", a.InvConvBias, b.InvConvBias}, {"init", a.Init, b.Init},
		{"conditioning", a.Conditioning, b.Conditioning}, {"num_classes", a.NumClasses, b.NumClasses},
	}
	for _, f := range fs {
		if f.a != f.b {
			return fmt.Sprintf("%s %v there, %v here", f.name, f.a, f.b)
		}
	}
	return ""
}

// FormatCount formats a count with thousands separators ("1,828,648"), as parameter counts are
// printed.
func FormatCount(n int) string {
	s := strconv.Itoa(n)
	var b []byte
	for i := range len(s) {
		if i > 0 && (len(s)-i)%3 == 0 && s[i-1] != '-' {
			b = append(b, ',')
		}
		b = append(b, s[i])
	}
	return string(b)
}
