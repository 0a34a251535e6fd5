package conv

import (
	"fmt"
	"math"
	"math/rand/v2"
	"strings"
	"testing"
	"time"
)

// Tolerances, as in package gemm: every element must satisfy
//
//	|got − ref| ≤ tol · scale
//
// where ref is a naive float64 direct convolution and scale is the largest,
// over the element's row (its last axis: the channels of one pixel, or the
// Cout outputs of one weight row), of the sum of the absolute values of the
// terms that make up an element (|x|·|w| products, plus |bias| or the
// absolute initial value when accumulating). That sum is what the
// rounding-error bound of a sum of products is proportional to (Higham,
// "Accuracy and Stability of Numerical Algorithms", §3.1). tol is 1e-4 for
// float32 and 1e-12 for float64.
const (
	tol32 = 1e-4
	tol64 = 1e-12
)

func newRand(t testing.TB) *rand.Rand {
	seed := uint64(time.Now().UnixNano())
	t.Logf("seed %d", seed)
	return rand.New(rand.NewPCG(seed, 0x2545f4914f6cdd1d))
}

func randVec(r *rand.Rand, n int) []float64 {
	x := make([]float64, n)
	for i := range x {
		x[i] = 2*r.Float64() - 1
	}
	return x
}

// padded returns x zero-padded by (K−1)/2 on each spatial side, with the
// explicit edge channel appended when p.EdgeBias (1 in the border, 0
// inside): shape [N][H+2p][W+2p][Cin'].
func padded(p Params, x []float64) (xp []float64, hp, wp int) {
	pad, cinW := (p.K-1)/2, p.CinW()
	hp, wp = p.H+2*pad, p.W+2*pad
	xp = make([]float64, p.N*hp*wp*cinW)
	for n := 0; n < p.N; n++ {
		for h := 0; h < hp; h++ {
			for w := 0; w < wp; w++ {
				dst := xp[((n*hp+h)*wp+w)*cinW:][:cinW]
				ih, iw := h-pad, w-pad
				inside := ih >= 0 && ih < p.H && iw >= 0 && iw < p.W
				if inside {
					copy(dst, x[((n*p.H+ih)*p.W+iw)*p.Cin:][:p.Cin])
				} else if p.EdgeBias {
					dst[p.Cin] = 1
				}
			}
		}
	}
	return xp, hp, wp
}

// reference holds the naive results and their error scales (|terms| sums).
type reference struct {
	y, yMag   []float64
	dx, dxMag []float64
	dw, dwMag []float64
	db, dbMag []float64
}

// naive computes the forward output and all gradients by direct loops over
// the explicitly padded, edge-augmented input. bias may be nil. The
// gradients are those of Σ y·dy.
func naive(p Params, x, w, bias, dy []float64) reference {
	pad, cinW := (p.K-1)/2, p.CinW()
	xp, hp, wp := padded(p, x)
	var ref reference
	rows := p.Rows()
	ref.y, ref.yMag = make([]float64, rows*p.Cout), make([]float64, rows*p.Cout)
	dxp := make([]float64, len(xp))
	dxpMag := make([]float64, len(xp))
	ref.dw, ref.dwMag = make([]float64, p.WeightLen()), make([]float64, p.WeightLen())
	ref.db, ref.dbMag = make([]float64, p.Cout), make([]float64, p.Cout)
	for n := 0; n < p.N; n++ {
		for h := 0; h < p.H; h++ {
			for ow := 0; ow < p.W; ow++ {
				o := ((n*p.H+h)*p.W + ow) * p.Cout
				for co := 0; co < p.Cout; co++ {
					var s, m float64
					if bias != nil {
						s, m = bias[co], math.Abs(bias[co])
					}
					g := dy[o+co]
					for kh := 0; kh < p.K; kh++ {
						for kw := 0; kw < p.K; kw++ {
							xi := ((n*hp+h+kh)*wp + ow + kw) * cinW
							wi := (kh*p.K + kw) * cinW * p.Cout
							for ci := 0; ci < cinW; ci++ {
								xv, wv := xp[xi+ci], w[wi+ci*p.Cout+co]
								s += xv * wv
								m += math.Abs(xv * wv)
								dxp[xi+ci] += g * wv
								dxpMag[xi+ci] += math.Abs(g * wv)
								ref.dw[wi+ci*p.Cout+co] += xv * g
								ref.dwMag[wi+ci*p.Cout+co] += math.Abs(xv * g)
							}
						}
					}
					ref.y[o+co], ref.yMag[o+co] = s, m
					ref.db[co] += g
					ref.dbMag[co] += math.Abs(g)
				}
			}
		}
	}
	ref.dx, ref.dxMag = make([]float64, rows*p.Cin), make([]float64, rows*p.Cin)
	for n := 0; n < p.N; n++ {
		for h := 0; h < p.H; h++ {
			for w := 0; w < p.W; w++ {
				src := ((n*hp+h+pad)*wp + w + pad) * cinW
				dst := ((n*p.H+h)*p.W + w) * p.Cin
				copy(ref.dx[dst:dst+p.Cin], dxp[src:])
				copy(ref.dxMag[dst:dst+p.Cin], dxpMag[src:])
			}
		}
	}
	return ref
}

