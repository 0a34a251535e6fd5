package cpu

import "dlf/tensor"

// tf32Copy returns a scratch copy of src with every element rounded to TF32 (tensor.RoundTF32, the
// CUDA kernels' cvt.rna rounding), for the TF32 mode of Gemm and the convolutions: the float32
// kernels then multiply exactly the values the tensor cores multiply. Give it back with
// b.f32.put. The copy costs one pass over an operand, against the K-fold reuse of each element in
// the product.
func (b *Backend) tf32Copy(src []float32) *buffer[float32] {
	buf := b.f32.get(len(src))
	dst := buf.data[:len(src)]
	b.parallel(len(src), 1, func(lo, hi int) {
		for i := lo; i < hi; i++ {
			dst[i] = tensor.RoundTF32(src[i])
		}
	})
	return buf
}

// tf32Operands returns the operands a kernel should read at precision prec: ops themselves at
// FP32, TF32-rounded copies at TF32 (then done gives the copies back).
func (b *Backend) tf32Operands(prec tensor.Precision, ops ...[]float32) (out [][]float32, done func()) {
	if prec != tensor.TF32 {
		return ops, func() {}
	}
	bufs := make([]*buffer[float32], len(ops))
	out = make([][]float32, len(ops))
	for i, s := range ops {
		bufs[i] = b.tf32Copy(s)
		out[i] = bufs[i].data[:len(s)]
	}
	return out, func() {
		for _, bf := range bufs {
			b.f32.put(bf)
		}
	}
}
