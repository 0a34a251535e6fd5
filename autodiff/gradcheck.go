package autodiff

import (
	"fmt"
	"math"
	"math/rand/v2"

	"dlf/tensor"
)

// GradCheckFunc builds the function under test from its inputs with Tape ops. It is called once on a
// recording tape and many times on a NoGrad tape; it may release intermediates (and even its input
// Vars, which are fresh references on every call) like production code does.
type GradCheckFunc func(t *Tape, in []*Var) []*Var

// GradCheckOptions tune GradCheck; the zero value means the defaults.
type GradCheckOptions struct {
	// Step is the finite-difference step h (default 1e-3).
	Step float64
	// Seed seeds the random projection of the outputs.
	Seed uint64
	// Wrt lists which inputs to differentiate (default: all).
	Wrt []bool
}

// GradCheckResult is the comparison for one input.
type GradCheckResult struct {
	// RelErr is max_j |num_j − ana_j| / max(‖num‖∞, ‖ana‖∞): the worst error relative to the
	// gradient's scale (0 when both gradients are exactly zero or the input was not checked).
	RelErr float64
	// Scale is max(‖num‖∞, ‖ana‖∞); a test should require it to be non-zero, or the check is vacuous.
	Scale float64
}

// GradCheck compares the gradients Backward computes for f with numerical ones and returns one
// GradCheckResult per input.
//
// The outputs are reduced to the scalar L = Σ_o Σ r_o ⊙ out_o with fixed random weights r_o (standard
// normal, from opt.Seed), so every output element is exercised, and the analytic side is a single
// BackwardFrom seeded with r. The numerical side perturbs one input element at a time and uses the
// fourth-order central difference [8(L(x+h) − L(x−h)) − (L(x+2h) − L(x−2h))] / 12h, whose truncation
// error is O(h⁴), so in float64 with h = 1e-3 both truncation and rounding stay far below 1e-6
// relative for smooth functions. The inputs must be Float64 tensors; they are not modified.
func GradCheck(f GradCheckFunc, inputs []*tensor.Tensor, opt GradCheckOptions) ([]GradCheckResult, error) {
	if opt.Step == 0 {
		opt.Step = 1e-3
	}
	for i, x := range inputs {
		if x.DType() != tensor.Float64 {
			return nil, fmt.Errorf("autodiff: GradCheck input %d is %v, want float64", i, x.DType())
		}
	}
	wrt := func(i int) bool { return opt.Wrt == nil || opt.Wrt[i] }
	rng := rand.New(rand.NewPCG(opt.Seed, 0x6a09e667f3bcc909))

	// Working copies the numerical side perturbs in place.
	work := make([]*tensor.Tensor, len(inputs))
	for i, x := range inputs {
		work[i] = tensor.Clone(x)
	}
	defer func() {
		for _, w := range work {
			w.Release()
		}
	}()
	vars := func(grad bool) []*Var {
		vs := make([]*Var, len(work))
		for i, w := range work {
			vs[i] = &Var{Value: retain(w), requiresGrad: grad && wrt(i)}
		}
		return vs
	}

	// Analytic gradients.
	tp := NewTape()
	in := vars(true)
	outs := f(tp, in)
	weights := make([][]float64, len(outs))
	seeds := make([]*tensor.Tensor, len(outs))
	var roots []*Var
	var rootSeeds []*tensor.Tensor
	for o, v := range outs {
		w := make([]float64, v.Value.Numel())
		for j := range w {
			w[j] = rng.NormFloat64()
		}
		weights[o] = w
		seeds[o] = tensor.FromFloat64(v.Value.Backend(), w, v.Value.Shape()...)
		if v.requiresGrad {
			roots = append(roots, v)
			rootSeeds = append(rootSeeds, seeds[o])
		}
	}
	if len(roots) > 0 {
		if err := tp.BackwardFrom(roots, rootSeeds); err != nil {
			return nil, err
		}
	} else {
		tp.Release()
	}
	for _, s := range seeds {
		s.Release()
	}
	for _, v := range outs {
		v.Release()
	}
	analytic := make([][]float64, len(in))
	for i, v := range in {
		if v.Grad != nil {
			analytic[i] = v.Grad.Float64s()
		} else {
			analytic[i] = make([]float64, work[i].Numel())
		}
		v.ZeroGrad()
		v.Release()
	}

	loss := func() float64 {
		vs := vars(false)
		outs := f(NoGrad(), vs)
		s := 0.0
		for o, v := range outs {
			for j, y := range v.Value.Float64s() {
				s += weights[o][j] * y
			}
			v.Release()
		}
		for _, v := range vs {
			v.Release()
		}
		return s
	}
	h := opt.Step
	errs := make([]GradCheckResult, len(inputs))
	for i, w := range work {
		if !wrt(i) {
			continue
		}
		x := w.Float64s()
		num := make([]float64, len(x))
		at := func(j int, d float64) float64 {
			old := x[j]
			x[j] = old + d
			w.Upload(x)
			l := loss()
			x[j] = old
			return l
		}
		for j := range x {
			p1, m1 := at(j, h), at(j, -h)
			p2, m2 := at(j, 2*h), at(j, -2*h)
			num[j] = (8*(p1-m1) - (p2 - m2)) / (12 * h)
		}
		w.Upload(x)
		var diff, scale float64
		for j := range x {
			if math.IsNaN(num[j]) || math.IsNaN(analytic[i][j]) {
				return nil, fmt.Errorf("autodiff: GradCheck input %d element %d: numerical %v, analytic %v", i, j, num[j], analytic[i][j])
			}
			diff = max(diff, math.Abs(num[j]-analytic[i][j]))
			scale = max(scale, math.Abs(num[j]), math.Abs(analytic[i][j]))
		}
		errs[i].Scale = scale
		if scale > 0 {
			errs[i].RelErr = diff / scale
		}
	}
	return errs, nil
}
