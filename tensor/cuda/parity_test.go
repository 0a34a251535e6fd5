package cuda

import (
	"fmt"
	"math"
	"math/rand/v2"
	"testing"

	"dlf/tensor"
	"dlf/tensor/cpu"
)

// Parity tests: every op family on the GPU against tensor/cpu (its CPU twin) on the same fresh random
// float32 inputs, at the model's shapes (CIFAR-10: batch 32 at 16×16×12 after the first squeeze,
// hidden width 512; the invertible 1x1 convolutions; the priors), which the conformance suite's
// small cases do not reach: the 128×128 GEMM tiles, split-K, multi-block partitions of the
// reductions. Tolerances are DESIGN.md's: 1e-5 elementwise, 1e-4 for reductions, GEMM and
// convolution (normwise: relative to the largest reference magnitude, since random signs make
// individual outputs cancel).

// twin holds the two backends of a parity test and the random source.
type twin struct {
	t   *testing.T
	gpu *Backend
	cpu *cpu.Backend
	rng *rand.Rand
}

func newTwin(t *testing.T) *twin {
	return &twin{t: t, gpu: newTestBackend(t), cpu: cpu.New(), rng: rand.New(rand.NewPCG(uint64(len(t.Name())), 0x5eed))}
}

// data draws n values uniform in [lo, hi), never exactly zero.
func (w *twin) data(n int, lo, hi float64) []float32 {
	out := make([]float32, n)
	for i := range out {
		v := lo + (hi-lo)*w.rng.Float64()
		if v == 0 {
			v = (hi - lo) / 7
		}
		out[i] = float32(v)
	}
	return out
}

// pair uploads the same values to both backends.
func (w *twin) pair(v []float32, shape ...int) (g, c *tensor.Tensor) {
	return tensor.FromFloat32(w.gpu, v, shape...), tensor.FromFloat32(w.cpu, v, shape...)
}

// rand uploads fresh values in [lo, hi) to both backends.
func (w *twin) rand(lo, hi float64, shape ...int) (g, c *tensor.Tensor) {
	return w.pair(w.data(tensor.Shape(shape).Numel(), lo, hi), shape...)
}

// out allocates an output on both backends (the GPU one NaN-poisoned by newTestBackend).
func (w *twin) out(shape ...int) (g, c *tensor.Tensor) {
	return tensor.New(w.gpu, tensor.Float32, shape...), tensor.New(w.cpu, tensor.Float32, shape...)
}

// Comparison modes.
const (
	elementwise = iota // |g − c| ≤ tol·max(|c|, 1e-30) per element
	normwise           // |g − c| ≤ tol·max_i |c_i|
)

// check downloads both tensors and compares them.
func (w *twin) check(what string, g, c *tensor.Tensor, tol float64, mode int) {
	w.t.Helper()
	w.checkScaled(what, g, c, tol, mode, 0)
}

// maxAbs returns the largest magnitude in t.
func maxAbs(t *tensor.Tensor) float64 {
	m := 0.0
	for _, v := range t.Float32s() {
		m = math.Max(m, math.Abs(float64(v)))
	}
	return m
}

// checkScaled is check with the normwise scale raised to at least ref: for values that went through
// a larger intermediate (a logdet after forward and inverse), whose float32 rounding bounds the error.
func (w *twin) checkScaled(what string, g, c *tensor.Tensor, tol float64, mode int, ref float64) {
	w.t.Helper()
	if err := w.gpu.Err(); err != nil {
		w.t.Fatalf("%s: GPU backend failed: %v", what, err)
	}
	gv, cv := g.Float32s(), c.Float32s()
	for _, v := range cv {
		ref = math.Max(ref, math.Abs(float64(v)))
	}
	bad, worst, worstAt := 0, 0.0, -1
	for i := range cv {
		d := math.Abs(float64(gv[i]) - float64(cv[i]))
		scale := math.Max(math.Abs(float64(cv[i])), 1e-30)
		if mode == normwise {
			scale = math.Max(ref, 1e-30)
		}
		e := d / scale
		if math.IsNaN(float64(gv[i])) != math.IsNaN(float64(cv[i])) || e > tol {
			bad++
			if math.IsNaN(e) || e > worst || worstAt < 0 {
				worst, worstAt = e, i
			}
		}
	}
	if bad > 0 {
		w.t.Errorf("%s %v: %d of %d elements differ beyond %.0e; worst at %d: gpu %g, cpu %g (error %.2e)",
			what, c.Shape(), bad, len(cv), tol, worstAt, gv[worstAt], cv[worstAt], worst)
	}
}