// compare checks got against want with the row-scaled tolerance; rowLen is
// the length of the last axis. init, when non-nil, is the initial value
// that an accumulating call added to (it is added to want and its absolute
// value to the scale).
func compare(t *testing.T, what string, got func(i int) float64, want, mag, init []float64, rowLen int, tol float64) {
	t.Helper()
	bad := 0
	for r := 0; r < len(want)/rowLen; r++ {
		scale := 0.0
		for i := r * rowLen; i < (r+1)*rowLen; i++ {
			s := mag[i]
			if init != nil {
				s += math.Abs(init[i])
			}
			scale = max(scale, s)
		}
		for i := r * rowLen; i < (r+1)*rowLen; i++ {
			w := want[i]
			if init != nil {
				w += init[i]
			}
			if g := got(i); !(math.Abs(g-w) <= tol*scale) {
				if bad < 4 {
					t.Errorf("%s[%d] = %v, want %v (scale %g)", what, i, g, w, scale)
				}
				bad++
			}
		}
	}
	if bad > 0 {
		t.Errorf("%s: %d of %d elements wrong", what, bad, len(want))
	}
}

func convert[T Float](x []float64) []T {
	y := make([]T, len(x))
	for i, v := range x {
		y[i] = T(v)
	}
	return y
}

func widen[T Float](x []T) []float64 {
	y := make([]float64, len(x))
	for i, v := range x {
		y[i] = float64(v)
	}
	return y
}

func nanFill[T Float](n int) []T {
	y := make([]T, n)
	for i := range y {
		y[i] = T(math.NaN())
	}
	return y
}

// checkAll runs all four functions in precision T against the naive
// reference, once overwriting NaN-poisoned outputs and once accumulating
// onto random ones.
func checkAll[T Float](t *testing.T, r *rand.Rand, p Params, withBias bool, tol float64) {
	t.Helper()
	// Round inputs to T first so the reference sees exactly what T sees.
	x := widen(convert[T](randVec(r, p.Rows()*p.Cin)))
	w := widen(convert[T](randVec(r, p.WeightLen())))
	dy := widen(convert[T](randVec(r, p.Rows()*p.Cout)))
	var bias []float64
	if withBias {
		bias = widen(convert[T](randVec(r, p.Cout)))
	}
	ref := naive(p, x, w, bias, dy)
	xt, wt, dyt, bt := convert[T](x), convert[T](w), convert[T](dy), convert[T](bias)
	if !withBias {
		bt = nil
	}
	name := fmt.Sprintf("%T %+v bias=%v", T(0), p, withBias)

	y := nanFill[T](p.Rows() * p.Cout)
	Forward(p, xt, wt, bt, y)
	compare(t, name+" y", func(i int) float64 { return float64(y[i]) }, ref.y, ref.yMag, nil, p.Cout, tol)

	for _, acc := range []bool{false, true} {
		var init map[string][]float64
		dx, dw, db := nanFill[T](p.Rows()*p.Cin), nanFill[T](p.WeightLen()), nanFill[T](p.Cout)
		if acc {
			init = map[string][]float64{
				"dx": widen(convert[T](randVec(r, len(dx)))),
				"dw": widen(convert[T](randVec(r, len(dw)))),
				"db": widen(convert[T](randVec(r, len(db)))),
			}
			dx, dw, db = convert[T](init["dx"]), convert[T](init["dw"]), convert[T](init["db"])
		}
		BackwardData(p, dyt, wt, dx, acc)
		BackwardWeights(p, xt, dyt, dw, acc)
		BackwardBias(p, dyt, db, acc)
		sfx := fmt.Sprintf(" accumulate=%v ", acc)
		compare(t, name+sfx+"dx", func(i int) float64 { return float64(dx[i]) }, ref.dx, ref.dxMag, init["dx"], p.Cin, tol)
		compare(t, name+sfx+"dw", func(i int) float64 { return float64(dw[i]) }, ref.dw, ref.dwMag, init["dw"], p.Cout, tol)
		compare(t, name+sfx+"db", func(i int) float64 { return float64(db[i]) }, ref.db, ref.dbMag, init["db"], p.Cout, tol)
	}
}

