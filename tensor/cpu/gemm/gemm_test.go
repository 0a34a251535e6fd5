package gemm

import (
	"fmt"
	"math"
	"math/rand/v2"
	"strings"
	"testing"
	"time"
)

// Tolerances. Each element of the result must satisfy
//
//	|got[i][j] − ref[i][j]| ≤ tol · scale[i]
//	scale[i] = max_j ( |alpha|·Σ_p |op(A)[i][p]|·|op(B)[p][j]| + |beta|·|C0[i][j]| )
//
// where ref is computed in float64 by a naive triple loop from the same
// (rounded) inputs. scale is the magnitude that the standard rounding-error
// bound of a dot product is proportional to (Higham, "Accuracy and Stability
// of Numerical Algorithms", 2nd ed., §3.1: |fl(xᵀy) − xᵀy| ≤ γ_k·|x|ᵀ|y|,
// γ_k ≈ k·u), taken as the maximum over the row so that an element that
// cancels to nearly zero is judged against the size of its row's terms
// rather than against itself. tol is 1e-4 for float32 (γ_k for k up to
// ≈1600 with u = 2⁻²⁴) and 1e-12 for float64.
const (
	tol32 = 1e-4
	tol64 = 1e-12
)

// newRand returns a generator with a fresh seed, logged so a failure can be
// replayed.
func newRand(t testing.TB) *rand.Rand {
	seed := uint64(time.Now().UnixNano())
	t.Logf("seed %d", seed)
	return rand.New(rand.NewPCG(seed, 0x9e3779b97f4a7c15))
}

// problem is one GEMM test case with its storage, padded beyond the
// matrices with NaN (in A and B: must never be read) or a sentinel (in C:
// must never be written).
type problem struct {
	transA, transB         bool
	m, n, k                int
	lda, ldb, ldc          int
	alpha, beta            float64
	a, b, c0               []float64
	aRows, aCols           int
	bRows, bCols           int
	poisonC                bool // C starts as NaN inside the m×n block (beta must be 0)
	cSentinel              float64
	stridePadA, stridePadB int
}

func newProblem(r *rand.Rand, transA, transB bool, m, n, k, pad int, alpha, beta float64) *problem {
	p := &problem{transA: transA, transB: transB, m: m, n: n, k: k, alpha: alpha, beta: beta, cSentinel: 12345}
	p.aRows, p.aCols = m, k
	if transA {
		p.aRows, p.aCols = k, m
	}
	p.bRows, p.bCols = k, n
	if transB {
		p.bRows, p.bCols = n, k
	}
	p.lda, p.ldb, p.ldc = max(1, p.aCols)+pad, max(1, p.bCols)+2*pad, max(1, n)+3*pad
	p.a = randMatrix(r, p.aRows, p.aCols, p.lda, math.NaN())
	p.b = randMatrix(r, p.bRows, p.bCols, p.ldb, math.NaN())
	p.c0 = randMatrix(r, m, n, p.ldc, p.cSentinel)
	if beta == 0 {
		p.poisonC = true
		for i := 0; i < m; i++ {
			for j := 0; j < n; j++ {
				p.c0[i*p.ldc+j] = math.NaN()
			}
		}
	}
	return p
}

// randMatrix returns rows×cols uniform(-1, 1) values with row stride ld; the
// padding holds fill.
func randMatrix(r *rand.Rand, rows, cols, ld int, fill float64) []float64 {
	n := 0
	if rows > 0 {
		n = (rows-1)*ld + cols
	}
	x := make([]float64, n)
	for i := range x {
		if i%ld < cols {
			x[i] = 2*r.Float64() - 1
		} else {
			x[i] = fill
		}
	}
	return x
}

