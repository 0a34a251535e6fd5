package backendtest

import (
	"dlf/tensor"
)

// refUniform is element i of a Philox uniform fill: word i%4 of block i/4 (tensor.PhiloxBlock).
func refUniform(n int, seed, offset uint64) []float64 {
	out := make([]float64, n)
	var blk [4]uint32
	for i := range out {
		if i%4 == 0 {
			blk = tensor.PhiloxBlock(seed, offset, uint64(i/4))
		}
		out[i] = tensor.PhiloxUniform(blk[i%4])
	}
	return out
}

// refNormal is element i of a Philox normal fill: value i%4 of the Box–Muller pairs of block i/4.
func refNormal(n int, seed, offset uint64) []float64 {
	out := make([]float64, n)
	var v [4]float64
	for i := range out {
		if i%4 == 0 {
			v = tensor.PhiloxNormal(tensor.PhiloxBlock(seed, offset, uint64(i/4)))
		}
		out[i] = v[i%4]
	}
	return out
}
