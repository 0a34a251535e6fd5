// Package optim trains autodiff parameters: Adamax and Adam with the reference implementation's bias
// correction and multiplicative weight decay, its learning-rate schedule with optional linear
// warm-up, global gradient-norm clipping, and a Polyak (exponential moving) average of the parameters
// that evaluation and sampling can swap in.
//
// The update rules follow DLF's training code, which copies Glow's optimizer (dlf-spec §3.1): at step
// t (counting from 1) the rate is lr_t = lr·√(1−β2^t)/(1−β1^t), applied to Adamax too, and the
// per-element update is the fused tensor.AdamStep. All optimizer state (moments, averages) lives on
// the parameters' backend; only the step count and hyper-parameters are host values. State()
// and Restore() turn it into named tensors plus a JSON string for a checkpoint, so a resumed run
// continues bit for bit.
package optim

import (
	"encoding/json"
	"fmt"
	"math"

	"dlf/autodiff"
	"dlf/tensor"
)

// Param is a trainable Var with its stable checkpoint name ("level0.step3.invconv.weight").
type Param struct {
	Name string
	Var  *autodiff.Var
}

// Named is a tensor with its checkpoint name, as State returns them.
type Named struct {
	Name   string
	Tensor *tensor.Tensor
}

// Config holds an optimizer's hyper-parameters.
type Config struct {
	// Kind is tensor.Adamax or tensor.Adam.
	Kind tensor.OptimKind
	// Beta1 and Beta2 are the moment decay rates; Eps guards the division.
	Beta1, Beta2, Eps float64
	// WeightDecay is the reference's multiplicative factor applied to the weights each step
	// (w ← wd·w − …); 1 turns it off. It must lie in (0, 1].
	WeightDecay float64
	// ClipNorm bounds the global L2 norm of the gradients before each update (ClipOnDevice: no
	// host round trip, so a captured step keeps it); 0 turns clipping off.
	ClipNorm float64
}

// DLFConfig returns the reference's defaults (dlf-spec §3.1): Adamax, β1 = 0.9, β2 = 1 − 1/1000,
// ε = 1e-8, no weight decay.
func DLFConfig() Config {
	return Config{Kind: tensor.Adamax, Beta1: 0.9, Beta2: 1 - 1.0/1000, Eps: 1e-8, WeightDecay: 1}
}

func (c Config) validate() error {
	switch {
	case c.Kind != tensor.Adamax && c.Kind != tensor.Adam:
		return fmt.Errorf("optim: unknown optimizer kind %d (want Adamax or Adam)", c.Kind)
	case !(c.Beta1 >= 0 && c.Beta1 < 1) || !(c.Beta2 > 0 && c.Beta2 < 1):
		return fmt.Errorf("optim: betas (%v, %v) must lie in [0, 1) and (0, 1)", c.Beta1, c.Beta2)
	case !(c.Eps > 0):
		return fmt.Errorf("optim: eps %v must be positive", c.Eps)
	case !(c.WeightDecay > 0 && c.WeightDecay <= 1):
		return fmt.Errorf("optim: weight decay %v is a multiplicative factor and must lie in (0, 1]; 1 turns it off", c.WeightDecay)
	case !(c.ClipNorm >= 0) || math.IsInf(c.ClipNorm, 0):
		return fmt.Errorf("optim: gradient clipping norm %v must be finite and ≥ 0 (0 turns it off)", c.ClipNorm)
	}
	return nil
}

// kindName is the name used in serialized state.
func kindName(k tensor.OptimKind) string {
	switch k {
	case tensor.Adamax:
		return "adamax"
	case tensor.Adam:
		return "adam"
	}
	return fmt.Sprintf("kind%d", k)
}

// Optimizer applies Adamax or Adam updates to a fixed list of parameters.
type Optimizer struct {
	cfg    Config
	params []Param
	vars   []*autodiff.Var // the params' Vars, for clipping
	m, v   []*tensor.Tensor
	step   int
}

// New returns an optimizer for params with zeroed moments on each parameter's backend. Names must be
// unique, since they key the serialized state.
func New(cfg Config, params []Param) (*Optimizer, error) {
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	seen := map[string]bool{}
	o := &Optimizer{cfg: cfg, params: append([]Param(nil), params...), vars: Vars(params)}
	for _, p := range params {
		if seen[p.Name] {
			return nil, fmt.Errorf("optim: parameter name %q appears twice", p.Name)
		}
		seen[p.Name] = true
		w := p.Var.Value
		o.m = append(o.m, tensor.Zeros(w.Backend(), w.DType(), w.Shape()...))
		o.v = append(o.v, tensor.Zeros(w.Backend(), w.DType(), w.Shape()...))
	}
	return o, nil
}

// Config returns the hyper-parameters.
func (o *Optimizer) Config() Config { return o.cfg }

// Params returns the parameters in update order.
func (o *Optimizer) Params() []Param { return o.params }

// Steps returns how many updates have been applied.
func (o *Optimizer) Steps() int { return o.step }

