package cpu

import "dlf/tensor"

// Costs of one Philox block (four elements) in minWork units, from BenchmarkRandUniform and
// BenchmarkRandNormal on the dev machine: about 50 ns for the ten Philox rounds and the word
// shuffling through tensor.PhiloxBlock, and about 150 ns with the float64 Box–Muller transform
// (two logs, square roots and sin/cos pairs) that normals add.
const (
	uniformCost = 128
	normalCost  = 512
)

// RandUniform fills dst with Philox uniforms in [0, 1): element i is
// PhiloxUniform(word i%4 of PhiloxBlock(seed, offset, i/4)), exactly as every backend computes it.
func (b *Backend) RandUniform(dst *tensor.Tensor, seed, offset uint64) {
	if b.dead() {
		return
	}
	if is32(dst) {
		randFill(b, data[float32](dst), seed, offset, false)
	} else {
		randFill(b, data[float64](dst), seed, offset, false)
	}
}

// RandNormal fills dst with Philox standard normals: element i is PhiloxNormal(PhiloxBlock(seed,
// offset, i/4))[i%4].
func (b *Backend) RandNormal(dst *tensor.Tensor, seed, offset uint64) {
	if b.dead() {
		return
	}
	if is32(dst) {
		randFill(b, data[float32](dst), seed, offset, true)
	} else {
		randFill(b, data[float64](dst), seed, offset, true)
	}
}

func randFill[T float](b *Backend, d []T, seed, offset uint64, normal bool) {
	nb := int(tensor.PhiloxBlocks(len(d)))
	cost := uniformCost
	if normal {
		cost = normalCost
	}
	b.parallel(nb, cost, func(lo, hi int) {
		for j := lo; j < hi; j++ {
			w := tensor.PhiloxBlock(seed, offset, uint64(j))
			out := d[4*j : min(4*j+4, len(d))]
			if normal {
				v := tensor.PhiloxNormal(w)
				for k := range out {
					out[k] = T(v[k])
				}
				continue
			}
			for k := range out {
				out[k] = T(tensor.PhiloxUniform(w[k]))
			}
		}
	})
}
