package backendtest

import (
	"math"
	"testing"

	"dlf/tensor"
)

// f32arith is the naive backend with its float32 reductions and fused ops rewritten the way a real
// float32 kernel computes them: every intermediate in float32, sums accumulated sequentially in
// float32, transcendental functions rounded to float32. The suite must accept it: this shows the
// float32 tolerances are not tighter than honest float32 arithmetic.
type f32arith struct{ naive }

func f32s(t *tensor.Tensor) []float32 {
	if t == nil {
		return nil
	}
	d := data(t)
	out := make([]float32, len(d))
	for i, v := range d {
		out[i] = float32(v)
	}
	return out
}

// f32op is f32s of operand: t's values as a float32 op at precision prec reads them.
func f32op(t *tensor.Tensor, prec tensor.Precision) []float32 {
	d := operand(t, prec)
	out := make([]float32, len(d))
	for i, v := range d {
		out[i] = float32(v)
	}
	return out
}

func put32(t *tensor.Tensor, v []float32) {
	d := data(t)
	for i, x := range v {
		d[i] = float64(x)
	}
}

func exp32(x float32) float32  { return float32(math.Exp(float64(x))) }
func tanh32(x float32) float32 { return float32(math.Tanh(float64(x))) }
func log32(x float32) float32  { return float32(math.Log(float64(x))) }

func (b *f32arith) Reduce(op tensor.ReduceOp, axes tensor.ReduceAxes, dst, src *tensor.Tensor) {
	if src.DType() != tensor.Float32 {
		b.naive.Reduce(op, axes, dst, src)
		return
	}
	s := f32s(src)
	out := make([]float32, dst.Numel())
	shape := src.Shape()
	c := shape[len(shape)-1]
	per := len(s) / shape[0]
	for i, v := range s {
		o := 0
		switch axes {
		case tensor.AxisExample:
			o = i / per
		case tensor.AxisChannel:
			o = i % c
		}
		if op == tensor.SumSq {
			v *= v
		}
		out[o] += v
	}
	if op == tensor.Mean {
		for o := range out {
			out[o] /= float32(len(s) / len(out))
		}
	}
	put32(dst, out)
}

func (b *f32arith) Gemm(prec tensor.Precision, ta, tb bool, alpha float64, a, bm *tensor.Tensor, beta float64, c *tensor.Tensor) {
	if a.DType() != tensor.Float32 {
		b.naive.Gemm(prec, ta, tb, alpha, a, bm, beta, c)
		return
	}
	as, cs := a.Shape(), c.Shape()
	r := len(as)
	nb := 1
	if r == 3 {
		nb = as[0]
	}
	m, n := cs[r-2], cs[r-1]
	k := as[r-1]
	if ta {
		k = as[r-2]
	}
	av, bv, cv := f32op(a, prec), f32op(bm, prec), f32s(c)
	out := make([]float32, len(cv))
	for bi := 0; bi < nb; bi++ {
		for i := 0; i < m; i++ {
			for j := 0; j < n; j++ {
				var s float32
				for p := 0; p < k; p++ {
					x := av[bi*m*k+i*k+p]
					if ta {
						x = av[bi*m*k+p*m+i]
					}
					y := bv[bi*k*n+p*n+j]
					if tb {
						y = bv[bi*k*n+j*k+p]
					}
					s += x * y
				}
				o := bi*m*n + i*n + j
				out[o] = float32(alpha) * s
				if beta != 0 {
					out[o] += float32(beta) * cv[o]
				}
			}
		}
	}
	put32(c, out)
}

