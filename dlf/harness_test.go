package dlf

import (
	"math"
	"math/rand/v2"
	"testing"

	"dlf/autodiff"
	"dlf/tensor"
	"dlf/tensor/cpu"
)

// Test helpers shared by the layer and model tests: a poisoning CPU backend, random tensors, the
// brute-force float64 Jacobian and its log|det|, and parameter randomisation (at the reference's
// init the hyper-networks' output convs are zero, which would make every cross-part derivative
// vanish and the checks vacuous).

func testBackend() tensor.Backend { return cpu.New(cpu.WithPoison(true)) }

func testRand(t testing.TB, stream uint64) *rand.Rand {
	return rand.New(rand.NewPCG(uint64(len(t.Name()))*7919+stream, stream^0x5eed))
}

// randTensor returns a tensor of N(0, std²) values.
func randTensor(be tensor.Backend, dt tensor.DType, r *rand.Rand, std float64, shape ...int) *tensor.Tensor {
	v := make([]float64, tensor.Shape(shape).Numel())
	for i := range v {
		v[i] = std * r.NormFloat64()
	}
	t := tensor.New(be, dt, shape...)
	t.Upload(v)
	return t
}

// perturb adds N(0, std²) noise to every trainable tensor of the list, keeping buffers (LU
// permutation and signs, init flags) intact.
func perturb(r *rand.Rand, params []*Param, std float64) {
	for _, p := range params {
		if !p.Trainable {
			continue
		}
		v := p.Var.Value.Float64s()
		for i := range v {
			v[i] += std * r.NormFloat64()
		}
		p.Var.Value.Upload(v)
	}
}

// jacobian returns the Jacobian J[i][j] = ∂f_i/∂x_j of f at x by fourth-order central differences
// in float64. The hyper-networks' ReLUs make f piecewise smooth, and a difference quotient whose
// ±2h window straddles a kink is wrong by a fraction of the slope change. So each column is computed
// with h = 1e-3 and h = 1e-4 and accepted when the two agree to 1e-9 (relative to the column's
// largest entry); otherwise the pair (1e-4, 1e-5), then (1e-5, 1e-6) is tried, keeping the larger
// step of the first agreeing pair. Without a kink the first pair agrees to its truncation (O(h⁴)) and
// rounding (O(ε/h)) errors, both near 1e-12.
func jacobian(t testing.TB, f func(x []float64) []float64, x []float64) [][]float64 {
	y0 := f(x)
	jac := make([][]float64, len(y0))
	for i := range jac {
		jac[i] = make([]float64, len(x))
	}
	xp := append([]float64(nil), x...)
	at := func(j int, d float64) []float64 {
		xp[j] = x[j] + d
		y := f(xp)
		xp[j] = x[j]
		return y
	}
	column := func(j int, h float64) []float64 {
		p1, m1, p2, m2 := at(j, h), at(j, -h), at(j, 2*h), at(j, -2*h)
		col := make([]float64, len(y0))
		for i := range col {
			col[i] = (8*(p1[i]-m1[i]) - (p2[i] - m2[i])) / (12 * h)
		}
		return col
	}
	retried := 0
	for j := range x {
		h := 1e-3
		col := column(j, h)
		ok := false
		for k := 0; k < 3; k++ {
			fine := column(j, h/10)
			d, s := maxAbsDiff(col, fine)
			if d <= 1e-9*max(s, 1e-3) {
				ok = true
				break
			}
			retried++
			col, h = fine, h/10
		}
		if !ok {
			t.Fatalf("Jacobian column %d: finite differences do not converge down to h = 1e-6", j)
		}
		for i := range col {
			jac[i][j] = col[i]
		}
	}
	if retried > 0 {
		t.Logf("Jacobian: %d of %d columns needed a smaller step (a ReLU kink within ±2h)", retried, len(x))
	}
	return jac
}

// logAbsDet returns log|det J| of a square Jacobian via a float64 LU factorisation.
func logAbsDet(t testing.TB, jac [][]float64) float64 {
	n := len(jac)
	flat := make([]float64, 0, n*n)
	for _, row := range jac {
		if len(row) != n {
			t.Fatalf("Jacobian is %d×%d, not square", n, len(row))
		}
		flat = append(flat, row...)
	}
	sign, lad := tensor.Slogdet(flat, n)
	if sign == 0 {
		t.Fatalf("Jacobian is singular")
	}
	return lad
}

