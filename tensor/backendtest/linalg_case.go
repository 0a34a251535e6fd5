package backendtest

import (
	"fmt"
	"math"

	"dlf/tensor"
)

// invLogDetSizes are the matrix sizes: 1, odd sizes, and the invertible 1×1 convolution's channel
// counts (MNIST 4, 8, 16; CIFAR and ImageNet 12, 24, 48, 96).
var invLogDetSizes = []int{1, 3, 4, 5, 8, 12, 16, 24, 48, 96}

// runLinalg covers InvLogDet: single and batched matrices, well conditioned and with the large
// entries off the diagonal (so partial pivoting must swap rows), positive and negative scales, and a
// singular matrix (−Inf and NaN).
func runLinalg(s *suite, t tb) {
	s.op(t, "InvLogDet", func(t tb, dt tensor.DType) {
		for _, c := range invLogDetSizes {
			for _, batch := range []int{0, 3} {
				for _, permuted := range []bool{false, true} {
					if c == 1 && permuted {
						continue
					}
					name := fmt.Sprintf("c%d_b%d", c, batch)
					if permuted {
						name += "_pivoting"
					}
					s.leaf(t, dt, name, func(e *env) { invLogDetLeaf(e, c, batch, permuted) })
				}
			}
		}
		s.leaf(t, dt, "singular", func(e *env) {
			e.describe("a 5×5 matrix with a zero row")
			v := e.signed(25, 0.1, 1)
			for j := range 5 {
				v[2*5+j] = 0
			}
			w := e.tensor(v, 5, 5)
			inv, ld := e.poisoned(5, 5), e.poisoned(1)
			tensor.InvLogDet(inv, ld, w, 7)
			if got := e.get(ld)[0]; !math.IsInf(got, -1) {
				e.fatalf("InvLogDet of a singular matrix: logdet %v, want -Inf", got)
			}
			for i, g := range e.get(inv) {
				if !math.IsNaN(g) {
					e.fatalf("InvLogDet of a singular matrix: inverse[%d] = %v, want NaN", i, g)
				}
			}
		})
	})
}

// invLogDetLeaf draws nb matrices (one [c,c] when batch is 0): diagonally dominant ones
// (diagonal ±(1..2), off-diagonal entries up to 0.5/c per row), or, with permuted, the same with
// their rows shuffled so that the dominant entry of each column is off the diagonal, and zeros on
// the diagonal where a row was moved. It compares
// with tensor.Slogdet and tensor.Inverse (gonum's LU, float64).
func invLogDetLeaf(e *env, c, batch int, permuted bool) {
	nb := max(batch, 1)
	shape := []int{c, c}
	if batch > 0 {
		shape = []int{batch, c, c}
	}
	scale := e.scalar(1, 200)
	e.describe("%d matrices %d×%d, scale %g, rows permuted %v", nb, c, c, scale, permuted)
	wv := make([]float64, nb*c*c)
	for m := range nb {
		off := e.signed(c*c, 0, 0.5/float64(c))
		diag := e.signed(c, 1, 2)
		perm := make([]int, c)
		for i := range perm {
			perm[i] = i
		}
		if permuted {
			for i := c - 1; i > 0; i-- { // a derangement-ish shuffle from the suite's generator
				j := int(math.Abs(e.scalar(0, 1)) * float64(i+1))
				perm[i], perm[min(j, i)] = perm[min(j, i)], perm[i]
			}
		}
		for i := range c {
			for j := range c {
				v := off[i*c+j]
				if i == j {
					v = diag[i]
				}
				wv[m*c*c+perm[i]*c+j] = e.round(v)
			}
		}
		// A displaced row gets an exact zero on the diagonal, so elimination without row swaps
		// meets a zero pivot.
		for i := range c {
			if perm[i] != i {
				wv[m*c*c+perm[i]*c+perm[i]] = 0
			}
		}
	}
	w := e.tensor(wv, shape...)
	inv, ld := e.poisoned(shape...), e.poisoned(nb)
	tensor.InvLogDet(inv, ld, w, scale)
	wantInv := make([]float64, nb*c*c)
	invScale := make([]float64, nb*c*c)
	wantLD := make([]float64, nb)
	ldScale := make([]float64, nb)
	for m := range nb {
		a := wv[m*c*c : (m+1)*c*c]
		_, lad := tensor.Slogdet(a, c)
		in, err := tensor.Inverse(a, c)
		if err != nil {
			e.fatalf("suite bug: the reference cannot invert a diagonally dominant matrix: %v", err)
		}
		// The float64 elimination's error is bounded by about c·κ·ε₆₄ of the largest entry of W⁻¹
		// (κ = ‖W‖∞‖W⁻¹‖∞ ≤ 3 for these matrices); it enters every element's scale, so tiny entries
		// of W⁻¹ are judged against it, not against their own magnitude (divided by tol: a scale).
		big := 0.0
		for _, v := range in {
			big = math.Max(big, math.Abs(v))
		}
		elim := float64(c) * 3 * 0x1p-52 * big / e.tol.Elementwise
		for i := range c {
			for j := range c {
				wantInv[m*c*c+j*c+i] = in[i*c+j]
				invScale[m*c*c+j*c+i] = math.Abs(in[i*c+j]) + elim
			}
		}
		// log|det W| = Σ log|u_kk|: each term is rounded, so the scale is |scale|·Σ|log|u_kk||
		// (plus |want|), with Reduction's bound.
		lu := tensor.Factorize(a, c)
		sum := 0.0
		for k := range c {
			sum += math.Abs(math.Log(math.Abs(lu.U[k*c+k])))
		}
		wantLD[m] = scale * lad
		ldScale[m] = math.Abs(scale*lad) + math.Abs(scale)*sum
	}
	e.expect("InvLogDet inverse", inv, wantInv, invScale, e.tol.Elementwise)
	e.expect("InvLogDet logdet", ld, wantLD, ldScale, e.tol.Reduction)
}