func (b *f32arith) Conv2D(p tensor.ConvParams, y, x, w, bias *tensor.Tensor) {
	if x.DType() != tensor.Float32 {
		b.naive.Conv2D(p, y, x, w, bias)
		return
	}
	nn, h, wd, cin := x.Shape().NHWC()
	cout, cw := y.Shape()[3], w.Shape()[2]
	xv, wv, bv := operand(x, p.Precision), f32op(w, p.Precision), f32s(bias)
	out := make([]float32, y.Numel())
	pad := p.Pad()
	for n := 0; n < nn; n++ {
		for i := 0; i < h; i++ {
			for j := 0; j < wd; j++ {
				for co := 0; co < cout; co++ {
					var s float32
					for ki := 0; ki < p.K; ki++ {
						for kj := 0; kj < p.K; kj++ {
							for ci := 0; ci < cw; ci++ {
								s += float32(xAt(xv, h, wd, cin, p.EdgeBias, n, i+ki-pad, j+kj-pad, ci)) * wv[((ki*p.K+kj)*cw+ci)*cout+co]
							}
						}
					}
					if bv != nil {
						s += bv[co]
					}
					out[((n*h+i)*wd+j)*cout+co] = s
				}
			}
		}
	}
	put32(y, out)
}

func (b *f32arith) Conv2DBackwardWeights(p tensor.ConvParams, dw, x, dy *tensor.Tensor) {
	if x.DType() != tensor.Float32 {
		b.naive.Conv2DBackwardWeights(p, dw, x, dy)
		return
	}
	nn, h, wd, cin := x.Shape().NHWC()
	cout, cw := dy.Shape()[3], dw.Shape()[2]
	xv, gv := operand(x, p.Precision), f32op(dy, p.Precision)
	out := make([]float32, dw.Numel())
	pad := p.Pad()
	for ki := 0; ki < p.K; ki++ {
		for kj := 0; kj < p.K; kj++ {
			for ci := 0; ci < cw; ci++ {
				for co := 0; co < cout; co++ {
					var s float32
					for n := 0; n < nn; n++ {
						for i := 0; i < h; i++ {
							for j := 0; j < wd; j++ {
								s += float32(xAt(xv, h, wd, cin, p.EdgeBias, n, i+ki-pad, j+kj-pad, ci)) * gv[((n*h+i)*wd+j)*cout+co]
							}
						}
					}
					out[((ki*p.K+kj)*cw+ci)*cout+co] = s
				}
			}
		}
	}
	put32(dw, out)
}

func (b *f32arith) ActNormBackward(dx, dbias, dlogs, dy, y, logs, dld *tensor.Tensor, scale float64) {
	if y.DType() != tensor.Float32 {
		b.naive.ActNormBackward(dx, dbias, dlogs, dy, y, logs, dld, scale)
		return
	}
	_, h, w, c := y.Shape().NHWC()
	gv, yv, lv, dv := f32s(dy), f32s(y), f32s(logs), f32s(dld)
	s := float32(scale)
	ox, ob, ol := make([]float32, len(gv)), make([]float32, c), make([]float32, c)
	for i := range gv {
		ch := i % c
		e := exp32(s * lv[ch])
		ox[i] = gv[i] * e
		ob[ch] += ox[i]
		ol[ch] += gv[i] * yv[i]
	}
	var sd float32
	for _, v := range dv {
		sd += v
	}
	for ch := range ol {
		ol[ch] = s*ol[ch] + s*float32(h*w)*sd
	}
	put32(dx, ox)
	put32(dbias, ob)
	put32(dlogs, ol)
}

func (b *f32arith) AffineForward(p tensor.AffineParams, y, ld, x, h, alpha, beta *tensor.Tensor) {
	if x.DType() != tensor.Float32 {
		b.naive.AffineForward(p, y, ld, x, h, alpha, beta)
		return
	}
	n, hh, w, c := x.Shape().NHWC()
	xv, hv := f32s(x), f32s(h)
	var a, bt float32
	if alpha != nil {
		a, bt = f32s(alpha)[0], f32s(beta)[0]
	}
	out := make([]float32, len(xv))
	acc := make([]float32, n)
	for i, v := range xv {
		row, ch := i/c, i%c
		o := row * 2 * c
		if p.PerChannel {
			o = 0
		}
		mu, r := hv[o+2*ch], hv[o+2*ch+1]
		var l float32
		if p.Mode == tensor.ScaleTanh {
			l = a*tanh32(r) + bt
		} else {
			l = log32(1 / (1 + exp32(-(r + 2))))
		}
		out[i] = (v + mu) * exp32(l)
		acc[i/(hh*w*c)] += l
	}
	put32(y, out)
	if ld != nil {
		lv := f32s(ld)
		for k := range lv {
			lv[k] += acc[k]
		}
		put32(ld, lv)
	}
}

