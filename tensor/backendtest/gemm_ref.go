package backendtest

import (
	"math"
)

// refGemm computes c = alpha·op(a)·op(b) + beta·c for nb batches with a triple loop. a holds
// [m,k] (or [k,m] when transA), b holds [k,n] (or [n,k] when transB), c holds [m,n]; c0 is only
// read when beta ≠ 0. The scale of an element is |alpha|·Σ_p|a·b| + |beta·c|.
func refGemm(transA, transB bool, nb, m, n, k int, alpha float64, a, b []float64, beta float64, c0 []float64) (want, scale []float64) {
	want = make([]float64, nb*m*n)
	scale = make([]float64, nb*m*n)
	// Gather op(A) as rows [m][k] and op(B) as columns [n][k] by their definitions, so that the
	// inner loop runs over contiguous memory.
	rows := make([]float64, m*k)
	cols := make([]float64, n*k)
	for bi := 0; bi < nb; bi++ {
		ab, bb := a[bi*m*k:], b[bi*k*n:]
		for i := 0; i < m; i++ {
			for p := 0; p < k; p++ {
				if transA {
					rows[i*k+p] = ab[p*m+i] // A stored [k, m]
				} else {
					rows[i*k+p] = ab[i*k+p]
				}
			}
		}
		for j := 0; j < n; j++ {
			for p := 0; p < k; p++ {
				if transB {
					cols[j*k+p] = bb[j*k+p] // B stored [n, k]
				} else {
					cols[j*k+p] = bb[p*n+j]
				}
			}
		}
		for i := 0; i < m; i++ {
			ar := rows[i*k : (i+1)*k]
			for j := 0; j < n; j++ {
				bc := cols[j*k : (j+1)*k]
				var s, sa float64
				for p, av := range ar {
					t := av * bc[p]
					s += t
					sa += math.Abs(t)
				}
				o := bi*m*n + i*n + j
				want[o] = alpha * s
				scale[o] = math.Abs(alpha) * sa
				if beta != 0 {
					want[o] += beta * c0[o]
					scale[o] += math.Abs(beta * c0[o])
				}
			}
		}
	}
	return want, scale
}
