package tensor

import (
	"fmt"
	"math"
	"math/rand/v2"

	"gonum.org/v1/gonum/mat"
)

// Host-side float64 linear algebra for the invertible 1x1 convolution: its log|det W| term, W⁻¹ for
// the inverse pass, the LU parameterisation and the orthogonal initialisation. Matrices are row-major
// n×n slices; the small sizes involved (C ≤ a few hundred) make the host the right place.

// InvLogDet computes inv = W⁻ᵀ and logdet = scale·log|det W| (float64 inside, one rounding) for the
// matrix w [C,C] (logdet [1]) or each of the batch w [B,C,C] (logdet [B]) on w's backend; see
// Backend.InvLogDet. A singular W gives −Inf and an inverse of NaN.
func InvLogDet(inv, logdet, w *Tensor, scale float64) {
	be := mustSame("InvLogDet", inv, logdet, w)
	b, c := 1, 0
	switch len(w.shape) {
	case 2:
		c = w.shape[0]
	case 3:
		b, c = w.shape[0], w.shape[1]
	}
	if c < 1 || w.shape[len(w.shape)-1] != c {
		panic(fmt.Sprintf("tensor: InvLogDet wants square [C,C] or [B,C,C] matrices, got %v", w.shape))
	}
	mustShape("InvLogDet", "inv", inv, w.shape)
	mustNumel("InvLogDet", "logdet", logdet, b)
	if SameStorage(inv, w) || SameStorage(logdet, w) || SameStorage(inv, logdet) {
		panic("tensor: InvLogDet output aliases an input")
	}
	be.InvLogDet(inv, logdet, w, scale)
}

// Slogdet returns the sign and log|det| of the row-major n×n matrix a, via an LU factorisation.
// A singular matrix gives sign 0 and log|det| = −Inf.
func Slogdet(a []float64, n int) (sign, logAbsDet float64) {
	var lu mat.LU
	lu.Factorize(mat.NewDense(n, n, append([]float64(nil), a...)))
	logAbsDet, sign = lu.LogDet()
	if sign == 0 || math.IsInf(logAbsDet, -1) {
		return 0, math.Inf(-1)
	}
	return sign, logAbsDet
}

// Inverse returns the inverse of the row-major n×n matrix a, or an error when it is singular or so
// ill-conditioned that the inverse is meaningless.
func Inverse(a []float64, n int) ([]float64, error) {
	var inv mat.Dense
	if err := inv.Inverse(mat.NewDense(n, n, append([]float64(nil), a...))); err != nil {
		return nil, fmt.Errorf("matrix inverse (%d×%d): %w", n, n, err)
	}
	return append([]float64(nil), inv.RawMatrix().Data...), nil
}

// LU is the factorisation P·A = L·U with partial pivoting. Perm[i] is the row of A that is row i
// of P·A. L is unit lower-triangular and U upper-triangular, both row-major n×n.
type LU struct {
	N    int
	Perm []int
	L, U []float64
}

// Factorize computes the LU factorisation with partial pivoting of the row-major n×n matrix a.
func Factorize(a []float64, n int) LU {
	var f mat.LU
	f.Factorize(mat.NewDense(n, n, append([]float64(nil), a...)))
	var l mat.TriDense
	var u mat.TriDense
	f.LTo(&l)
	f.UTo(&u)
	// gonum returns piv with A = P·L·U and row i of A = row piv[i] of L·U; Perm is its inverse.
	piv := f.RowPivots(nil)
	out := LU{N: n, Perm: make([]int, n), L: make([]float64, n*n), U: make([]float64, n*n)}
	for i, p := range piv {
		out.Perm[p] = i
	}
	for i := 0; i < n; i++ {
		for j := 0; j < n; j++ {
			out.L[i*n+j] = l.At(i, j)
			out.U[i*n+j] = u.At(i, j)
		}
	}
	return out
}

// RandomOrthogonal returns a random n×n orthogonal matrix, row-major: the Q of a QR factorisation
// of a standard normal matrix, as Glow initialises the 1x1 convolution (dlf-spec §2.4). The signs of
// Q's columns are fixed by R's diagonal so the distribution is uniform (Haar).
func RandomOrthogonal(rng *rand.Rand, n int) []float64 {
	g := mat.NewDense(n, n, nil)
	for i := 0; i < n; i++ {
		for j := 0; j < n; j++ {
			g.Set(i, j, rng.NormFloat64())
		}
	}
	var qr mat.QR
	qr.Factorize(g)
	var q, r mat.Dense
	qr.QTo(&q)
	qr.RTo(&r)
	out := make([]float64, n*n)
	for j := 0; j < n; j++ {
		s := 1.0
		if r.At(j, j) < 0 {
			s = -1
		}
		for i := 0; i < n; i++ {
			out[i*n+j] = s * q.At(i, j)
		}
	}
	return out
}
