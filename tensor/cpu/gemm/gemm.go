package gemm

import (
	"fmt"
	"runtime"
)

// Options selects how a GEMM call runs. The zero value uses
// runtime.GOMAXPROCS(0) goroutines and the fastest kernel the CPU supports.
type Options struct {
	// Threads is the most goroutines one call may use; ≤ 0 means
	// runtime.GOMAXPROCS(0). Small problems use fewer.
	Threads int

	// kernel forces a micro-kernel family (tests use it to cover the AVX2
	// and pure-Go paths on an AVX-512 machine); the zero value is automatic.
	kernel kernelID
}

func (o Options) threads() int {
	if o.Threads > 0 {
		return o.Threads
	}
	return runtime.GOMAXPROCS(0)
}

// Sgemm computes C = alpha·op(A)·op(B) + beta·C in float32 with default
// Options; see the package documentation for the argument conventions.
func Sgemm(transA, transB bool, m, n, k int, alpha float32, a []float32, lda int, b []float32, ldb int, beta float32, c []float32, ldc int) {
	Options{}.Sgemm(transA, transB, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc)
}

// Dgemm is Sgemm in float64.
func Dgemm(transA, transB bool, m, n, k int, alpha float64, a []float64, lda int, b []float64, ldb int, beta float64, c []float64, ldc int) {
	Options{}.Dgemm(transA, transB, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc)
}

// SgemmBatched computes batch independent products C_i = alpha·op(A_i)·op(B_i)
// + beta·C_i, where X_i starts at element i·strideX of x. A stride of 0
// reuses one matrix for every problem (A or B only); the C_i must not
// overlap.
func SgemmBatched(transA, transB bool, batch, m, n, k int, alpha float32, a []float32, strideA, lda int, b []float32, strideB, ldb int, beta float32, c []float32, strideC, ldc int) {
	Options{}.SgemmBatched(transA, transB, batch, m, n, k, alpha, a, strideA, lda, b, strideB, ldb, beta, c, strideC, ldc)
}

// DgemmBatched is SgemmBatched in float64.
func DgemmBatched(transA, transB bool, batch, m, n, k int, alpha float64, a []float64, strideA, lda int, b []float64, strideB, ldb int, beta float64, c []float64, strideC, ldc int) {
	Options{}.DgemmBatched(transA, transB, batch, m, n, k, alpha, a, strideA, lda, b, strideB, ldb, beta, c, strideC, ldc)
}

// Sgemm is the package-level Sgemm run with these options.
func (o Options) Sgemm(transA, transB bool, m, n, k int, alpha float32, a []float32, lda int, b []float32, ldb int, beta float32, c []float32, ldc int) {
	check("Sgemm", transA, transB, 1, m, n, k, len(a), 0, lda, len(b), 0, ldb, len(c), 0, ldc)
	gemm(o.threads(), pickKernel[float32](o.kernel, n), transA, transB, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc)
}

// Dgemm is the package-level Dgemm run with these options.
func (o Options) Dgemm(transA, transB bool, m, n, k int, alpha float64, a []float64, lda int, b []float64, ldb int, beta float64, c []float64, ldc int) {
	check("Dgemm", transA, transB, 1, m, n, k, len(a), 0, lda, len(b), 0, ldb, len(c), 0, ldc)
	gemm(o.threads(), pickKernel[float64](o.kernel, n), transA, transB, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc)
}

// SgemmBatched is the package-level SgemmBatched run with these options.
func (o Options) SgemmBatched(transA, transB bool, batch, m, n, k int, alpha float32, a []float32, strideA, lda int, b []float32, strideB, ldb int, beta float32, c []float32, strideC, ldc int) {
	check("SgemmBatched", transA, transB, batch, m, n, k, len(a), strideA, lda, len(b), strideB, ldb, len(c), strideC, ldc)
	gemmBatched(o.threads(), pickKernel[float32](o.kernel, n), transA, transB, batch, m, n, k, alpha, a, strideA, lda, b, strideB, ldb, beta, c, strideC, ldc)
}

// DgemmBatched is the package-level DgemmBatched run with these options.
func (o Options) DgemmBatched(transA, transB bool, batch, m, n, k int, alpha float64, a []float64, strideA, lda int, b []float64, strideB, ldb int, beta float64, c []float64, strideC, ldc int) {
	check("DgemmBatched", transA, transB, batch, m, n, k, len(a), strideA, lda, len(b), strideB, ldb, len(c), strideC, ldc)
	gemmBatched(o.threads(), pickKernel[float64](o.kernel, n), transA, transB, batch, m, n, k, alpha, a, strideA, lda, b, strideB, ldb, beta, c, strideC, ldc)
}

// check panics with a message naming the offending sizes when the slices
// cannot hold the described matrices. Matrices that are not read (k == 0)
// may be empty slices.
func check(fn string, transA, transB bool, batch, m, n, k, lenA, strideA, lda, lenB, strideB, ldb, lenC, strideC, ldc int) {
	if batch < 0 || m < 0 || n < 0 || k < 0 {
		panic(fmt.Sprintf("gemm: %s: negative size: batch=%d m=%d n=%d k=%d", fn, batch, m, n, k))
	}
	if strideA < 0 || strideB < 0 || strideC < 0 {
		panic(fmt.Sprintf("gemm: %s: negative stride: strideA=%d strideB=%d strideC=%d", fn, strideA, strideB, strideC))
	}
	ar, ac := m, k
	if transA {
		ar, ac = k, m
	}
	br, bc := k, n
	if transB {
		br, bc = n, k
	}
	checkMatrix(fn, "a", "lda", batch, ar, ac, lenA, strideA, lda)
	checkMatrix(fn, "b", "ldb", batch, br, bc, lenB, strideB, ldb)
	checkMatrix(fn, "c", "ldc", batch, m, n, lenC, strideC, ldc)
}

// checkMatrix checks one operand stored as batch rows×cols matrices with
// row stride ld, matrix i starting at element i·stride.
func checkMatrix(fn, name, ldName string, batch, rows, cols, length, stride, ld int) {
	if ld < max(1, cols) {
		panic(fmt.Sprintf("gemm: %s: %s=%d is less than the %d columns of %s (%d×%d)", fn, ldName, ld, cols, name, rows, cols))
	}
	if batch == 0 || rows == 0 || cols == 0 {
		return
	}
	need := (batch-1)*stride + (rows-1)*ld + cols
	if length < need {
		panic(fmt.Sprintf("gemm: %s: len(%s)=%d is too short for %d matrices of %d×%d with %s=%d, stride %d (need %d)",
			fn, name, length, batch, rows, cols, ldName, ld, stride, need))
	}
}

// Gemm is Sgemm or Dgemm chosen by the element type, for generic callers
// (such as package conv, which is written once for float32 and float64).
func Gemm[T Float](o Options, transA, transB bool, m, n, k int, alpha T, a []T, lda int, b []T, ldb int, beta T, c []T, ldc int) {
	check("Gemm", transA, transB, 1, m, n, k, len(a), 0, lda, len(b), 0, ldb, len(c), 0, ldc)
	gemm(o.threads(), pickKernel[T](o.kernel, n), transA, transB, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc)
}
