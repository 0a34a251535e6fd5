package cpu

import (
	"fmt"
	"math"
	"math/rand/v2"
	"testing"

	"dlf/tensor"
)

// The backend's own quick checks: hand-computed values, round trips, gradients against central
// differences and thread-count determinism. The exhaustive per-op comparison with naive references
// is the conformance suite (conformance_test.go).

var dtypes = []tensor.DType{tensor.Float32, tensor.Float64}

// randn returns n values uniform in [lo, hi) (never all zero).
func randv(r *rand.Rand, n int, lo, hi float64) []float64 {
	v := make([]float64, n)
	for i := range v {
		v[i] = lo + (hi-lo)*r.Float64()
	}
	return v
}

func fromF64(be *Backend, dt tensor.DType, v []float64, shape ...int) *tensor.Tensor {
	t := tensor.New(be, dt, shape...)
	t.Upload(v)
	return t
}

// closeTo fails unless |got−want| ≤ tol·max(|want|, 1e-3) everywhere.
func closeTo(t *testing.T, what string, got, want []float64, tol float64) {
	t.Helper()
	if len(got) != len(want) {
		t.Fatalf("%s: %d values, want %d", what, len(got), len(want))
	}
	for i := range got {
		if d := math.Abs(got[i] - want[i]); !(d <= tol*math.Max(math.Abs(want[i]), 1e-3)) {
			t.Fatalf("%s[%d] = %.12g, want %.12g (|diff| %.3g)", what, i, got[i], want[i], d)
		}
	}
}

func tolFor(dt tensor.DType) float64 {
	if dt == tensor.Float32 {
		return 2e-6
	}
	return 1e-13
}

func TestSizeClass(t *testing.T) {
	prev := -1
	for n := 0; n < 1<<14; n++ {
		class, capacity := sizeClass(n)
		if capacity < n || (n > minClassElems && float64(capacity) > 1.25*float64(n)+1e-9) {
			t.Fatalf("sizeClass(%d) capacity %d", n, capacity)
		}
		if c2, cap2 := sizeClass(capacity); c2 != class || cap2 != capacity {
			t.Fatalf("sizeClass(%d) = (%d, %d) but its capacity maps to (%d, %d)", n, class, capacity, c2, cap2)
		}
		if class < prev || class >= numClasses {
			t.Fatalf("sizeClass(%d) = %d after %d", n, class, prev)
		}
		prev = class
	}
	if c, _ := sizeClass(math.MaxInt / 8); c >= numClasses {
		t.Fatalf("largest class %d ≥ %d", c, numClasses)
	}
}

func TestAllocRecycleAndPoison(t *testing.T) {
	be := New(WithPoison(true))
	buf := be.Alloc(tensor.Float32, 1000).(*buffer[float32])
	for i, v := range buf.data {
		if !math.IsNaN(float64(v)) {
			t.Fatalf("poisoned element %d = %v", i, v)
		}
	}
	if len(buf.data) != 1000 || buf.Bytes() != 4*cap(buf.data) {
		t.Fatalf("len %d, Bytes %d", len(buf.data), buf.Bytes())
	}
	be.Free(buf)
	// Tensors released explicitly come back through the pool; a steady state allocates nothing.
	x := tensor.New(be, tensor.Float64, 64, 7, 7, 8)
	x.Release()
	allocs := testing.AllocsPerRun(100, func() {
		y := tensor.New(be, tensor.Float64, 64, 7, 7, 8)
		y.Release()
	})
	// tensor.New itself allocates its Tensor, storage and handle structs; the data must not be
	// among the allocations.
	if allocs > 8 {
		t.Errorf("New+Release allocates %v objects per run", allocs)
	}
	if be.Err() != nil {
		t.Fatal(be.Err())
	}
}

func TestFailureIsSticky(t *testing.T) {
	be := New()
	x := tensor.Full(be, tensor.Float32, 2, 4)
	if be.Alloc(tensor.DType(99), 4) != nil {
		t.Fatal("Alloc of an unknown dtype returned a buffer")
	}
	if be.Err() == nil || be.Sync() == nil {
		t.Fatal("no error recorded")
	}
	be.Fill(x, 7) // must be a no-op now
	be.failed.Store(false)
	if got := x.Float64s(); got[0] != 2 {
		t.Fatalf("Fill ran after a failure: %v", got)
	}
}