// cases covers odd sizes, K = 1, 3, 5, and the model's shapes: 14×14×4 and
// 7×7×8 (MNIST levels), 16×16×12 and 8×8×24 (CIFAR levels), hidden widths
// 128 and 512 for the first (3×3, edge), middle (1×1) and output (3×3,
// edge) convolutions of a coupling network, and the benchmark's 32→32.
var cases = []Params{
	{N: 2, H: 5, W: 7, Cin: 3, Cout: 5, K: 1},
	{N: 2, H: 5, W: 7, Cin: 3, Cout: 5, K: 1, EdgeBias: true},
	{N: 2, H: 5, W: 7, Cin: 3, Cout: 5, K: 3},
	{N: 2, H: 5, W: 7, Cin: 3, Cout: 5, K: 3, EdgeBias: true},
	{N: 1, H: 6, W: 3, Cin: 2, Cout: 7, K: 5, EdgeBias: true},
	{N: 3, H: 1, W: 1, Cin: 4, Cout: 3, K: 3, EdgeBias: true},
	{N: 2, H: 14, W: 14, Cin: 4, Cout: 128, K: 3, EdgeBias: true},
	{N: 2, H: 14, W: 14, Cin: 128, Cout: 128, K: 1},
	{N: 2, H: 14, W: 14, Cin: 128, Cout: 8, K: 3, EdgeBias: true},
	{N: 3, H: 7, W: 7, Cin: 8, Cout: 16, K: 3, EdgeBias: true},
	{N: 1, H: 16, W: 16, Cin: 12, Cout: 24, K: 3},
	{N: 2, H: 8, W: 8, Cin: 24, Cout: 512, K: 3, EdgeBias: true},
	{N: 1, H: 8, W: 8, Cin: 512, Cout: 512, K: 1, EdgeBias: true},
	{N: 1, H: 8, W: 8, Cin: 512, Cout: 48, K: 3, EdgeBias: true},
	{N: 2, H: 16, W: 16, Cin: 32, Cout: 32, K: 3},
	// The tap-expanded lowering (taps.go) at K = 5, without edge bias, and on one image narrower
	// than its halo.
	{N: 2, H: 6, W: 5, Cin: 17, Cout: 3, K: 5, EdgeBias: true},
	{N: 3, H: 4, W: 9, Cin: 20, Cout: 6, K: 3},
	{N: 1, H: 2, W: 1, Cin: 16, Cout: 2, K: 3, EdgeBias: true},
}

func TestConv(t *testing.T) {
	r := newRand(t)
	// Every case with more than one thread splits across goroutines, however small.
	defer func(v int) { minWorkerFlops = v }(minWorkerFlops)
	minWorkerFlops = 1
	for i, p := range cases {
		p.Threads = []int{1, 2, 3}[i%3]
		t.Run(fmt.Sprintf("%dx%dx%dx%d-%d-K%d-edge=%v", p.N, p.H, p.W, p.Cin, p.Cout, p.K, p.EdgeBias), func(t *testing.T) {
			checkAll[float32](t, r, p, i%2 == 0, tol32)
			checkAll[float64](t, r, p, i%2 == 1, tol64)
		})
	}
}

// TestConvIm2colNarrow runs the cases that take the tap-expanded lowering through the im2col
// lowering instead, which other CPUs' callers never reach but which must stay right.
func TestConvIm2colNarrow(t *testing.T) {
	r := newRand(t)
	defer func(v int) { minWorkerFlops = v }(minWorkerFlops)
	minWorkerFlops = 1
	n := 0
	for i, p := range cases {
		q := p
		q.Cin, q.Cout, q.EdgeBias = p.Cout, p.Cin, false // the backward-data convolution
		if !p.useTaps() && !q.useTaps() {
			continue
		}
		n++
		p.Threads = []int{1, 2, 3}[i%3]
		t.Run(fmt.Sprintf("%dx%dx%dx%d-%d-K%d-edge=%v", p.N, p.H, p.W, p.Cin, p.Cout, p.K, p.EdgeBias), func(t *testing.T) {
			tapLowering = false
			defer func() { tapLowering = true }()
			checkAll[float32](t, r, p, i%2 == 0, tol32)
			checkAll[float64](t, r, p, i%2 == 1, tol64)
		})
	}
	if n < 4 {
		t.Fatalf("only %d cases take the tap lowering", n)
	}
}