// reference computes alpha·op(A)·op(B) + beta·C0 with a naive float64 loop,
// and the per-row error scale described at tol32.
func (p *problem) reference() (ref, scale []float64) {
	ref = make([]float64, p.m*p.n)
	scale = make([]float64, p.m)
	for i := 0; i < p.m; i++ {
		for j := 0; j < p.n; j++ {
			var s, mag float64
			for q := 0; q < p.k; q++ {
				var av, bv float64
				if p.transA {
					av = p.a[q*p.lda+i]
				} else {
					av = p.a[i*p.lda+q]
				}
				if p.transB {
					bv = p.b[j*p.ldb+q]
				} else {
					bv = p.b[q*p.ldb+j]
				}
				s += av * bv
				mag += math.Abs(av * bv)
			}
			v, vmag := p.alpha*s, math.Abs(p.alpha)*mag
			if p.beta != 0 {
				v += p.beta * p.c0[i*p.ldc+j]
				vmag += math.Abs(p.beta * p.c0[i*p.ldc+j])
			}
			ref[i*p.n+j] = v
			scale[i] = max(scale[i], vmag)
		}
	}
	return ref, scale
}

func (p *problem) String() string {
	return fmt.Sprintf("tA=%v tB=%v m=%d n=%d k=%d lda=%d ldb=%d ldc=%d alpha=%g beta=%g",
		p.transA, p.transB, p.m, p.n, p.k, p.lda, p.ldb, p.ldc, p.alpha, p.beta)
}

// verify compares got (storage like c0) against the reference with the
// row-scaled tolerance and checks that the padding of C was left alone.
func (p *problem) verify(t *testing.T, got func(i int) float64, tol float64) {
	t.Helper()
	ref, scale := p.reference()
	bad := 0
	for i := 0; i < p.m; i++ {
		for j := 0; j < p.n; j++ {
			g, w := got(i*p.ldc+j), ref[i*p.n+j]
			if !(math.Abs(g-w) <= tol*scale[i]) {
				if bad < 5 {
					t.Errorf("%v: C[%d][%d] = %v, want %v (row scale %g)", p, i, j, g, w, scale[i])
				}
				bad++
			}
		}
	}
	for idx := range p.c0 {
		if idx%p.ldc >= p.n && got(idx) != p.cSentinel {
			t.Errorf("%v: padding C[%d] changed to %v", p, idx, got(idx))
			break
		}
	}
	if bad > 0 {
		t.Errorf("%v: %d of %d elements wrong", p, bad, p.m*p.n)
	}
}

func to32(x []float64) []float32 {
	y := make([]float32, len(x))
	for i, v := range x {
		y[i] = float32(v)
	}
	return y
}

// run32 runs the problem in float32 (inputs rounded to float32 first, and
// the reference recomputed from the rounded values) and checks it.
func (p *problem) run32(t *testing.T, o Options) {
	t.Helper()
	a, b, c := to32(p.a), to32(p.b), to32(p.c0)
	q := *p
	q.a, q.b, q.c0 = back64(a), back64(b), back64(c)
	q.alpha, q.beta = float64(float32(p.alpha)), float64(float32(p.beta))
	o.Sgemm(p.transA, p.transB, p.m, p.n, p.k, float32(p.alpha), a, p.lda, b, p.ldb, float32(p.beta), c, p.ldc)
	q.verify(t, func(i int) float64 { return float64(c[i]) }, tol32)
}

func back64(x []float32) []float64 {
	y := make([]float64, len(x))
	for i, v := range x {
		y[i] = float64(v)
	}
	return y
}

func (p *problem) run64(t *testing.T, o Options) {
	t.Helper()
	c := append([]float64(nil), p.c0...)
	o.Dgemm(p.transA, p.transB, p.m, p.n, p.k, p.alpha, p.a, p.lda, p.b, p.ldb, p.beta, c, p.ldc)
	p.verify(t, func(i int) float64 { return c[i] }, tol64)
}

// kernelsUnderTest lists the kernel families this CPU can run.
func kernelsUnderTest(t *testing.T) []kernelID {
	var ids []kernelID
	for _, id := range []kernelID{kernelAVX512, kernelAVX2, kernelGo} {
		if available(id) {
			ids = append(ids, id)
		} else {
			t.Logf("kernel %v not supported by this CPU; skipped", id)
		}
	}
	return ids
}