// BiasCorrectedLR returns the rate the t-th update (t ≥ 1) uses for base rate lr:
// lr·√(1−β2^t)/(1−β1^t), the reference's correction, applied for Adamax too (dlf-spec §3.1).
func (o *Optimizer) BiasCorrectedLR(lr float64, t int) float64 {
	return lr * math.Sqrt(1-math.Pow(o.cfg.Beta2, float64(t))) / (1 - math.Pow(o.cfg.Beta1, float64(t)))
}

// Step applies one update with base learning rate lr to every parameter that has a gradient;
// parameters without one (nil Grad) are left alone, like variables without a gradient in the
// reference. It does not clear the gradients (see ZeroGrad).
func (o *Optimizer) Step(lr float64) {
	o.step++
	o.clip()
	p := tensor.OptimParams{
		Kind: o.cfg.Kind, LR: o.BiasCorrectedLR(lr, o.step),
		Beta1: o.cfg.Beta1, Beta2: o.cfg.Beta2, Eps: o.cfg.Eps, WeightDecay: o.cfg.WeightDecay,
	}
	for i, prm := range o.params {
		if g := prm.Var.Grad; g != nil {
			tensor.AdamStep(p, prm.Var.Value, o.m[i], o.v[i], g)
		}
	}
}

// Advance starts the next update without queuing it: it counts the step and returns its
// bias-corrected rate for base rate lr. ApplyFrom then queues the update, reading that rate from a
// device tensor: a captured ApplyFrom (a CUDA graph) is replayed every step, and Advance with an
// upload of its rate runs before each replay. Advance then ApplyFrom is Step, bit for bit, when the
// rate is written into a float32 tensor.
func (o *Optimizer) Advance(lr float64) float64 {
	o.step++
	return o.BiasCorrectedLR(lr, o.step)
}

// ApplyFrom queues the update of every parameter with a gradient, its rate read from the [1]
// tensor lr when the update runs.
func (o *Optimizer) ApplyFrom(lr *tensor.Tensor) {
	o.clip()
	p := tensor.OptimParams{
		Kind: o.cfg.Kind, LRTensor: lr,
		Beta1: o.cfg.Beta1, Beta2: o.cfg.Beta2, Eps: o.cfg.Eps, WeightDecay: o.cfg.WeightDecay,
	}
	for i, prm := range o.params {
		if g := prm.Var.Grad; g != nil {
			tensor.AdamStep(p, prm.Var.Value, o.m[i], o.v[i], g)
		}
	}
}

// clip applies ClipNorm to the gradients, on the device.
func (o *Optimizer) clip() {
	if o.cfg.ClipNorm > 0 {
		ClipOnDevice(o.vars, o.cfg.ClipNorm)
	}
}

// ZeroGrad releases every parameter's gradient.
func (o *Optimizer) ZeroGrad() {
	for _, p := range o.params {
		p.Var.ZeroGrad()
	}
}

// state is the JSON form of the optimizer's host state.
type state struct {
	Kind        string  `json:"kind"`
	Step        int     `json:"step"`
	Beta1       float64 `json:"beta1"`
	Beta2       float64 `json:"beta2"`
	Eps         float64 `json:"eps"`
	WeightDecay float64 `json:"weight_decay"`
}

// State returns the optimizer's host state as a JSON string (kind, step, hyper-parameters) and its
// moments as tensors named "opt.m.<param>" and "opt.v.<param>". The tensors are the live state, not
// copies: write them out before the next Step.
func (o *Optimizer) State() (string, []Named) {
	b, _ := json.Marshal(state{Kind: kindName(o.cfg.Kind), Step: o.step, Beta1: o.cfg.Beta1, Beta2: o.cfg.Beta2, Eps: o.cfg.Eps, WeightDecay: o.cfg.WeightDecay})
	var ts []Named
	for i, p := range o.params {
		ts = append(ts, Named{"opt.m." + p.Name, o.m[i]}, Named{"opt.v." + p.Name, o.v[i]})
	}
	return string(b), ts
}

// Restore loads state written by State: the step count from meta and every moment through load,
// which must fill dst from the named tensor, checking its dtype and shape (safetensors.File.Load
// does). The optimizer kind must match; the other hyper-parameters come from the Config, so a resumed
// run may change them deliberately.
func (o *Optimizer) Restore(meta string, load func(name string, dst *tensor.Tensor) error) error {
	var s state
	if err := json.Unmarshal([]byte(meta), &s); err != nil {
		return fmt.Errorf("optim: optimizer state %q: %w", meta, err)
	}
	if s.Kind != kindName(o.cfg.Kind) {
		return fmt.Errorf("optim: checkpoint holds %s state, but the optimizer is %s", s.Kind, kindName(o.cfg.Kind))
	}
	if s.Step < 0 {
		return fmt.Errorf("optim: checkpoint has negative step %d", s.Step)
	}
	for i, p := range o.params {
		if err := load("opt.m."+p.Name, o.m[i]); err != nil {
			return err
		}
		if err := load("opt.v."+p.Name, o.v[i]); err != nil {
			return err
		}
	}
	o.step = s.Step
	return nil
}