func TestUploadDownloadConvert(t *testing.T) {
	be := New()
	x := tensor.FromFloat32(be, []float32{1.5, -2, 3.25}, 3)
	if got := x.Float64s(); got[0] != 1.5 || got[1] != -2 || got[2] != 3.25 {
		t.Fatalf("float32 → float64 download: %v", got)
	}
	y := tensor.FromFloat64(be, []float64{0.1, 2}, 2)
	if got := y.Float32s(); got[0] != float32(0.1) || got[1] != 2 {
		t.Fatalf("float64 → float32 download: %v", got)
	}
}

func TestSqueezeOrder(t *testing.T) {
	be := New()
	// src [1,2,2,2]: value = 10·(2·h+w) + c.
	src := fromF64(be, tensor.Float64, []float64{0, 1, 10, 11, 20, 21, 30, 31}, 1, 2, 2, 2)
	dst := tensor.New(be, tensor.Float64, 1, 1, 1, 8)
	tensor.Squeeze2(dst, src)
	// Channel c·4 + dy·2 + dx holds src[dy, dx, c].
	want := []float64{0, 10, 20, 30, 1, 11, 21, 31}
	closeTo(t, "squeeze", dst.Float64s(), want, 0)
	back := tensor.New(be, tensor.Float64, 1, 2, 2, 2)
	tensor.Unsqueeze2(back, dst)
	closeTo(t, "unsqueeze", back.Float64s(), src.Float64s(), 0)

	r := rand.New(rand.NewPCG(1, 2))
	for _, dt := range dtypes {
		x := fromF64(be, dt, randv(r, 3*8*6*5, -1, 1), 3, 8, 6, 5)
		s := tensor.New(be, dt, 3, 4, 3, 20)
		u := tensor.New(be, dt, 3, 8, 6, 5)
		tensor.Squeeze2(s, x)
		tensor.Unsqueeze2(u, s)
		closeTo(t, "round trip "+dt.String(), u.Float64s(), x.Float64s(), 0)
	}
}

func TestBinaryBroadcast(t *testing.T) {
	r := rand.New(rand.NewPCG(3, 4))
	ops := []tensor.BinaryOp{tensor.Add, tensor.Sub, tensor.Mul, tensor.Div}
	apply := func(op tensor.BinaryOp, a, b float64) float64 {
		switch op {
		case tensor.Add:
			return a + b
		case tensor.Sub:
			return a - b
		case tensor.Mul:
			return a * b
		}
		return a / b
	}
	for _, threads := range []int{1, 3} {
		be := New(WithThreads(threads))
		for _, dt := range dtypes {
			for _, bshape := range [][]int{{64, 9, 9, 40}, {40}, {1, 1, 1, 40}, {64, 1, 1, 1}, {1}} {
				a := fromF64(be, dt, randv(r, 64*9*9*40, 0.5, 2), 64, 9, 9, 40)
				bn := tensor.Shape(bshape).Numel()
				b := fromF64(be, dt, randv(r, bn, 0.5, 2), bshape...)
				for _, op := range ops {
					d := tensor.New(be, dt, 64, 9, 9, 40)
					be.Binary(op, d, a, b, tensor.BroadcastOf(a, b))
					av, bv := a.Float64s(), b.Float64s()
					bc := tensor.BroadcastOf(a, b)
					want := make([]float64, len(av))
					for i := range av {
						want[i] = apply(op, av[i], bv[(i/bc.Div)%bc.Mod])
					}
					closeTo(t, fmt.Sprintf("%v %v b%v threads=%d", op, dt, bshape, threads), d.Float64s(), want, tolFor(dt))
				}
			}
		}
	}
	// A small per-channel period (the rotating-index path) with dst aliasing a.
	be := New()
	a := fromF64(be, tensor.Float32, randv(r, 5*3, -1, 1), 5, 3)
	b := fromF64(be, tensor.Float32, []float64{1, 2, 3}, 3)
	av := a.Float64s()
	tensor.MulT(a, a, b)
	for i, v := range a.Float64s() {
		if want := float64(float32(av[i] * float64(1+i%3))); v != want {
			t.Fatalf("aliased mul [%d] = %v, want %v", i, v, want)
		}
	}
}

