package dlf

import (
	"fmt"
	"math"

	"dlf/autodiff"
	"dlf/tensor"
)

// step is one flow step: invertible 1x1 conv → DLT (DLF, dlf-spec §2.4), or actnorm → invertible 1x1
// conv → coupling (Glow, dlf-spec §5). Its parameters form one unit, so a recomputing backward can
// re-run it on fresh copies of them.
type step struct {
	name string
	u    *unit
	an   *flowActNorm // Glow only
	inv  *invConv
	dlt  *dlt      // DLF only
	cpl  *coupling // Glow only
}

func newStep(r *registry, cfg *Config, level, index, c int) *step {
	name := fmt.Sprintf("level%d.step%d", level, index)
	s := &step{name: name, u: r.unit(name + ".")}
	if cfg.Flow == FlowGlow {
		s.an = newFlowActNorm(s.u, c)
	}
	s.inv = newInvConv(s.u, c, cfg.InvConv == InvConvLU, cfg.InvConvBias)
	if cfg.Flow == FlowGlow {
		s.cpl = newCoupling(s.u, cfg, c)
	} else {
		s.dlt = newDLT(s.u, cfg, c)
	}
	return s
}

// forward maps x to y with the parameters pv (the unit's Vars or copies of them) and returns the
// step's per-example log-determinant: the sum of its layers' (actnorm, 1x1 conv, DLT or coupling).
func (s *step) forward(e *env, pv vars, x *autodiff.Var) (y, ld *autodiff.Var) {
	close := e.arena()
	defer func() { close(y, ld) }()
	z, ld := s.mix(e, pv, x)
	var l *autodiff.Var
	if s.dlt != nil {
		y, l = s.dlt.forward(e, pv, z)
	} else {
		y, l = s.cpl.forward(e, pv, z)
	}
	return y, sumLD(e.t, ld, l)
}

// mix is the step's channel mixing: Glow's actnorm, then the invertible 1x1 conv (the actnorm's
// output is freed before the coupling runs).
func (s *step) mix(e *env, pv vars, x *autodiff.Var) (z, ld *autodiff.Var) {
	close := e.arena()
	defer func() { close(z, ld) }()
	z = x
	if s.an != nil {
		z, ld = s.an.forward(e, pv, x)
	}
	z, l := s.inv.forward(e.t, pv, z)
	return z, sumLD(e.t, ld, l)
}

// inverse maps y back to x and returns the log-determinant of the inverse map.
func (s *step) inverse(e *env, y *tensor.Tensor) (x, ld *tensor.Tensor, err error) {
	pv := s.u.vars
	var z, l *tensor.Tensor
	if s.dlt != nil {
		z, ld = s.dlt.inverse(e, pv, y)
	} else {
		z, ld = s.cpl.inverse(e, pv, y)
	}
	x, l, err = s.inv.inverse(pv, z, !e.noSync)
	z.Release()
	if err != nil {
		ld.Release()
		return nil, nil, fmt.Errorf("%s: %w", s.name, err)
	}
	tensor.AddT(ld, ld, l)
	l.Release()
	if s.an != nil {
		x2, l2 := s.an.inverse(pv, x)
		x.Release()
		x = x2
		tensor.AddT(ld, ld, l2)
		l2.Release()
	}
	return x, ld, nil
}

// apply runs the step on the model's tape: directly, or, with recompute, as a reversible op that keeps
// no activations and rebuilds its input from its output in the backward pass.
func (s *step) apply(e *env, x *autodiff.Var, recompute bool) (y, ld *autodiff.Var) {
	if !recompute || !e.t.Recording() {
		return s.forward(e, s.u.vars, x)
	}
	outs := e.t.Reversible(s.name, x, s.u.vars,
		func(t *autodiff.Tape, x *autodiff.Var, ps []*autodiff.Var) []*autodiff.Var {
			sub := *e
			sub.t = t
			y, ld := s.forward(&sub, ps, x)
			return []*autodiff.Var{y, ld}
		},
		func(y *tensor.Tensor, _ []*tensor.Tensor) *tensor.Tensor {
			sub := *e
			sub.t, sub.noSync = autodiff.NoGrad(), true
			x, ld, err := s.inverse(&sub, y)
			if err != nil {
				// The forward pass just used W, so it cannot be singular here unless the values
				// are not finite; a NaN input gives the backward NaN gradients, which the trainer
				// reports.
				return tensor.Full(y.Backend(), y.DType(), math.NaN(), y.Shape()...)
			}
			ld.Release()
			return x
		})
	return outs[0], outs[1]
}
