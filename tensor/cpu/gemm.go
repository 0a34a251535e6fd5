package cpu

import (
	"dlf/tensor"
	"dlf/tensor/cpu/gemm"
)

// Gemm computes c = alpha·op(a)·op(b) + beta·c for 2-D operands, or for each batch index of 3-D
// operands, with the blocked assembly GEMM of package gemm. Row-major tensors map directly onto its
// row-major convention; the leading dimension of each operand is its stored row length. At TF32 the
// float32 kernel reads TF32-rounded copies of a and b (tf32Operands).
func (b *Backend) Gemm(prec tensor.Precision, transA, transB bool, alpha float64, a, bm *tensor.Tensor, beta float64, c *tensor.Tensor) {
	if b.dead() {
		return
	}
	sa, sb, sc := a.Shape(), bm.Shape(), c.Shape()
	o := len(sa) - 2
	batch := 1
	if o == 1 {
		batch = sa[0]
	}
	ar, ac := sa[o], sa[o+1]
	br, bcols := sb[o], sb[o+1]
	m, n := sc[o], sc[o+1]
	k := ac
	if transA {
		k = ar
	}
	lda, ldb, ldc := max(ac, 1), max(bcols, 1), max(n, 1)
	opts := gemm.Options{Threads: b.threads}
	if is32(c) {
		ops, done := b.tf32Operands(prec, data[float32](a), data[float32](bm))
		defer done()
		x, y, z := ops[0], ops[1], data[float32](c)
		if o == 0 {
			opts.Sgemm(transA, transB, m, n, k, float32(alpha), x, lda, y, ldb, float32(beta), z, ldc)
		} else {
			opts.SgemmBatched(transA, transB, batch, m, n, k, float32(alpha), x, ar*ac, lda, y, br*bcols, ldb, float32(beta), z, m*n, ldc)
		}
		return
	}
	x, y, z := data[float64](a), data[float64](bm), data[float64](c)
	if o == 0 {
		opts.Dgemm(transA, transB, m, n, k, alpha, x, lda, y, ldb, beta, z, ldc)
	} else {
		opts.DgemmBatched(transA, transB, batch, m, n, k, alpha, x, ar*ac, lda, y, br*bcols, ldb, beta, z, m*n, ldc)
	}
}