// maxAbsDiff returns max |a_i − b_i| and max |b_i|.
func maxAbsDiff(a, b []float64) (diff, scale float64) {
	for i := range a {
		diff = max(diff, math.Abs(a[i]-b[i]))
		scale = max(scale, math.Abs(b[i]))
	}
	return diff, scale
}

// layer is one flow layer under test, wrapped with its parameter list.
type layer struct {
	// fwd maps x with parameters pv (the unit's Vars or GradCheck's copies).
	fwd func(e *env, pv vars, x *autodiff.Var) (y, ld *autodiff.Var)
	// inv maps y back with the canonical parameters.
	inv func(e *env, y *tensor.Tensor) (x, ld *tensor.Tensor)
	u   *unit
}

func (l layer) forwardValues(e *env, x *tensor.Tensor) (y, ld *tensor.Tensor) {
	xv := constVar(x)
	yv, lv := l.fwd(e, l.u.vars, xv)
	xv.Release()
	return yv.Value, lv.Value
}

// checkLayer runs the acceptance checks of one layer on a float64 input of the given shape:
// inverse(forward(x)) = x to 1e-12, the inverse's log-determinant is minus the forward's, the
// log-determinant equals log|det| of the brute-force Jacobian to 1e-8 (on the first example), and
// the gradients with respect to x and every trainable parameter pass GradCheck.
func checkLayer(t *testing.T, l layer, e *env, r *rand.Rand, shape ...int) {
	t.Helper()
	be := l.u.reg.be
	x := randTensor(be, tensor.Float64, r, 1, shape...)
	defer x.Release()
	y, ld := l.forwardValues(e, x)
	xr, ldi := l.inv(e, y)
	if d, s := maxAbsDiff(xr.Float64s(), x.Float64s()); d > 1e-12*max(1, s) {
		t.Errorf("inverse(forward(x)) differs from x by %.3g (scale %.3g)", d, s)
	}
	ldv, ldiv := ld.Float64s(), ldi.Float64s()
	for i := range ldv {
		if math.Abs(ldv[i]+ldiv[i]) > 1e-10*max(1, math.Abs(ldv[i])) {
			t.Errorf("example %d: forward logdet %.12g, inverse logdet %.12g (want its negative)", i, ldv[i], ldiv[i])
		}
	}
	y.Release()
	xr.Release()
	ldi.Release()

	// Brute-force Jacobian of example 0.
	one := append([]int{1}, shape[1:]...)
	x0 := x.Float64s()[:tensor.Shape(one).Numel()]
	f := func(v []float64) []float64 {
		xt := tensor.New(be, tensor.Float64, one...)
		xt.Upload(v)
		yt, lt := l.forwardValues(e, xt)
		out := yt.Float64s()
		xt.Release()
		yt.Release()
		lt.Release()
		return out
	}
	lad := logAbsDet(t, jacobian(t, f, x0))
	if math.Abs(lad-ldv[0]) > 1e-8*max(1, math.Abs(lad)) {
		t.Errorf("logdet %.12g, brute-force log|det J| %.12g (diff %.3g)", ldv[0], lad, ldv[0]-lad)
	} else {
		t.Logf("logdet %.10g vs brute-force %.10g (diff %.2g)", ldv[0], lad, ldv[0]-lad)
	}
	ld.Release()

	// Gradients with respect to x and all trainable parameters of the unit.
	xv := autodiff.NewParam(tensor.Clone(x))
	defer xv.Release()
	inputs := []*autodiff.Var{xv}
	names := []string{"x"}
	for _, v := range l.u.vars {
		if p := l.u.reg.byVar(v); p != nil && p.Trainable {
			inputs = append(inputs, v)
			names = append(names, p.Name)
		}
	}
	gradCheck(t, func(tp *autodiff.Tape) []*autodiff.Var {
		sub := *e
		sub.t = tp
		y, ld := l.fwd(&sub, l.u.vars, xv)
		return []*autodiff.Var{y, ld}
	}, inputs, names, 0)
}