// exact requires bit-identical results.
func (w *twin) exact(what string, g, c *tensor.Tensor) {
	w.t.Helper()
	gv, cv := g.Float32s(), c.Float32s()
	for i := range cv {
		if math.Float32bits(gv[i]) != math.Float32bits(cv[i]) {
			w.t.Fatalf("%s: element %d: gpu %g (%#08x), cpu %g (%#08x), want bit-identical", what, i, gv[i],
				math.Float32bits(gv[i]), cv[i], math.Float32bits(cv[i]))
		}
	}
}

const (
	tolElem = 1e-5
	tolRed  = 1e-4
)

func TestParityElementwise(t *testing.T) {
	w := newTwin(t)
	// Every broadcast form (full, per-channel, per-example, scalar) on a float4-friendly shape and on
	// an odd one that takes the general index path and the scalar tail.
	for _, sh := range [][]int{{32, 16, 16, 12}, {3, 5, 7, 3}} {
		xg, xc := w.rand(0.1, 2, sh...)
		for _, bs := range [][]int{sh, {sh[3]}, {sh[0], 1, 1, 1}, {1}, {1, 1, 1, sh[3]}} {
			bg, bc := w.rand(0.5, 1.5, bs...)
			for _, op := range []func(dst, a, b *tensor.Tensor){tensor.AddT, tensor.SubT, tensor.MulT, tensor.DivT} {
				dg, dc := w.out(sh...)
				op(dg, xg, bg)
				op(dc, xc, bc)
				w.check(fmt.Sprintf("binary %v b=%v", sh, bs), dg, dc, tolElem, elementwise)
			}
		}
	}
	xg, xc := w.rand(0.1, 2, 32, 16, 16, 12)
	// An odd length exercises the scalar tail of the float4 loops.
	og, oc := w.rand(-2, 2, 1001)
	for op := tensor.Exp; op <= tensor.Clamp; op++ {
		src := [2]*tensor.Tensor{xg, xc}
		if op != tensor.Log && op != tensor.Sqrt {
			src = [2]*tensor.Tensor{og, oc}
		}
		dg, dc := w.out(src[1].Shape()...)
		tensor.UnaryT(op, dg, src[0], -0.5, 0.75)
		tensor.UnaryT(op, dc, src[1], -0.5, 0.75)
		w.check("unary "+op.String(), dg, dc, tolElem, elementwise)
	}
	yg, yc := w.rand(-1, 1, 1001)
	for op := tensor.ReluGrad; op <= tensor.AbsGrad; op++ {
		dg, dc := w.out(1001)
		tensor.UnaryGradT(op, dg, og, yg, -0.5, 0.75)
		tensor.UnaryGradT(op, dc, oc, yc, -0.5, 0.75)
		w.check(fmt.Sprintf("unary grad %d", op), dg, dc, tolElem, elementwise)
	}
	tensor.Axpy(-0.3, og, yg)
	tensor.Axpy(-0.3, oc, yc)
	w.check("axpy", yg, yc, tolElem, normwise)
}

