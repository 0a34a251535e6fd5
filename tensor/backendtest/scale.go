package backendtest

import "math"

// ev is a reference value together with its running error scale: v is the exact (float64) result of
// the formula and m ≥ |v| is the magnitude from which an implementation that rounds every step in a
// lower precision may legitimately deviate, to first order (Wilkinson's running error analysis; see
// N. Higham, "Accuracy and Stability of Numerical Algorithms", 2nd ed., §3.3). Comparisons accept
// |got − v| ≤ tol·m. Inputs enter with m = |v|.
type ev struct{ v, m float64 }

// in lifts an input or constant.
func in(x float64) ev { return ev{x, math.Abs(x)} }

// add: rounding and propagated errors of a sum are bounded by the sum of the operands' scales.
func (a ev) add(b ev) ev { return ev{a.v + b.v, a.m + b.m} }

// sub: a difference is a sum; its scale does not shrink under cancellation.
func (a ev) sub(b ev) ev { return ev{a.v - b.v, a.m + b.m} }

// mul: δ(ab) ≈ a·δb + b·δa, bounded by the product of the scales.
func (a ev) mul(b ev) ev { return ev{a.v * b.v, a.m * b.m} }

// scale multiplies by a parameter that the backend may round to its precision (a relative error).
func (a ev) scale(c float64) ev { return ev{a.v * c, a.m * math.Abs(c)} }

// div: δ(a/b) ≈ δa/b − (a/b)·δb/b.
func (a ev) div(b ev) ev {
	q := a.v / b.v
	return ev{q, (a.m + math.Abs(q)*b.m) / math.Abs(b.v)}
}

// neg is exact.
func (a ev) neg() ev { return ev{-a.v, a.m} }

// expE: an absolute error δ in a is a relative error δ in exp(a).
func expE(a ev) ev {
	e := math.Exp(a.v)
	return ev{e, e * (1 + a.m)}
}

// logE: a relative error in a is an absolute error in log(a).
func logE(a ev) ev {
	l := math.Log(a.v)
	return ev{l, math.Abs(l) + a.m/math.Abs(a.v)}
}

// tanhE: tanh' = 1 − tanh².
func tanhE(a ev) ev {
	t := math.Tanh(a.v)
	return ev{t, math.Abs(t) + (1-t*t)*a.m}
}

// sigmoidE: σ' = σ(1 − σ).
func sigmoidE(a ev) ev {
	s := 1 / (1 + math.Exp(-a.v))
	return ev{s, s + s*(1-s)*a.m}
}

// sqrtE: √' = 1/(2√a).
func sqrtE(a ev) ev {
	r := math.Sqrt(a.v)
	return ev{r, r + a.m/(2*r)}
}

// evs lifts a slice of inputs.
func evs(x []float64) []ev {
	out := make([]ev, len(x))
	for i, v := range x {
		out[i] = in(v)
	}
	return out
}

// split separates values and scales.
func split(e []ev) (want, scale []float64) {
	want = make([]float64, len(e))
	scale = make([]float64, len(e))
	for i, x := range e {
		want[i], scale[i] = x.v, x.m
	}
	return want, scale
}