// shapes mixes the odd sizes from the brief so that every size meets edge
// tiles in m and n, k tails in the unrolled loop, and (with 257, 513) more
// than one k block.
var shapes = [][3]int{
	{1, 1, 1}, {3, 3, 3}, {7, 7, 7}, {17, 17, 17}, {33, 33, 33}, {65, 65, 65},
	{127, 127, 127}, {129, 129, 129}, {1, 257, 7}, {257, 1, 33}, {3, 129, 255},
	{255, 17, 65}, {17, 255, 257}, {65, 33, 513}, {129, 65, 1}, {300, 40, 20}, {14, 32, 300},
	{33, 16, 45}, {61, 12, 9}, {29, 8, 300}, {57, 5, 4},
}

func TestGemmShapes(t *testing.T) {
	r := newRand(t)
	for _, id := range kernelsUnderTest(t) {
		for _, threads := range []int{1, 3} {
			o := Options{Threads: threads, kernel: id}
			t.Run(fmt.Sprintf("%v/threads=%d", id, threads), func(t *testing.T) {
				for si, s := range shapes {
					for tr := 0; tr < 4; tr++ {
						tA, tB := tr&1 != 0, tr&2 != 0
						alpha, beta := 1.0, 0.0
						switch (si + tr) % 3 {
						case 1:
							alpha, beta = -0.75, 1.0
						case 2:
							alpha, beta = 1.5, -0.5
						}
						pad := (si + tr) % 4
						newProblem(r, tA, tB, s[0], s[1], s[2], pad, alpha, beta).run32(t, o)
						newProblem(r, tA, tB, s[0], s[1], s[2], pad, alpha, beta).run64(t, o)
					}
				}
			})
		}
	}
}

// TestGemmSmallBlocks shrinks every blocking parameter so that the jc, pc
// and ic loops all iterate several times on small matrices.
func TestGemmSmallBlocks(t *testing.T) {
	r := newRand(t)
	for _, id := range kernelsUnderTest(t) {
		for i := range max(len(family[float32](id)), len(family[float64](id))) {
			smallBlocks(t, r, family[float32](id), family[float64](id), i)
		}
	}
}

// smallBlocks runs TestGemmSmallBlocks for the i-th kernel of each family
// list (clamped to the list's length).
func smallBlocks(t *testing.T, r *rand.Rand, ks32 []*kernel[float32], ks64 []*kernel[float64], i int) {
	{
		k32, k64 := *ks32[min(i, len(ks32)-1)], *ks64[min(i, len(ks64)-1)]
		k32.mc, k32.kc, k32.nc = 2*k32.mr, 5, 2*k32.nr
		k64.mc, k64.kc, k64.nc = 3*k64.mr, 7, 3*k64.nr
		for tr := 0; tr < 4; tr++ {
			tA, tB := tr&1 != 0, tr&2 != 0
			for _, beta := range []float64{0, 0.5} {
				p := newProblem(r, tA, tB, 5*k32.mr+3, 5*k32.nr+5, 23, 2, 1.25, beta)
				a, b, c := to32(p.a), to32(p.b), to32(p.c0)
				q := *p
				q.a, q.b, q.c0 = back64(a), back64(b), back64(c)
				for _, threads := range []int{1, 2} {
					cc := append([]float32(nil), c...)
					gemm(threads, &k32, tA, tB, p.m, p.n, p.k, float32(p.alpha), a, p.lda, b, p.ldb, float32(p.beta), cc, p.ldc)
					q.verify(t, func(i int) float64 { return float64(cc[i]) }, tol32)
				}
				p = newProblem(r, tA, tB, 4*k64.mr+1, 7*k64.nr+3, 30, 1, -0.5, beta)
				for _, threads := range []int{1, 2} {
					cc := append([]float64(nil), p.c0...)
					gemm(threads, &k64, tA, tB, p.m, p.n, p.k, p.alpha, p.a, p.lda, p.b, p.ldb, p.beta, cc, p.ldc)
					p.verify(t, func(i int) float64 { return cc[i] }, tol64)
				}
			}
		}
	}
}