func TestParityReduce(t *testing.T) {
	w := newTwin(t)
	for _, sh := range [][]int{{32, 16, 16, 12}, {4, 8, 8, 600}, {1, 3, 5, 7}, {3, 1001}} {
		xg, xc := w.rand(-1, 2, sh...)
		for _, axes := range []tensor.ReduceAxes{tensor.AxisAll, tensor.AxisExample, tensor.AxisChannel} {
			for _, op := range []tensor.ReduceOp{tensor.Sum, tensor.Mean, tensor.SumSq} {
				rs := tensor.ReduceShape(axes, sh)
				dg, dc := w.out(rs...)
				tensor.Reduce(op, axes, dg, xg)
				tensor.Reduce(op, axes, dc, xc)
				w.check(fmt.Sprintf("reduce op %d axes %d of %v", op, axes, sh), dg, dc, tolRed, elementwise)
			}
		}
	}
}

func TestParityGemm(t *testing.T) {
	w := newTwin(t)
	cases := []struct{ batch, m, n, k int }{
		{0, 2048, 1024, 64},   // 128×128 tiles, vector paths
		{0, 2050, 1030, 67},   // 128×128 tiles, ragged edges, scalar paths
		{0, 8192, 12, 12},     // invertible 1x1 convolution, narrow tiles
		{0, 12, 12, 8192},     // its weight gradient: split-K
		{0, 200, 300, 1000},   // 64×64 tiles with split-K
		{3, 100, 48, 70},      // batched
		{0, 4096, 512, 512},   // the hidden 1x1 convolution as a GEMM
		{0, 1, 1, 1},          // one element
		{0, 33, 65, 0 + 1027}, // split-K with a ragged last slice
	}
	for _, c := range cases {
		for _, tr := range [][2]bool{{false, false}, {false, true}, {true, false}, {true, true}} {
			as, bs, cs := []int{c.m, c.k}, []int{c.k, c.n}, []int{c.m, c.n}
			if tr[0] {
				as = []int{c.k, c.m}
			}
			if tr[1] {
				bs = []int{c.n, c.k}
			}
			if c.batch > 0 {
				as, bs, cs = append([]int{c.batch}, as...), append([]int{c.batch}, bs...), append([]int{c.batch}, cs...)
			}
			ag, ac := w.rand(-1, 1, as...)
			bg, bc := w.rand(-1, 1, bs...)
			for _, ab := range [][2]float64{{1, 0}, {0.5, -1.25}} {
				cv := w.data(tensor.Shape(cs).Numel(), -1, 1)
				cg, cc := w.pair(cv, cs...)
				if ab[1] == 0 {
					cg, cc = w.out(cs...) // beta = 0 must not read the NaN-poisoned C
				}
				tensor.Gemm(tr[0], tr[1], ab[0], ag, bg, ab[1], cg)
				tensor.Gemm(tr[0], tr[1], ab[0], ac, bc, ab[1], cc)
				w.check(fmt.Sprintf("gemm %+v trans %v alpha,beta %v", c, tr, ab), cg, cc, tolRed, normwise)
			}
		}
	}
}

