package backendtest

import (
	"math"

	"dlf/tensor"
)

// refAdamStep applies one Adamax or Adam update (tensor.OptimKind; dlf-spec §3.1) with the new m
// and v, returning the new w, m and v.
func refAdamStep(o tensor.OptimParams, w, m, v, g []float64) (w1, m1, v1 []ev) {
	w1, m1, v1 = make([]ev, len(w)), make([]ev, len(w)), make([]ev, len(w))
	for i := range w {
		gi := in(g[i])
		m1[i] = in(m[i]).scale(o.Beta1).add(gi.scale(1 - o.Beta1))
		var denom ev
		if o.Kind == tensor.Adamax {
			if dv := o.Beta2 * v[i]; dv > math.Abs(g[i]) {
				v1[i] = in(v[i]).scale(o.Beta2)
			} else {
				v1[i] = in(math.Abs(g[i]))
			}
			denom = v1[i].add(in(o.Eps))
		} else {
			v1[i] = in(v[i]).scale(o.Beta2).add(gi.mul(gi).scale(1 - o.Beta2))
			denom = sqrtE(v1[i]).add(in(o.Eps))
		}
		w1[i] = in(w[i]).scale(o.WeightDecay).sub(m1[i].scale(o.LR).div(denom))
	}
	return w1, m1, v1
}
