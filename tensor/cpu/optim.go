package cpu

import (
	"fmt"
	"math"

	"dlf/tensor"
)

// AdamStep updates w, m and v in place from the gradient g (OptimParams gives the rules). The update
// is computed in float64 and rounded once per stored value.
func (b *Backend) AdamStep(o tensor.OptimParams, w, m, v, g *tensor.Tensor) {
	if b.dead() {
		return
	}
	if o.Kind != tensor.Adam && o.Kind != tensor.Adamax {
		panic(fmt.Sprintf("cpu: unknown optimizer kind %d", o.Kind))
	}
	if o.LRTensor != nil {
		if is32(o.LRTensor) {
			o.LR = float64(data[float32](o.LRTensor)[0])
		} else {
			o.LR = data[float64](o.LRTensor)[0]
		}
	}
	if is32(w) {
		adamStep(b, o, data[float32](w), data[float32](m), data[float32](v), data[float32](g))
	} else {
		adamStep(b, o, data[float64](w), data[float64](m), data[float64](v), data[float64](g))
	}
}

// adamCost is the per-element cost of an optimizer step in minWork units (about 3 ns per element
// in BenchmarkAdamStep: a division and a square root).
const adamCost = 8

func adamStep[T float](b *Backend, o tensor.OptimParams, w, m, v, g []T) {
	b1, b2, lr, eps, wd := o.Beta1, o.Beta2, o.LR, o.Eps, o.WeightDecay
	adamax := o.Kind == tensor.Adamax
	b.parallel(len(w), adamCost, func(lo, hi int) {
		w, m, v, g := w[lo:hi], m[lo:hi], v[lo:hi], g[lo:hi]
		m, v, g = m[:len(w)], v[:len(w)], g[:len(w)]
		for i := range w {
			gi := float64(g[i])
			mi := b1*float64(m[i]) + (1-b1)*gi
			var vi, den float64
			if adamax {
				vi = max(b2*float64(v[i]), math.Abs(gi))
				den = vi + eps
			} else {
				vi = b2*float64(v[i]) + (1-b2)*gi*gi
				den = math.Sqrt(vi) + eps
			}
			m[i], v[i] = T(mi), T(vi)
			w[i] = T(wd*float64(w[i]) - lr*mi/den)
		}
	})
}