// convShapes are the CIFAR-10 model's convolutions (batch 16 to keep CPU time down) and ragged
// small ones.
var convShapes = []struct {
	n, h, w, cin, cout int
	p                  tensor.ConvParams
	bias               bool
}{
	{16, 16, 16, 6, 512, tensor.ConvParams{K: 3, EdgeBias: true}, false},   // g_k first conv
	{16, 16, 16, 512, 512, tensor.ConvParams{K: 1}, false},                 // second conv
	{16, 16, 16, 512, 12, tensor.ConvParams{K: 3, EdgeBias: true}, true},   // zeros-conv
	{4, 8, 8, 24, 48, tensor.ConvParams{K: 3, EdgeBias: true}, true},       // prior conv
	{3, 7, 5, 5, 9, tensor.ConvParams{K: 3}, true},                         // ragged
	{2, 9, 11, 130, 70, tensor.ConvParams{K: 3, EdgeBias: true}, false},    // ragged, wide
	{2, 6, 6, 3, 33, tensor.ConvParams{K: 1, EdgeBias: true}, true},        // 1x1 with edge channel
	{1, 30, 30, 40, 200, tensor.ConvParams{K: 3, EdgeBias: false}, false},  // 64×64 tiles
	{8, 14, 14, 128, 128, tensor.ConvParams{K: 3, EdgeBias: true}, false},  // MNIST width
	{2, 14, 14, 2, 128, tensor.ConvParams{K: 3, EdgeBias: true}, false},    // MNIST first conv
	{32, 4, 4, 48, 96, tensor.ConvParams{K: 3, EdgeBias: true}, true},      // top prior
	{1, 32, 32, 3, 8, tensor.ConvParams{K: 3, EdgeBias: true}, true},       // narrow input
	{5, 3, 3, 17, 31, tensor.ConvParams{K: 3, EdgeBias: true}, false},      // 3x3 image
	{1, 1, 1, 4, 4, tensor.ConvParams{K: 3, EdgeBias: true}, true},         // all padding
	{2, 16, 16, 1024, 16, tensor.ConvParams{K: 1, EdgeBias: false}, false}, // long reduction, split
}

func TestParityConv(t *testing.T) {
	w := newTwin(t)
	for _, c := range convShapes {
		name := fmt.Sprintf("%dx%dx%dx%d→%d K%d edge=%v", c.n, c.h, c.w, c.cin, c.cout, c.p.K, c.p.EdgeBias)
		ws := tensor.ConvWeightShape(c.p, c.cin, c.cout)
		xg, xc := w.rand(-1, 1, c.n, c.h, c.w, c.cin)
		wg, wc := w.rand(-0.5, 0.5, ws...)
		var bg, bc *tensor.Tensor
		if c.bias {
			bg, bc = w.rand(-1, 1, c.cout)
		}
		yg, yc := w.out(c.n, c.h, c.w, c.cout)
		tensor.Conv2D(c.p, yg, xg, wg, bg)
		tensor.Conv2D(c.p, yc, xc, wc, bc)
		w.check("Conv2D "+name, yg, yc, tolRed, normwise)

		dyg, dyc := w.rand(-1, 1, c.n, c.h, c.w, c.cout)
		dxg, dxc := w.out(c.n, c.h, c.w, c.cin)
		tensor.Conv2DBackwardData(c.p, dxg, dyg, wg)
		tensor.Conv2DBackwardData(c.p, dxc, dyc, wc)
		w.check("Conv2DBackwardData "+name, dxg, dxc, tolRed, normwise)

		dwg, dwc := w.out(ws...)
		tensor.Conv2DBackwardWeights(c.p, dwg, xg, dyg)
		tensor.Conv2DBackwardWeights(c.p, dwc, xc, dyc)
		w.check("Conv2DBackwardWeights "+name, dwg, dwc, tolRed, normwise)
	}
}

func TestParityRandom(t *testing.T) {
	w := newTwin(t)
	for _, n := range []int{1, 3, 4, 1001, 32 * 16 * 16 * 12} {
		for _, so := range [][2]uint64{{7, 0}, {0xdeadbeefcafe, 1<<32 - 3}} {
			ug, uc := w.out(n)
			tensor.RandUniform(ug, so[0], so[1])
			tensor.RandUniform(uc, so[0], so[1])
			w.exact(fmt.Sprintf("uniform n=%d seed,offset=%v", n, so), ug, uc)
			ng, nc := w.out(n)
			tensor.RandNormal(ng, so[0], so[1])
			tensor.RandNormal(nc, so[0], so[1])
			// Box–Muller in double on both sides, rounded to float: equal up to the last bit of the
			// libraries' log/sincos.
			w.check(fmt.Sprintf("normal n=%d", n), ng, nc, 1e-6, normwise)
		}
	}
}