func TestReduceDeterministicAndAccurate(t *testing.T) {
	for _, c := range []int{24, 3} { // the wide and the narrow per-channel kernels
		testReduce(t, c)
	}
}

func testReduce(t *testing.T, c int) {
	r := rand.New(rand.NewPCG(5, 6))
	vals := randv(r, 16*33*17*c, -1, 1)
	shape := []int{16, 33, 17, c}
	var first [][]float64
	for ti, threads := range []int{1, 2, 5} {
		be := New(WithThreads(threads))
		x := fromF64(be, tensor.Float32, vals, shape...)
		xv := x.Float64s()
		k := 0
		for _, axes := range []tensor.ReduceAxes{tensor.AxisAll, tensor.AxisExample, tensor.AxisChannel} {
			for _, op := range []tensor.ReduceOp{tensor.Sum, tensor.Mean, tensor.SumSq} {
				out := tensor.New(be, tensor.Float32, tensor.ReduceShape(axes, shape)...)
				tensor.Reduce(op, axes, out, x)
				got := out.Float64s()
				want := make([]float64, len(got))
				cnt := make([]float64, len(got))
				for i, v := range xv {
					j := 0
					switch axes {
					case tensor.AxisExample:
						j = i / (len(xv) / 16)
					case tensor.AxisChannel:
						j = i % c
					}
					if op == tensor.SumSq {
						v *= v
					}
					want[j] += v
					cnt[j]++
				}
				if op == tensor.Mean {
					for j := range want {
						want[j] /= cnt[j]
					}
				}
				for j := range want {
					want[j] = float64(float32(want[j]))
				}
				closeTo(t, fmt.Sprintf("reduce %d/%d", op, axes), got, want, 1e-6)
				if ti == 0 {
					first = append(first, got)
				} else {
					for j := range got {
						if got[j] != first[k][j] {
							t.Fatalf("reduce %d/%d with %d threads differs from 1 thread at %d", op, axes, threads, j)
						}
					}
				}
				k++
			}
		}
	}
}

func TestRandMatchesPhilox(t *testing.T) {
	be := New(WithThreads(3))
	for _, dt := range dtypes {
		u := tensor.New(be, dt, 10003)
		nrm := tensor.New(be, dt, 10003)
		if next := tensor.RandUniform(u, 42, 7); next != 7+2501 {
			t.Fatalf("next offset %d", next)
		}
		tensor.RandNormal(nrm, 42, 7)
		uv, nv := u.Float64s(), nrm.Float64s()
		for _, i := range []int{0, 1, 5, 4999, 10002} {
			blk := tensor.PhiloxBlock(42, 7, uint64(i/4))
			if want := tensor.PhiloxUniform(blk[i%4]); uv[i] != want {
				t.Fatalf("%v uniform[%d] = %v, want %v", dt, i, uv[i], want)
			}
			want := tensor.PhiloxNormal(blk)[i%4]
			if dt == tensor.Float32 {
				want = float64(float32(want))
			}
			if nv[i] != want {
				t.Fatalf("%v normal[%d] = %v, want %v", dt, i, nv[i], want)
			}
		}
	}
}