// gradCheck compares the analytic gradients of f (reduced to L = Σ r ⊙ outputs with fixed random r)
// with numerical ones for every input with a non-empty name, at most maxElems random elements per
// input (0: all). inputs are leaf Vars that f reads (requiring gradients); their Grad is cleared. The numerical derivative is the fourth-order central difference with h = 1e-3; the
// element passes when |num − ana| ≤ 1e-6·scale + 10·ε·|L|₁/h, the first term relative to the input's
// gradient scale (max |ana|), the second the rounding error of the difference quotient (|L|₁ = Σ|r·out|).
// The hyper-networks' ReLUs make f only piecewise smooth, and a weight that feeds hundreds of
// pre-activations often moves one across zero within ±2h; such an element is retried with h = 1e-5
// (fourth order) and h = 1e-7 (second order), whose windows are too narrow to straddle a kink, under
// the same bound. Inputs must be float64; they are restored after perturbation.
func gradCheck(t *testing.T, f func(tp *autodiff.Tape) []*autodiff.Var, inputs []*autodiff.Var, names []string, maxElems int) {
	t.Helper()
	r := testRand(t, 99)
	for _, v := range inputs {
		v.ZeroGrad()
	}
	tp := autodiff.NewTape()
	outs := f(tp)
	weights := make([][]float64, len(outs))
	var roots []*autodiff.Var
	var seeds []*tensor.Tensor
	for o, v := range outs {
		w := make([]float64, v.Value.Numel())
		for j := range w {
			w[j] = r.NormFloat64()
		}
		weights[o] = w
		if v.RequiresGrad() {
			s := tensor.New(v.Value.Backend(), v.Value.DType(), v.Value.Shape()...)
			s.Upload(w)
			roots = append(roots, v)
			seeds = append(seeds, s)
		}
	}
	if err := tp.BackwardFrom(roots, seeds); err != nil {
		t.Fatal(err)
	}
	for _, s := range seeds {
		s.Release()
	}
	analytic := make([][]float64, len(inputs))
	for i, v := range inputs {
		if v.Grad != nil {
			analytic[i] = v.Grad.Float64s()
		} else {
			analytic[i] = make([]float64, v.Value.Numel())
		}
		v.ZeroGrad()
	}
	lmag := 0.0
	for o, v := range outs {
		for j, y := range v.Value.Float64s() {
			lmag += math.Abs(weights[o][j] * y)
		}
	}
	release(outs...)
	loss := func() float64 {
		outs := f(autodiff.NoGrad())
		s := 0.0
		for o, v := range outs {
			for j, y := range v.Value.Float64s() {
				s += weights[o][j] * y
			}
		}
		release(outs...)
		return s
	}
	worst, kinks, checked := 0.0, 0, 0
	for i, in := range inputs {
		x := in.Value
		vals := x.Float64s()
		idx := r.Perm(len(vals))
		if maxElems > 0 && len(idx) > maxElems {
			idx = idx[:maxElems]
		}
		at := func(j int, d float64) float64 {
			old := vals[j]
			vals[j] = old + d
			x.Upload(vals)
			l := loss()
			vals[j] = old
			x.Upload(vals)
			return l
		}
		scale := 0.0
		for _, a := range analytic[i] {
			scale = max(scale, math.Abs(a))
		}
		if scale == 0 {
			t.Errorf("gradcheck %s: the analytic gradient is exactly zero, the check is vacuous", names[i])
			continue
		}
		for _, j := range idx {
			ok := false
			var tries []float64
			for _, h := range []float64{1e-3, 1e-5, 1e-7} {
				var num float64
				if h > 1e-7 {
					num = (8*(at(j, h)-at(j, -h)) - (at(j, 2*h) - at(j, -2*h))) / (12 * h)
				} else {
					num = (at(j, h) - at(j, -h)) / (2 * h)
				}
				tries = append(tries, num)
				d := math.Abs(num - analytic[i][j])
				if d <= 1e-6*scale+10*2.2e-16*lmag/h {
					ok = true
					if h == 1e-3 {
						worst = max(worst, d/scale)
					} else {
						kinks++
					}
					break
				}
			}
			if !ok {
				t.Errorf("gradcheck %s[%d]: analytic %.10g, numerical %.10g (h=1e-3), %.10g (h=1e-5), %.10g (h=1e-7); gradient scale %.3g",
					names[i], j, analytic[i][j], tries[0], tries[1], tries[2], scale)
			}
			checked++
		}
	}
	t.Logf("gradcheck: %d elements, worst error/scale at h=1e-3 %.2g, %d retried with a smaller step (ReLU kinks)", checked, worst, kinks)
}
