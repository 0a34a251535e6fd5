package optim

import "math"

// Schedule is the reference's learning-rate schedule, max(Initial·Rate^(step/DecaySteps), Floor),
// with an optional linear warm-up over the first WarmupSteps steps (dlf-spec §3.1; the reference's
// own warm-up is a broken LR search, so this one is Glow's plain linear ramp instead).
type Schedule struct {
	// Initial is the rate at step 0 (the reference's --initial_lr, 0.05).
	Initial float64
	// Rate is the decay factor per DecaySteps steps (0.93); the exponent is continuous.
	Rate float64
	// DecaySteps is the decay period in steps (1000). 0 disables the decay.
	DecaySteps float64
	// Floor is the lowest rate (the reference's --lr, 0.005).
	Floor float64
	// WarmupSteps ramps the rate linearly: step s < WarmupSteps uses (s+1)/WarmupSteps of it.
	WarmupSteps int
}

// DLFSchedule returns the reference's defaults: 0.05·0.93^(step/1000), floored at 0.005, no warm-up.
func DLFSchedule() Schedule {
	return Schedule{Initial: 0.05, Rate: 0.93, DecaySteps: 1000, Floor: 0.005}
}

// LR returns the base learning rate for step (counting from 0); the optimizer applies the bias
// correction on top.
func (s Schedule) LR(step int) float64 {
	lr := s.Initial
	if s.DecaySteps > 0 {
		lr *= math.Pow(s.Rate, float64(step)/s.DecaySteps)
	}
	lr = max(lr, s.Floor)
	if step < s.WarmupSteps {
		lr *= float64(step+1) / float64(s.WarmupSteps)
	}
	return lr
}
