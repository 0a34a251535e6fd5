package backendtest

import (
	"fmt"
	"math"

	"dlf/tensor"
)

var nan = math.NaN()

// expect downloads got and compares it with the reference: element i passes when
// |got[i] − want[i]| ≤ tol·scale[i] (scale from the reference's running error bound, ≥ |want[i]|).
// NaN or Inf in got always fails. It reports the first failing element with its index, the count,
// and the worst relative error.
func (e *env) expect(what string, got *tensor.Tensor, want, scale []float64, tol float64) bool {
	return e.expectValues(what, got.Shape(), e.get(got), want, scale, tol)
}

// expectValues is expect for values already on the host.
func (e *env) expectValues(what string, shape tensor.Shape, got, want, scale []float64, tol float64) bool {
	if len(got) != len(want) || len(scale) != len(want) {
		e.fatalf("%s: suite bug: %d values, %d references, %d scales", what, len(got), len(want), len(scale))
	}
	bad, first := 0, -1
	worst, worstAt := 0.0, -1
	for i, g := range got {
		w, s := want[i], scale[i]
		if math.IsNaN(w) || math.IsInf(w, 0) || math.IsNaN(s) {
			e.fatalf("%s: suite bug: reference is %v (scale %v) at %s", what, w, s, index(shape, i))
		}
		d := math.Abs(g - w)
		ok := d <= tol*s
		if math.IsNaN(g) || math.IsInf(g, 0) {
			ok = false
			d = math.Inf(1)
		}
		if !ok {
			bad++
			if first < 0 {
				first = i
			}
		}
		if r := d / math.Max(s, math.SmallestNonzeroFloat64); r > worst || worstAt < 0 {
			worst, worstAt = r, i
		}
	}
	if bad == 0 {
		// The margin, for -v runs: how close the worst element came to the bound (1 = at it).
		e.t.Logf("%s: %s: worst |diff|/(tol·scale) %.3g", e.t.Name(), what, worst/tol)
		return true
	}
	i := first
	e.t.Errorf("%s: %s %v: %d of %d elements outside tolerance; first at %s: got %.9g, want %.9g, |diff| %.3g > tol %.0e × scale %.4g; worst |diff|/scale %.3g at %s (got %.9g, want %.9g)%s",
		e.where(), what, shape, bad, len(got), index(shape, i), got[i], want[i], math.Abs(got[i]-want[i]), tol, scale[i],
		worst, index(shape, worstAt), got[worstAt], want[worstAt], e.seedHint())
	return false
}

// expectExact requires bitwise equality of the downloaded values (exact in float64 for both dtypes).
func (e *env) expectExact(what string, shape tensor.Shape, got, want []float64) bool {
	if len(got) != len(want) {
		e.fatalf("%s: suite bug: %d values, %d references", what, len(got), len(want))
	}
	bad, first := 0, -1
	for i := range got {
		if math.Float64bits(got[i]) != math.Float64bits(want[i]) {
			bad++
			if first < 0 {
				first = i
			}
		}
	}
	if bad == 0 {
		return true
	}
	e.t.Errorf("%s: %s %v: %d of %d elements differ (exact match required); first at %s: got %.9g (bits %#x), want %.9g (bits %#x)%s",
		e.where(), what, shape, bad, len(got), index(shape, first), got[first], math.Float64bits(got[first]),
		want[first], math.Float64bits(want[first]), e.seedHint())
	return false
}

// roundAll rounds reference values to the dtype (for outputs that are exact copies of inputs).
func (e *env) roundAll(x []float64) []float64 {
	out := make([]float64, len(x))
	for i, v := range x {
		out[i] = e.round(v)
	}
	return out
}

// index formats flat index i of shape as a multi-index.
func index(shape tensor.Shape, i int) string {
	if len(shape) <= 1 {
		return fmt.Sprintf("[%d]", i)
	}
	idx := make([]int, len(shape))
	r := i
	for d := len(shape) - 1; d >= 0; d-- {
		if shape[d] > 0 {
			idx[d] = r % shape[d]
			r /= shape[d]
		}
	}
	return fmt.Sprintf("%v (flat %d)", idx, i)
}

// shapeName formats a shape for subtest names: 2x14x14x4.
func shapeName(s []int) string {
	out := ""
	for i, d := range s {
		if i > 0 {
			out += "x"
		}
		out += fmt.Sprint(d)
	}
	return out
}