func TestActNormValuesAndRoundTrip(t *testing.T) {
	be := New()
	// x = 1, bias = 1, scale·logs = ln 2: y = 4 and ld += H·W·C·ln 2.
	x := tensor.Full(be, tensor.Float64, 1, 2, 3, 3, 2)
	bias := tensor.Full(be, tensor.Float64, 1, 2)
	logs := tensor.Full(be, tensor.Float64, math.Ln2/3, 2)
	y := tensor.New(be, tensor.Float64, 2, 3, 3, 2)
	ld := tensor.Full(be, tensor.Float64, 0.5, 2)
	tensor.ActNormForward(y, ld, x, bias, logs, 3)
	closeTo(t, "y", y.Float64s(), []float64{4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4}, 1e-15)
	closeTo(t, "ld", ld.Float64s(), []float64{0.5 + 18*math.Ln2, 0.5 + 18*math.Ln2}, 1e-15)

	r := rand.New(rand.NewPCG(7, 8))
	for _, dt := range dtypes {
		x := fromF64(be, dt, randv(r, 4*5*5*6, -2, 2), 4, 5, 5, 6)
		bias := fromF64(be, dt, randv(r, 6, -1, 1), 6)
		logs := fromF64(be, dt, randv(r, 6, -0.3, 0.3), 6)
		ld0 := randv(r, 4, -1, 1)
		ld := fromF64(be, dt, ld0, 4)
		y := tensor.New(be, dt, 4, 5, 5, 6)
		back := tensor.New(be, dt, 4, 5, 5, 6)
		tensor.ActNormForward(y, ld, x, bias, logs, 3)
		mid := ld.Float64s()
		tensor.ActNormInverse(back, ld, y, bias, logs, 3)
		closeTo(t, "actnorm round trip", back.Float64s(), x.Float64s(), 20*tolFor(dt))
		// The logdet went through a larger intermediate value, rounded to the dtype.
		for i, v := range ld.Float64s() {
			want := fromF64(be, dt, ld0, 4).Float64s()[i]
			if d := math.Abs(v - want); d > 4*tolFor(dt)*math.Abs(mid[i]) {
				t.Fatalf("actnorm %v ld[%d] = %v, want %v", dt, i, v, want)
			}
		}
	}
}

func TestAffineRoundTrip(t *testing.T) {
	r := rand.New(rand.NewPCG(9, 10))
	be := New()
	for _, dt := range dtypes {
		for _, mode := range []tensor.ScaleMode{tensor.ScaleTanh, tensor.ScaleSigmoid} {
			for _, perChannel := range []bool{false, true} {
				p := tensor.AffineParams{Mode: mode, PerChannel: perChannel}
				x := fromF64(be, dt, randv(r, 3*4*4*5, -2, 2), 3, 4, 4, 5)
				var h *tensor.Tensor
				if perChannel {
					h = fromF64(be, dt, randv(r, 10, -2, 2), 1, 1, 1, 10)
				} else {
					h = fromF64(be, dt, randv(r, 3*4*4*10, -2, 2), 3, 4, 4, 10)
				}
				alpha := fromF64(be, dt, []float64{0.8}, 1)
				beta := fromF64(be, dt, []float64{-0.5}, 1)
				ld0 := randv(r, 3, -1, 1)
				ld := fromF64(be, dt, ld0, 3)
				y := tensor.New(be, dt, 3, 4, 4, 5)
				back := tensor.New(be, dt, 3, 4, 4, 5)
				tensor.AffineForward(p, y, ld, x, h, alpha, beta)
				// Hand check of one element and the logdet of example 0.
				xv, hv, yv := x.Float64s(), h.Float64s(), y.Float64s()
				logScale := func(r float64) float64 {
					if mode == tensor.ScaleTanh {
						return 0.8*math.Tanh(r) - 0.5
					}
					return math.Log(1 / (1 + math.Exp(-(r + 2))))
				}
				hi := func(i int) int { // index of μ for element i of x
					if perChannel {
						return 2 * (i % 5)
					}
					return 2 * i
				}
				wantLd := fromF64(be, dt, ld0, 3).Float64s()[0]
				for i := 0; i < 4*4*5; i++ {
					wantLd += logScale(hv[hi(i)+1])
				}
				i := 37
				want := (xv[i] + hv[hi(i)]) * math.Exp(logScale(hv[hi(i)+1]))
				closeTo(t, "affine y", yv[i:i+1], []float64{want}, 10*tolFor(dt))
				closeTo(t, "affine ld", ld.Float64s()[:1], []float64{wantLd}, 10*tolFor(dt))
				mid := ld.Float64s()
				tensor.AffineInverse(p, back, ld, y, h, alpha, beta)
				name := fmt.Sprintf("affine %v mode %d perChannel %v", dt, mode, perChannel)
				closeTo(t, name, back.Float64s(), xv, 50*tolFor(dt))
				// The logdet went through a larger intermediate value, rounded to the dtype.
				for i, v := range ld.Float64s() {
					want := fromF64(be, dt, ld0, 3).Float64s()[i]
					if d := math.Abs(v - want); d > 4*tolFor(dt)*math.Abs(mid[i]) {
						t.Fatalf("%s ld[%d] = %v, want %v", name, i, v, want)
					}
				}
			}
		}
	}
}

