package tensor

import (
	"math"
	"math/rand/v2"
	"testing"
)

func randMat(rng *rand.Rand, n int) []float64 {
	a := make([]float64, n*n)
	for i := range a {
		a[i] = rng.NormFloat64()
	}
	return a
}

func matMul(a, b []float64, n int) []float64 {
	c := make([]float64, n*n)
	for i := 0; i < n; i++ {
		for k := 0; k < n; k++ {
			for j := 0; j < n; j++ {
				c[i*n+j] += a[i*n+k] * b[k*n+j]
			}
		}
	}
	return c
}

// naiveDet expands along the first row (exact for the tiny sizes used), an independent reference.
func naiveDet(a []float64, n int) float64 {
	if n == 1 {
		return a[0]
	}
	d := 0.0
	for j := 0; j < n; j++ {
		sub := make([]float64, 0, (n-1)*(n-1))
		for i := 1; i < n; i++ {
			for k := 0; k < n; k++ {
				if k != j {
					sub = append(sub, a[i*n+k])
				}
			}
		}
		d += math.Pow(-1, float64(j)) * a[j] * naiveDet(sub, n-1)
	}
	return d
}

func TestSlogdetMatchesCofactorExpansion(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	for n := 1; n <= 6; n++ {
		a := randMat(rng, n)
		want := naiveDet(a, n)
		sign, ld := Slogdet(a, n)
		got := sign * math.Exp(ld)
		if math.Abs(got-want) > 1e-10*math.Max(1, math.Abs(want)) {
			t.Errorf("n=%d: det %.15g, want %.15g", n, got, want)
		}
	}
	sign, ld := Slogdet([]float64{1, 2, 2, 4}, 2)
	if sign != 0 || !math.IsInf(ld, -1) {
		t.Errorf("singular: sign %v logdet %v", sign, ld)
	}
}

func TestInverseAndLU(t *testing.T) {
	rng := rand.New(rand.NewPCG(3, 4))
	for _, n := range []int{1, 4, 12, 48} {
		a := randMat(rng, n)
		inv, err := Inverse(a, n)
		if err != nil {
			t.Fatal(err)
		}
		p := matMul(a, inv, n)
		for i := 0; i < n; i++ {
			for j := 0; j < n; j++ {
				want := 0.0
				if i == j {
					want = 1
				}
				if math.Abs(p[i*n+j]-want) > 1e-9 {
					t.Fatalf("n=%d: (A·A⁻¹)[%d,%d] = %g", n, i, j, p[i*n+j])
				}
			}
		}
		f := Factorize(a, n)
		lu := matMul(f.L, f.U, n)
		for i := 0; i < n; i++ {
			if f.L[i*n+i] != 1 {
				t.Fatalf("L not unit diagonal")
			}
			for j := 0; j < n; j++ {
				if j > i && f.L[i*n+j] != 0 || j < i && f.U[i*n+j] != 0 {
					t.Fatalf("L/U not triangular at %d,%d", i, j)
				}
				if d := lu[i*n+j] - a[f.Perm[i]*n+j]; math.Abs(d) > 1e-10 {
					t.Fatalf("n=%d: (LU)[%d,%d] − (PA) = %g", n, i, j, d)
				}
			}
		}
	}
	if _, err := Inverse([]float64{1, 2, 2, 4}, 2); err == nil {
		t.Error("inverse of a singular matrix gave no error")
	}
}

func TestRandomOrthogonal(t *testing.T) {
	rng := rand.New(rand.NewPCG(5, 6))
	for _, n := range []int{1, 4, 8, 24} {
		q := RandomOrthogonal(rng, n)
		qt := make([]float64, n*n)
		for i := 0; i < n; i++ {
			for j := 0; j < n; j++ {
				qt[j*n+i] = q[i*n+j]
			}
		}
		p := matMul(q, qt, n)
		for i := 0; i < n; i++ {
			for j := 0; j < n; j++ {
				want := 0.0
				if i == j {
					want = 1
				}
				if math.Abs(p[i*n+j]-want) > 1e-12 {
					t.Fatalf("n=%d: QQᵀ[%d,%d] = %g", n, i, j, p[i*n+j])
				}
			}
		}
		_, ld := Slogdet(q, n)
		if math.Abs(ld) > 1e-10 {
			t.Fatalf("log|det Q| = %g", ld)
		}
	}
}