func TestParitySqueeze(t *testing.T) {
	w := newTwin(t)
	for _, sh := range [][]int{{32, 32, 32, 3}, {4, 6, 10, 5}, {1, 2, 2, 1}} {
		xg, xc := w.rand(-1, 1, sh...)
		sg, sc := w.out(sh[0], sh[1]/2, sh[2]/2, 4*sh[3])
		tensor.Squeeze2(sg, xg)
		tensor.Squeeze2(sc, xc)
		w.exact(fmt.Sprintf("squeeze %v", sh), sg, sc)
		ug, uc := w.out(sh...)
		tensor.Unsqueeze2(ug, sg)
		tensor.Unsqueeze2(uc, sc)
		w.exact(fmt.Sprintf("unsqueeze %v", sh), ug, uc)
		w.exact(fmt.Sprintf("squeeze round trip %v", sh), ug, xc)
	}
}

// flowShapes: CIFAR level-0 part, a deeper level, a one-channel part and a ragged one.
var flowShapes = [][]int{{32, 16, 16, 6}, {32, 4, 4, 48}, {8, 14, 14, 1}, {3, 5, 7, 3}, {2, 20, 20, 300}}

func TestParityActNorm(t *testing.T) {
	w := newTwin(t)
	for _, sh := range flowShapes {
		c := sh[3]
		xg, xc := w.rand(-2, 2, sh...)
		bg, bc := w.rand(-0.5, 0.5, c)
		lg, lc := w.rand(-0.3, 0.3, c)
		ldv := w.data(sh[0], -5, 5)
		ldg, ldc := w.pair(ldv, sh[0])
		yg, yc := w.out(sh...)
		tensor.ActNormForward(yg, ldg, xg, bg, lg, 3)
		tensor.ActNormForward(yc, ldc, xc, bc, lc, 3)
		w.check(fmt.Sprintf("actnorm y %v", sh), yg, yc, tolElem, elementwise)
		w.check(fmt.Sprintf("actnorm ld %v", sh), ldg, ldc, tolRed, elementwise)
		ldMax := maxAbs(ldc)
		ig, ic := w.out(sh...)
		tensor.ActNormInverse(ig, ldg, yg, bg, lg, 3)
		tensor.ActNormInverse(ic, ldc, yc, bc, lc, 3)
		w.check(fmt.Sprintf("actnorm inverse %v", sh), ig, ic, tolElem, normwise)
		w.checkScaled(fmt.Sprintf("actnorm ld after inverse %v", sh), ldg, ldc, tolRed, normwise, ldMax)
		dyg, dyc := w.rand(-1, 1, sh...)
		dldg, dldc := w.rand(-1, 1, sh[0])
		for _, withDLD := range []bool{true, false} {
			dg, dc := dldg, dldc
			if !withDLD {
				dg, dc = nil, nil
			}
			dxg, dxc := w.out(sh...)
			dbg, dbc := w.out(c)
			dsg, dsc := w.out(c)
			tensor.ActNormBackward(dxg, dbg, dsg, dyg, yg, lg, dg, 3)
			tensor.ActNormBackward(dxc, dbc, dsc, dyc, yc, lc, dc, 3)
			w.check(fmt.Sprintf("actnorm dx %v", sh), dxg, dxc, tolElem, elementwise)
			w.check(fmt.Sprintf("actnorm dbias %v", sh), dbg, dbc, tolRed, normwise)
			w.check(fmt.Sprintf("actnorm dlogs %v dld=%v", sh, withDLD), dsg, dsc, tolRed, normwise)
		}
	}
}