func TestGaussianSampleInvertsEps(t *testing.T) {
	r := rand.New(rand.NewPCG(11, 12))
	be := New()
	for _, dt := range dtypes {
		for _, g := range gaussianModes() {
			pn := 3
			if g.BatchBroadcast {
				pn = 1
			}
			z := fromF64(be, dt, randv(r, 3*4*4*6, -2, 2), 3, 4, 4, 6)
			p := fromF64(be, dt, randv(r, pn*4*4*12, -1, 1), pn, 4, 4, 12)
			alpha := fromF64(be, dt, []float64{1.2}, 1)
			beta := fromF64(be, dt, []float64{0.1}, 1)
			eps := tensor.New(be, dt, 3, 4, 4, 6)
			lp := tensor.Zeros(be, dt, 3)
			tensor.GaussianLogProb(g, lp, eps, z, p, alpha, beta)
			back := tensor.New(be, dt, 3, 4, 4, 6)
			tensor.GaussianSample(g, back, eps, p, alpha, beta)
			name := fmt.Sprintf("gaussian %v %+v", dt, g)
			closeTo(t, name, back.Float64s(), z.Float64s(), 50*tolFor(dt))
			// log-prob of example 1 from the formula, with standardised eps.
			ev := eps.Float64s()
			pv := p.Float64s()
			want := 0.0
			for k := 0; k < 16*6; k++ {
				pos, c := k/6, k%6
				row := pos
				if !g.BatchBroadcast {
					row += 16
				}
				ri := row*12 + 6 + c
				if g.Interleaved {
					ri = row*12 + 2*c + 1
				}
				ls := pv[ri]
				if g.Bounded {
					ls = 1.2*math.Tanh(ls) + 0.1
				}
				e := ev[96+k]
				want += -0.5 * (math.Log(2*math.Pi) + 2*ls + e*e)
			}
			closeTo(t, name+" lp", lp.Float64s()[1:2], []float64{want}, 50*tolFor(dt))
		}
	}
}

func gaussianModes() []tensor.GaussianParams {
	var out []tensor.GaussianParams
	for _, il := range []bool{false, true} {
		for _, bd := range []bool{false, true} {
			for _, bb := range []bool{false, true} {
				out = append(out, tensor.GaussianParams{Interleaved: il, Bounded: bd, BatchBroadcast: bb})
			}
		}
	}
	return out
}

func TestAdamStep(t *testing.T) {
	be := New()
	for _, kind := range []tensor.OptimKind{tensor.Adam, tensor.Adamax} {
		o := tensor.OptimParams{Kind: kind, LR: 0.01, Beta1: 0.9, Beta2: 0.99, Eps: 1e-8, WeightDecay: 0.999}
		w := fromF64(be, tensor.Float64, []float64{1, -2}, 2)
		m := fromF64(be, tensor.Float64, []float64{0.1, 0.2}, 2)
		v := fromF64(be, tensor.Float64, []float64{0.5, 0.01}, 2)
		g := fromF64(be, tensor.Float64, []float64{0.3, -0.4}, 2)
		tensor.AdamStep(o, w, m, v, g)
		wantM := []float64{0.9*0.1 + 0.1*0.3, 0.9*0.2 - 0.1*0.4}
		var wantV, den []float64
		if kind == tensor.Adam {
			wantV = []float64{0.99*0.5 + 0.01*0.09, 0.99*0.01 + 0.01*0.16}
			den = []float64{math.Sqrt(wantV[0]) + 1e-8, math.Sqrt(wantV[1]) + 1e-8}
		} else {
			wantV = []float64{0.99 * 0.5, 0.4}
			den = []float64{wantV[0] + 1e-8, wantV[1] + 1e-8}
		}
		wantW := []float64{0.999*1 - 0.01*wantM[0]/den[0], 0.999*-2 - 0.01*wantM[1]/den[1]}
		closeTo(t, "m", m.Float64s(), wantM, 1e-15)
		closeTo(t, "v", v.Float64s(), wantV, 1e-15)
		closeTo(t, "w", w.Float64s(), wantW, 1e-15)
	}
}