// TestConvSmallBlocks forces many patch blocks per goroutine (rows far
// beyond one colBudget block) on a float64 case with edge bias.
func TestConvSmallBlocks(t *testing.T) {
	r := newRand(t)
	p := Params{N: 3, H: 20, W: 19, Cin: 40, Cout: 9, K: 3, EdgeBias: true, Threads: 2}
	if rows, per := p.Rows(), blockRows(p.K*p.K*p.CinW(), 8, 1); rows < 3*per {
		t.Fatalf("case too small to span blocks: %d rows, %d per block", rows, per)
	}
	checkAll[float64](t, r, p, true, tol64)
}

// TestGradFiniteDifference checks the three backward functions against
// central differences of L = ½ Σ g·y² in float64 on a tiny case with edge
// bias (relative error ≤ 1e-6).
func TestGradFiniteDifference(t *testing.T) {
	r := newRand(t)
	for _, k := range []int{1, 3} {
		p := Params{N: 2, H: 3, W: 4, Cin: 2, Cout: 3, K: k, EdgeBias: true}
		x, w, b := randVec(r, p.Rows()*p.Cin), randVec(r, p.WeightLen()), randVec(r, p.Cout)
		g := randVec(r, p.Rows()*p.Cout)
		loss := func() float64 {
			y := make([]float64, p.Rows()*p.Cout)
			Forward(p, x, w, b, y)
			var l float64
			for i, v := range y {
				l += 0.5 * g[i] * v * v
			}
			return l
		}
		y := make([]float64, p.Rows()*p.Cout)
		Forward(p, x, w, b, y)
		dy := make([]float64, len(y))
		for i := range y {
			dy[i] = g[i] * y[i]
		}
		dx, dw, db := make([]float64, len(x)), make([]float64, len(w)), make([]float64, len(b))
		BackwardData(p, dy, w, dx, false)
		BackwardWeights(p, x, dy, dw, false)
		BackwardBias(p, dy, db, false)
		for _, v := range []struct {
			name       string
			param, got []float64
		}{{"x", x, dx}, {"w", w, dw}, {"b", b, db}} {
			for i := range v.param {
				const h = 1e-5
				orig := v.param[i]
				v.param[i] = orig + h
				lp := loss()
				v.param[i] = orig - h
				lm := loss()
				v.param[i] = orig
				fd := (lp - lm) / (2 * h)
				if rel := math.Abs(fd-v.got[i]) / max(math.Abs(fd), math.Abs(v.got[i]), 1e-3); rel > 1e-6 {
					t.Errorf("K=%d d%s[%d]: analytic %v, finite difference %v (rel %.2g)", k, v.name, i, v.got[i], fd, rel)
				}
			}
		}
	}
}

func TestConvPanics(t *testing.T) {
	p := Params{N: 1, H: 2, W: 2, Cin: 1, Cout: 1, K: 3}
	cases := []struct {
		want string
		f    func()
	}{
		{"len(x)=3", func() { Forward(p, make([]float32, 3), make([]float32, 9), nil, make([]float32, 4)) }},
		{"len(w)=8", func() { BackwardData(p, make([]float64, 4), make([]float64, 8), make([]float64, 4), false) }},
		{"K=2", func() { q := p; q.K = 2; BackwardBias(q, make([]float32, 4), make([]float32, 1), false) }},
		{"len(db)=2", func() { BackwardBias(p, make([]float32, 4), make([]float32, 2), false) }},
		{"len(bias)=2", func() { Forward(p, make([]float32, 4), make([]float32, 9), make([]float32, 2), make([]float32, 4)) }},
	}
	for _, tc := range cases {
		func() {
			defer func() {
				if msg := fmt.Sprint(recover()); !strings.Contains(msg, tc.want) {
					t.Errorf("panic %q does not mention %q", msg, tc.want)
				}
			}()
			tc.f()
		}()
	}
}
