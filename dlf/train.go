package dlf

import (
	"dlf/autodiff/optim"
	"dlf/tensor"
)

// OptimParams returns the trainable parameters with their checkpoint names, for optim.New.
func (m *Model) OptimParams() []optim.Param {
	var out []optim.Param
	for _, p := range m.reg.list {
		if p.Trainable {
			out = append(out, optim.Param{Name: p.Name, Var: p.Var})
		}
	}
	return out
}

// OptimConfig returns the optimizer settings of c. itersPerEpoch resolves Beta2 = 0, Glow's
// 1 − 1/(iterations per epoch) (dlf-spec §5).
func (c *Config) OptimConfig(itersPerEpoch int) optim.Config {
	kind := tensor.Adamax
	if c.Optimizer == OptimAdam {
		kind = tensor.Adam
	}
	b2 := c.Beta2
	if b2 == 0 {
		b2 = 1 - 1/float64(max(itersPerEpoch, 2))
	}
	return optim.Config{Kind: kind, Beta1: c.Beta1, Beta2: b2, Eps: c.Epsilon, WeightDecay: c.WeightDecay, ClipNorm: c.ClipGradNorm}
}

// Schedule returns the learning-rate schedule of c: DLF's max(initial·rate^(step/decay_steps), lr)
// (dlf-spec §3.1), with Glow's linear warm-up over WarmupEpochs epochs of itersPerEpoch steps.
func (c *Config) Schedule(itersPerEpoch int) optim.Schedule {
	s := optim.Schedule{Initial: c.InitialLR, Rate: c.DecayRate, DecaySteps: float64(c.DecaySteps), Floor: c.LR}
	if c.DecayRate == 1 {
		s.DecaySteps, s.Floor = 0, 0
	}
	s.WarmupSteps = int(c.WarmupEpochs * float64(itersPerEpoch))
	return s
}