// fdCheck compares analytic gradients with central differences of a scalar loss L(inputs) in
// float64. inputs are perturbed in place; grads[i] is the analytic gradient of inputs[i].
func fdCheck(t *testing.T, name string, loss func() float64, inputs, grads []*tensor.Tensor) {
	t.Helper()
	const h = 1e-6
	for k, in := range inputs {
		v := in.Float64s()
		g := grads[k].Float64s()
		for i := range v {
			orig := v[i]
			v[i] = orig + h
			in.Upload(v)
			lp := loss()
			v[i] = orig - h
			in.Upload(v)
			lm := loss()
			v[i] = orig
			in.Upload(v)
			fd := (lp - lm) / (2 * h)
			if d := math.Abs(fd - g[i]); d > 1e-6*math.Max(1, math.Abs(fd)) {
				t.Fatalf("%s: input %d element %d: analytic %.10g, finite difference %.10g", name, k, i, g[i], fd)
			}
		}
	}
}

// dot returns Σ a·b of two tensors.
func dot(a, b *tensor.Tensor) float64 {
	s := 0.0
	bv := b.Float64s()
	for i, v := range a.Float64s() {
		s += v * bv[i]
	}
	return s
}

func TestBackwardFiniteDifferences(t *testing.T) {
	r := rand.New(rand.NewPCG(13, 14))
	be := New()
	f := tensor.Float64
	rnd := func(lo, hi float64, shape ...int) *tensor.Tensor {
		return fromF64(be, f, randv(r, tensor.Shape(shape).Numel(), lo, hi), shape...)
	}
	const n, hh, w, c = 2, 2, 3, 3
	t.Run("actnorm", func(t *testing.T) {
		x, bias, logs := rnd(-1, 1, n, hh, w, c), rnd(-1, 1, c), rnd(-0.3, 0.3, c)
		gy, gld := rnd(-1, 1, n, hh, w, c), rnd(-1, 1, n)
		y, ld := tensor.New(be, f, n, hh, w, c), tensor.New(be, f, n)
		loss := func() float64 {
			tensor.Fill(ld, 0)
			tensor.ActNormForward(y, ld, x, bias, logs, 3)
			return dot(y, gy) + dot(ld, gld)
		}
		loss()
		dx, db, dl := tensor.New(be, f, n, hh, w, c), tensor.New(be, f, c), tensor.New(be, f, c)
		tensor.ActNormBackward(dx, db, dl, gy, y, logs, gld, 3)
		fdCheck(t, "actnorm", loss, []*tensor.Tensor{x, bias, logs}, []*tensor.Tensor{dx, db, dl})
	})
	for _, mode := range []tensor.ScaleMode{tensor.ScaleTanh, tensor.ScaleSigmoid} {
		for _, pc := range []bool{false, true} {
			p := tensor.AffineParams{Mode: mode, PerChannel: pc}
			t.Run(fmt.Sprintf("affine mode%d perchannel=%v", mode, pc), func(t *testing.T) {
				x := rnd(-1, 1, n, hh, w, c)
				h := rnd(-1.5, 1.5, n, hh, w, 2*c)
				if pc {
					h = rnd(-1.5, 1.5, 2*c)
				}
				alpha, beta := rnd(0.5, 1.5, 1), rnd(-1, 0, 1)
				gy, gld := rnd(-1, 1, n, hh, w, c), rnd(-1, 1, n)
				y, ld := tensor.New(be, f, n, hh, w, c), tensor.New(be, f, n)
				loss := func() float64 {
					tensor.Fill(ld, 0)
					tensor.AffineForward(p, y, ld, x, h, alpha, beta)
					return dot(y, gy) + dot(ld, gld)
				}
				loss()
				dx, dh := tensor.New(be, f, n, hh, w, c), tensor.New(be, f, h.Shape()...)
				da, db := tensor.New(be, f, 1), tensor.New(be, f, 1)
				tensor.AffineBackward(p, dx, dh, da, db, gy, y, h, alpha, beta, gld)
				ins, gs := []*tensor.Tensor{x, h}, []*tensor.Tensor{dx, dh}
				if mode == tensor.ScaleTanh {
					ins, gs = append(ins, alpha, beta), append(gs, da, db)
				}
				fdCheck(t, "affine", loss, ins, gs)
			})
		}
	}
	for _, g := range gaussianModes() {
		t.Run(fmt.Sprintf("gaussian %+v", g), func(t *testing.T) {
			pn := n
			if g.BatchBroadcast {
				pn = 1
			}
			z, p := rnd(-2, 2, n, hh, w, c), rnd(-1, 1, pn, hh, w, 2*c)
			alpha, beta := rnd(0.5, 1.5, 1), rnd(-0.5, 0.5, 1)
			glp := rnd(-1, 1, n)
			lp := tensor.New(be, f, n)
			loss := func() float64 {
				tensor.Fill(lp, 0)
				tensor.GaussianLogProb(g, lp, nil, z, p, alpha, beta)
				return dot(lp, glp)
			}
			dz, dp := tensor.New(be, f, n, hh, w, c), tensor.New(be, f, pn, hh, w, 2*c)
			da, db := tensor.New(be, f, 1), tensor.New(be, f, 1)
			tensor.GaussianLogProbBackward(g, dz, dp, da, db, z, p, alpha, beta, glp)
			ins, gs := []*tensor.Tensor{z, p}, []*tensor.Tensor{dz, dp}
			if g.Bounded {
				ins, gs = append(ins, alpha, beta), append(gs, da, db)
			}
			fdCheck(t, "gaussian", loss, ins, gs)
		})
	}
}