// TestGemmLarge checks products that are split across goroutines and cross
// the production block sizes (n > nc, k > 2·kc, m > mc) while keeping the
// naive reference cheap.
func TestGemmLarge(t *testing.T) {
	r := newRand(t)
	for _, id := range kernelsUnderTest(t) {
		o := Options{kernel: id}
		newProblem(r, false, false, 130, 4130, 40, 1, 1, 0).run32(t, o)
		newProblem(r, true, true, 340, 100, 530, 0, 0.5, 2).run32(t, o)
		newProblem(r, false, true, 230, 2060, 40, 0, 1, 1).run64(t, o)
	}
}

// TestMicroKernels drives each micro-kernel directly with k lengths that
// exercise the unrolled loop and its tail.
func TestMicroKernels(t *testing.T) {
	r := newRand(t)
	for _, id := range kernelsUnderTest(t) {
		for _, k := range family[float32](id) {
			testMicro(t, r, k, tol32)
		}
		for _, k := range family[float64](id) {
			testMicro(t, r, k, tol64)
		}
	}
}

func testMicro[T float](t *testing.T, r *rand.Rand, k *kernel[T], tol float64) {
	for kc := 1; kc <= 11; kc++ {
		// A layouts: packed panel, row-major in place (rs = lda), and
		// transposed in place (ps = lda), each with spare columns.
		for _, layout := range []struct{ rs, ps int }{{1, k.mr}, {kc + 3, 1}, {1, k.mr + 5}} {
			for _, beta := range []T{0, 1, -0.5} {
				a := make([]T, (k.mr-1)*layout.rs+(kc-1)*layout.ps+1)
				b := make([]T, kc*k.nr)
				for i := range a {
					a[i] = T(2*r.Float64() - 1)
				}
				for i := range b {
					b[i] = T(2*r.Float64() - 1)
				}
				ldc := k.nr + 3
				c := make([]T, k.mr*ldc)
				for i := range c {
					c[i] = T(r.Float64())
					if beta == 0 {
						c[i] = T(math.NaN())
					}
				}
				c0 := append([]T(nil), c...)
				alpha := T(0.75)
				k.micro(kc, a, layout.rs, layout.ps, b, c, ldc, alpha, beta)
				for i := 0; i < k.mr; i++ {
					for j := 0; j < ldc; j++ {
						got := float64(c[i*ldc+j])
						if j >= k.nr {
							if !math.IsNaN(float64(c0[i*ldc+j])) && got != float64(c0[i*ldc+j]) {
								t.Fatalf("%v %d×%d kc=%d: wrote outside the tile at (%d,%d)", k.id, k.mr, k.nr, kc, i, j)
							}
							continue
						}
						var s float64
						for p := 0; p < kc; p++ {
							s += float64(a[i*layout.rs+p*layout.ps]) * float64(b[p*k.nr+j])
						}
						want := float64(alpha) * s
						if beta != 0 {
							want += float64(beta) * float64(c0[i*ldc+j])
						}
						if !(math.Abs(got-want) <= tol*float64(kc)) {
							t.Fatalf("%v %d×%d %T kc=%d %+v beta=%v: c[%d][%d] = %v, want %v", k.id, k.mr, k.nr, alpha, kc, layout, beta, i, j, got, want)
						}
					}
				}
			}
		}
	}
}

// TestGemmAlphaZeroAndEmptyK checks the BLAS conventions that skip A and B:
// with alpha == 0 or k == 0, C = beta·C and NaN in A or B does not leak.
func TestGemmAlphaZeroAndEmptyK(t *testing.T) {
	a := []float32{float32(math.NaN()), 1, 2, 3}
	b := []float32{4, float32(math.NaN()), 6, 7}
	c := []float32{1, 2, 3, 4}
	Sgemm(false, false, 2, 2, 2, 0, a, 2, b, 2, 2, c, 2)
	for i, want := range []float32{2, 4, 6, 8} {
		if c[i] != want {
			t.Fatalf("alpha=0: c=%v, want 2·C", c)
		}
	}
	nan := math.NaN()
	d := []float64{nan, nan, nan, nan}
	Dgemm(false, false, 2, 2, 0, 1, nil, 1, nil, 2, 0, d, 2)
	for _, v := range d {
		if v != 0 {
			t.Fatalf("k=0, beta=0: c=%v, want zeros", d)
		}
	}
}