func (b *f32arith) AffineBackward(p tensor.AffineParams, dx, dh, dalpha, dbeta, dy, y, h, alpha, beta, dld *tensor.Tensor) {
	if y.DType() != tensor.Float32 {
		b.naive.AffineBackward(p, dx, dh, dalpha, dbeta, dy, y, h, alpha, beta, dld)
		return
	}
	_, hh, w, c := y.Shape().NHWC()
	gv, yv, hv, dv := f32s(dy), f32s(y), f32s(h), f32s(dld)
	var a, bt float32
	if alpha != nil {
		a, bt = f32s(alpha)[0], f32s(beta)[0]
	}
	ox, oh := make([]float32, len(gv)), make([]float32, len(hv))
	var da, db float32
	for i := range gv {
		row, ch := i/c, i%c
		o := row * 2 * c
		if p.PerChannel {
			o = 0
		}
		r := hv[o+2*ch+1]
		dl := gv[i] * yv[i]
		if dv != nil {
			dl += dv[i/(hh*w*c)]
		}
		var l, dr float32
		if p.Mode == tensor.ScaleTanh {
			t := tanh32(r)
			l = a*t + bt
			dr = dl * a * (1 - t*t)
			da += dl * t
			db += dl
		} else {
			s := 1 / (1 + exp32(-(r + 2)))
			l = log32(s)
			dr = dl * (1 - s)
		}
		ox[i] = gv[i] * exp32(l)
		oh[o+2*ch] += ox[i]
		oh[o+2*ch+1] += dr
	}
	put32(dx, ox)
	put32(dh, oh)
	if p.Mode == tensor.ScaleTanh {
		put32(dalpha, []float32{da})
		put32(dbeta, []float32{db})
	}
}

func (b *f32arith) GaussianLogProb(g tensor.GaussianParams, lp, eps, z, p, alpha, beta *tensor.Tensor) {
	if z.DType() != tensor.Float32 {
		b.naive.GaussianLogProb(g, lp, eps, z, p, alpha, beta)
		return
	}
	n, h, w, c := z.Shape().NHWC()
	zv, pv := f32s(z), f32s(p)
	var a, bt float32
	if alpha != nil {
		a, bt = f32s(alpha)[0], f32s(beta)[0]
	}
	acc := make([]float32, n)
	oe := make([]float32, len(zv))
	ln2pi := float32(math.Log(2 * math.Pi))
	for i, v := range zv {
		row, ch := i/c, i%c
		if g.BatchBroadcast {
			row %= h * w
		}
		iMu, iR := row*2*c+ch, row*2*c+c+ch
		if g.Interleaved {
			iMu, iR = row*2*c+2*ch, row*2*c+2*ch+1
		}
		ls := pv[iR]
		if g.Bounded {
			ls = a*tanh32(ls) + bt
		}
		e := (v - pv[iMu]) * exp32(-ls)
		oe[i] = e
		acc[i/(h*w*c)] += -0.5 * (ln2pi + 2*ls + e*e)
	}
	if eps != nil {
		put32(eps, oe)
	}
	lv := f32s(lp)
	for k := range lv {
		lv[k] += acc[k]
	}
	put32(lp, lv)
}

// TestFloat32ArithmeticPasses requires the suite to accept honest float32 arithmetic.
func TestFloat32ArithmeticPasses(t *testing.T) {
	be := &f32arith{naive{f32only: true}}
	runFamilies(testingT{t}, be, Options{}, []string{"reduce", "gemm", "conv", "actnorm", "affine", "gaussian"})
}