// TestFusedDeterministic checks that the reduced outputs of the fused backward ops are bitwise equal
// for different thread counts, on shapes large enough to be split into many blocks.
func TestFusedDeterministic(t *testing.T) {
	r := rand.New(rand.NewPCG(15, 16))
	const n, hh, w, c = 8, 32, 32, 12
	zv := randv(r, n*hh*w*c, -2, 2)
	pv := randv(r, n*hh*w*2*c, -1, 1)
	dv := randv(r, n, -1, 1)
	var ref [][]float64
	for ti, threads := range []int{1, 2, 3} {
		be := New(WithThreads(threads))
		f := tensor.Float32
		z, h, dld := fromF64(be, f, zv, n, hh, w, c), fromF64(be, f, pv, n, hh, w, 2*c), fromF64(be, f, dv, n)
		alpha, beta := fromF64(be, f, []float64{0.9}, 1), fromF64(be, f, []float64{-0.2}, 1)
		dx, dh := tensor.New(be, f, n, hh, w, c), tensor.New(be, f, n, hh, w, 2*c)
		da, db := tensor.New(be, f, 1), tensor.New(be, f, 1)
		tensor.AffineBackward(tensor.AffineParams{Mode: tensor.ScaleTanh}, dx, dh, da, db, z, z, h, alpha, beta, dld)
		pb := fromF64(be, f, pv[:hh*w*2*c], 1, hh, w, 2*c)
		dz, dp := tensor.New(be, f, n, hh, w, c), tensor.New(be, f, 1, hh, w, 2*c)
		ga, gb := tensor.New(be, f, 1), tensor.New(be, f, 1)
		g := tensor.GaussianParams{Bounded: true, BatchBroadcast: true}
		tensor.GaussianLogProbBackward(g, dz, dp, ga, gb, z, pb, alpha, beta, dld)
		lp := tensor.Zeros(be, f, n)
		tensor.GaussianLogProb(tensor.GaussianParams{Bounded: true}, lp, nil, z, h, alpha, beta)
		dlogs, dbias := tensor.New(be, f, c), tensor.New(be, f, c)
		tensor.ActNormBackward(dx, dbias, dlogs, z, z, fromF64(be, f, zv[:c], c), dld, 3)
		got := [][]float64{da.Float64s(), db.Float64s(), dp.Float64s(), ga.Float64s(), gb.Float64s(), lp.Float64s(), dlogs.Float64s(), dbias.Float64s()}
		if ti == 0 {
			ref = got
			continue
		}
		for k := range got {
			for i := range got[k] {
				if got[k][i] != ref[k][i] {
					t.Fatalf("output %d element %d: %d threads give %v, 1 thread %v", k, i, threads, got[k][i], ref[k][i])
				}
			}
		}
	}
}