func TestParityAffine(t *testing.T) {
	w := newTwin(t)
	for _, sh := range flowShapes {
		n, c := sh[0], sh[3]
		for _, mode := range []tensor.ScaleMode{tensor.ScaleTanh, tensor.ScaleSigmoid} {
			for _, pc := range []bool{false, true} {
				p := tensor.AffineParams{Mode: mode, PerChannel: pc}
				name := fmt.Sprintf("affine %v mode %d perChannel %v", sh, mode, pc)
				hs := []int{n, sh[1], sh[2], 2 * c}
				if pc {
					hs = []int{1, 1, 1, 2 * c}
				}
				xg, xc := w.rand(-2, 2, sh...)
				hg, hc := w.rand(-1.5, 1.5, hs...)
				ag, ac := w.rand(0.5, 1.5, 1)
				btg, btc := w.rand(-0.5, 0.5, 1)
				if mode == tensor.ScaleSigmoid {
					ag, ac, btg, btc = nil, nil, nil, nil
				}
				ldg, ldc := w.pair(w.data(n, -5, 5), n)
				yg, yc := w.out(sh...)
				tensor.AffineForward(p, yg, ldg, xg, hg, ag, btg)
				tensor.AffineForward(p, yc, ldc, xc, hc, ac, btc)
				w.check(name+" y", yg, yc, tolElem, elementwise)
				w.check(name+" ld", ldg, ldc, tolRed, normwise)
				ldMax := maxAbs(ldc)
				ig, ic := w.out(sh...)
				tensor.AffineInverse(p, ig, ldg, yg, hg, ag, btg)
				tensor.AffineInverse(p, ic, ldc, yc, hc, ac, btc)
				w.check(name+" inverse", ig, ic, tolElem, normwise)
				// ld went through ld0 + Σℓ in float32: its rounding there bounds the round trip.
				w.checkScaled(name+" ld after inverse", ldg, ldc, tolRed, normwise, ldMax)

				dyg, dyc := w.rand(-1, 1, sh...)
				dldg, dldc := w.rand(-1, 1, n)
				dxg, dxc := w.out(sh...)
				dhg, dhc := w.out(hs...)
				var dag, dac, dbg, dbc *tensor.Tensor
				if mode == tensor.ScaleTanh {
					dag, dac = w.out(1)
					dbg, dbc = w.out(1)
				}
				tensor.AffineBackward(p, dxg, dhg, dag, dbg, dyg, yg, hg, ag, btg, dldg)
				tensor.AffineBackward(p, dxc, dhc, dac, dbc, dyc, yc, hc, ac, btc, dldc)
				w.check(name+" dx", dxg, dxc, tolElem, elementwise)
				w.check(name+" dh", dhg, dhc, tolRed, normwise)
				if mode == tensor.ScaleTanh {
					w.check(name+" dalpha", dag, dac, tolRed, normwise)
					w.check(name+" dbeta", dbg, dbc, tolRed, normwise)
				}
			}
		}
	}
}

