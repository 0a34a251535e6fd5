package cuda

import (
	"fmt"

	"dlf/tensor"
)

// AdamStep updates w, m and v in place from g with one fused kernel (tensor.OptimParams gives the
// rules; 1−β1 and 1−β2 are formed in float64 and rounded once).
func (b *Backend) AdamStep(o tensor.OptimParams, w, m, v, g *tensor.Tensor) {
	if o.Kind != tensor.Adam && o.Kind != tensor.Adamax {
		panic(fmt.Sprintf("cuda: unknown optimizer kind %d", o.Kind))
	}
	n := int64(w.Numel())
	if n == 0 {
		return
	}
	b.run("AdamStep", func() error {
		if o.LRTensor != nil {
			return b.k.AdamStepLrF32(b.stream, grid1D(n), block1D, 0, dptr(w), dptr(m), dptr(v), dptr(g), n, int32(o.Kind),
				dptr(o.LRTensor), float32(o.Beta1), float32(1-o.Beta1), float32(o.Beta2), float32(1-o.Beta2),
				float32(o.Eps), float32(o.WeightDecay))
		}
		return b.k.AdamStepF32(b.stream, grid1D(n), block1D, 0, dptr(w), dptr(m), dptr(v), dptr(g), n, int32(o.Kind),
			float32(o.LR), float32(o.Beta1), float32(1-o.Beta1), float32(o.Beta2), float32(1-o.Beta2),
			float32(o.Eps), float32(o.WeightDecay))
	})
}
