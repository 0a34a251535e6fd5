package backendtest

import (
	"fmt"
	"math"

	"dlf/tensor"
)

// runOptim covers AdamStep for Adamax and Adam, with and without multiplicative weight decay, with
// the rate as an argument and read from a device tensor (OptimParams.LRTensor), starting from random
// (never zero) w, m, v and checking all three after the update.
func runOptim(s *suite, t tb) {
	shapes := [][]int{{1}, {7}, {3, 5, 7, 3}, {128, 128}, {3, 3, 9, 24}}
	kinds := []struct {
		name string
		kind tensor.OptimKind
	}{{"adamax", tensor.Adamax}, {"adam", tensor.Adam}}
	s.op(t, "AdamStep", func(t tb, dt tensor.DType) {
		for _, k := range kinds {
			for _, wd := range []float64{1, 0.9999} {
				for _, sh := range shapes {
					for _, devLR := range []bool{false, true} {
						name := fmt.Sprintf("%s_wd%g_%s", k.name, wd, shapeName(sh))
						if devLR {
							name += "_lr_tensor"
						}
						s.leaf(t, dt, name, func(e *env) {
							// dlf-spec §3.1: β1 = 0.9, β2 = 0.999, ε = 1e-8; lr is the bias-corrected rate.
							o := tensor.OptimParams{Kind: k.kind, LR: 0.05 * e.rng.Float64(), Beta1: 0.9, Beta2: 0.999, Eps: 1e-8, WeightDecay: wd}
							run := o
							if devLR {
								// The tensor holds the rate in the tensor's dtype: the reference uses that value.
								o.LR = e.round(o.LR)
								run.LRTensor = e.tensor([]float64{o.LR}, 1)
								run.LR = math.NaN() // must not be used
							}
							e.describe("%s lr=%g beta1=%g beta2=%g eps=%g weight decay=%g", k.name, o.LR, o.Beta1, o.Beta2, o.Eps, o.WeightDecay)
							n := numel(sh)
							wv, mv := e.signed(n, 0.1, 2), e.signed(n, 0.01, 1)
							vv, gv := e.positive(n, 0.01, 1), e.signed(n, 0.01, 1)
							if k.kind == tensor.Adam {
								// v estimates g², so keep it in g²'s range.
								vv = e.positive(n, 1e-4, 1)
							}
							ww, wm, wvv := refAdamStep(o, wv, mv, vv, gv)
							w, m, v, g := e.tensor(wv, sh...), e.tensor(mv, sh...), e.tensor(vv, sh...), e.tensor(gv, sh...)
							tensor.AdamStep(run, w, m, v, g)
							want, scale := split(ww)
							e.expect("AdamStep w", w, want, scale, e.tol.Elementwise)
							want, scale = split(wm)
							e.expect("AdamStep m", m, want, scale, e.tol.Elementwise)
							want, scale = split(wvv)
							e.expect("AdamStep v", v, want, scale, e.tol.Elementwise)
							e.expectExact("AdamStep g (must be unchanged)", g.Shape(), e.get(g), gv)
						})
					}
				}
			}
		}
	})
}