func TestGemmBatched(t *testing.T) {
	r := newRand(t)
	for _, id := range kernelsUnderTest(t) {
		for _, threads := range []int{1, 2, 4} {
			for tr := 0; tr < 4; tr++ {
				tA, tB := tr&1 != 0, tr&2 != 0
				batch, m, n, k := 5, 37, 45, 29
				ps := make([]*problem, batch)
				for i := range ps {
					ps[i] = newProblem(r, tA, tB, m, n, k, 1, 0.5, float64(tr%2))
				}
				// A is shared (stride 0) on odd transposes to cover broadcasting.
				strideA := len(ps[0].a) + 3
				if tr%2 == 1 {
					strideA = 0
					for _, p := range ps {
						p.a = ps[0].a
					}
				}
				strideB, strideC := len(ps[0].b)+1, len(ps[0].c0)+2
				pack := func(get func(*problem) []float64, stride int) []float64 {
					out := make([]float64, (batch-1)*stride+len(get(ps[0])))
					for i, p := range ps {
						copy(out[i*stride:], get(p))
					}
					return out
				}
				a := pack(func(p *problem) []float64 { return p.a }, strideA)
				b := pack(func(p *problem) []float64 { return p.b }, strideB)
				c := pack(func(p *problem) []float64 { return p.c0 }, strideC)
				p0 := ps[0]
				o := Options{Threads: threads, kernel: id}
				c64 := append([]float64(nil), c...)
				o.DgemmBatched(tA, tB, batch, m, n, k, p0.alpha, a, strideA, p0.lda, b, strideB, p0.ldb, p0.beta, c64, strideC, p0.ldc)
				a32, b32, c32 := to32(a), to32(b), to32(c)
				o.SgemmBatched(tA, tB, batch, m, n, k, float32(p0.alpha), a32, strideA, p0.lda, b32, strideB, p0.ldb, float32(p0.beta), c32, strideC, p0.ldc)
				for i, p := range ps {
					p.verify(t, func(j int) float64 { return c64[i*strideC+j] }, tol64)
					q := *p
					q.a, q.b, q.c0 = back64(to32(p.a)), back64(to32(p.b)), back64(to32(p.c0))
					q.verify(t, func(j int) float64 { return float64(c32[i*strideC+j]) }, tol32)
				}
			}
		}
	}
}

func TestGemmPanics(t *testing.T) {
	cases := []struct {
		name, want string
		f          func()
	}{
		{"short a", "len(a)=5", func() {
			Sgemm(false, false, 2, 2, 3, 1, make([]float32, 5), 3, make([]float32, 6), 2, 0, make([]float32, 4), 2)
		}},
		{"small ldb", "ldb=1", func() {
			Dgemm(false, false, 2, 2, 2, 1, make([]float64, 4), 2, make([]float64, 4), 1, 0, make([]float64, 4), 2)
		}},
		{"short c", "len(c)=3", func() {
			Sgemm(true, true, 2, 2, 2, 1, make([]float32, 4), 2, make([]float32, 4), 2, 0, make([]float32, 3), 2)
		}},
		{"negative", "m=-1", func() { Sgemm(false, false, -1, 2, 2, 1, nil, 2, nil, 2, 0, nil, 2) }},
		{"batched c", "need 13", func() {
			SgemmBatched(false, false, 2, 2, 2, 2, 1, make([]float32, 4), 0, 2, make([]float32, 4), 0, 2, 0, make([]float32, 12), 9, 2)
		}},
	}
	for _, tc := range cases {
		func() {
			defer func() {
				msg := fmt.Sprint(recover())
				if !strings.Contains(msg, tc.want) {
					t.Errorf("%s: panic %q does not mention %q", tc.name, msg, tc.want)
				}
			}()
			tc.f()
		}()
	}
}