func TestParityGaussian(t *testing.T) {
	w := newTwin(t)
	for _, sh := range flowShapes {
		n, c := sh[0], sh[3]
		for _, g := range []tensor.GaussianParams{
			{}, {Interleaved: true}, {Bounded: true}, {Interleaved: true, Bounded: true},
			{Bounded: true, BatchBroadcast: true}, {Interleaved: true, BatchBroadcast: true},
		} {
			name := fmt.Sprintf("gaussian %v %+v", sh, g)
			pn := n
			if g.BatchBroadcast {
				pn = 1
			}
			zg, zc := w.rand(-2, 2, sh...)
			pg, pc := w.rand(-1, 1, pn, sh[1], sh[2], 2*c)
			var ag, ac, bg, bc *tensor.Tensor
			if g.Bounded {
				ag, ac = w.rand(0.5, 1.5, 1)
				bg, bc = w.rand(-0.3, 0.3, 1)
			}
			lpg, lpc := w.pair(w.data(n, -5, 5), n)
			eg, ec := w.out(sh...)
			tensor.GaussianLogProb(g, lpg, eg, zg, pg, ag, bg)
			tensor.GaussianLogProb(g, lpc, ec, zc, pc, ac, bc)
			w.check(name+" lp", lpg, lpc, tolRed, normwise)
			w.check(name+" eps", eg, ec, tolElem, normwise)
			sg, sc := w.out(sh...)
			tensor.GaussianSample(g, sg, eg, pg, ag, bg)
			tensor.GaussianSample(g, sc, ec, pc, ac, bc)
			w.check(name+" sample", sg, sc, tolElem, normwise)

			dlpg, dlpc := w.rand(-1, 1, n)
			dzg, dzc := w.out(sh...)
			dpg, dpc := w.out(pn, sh[1], sh[2], 2*c)
			var dag, dac, dbg, dbc *tensor.Tensor
			if g.Bounded {
				dag, dac = w.out(1)
				dbg, dbc = w.out(1)
			}
			tensor.GaussianLogProbBackward(g, dzg, dpg, dag, dbg, zg, pg, ag, bg, dlpg)
			tensor.GaussianLogProbBackward(g, dzc, dpc, dac, dbc, zc, pc, ac, bc, dlpc)
			w.check(name+" dz", dzg, dzc, tolElem, normwise)
			w.check(name+" dp", dpg, dpc, tolRed, normwise)
			if g.Bounded {
				w.check(name+" dalpha", dag, dac, tolRed, normwise)
				w.check(name+" dbeta", dbg, dbc, tolRed, normwise)
			}
		}
	}
}

func TestParityAdam(t *testing.T) {
	w := newTwin(t)
	for _, kind := range []tensor.OptimKind{tensor.Adamax, tensor.Adam} {
		o := tensor.OptimParams{Kind: kind, LR: 1e-3, Beta1: 0.9, Beta2: 0.999, Eps: 1e-8, WeightDecay: 0.9999}
		n := 100003
		wg, wc := w.rand(-1, 1, n)
		mg, mc := w.rand(-0.1, 0.1, n)
		vg, vc := w.rand(0.01, 0.1, n)
		gg, gc := w.rand(-1, 1, n)
		for step := 0; step < 3; step++ {
			tensor.AdamStep(o, wg, mg, vg, gg)
			tensor.AdamStep(o, wc, mc, vc, gc)
		}
		w.check(fmt.Sprintf("optim %d w", kind), wg, wc, tolElem, normwise) // w = wd·w − update cancels near 0
		w.check(fmt.Sprintf("optim %d m", kind), mg, mc, tolElem, normwise)
		w.check(fmt.Sprintf("optim %d v", kind), vg, vc, tolElem, normwise)
	}
}

// TestDeterminism reruns the ops whose reductions are split across blocks and requires bit-identical
// results.
func TestDeterminism(t *testing.T) {
	w := newTwin(t)
	xg, _ := w.rand(-1, 1, 16, 16, 16, 512)
	dyg, _ := w.rand(-1, 1, 16, 16, 16, 12)
	p := tensor.ConvParams{K: 3, EdgeBias: true}
	run := func() []*tensor.Tensor {
		dw := tensor.New(w.gpu, tensor.Float32, tensor.ConvWeightShape(p, 512, 12)...)
		tensor.Conv2DBackwardWeights(p, dw, xg, dyg)
		s := tensor.New(w.gpu, tensor.Float32, 512)
		tensor.Reduce(tensor.SumSq, tensor.AxisChannel, s, xg)
		a := tensor.New(w.gpu, tensor.Float32, 1)
		tensor.Reduce(tensor.Sum, tensor.AxisAll, a, xg)
		g := tensor.New(w.gpu, tensor.Float32, 512, 512)
		x2 := xg.Reshape(-1, 512)
		tensor.Gemm(true, false, 1, x2, x2, 0, g)
		return []*tensor.Tensor{dw, s, a, g}
	}
	first, second := run(), run()
	for i := range first {
		w.exact(fmt.Sprintf("rerun %d", i), second[i], first[i])
	}
}
