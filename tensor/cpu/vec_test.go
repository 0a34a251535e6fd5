package cpu

import (
	"math"
	"math/rand/v2"
	"testing"
	"time"
)

// specials are mixed into the vector tests' inputs: the values where max, compare and multiply
// conventions differ (NaN, ±0, ±Inf, a subnormal).
var specials = []float32{float32(math.NaN()), 0, float32(math.Copysign(0, -1)), float32(math.Inf(1)), float32(math.Inf(-1)), 1e-40}

func vecInput(r *rand.Rand, n int, special bool) []float32 {
	x := make([]float32, n)
	for i := range x {
		x[i] = float32(r.NormFloat64())
		if special && r.IntN(8) == 0 {
			x[i] = specials[r.IntN(len(specials))]
		}
	}
	return x
}

// sameBits reports whether a and b are the same float32, treating any two NaNs as equal.
func sameBits(a, b float32) bool {
	if a != a && b != b {
		return true
	}
	return math.Float32bits(a) == math.Float32bits(b)
}

func sameBits64(a, b float64) bool {
	if a != a && b != b {
		return true
	}
	return math.Float64bits(a) == math.Float64bits(b)
}

// TestVecMatchesGo checks the assembly loops (where this CPU runs them) bit for bit against their
// Go twins on fresh random inputs of lengths that leave tails, with special values mixed in.
func TestVecMatchesGo(t *testing.T) {
	seed := uint64(time.Now().UnixNano())
	t.Logf("seed %d", seed)
	r := rand.New(rand.NewPCG(seed, 7))
	for _, n := range []int{1, 7, 8, 9, 64, 1000, 4099} {
		x, g := vecInput(r, n, true), vecInput(r, n, true)
		d1, d2 := make([]float32, n), make([]float32, n)
		reluF32(d1, x)
		reluGo(d2, x)
		for i := range d1 {
			if !sameBits(d1[i], d2[i]) {
				t.Fatalf("relu n=%d: [%d] = %v (bits %08x) for x=%v, Go gives %v (bits %08x)", n, i, d1[i], math.Float32bits(d1[i]), x[i], d2[i], math.Float32bits(d2[i]))
			}
		}
		reluGradF32(d1, x, g)
		reluGradGo(d2, x, g)
		for i := range d1 {
			if !sameBits(d1[i], d2[i]) {
				t.Fatalf("relu grad n=%d: [%d] = %v for s=%v g=%v, Go gives %v", n, i, d1[i], x[i], g[i], d2[i])
			}
		}
	}
	for _, c := range []int{4, 8, 12, 16, 128, 6} {
		for _, rows := range []int{1, 3, 50} {
			for _, special := range []bool{false, true} {
				src, y := vecInput(r, rows*c, special), vecInput(r, rows*c, special)
				sh, mul, e := make([]float64, c), make([]float64, c), make([]float64, c)
				for j := range sh {
					sh[j], mul[j], e[j] = r.NormFloat64(), math.Exp(r.NormFloat64()), math.Exp(r.NormFloat64())
				}
				for _, inverse := range []bool{false, true} {
					d1, d2 := make([]float32, rows*c), make([]float32, rows*c)
					actNormRowsF32(d1, src, sh, mul, inverse)
					actNormRowsGo(d2, src, sh, mul, inverse)
					for i := range d1 {
						if !sameBits(d1[i], d2[i]) {
							t.Fatalf("actnorm c=%d rows=%d inverse=%v: [%d] = %v, Go gives %v", c, rows, inverse, i, d1[i], d2[i])
						}
					}
				}
				d1, d2 := make([]float32, rows*c), make([]float32, rows*c)
				s1, s2 := make([]float64, 2*c), make([]float64, 2*c)
				for j := range s1 {
					s1[j] = r.NormFloat64()
					s2[j] = s1[j]
				}
				channelScaleRowsF32(d1, src, y, e, s1[:c], s1[c:])
				channelScaleRowsGo(d2, src, y, e, s2[:c], s2[c:])
				for i := range d1 {
					if !sameBits(d1[i], d2[i]) {
						t.Fatalf("channel scale c=%d rows=%d: dx[%d] = %v, Go gives %v", c, rows, i, d1[i], d2[i])
					}
				}
				for j := range s1 {
					if !sameBits64(s1[j], s2[j]) {
						t.Fatalf("channel scale c=%d rows=%d: sum[%d] = %v, Go gives %v", c, rows, j, s1[j], s2[j])
					}
				}
			}
		}
	}
}