// TestGemmPacked checks GemmPacked against the reference, with production
// and shrunken blocking (several column and depth blocks in the packed B),
// both A orientations and several thread counts, reusing one PackedB.
func TestGemmPacked(t *testing.T) {
	r := newRand(t)
	for _, id := range kernelsUnderTest(t) {
		small := *family[float32](id)[0]
		small.mc, small.kc, small.nc = 2*small.mr, 9, 2*small.nr
		small64 := *family[float64](id)[0]
		small64.mc, small64.kc, small64.nc = 2*small64.mr, 9, 2*small64.nr
		var pb PackedB[float32]
		var pb64 PackedB[float64]
		for _, useSmall := range []bool{false, true} {
			for tr := 0; tr < 4; tr++ {
				tA, tB := tr&1 != 0, tr&2 != 0
				for _, threads := range []int{1, 2, 3} {
					o := Options{Threads: threads, kernel: id}
					p := newProblem(r, tA, tB, 97, 5*small.nr+3, 40, 1, 1.5, float64(tr%2))
					a, b, c := to32(p.a), to32(p.b), to32(p.c0)
					if useSmall {
						pb.packWith(&small, tB, p.k, p.n, b, p.ldb)
					} else {
						pb.Pack(o, tB, p.k, p.n, b, p.ldb)
					}
					GemmPacked(o, tA, p.m, float32(p.alpha), a, p.lda, &pb, float32(p.beta), c, p.ldc)
					q := *p
					q.a, q.b, q.c0 = back64(a), back64(b), back64(to32(p.c0))
					q.verify(t, func(i int) float64 { return float64(c[i]) }, tol32)

					p = newProblem(r, tA, tB, 61, 3*small64.nr+1, 33, 2, -1, 0.5)
					if useSmall {
						pb64.packWith(&small64, tB, p.k, p.n, p.b, p.ldb)
					} else {
						pb64.Pack(o, tB, p.k, p.n, p.b, p.ldb)
					}
					c64 := append([]float64(nil), p.c0...)
					GemmPacked(o, tA, p.m, p.alpha, p.a, p.lda, &pb64, p.beta, c64, p.ldc)
					p.verify(t, func(i int) float64 { return c64[i] }, tol64)
				}
			}
		}
	}
}

// TestGemmPackedA covers the path that packs a row-major A, taken when its
// row stride is a multiple of 4 KiB (rows would alias in L1) or n is wide:
// every kernel of each family, including the ragged last panel.
func TestGemmPackedA(t *testing.T) {
	r := newRand(t)
	for _, id := range kernelsUnderTest(t) {
		o := Options{Threads: 2, kernel: id}
		for _, n := range []int{5, 12, 40} {
			for _, tB := range []bool{false, true} {
				p := newProblem(r, false, tB, 61, n, 37, 0, 1.25, 0.5)
				// Widen A's rows to 1024 float32s (4 KiB); the padding is NaN.
				wide := randMatrix(r, p.m, p.k, 1024, math.NaN())
				for i := 0; i < p.m; i++ {
					copy(wide[i*1024:i*1024+p.k], p.a[i*p.lda:i*p.lda+p.k])
				}
				p.a, p.lda = wide, 1024
				p.run32(t, o)
				p64 := *p
				wide64 := randMatrix(r, p.m, p.k, 512, math.NaN())
				for i := 0; i < p.m; i++ {
					copy(wide64[i*512:i*512+p.k], p.a[i*1024:i*1024+p.k])
				}
				p64.a, p64.lda = wide64, 512
				p64.run64(t, o)
			}
		}
	}
}

func TestKernelFamily(t *testing.T) {
	want := map[kernelID]string{kernelAVX512: "AVX-512", kernelAVX2: "AVX2+FMA", kernelGo: "portable Go"}[resolve(kernelAuto)]
	if got := KernelFamily(); got != want {
		t.Fatalf("KernelFamily() = %q, want %q", got, want)
	}
	t.Logf("kernel family: %s", KernelFamily())
}
