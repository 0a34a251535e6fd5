package backendtest

import (
	"math"
	"slices"

	"dlf/tensor"
)

// Finite-difference checks of the backward ops (Float64 only): each backward op must agree with
// central differences of its own forward op on the same backend, independently of the formula
// references.

// fdStep is the central-difference step for x. Central differences err by h²·f”'/6 from truncation
// and by about ε·|f|/h from rounding; h = 1e-5 keeps both near 1e-10 relative for the smooth,
// O(1)-scaled functions here, four orders below the 1e-6 tolerance.
func fdStep(x float64) float64 { return 1e-5 * math.Max(1, math.Abs(x)) }

// eps64 is float64's unit roundoff.
const eps64 = 0x1p-53

// fdMaxPerInput bounds how many elements of one input are perturbed (two forward calls each).
const fdMaxPerInput = 24

// fdInput is one differentiated input: its values, which the check perturbs in place and forward
// reads, and the analytic gradient the backward op produced.
type fdInput struct {
	name  string
	shape []int
	x     []float64
	grad  []float64
}

// fdNoiseULPs bounds, in units of float64's rounding error, how far the two forward evaluations of
// a central difference may round apart on each affected output, relative to that output's running
// error scale (from the reference). Only that rounding noise is added to the tolerance; it matters
// only for gradients far smaller than the loss they are read from.
const fdNoiseULPs = 16

// fdCheck compares each input's analytic gradient with central differences of
// L = Σ_o Σ_i w[o][i]·out[o][i], where forward recomputes the outputs on the backend from the
// inputs' current values. The difference out⁺ − out⁻ is taken element by element before it is
// weighted, so outputs that do not depend on the perturbed element cancel exactly and only the
// rounding of the affected ones remains. An element passes when
//
//	|analytic − fd| ≤ FiniteDiff·max(|analytic|, Σ|w·(out⁺ − out⁻)|/(2h)) + noise,
//	noise = fdNoiseULPs·ε·Σ_affected |w|·outScale/(2h),
//
// where outScale is the reference's running error scale of each output.
func (e *env) fdCheck(inputs []fdInput, w, outScale [][]float64, forward func() [][]float64) {
	tol := e.tol.FiniteDiff
	for _, inp := range inputs {
		bad, first := 0, -1
		var fAn, fFd, fSc, fNoise float64
		worst, worstAt := 0.0, -1
		for _, j := range e.pick(len(inp.x), fdMaxPerInput) {
			x0 := inp.x[j]
			h := fdStep(x0)
			xp, xm := x0+h, x0-h
			inp.x[j] = xp
			op := e.scratch(forward)
			inp.x[j] = xm
			om := e.scratch(forward)
			inp.x[j] = x0
			var fd, mag, noise float64
			for o := range w {
				for i := range w[o] {
					if op[o][i] == om[o][i] {
						continue
					}
					d := w[o][i] * (op[o][i] - om[o][i])
					fd += d
					mag += math.Abs(d)
					noise += math.Abs(w[o][i]) * outScale[o][i]
				}
			}
			fd /= xp - xm
			mag /= xp - xm
			noise *= fdNoiseULPs * eps64 / (xp - xm)
			an := inp.grad[j]
			sc := math.Max(math.Abs(an), mag)
			d := math.Abs(an - fd)
			if math.IsNaN(d) || d > tol*sc+noise {
				bad++
				if first < 0 {
					first, fAn, fFd, fSc, fNoise = j, an, fd, sc, noise
				}
			}
			if r := d / math.Max(tol*sc+noise, math.SmallestNonzeroFloat64); r > worst || worstAt < 0 {
				worst, worstAt = r, j
			}
		}
		if bad > 0 {
			e.t.Errorf("%s: gradient w.r.t. %s %v disagrees with central differences at %d checked elements; first at %s: backward %.12g, finite difference %.12g, |diff| %.3g > tol %.0e × scale %.4g + rounding noise %.3g; worst |diff|/allowed %.3g at %s%s",
				e.where(), inp.name, inp.shape, bad, index(inp.shape, first), fAn, fFd, math.Abs(fAn-fFd), tol, fSc, fNoise,
				worst, index(inp.shape, worstAt), e.seedHint())
		}
	}
}

// fdElementwise checks the gradient an of an elementwise op, given upstream dy, by perturbing every
// element at once (each output depends only on its own input).
func (e *env) fdElementwise(name string, shape []int, x, dy, an []float64, f func(x []float64) []float64) {
	xp, xm := make([]float64, len(x)), make([]float64, len(x))
	for i, v := range x {
		h := fdStep(v)
		xp[i], xm[i] = v+h, v-h
	}
	yp := e.scratch(func() [][]float64 { return [][]float64{f(xp)} })[0]
	ym := e.scratch(func() [][]float64 { return [][]float64{f(xm)} })[0]
	fd, sc := make([]float64, len(x)), make([]float64, len(x))
	tol := e.tol.FiniteDiff
	for i := range x {
		fd[i] = dy[i] * (yp[i] - ym[i]) / (xp[i] - xm[i])
		// The rounding noise of the difference, expressed as extra scale (see fdCheck).
		noise := fdNoiseULPs * eps64 * math.Abs(dy[i]) * math.Max(math.Abs(yp[i]), math.Abs(ym[i])) / (xp[i] - xm[i])
		sc[i] = math.Max(math.Abs(fd[i]), math.Abs(an[i])) + noise/tol
	}
	e.expectValues(name+" vs central differences", tensor.Shape(shape), an, fd, sc, e.tol.FiniteDiff)
}

// scratch runs f and releases every tensor it allocated through env.
func (e *env) scratch(f func() [][]float64) [][]float64 {
	m := len(e.owned)
	out := f()
	for _, x := range e.owned[m:] {
		x.Release()
	}
	e.owned = e.owned[:m]
	return out
}

// pick returns up to k distinct indices below n, always including the first and the last.
func (e *env) pick(n, k int) []int {
	if n <= k {
		out := make([]int, n)
		for i := range out {
			out[i] = i
		}
		return out
	}
	idx := []int{0, n - 1}
	for _, j := range e.rng.Perm(n) {
		if len(idx) == k {
			break
		}
		if j != 0 && j != n-1 {
			idx = append(idx, j)
		}
	}
	slices.Sort(idx)
	return idx
}
