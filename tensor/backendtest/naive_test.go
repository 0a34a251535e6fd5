package backendtest

import (
	"fmt"
	"math"

	"dlf/tensor"
)

// naive is a deliberately simple tensor.Backend used to develop and test the suite without the real
// backends: every op is a plain loop in float64 whose results are rounded to the tensor's dtype. It
// is written from the op documentation independently of the references (gather instead of scatter,
// bounds checks instead of padded copies, Broadcast's Div/Mod instead of multi-indices).
type naive struct {
	// f32only makes the backend refuse Float64, like the CUDA backend.
	f32only bool
}

type nbuf struct {
	data  []float64
	freed bool
}

func (b *nbuf) Bytes() int { return 8 * len(b.data) }

func (b *naive) Name() string { return "naive" }

func (b *naive) Supports(dt tensor.DType) bool {
	return dt == tensor.Float32 || (dt == tensor.Float64 && !b.f32only)
}

func (b *naive) Alloc(dt tensor.DType, n int) tensor.Buffer {
	d := make([]float64, n)
	for i := range d {
		d[i] = 12345.678 // garbage, as real allocators leave
	}
	return &nbuf{data: d}
}

func (b *naive) Free(buf tensor.Buffer) { buf.(*nbuf).freed = true }

func data(t *tensor.Tensor) []float64 {
	if t == nil {
		return nil
	}
	nb := t.Buffer().(*nbuf)
	if nb.freed {
		panic("naive: use after free")
	}
	return nb.data
}

func rnd(t *tensor.Tensor, v float64) float64 {
	if t.DType() == tensor.Float32 {
		return float64(float32(v))
	}
	return v
}

func set(t *tensor.Tensor, i int, v float64) { data(t)[i] = rnd(t, v) }

func (b *naive) Upload(dst *tensor.Tensor, src any) {
	d := data(dst)
	switch s := src.(type) {
	case []float32:
		for i, v := range s {
			d[i] = rnd(dst, float64(v))
		}
	case []float64:
		for i, v := range s {
			d[i] = rnd(dst, v)
		}
	}
}

func (b *naive) Download(dst any, src *tensor.Tensor) {
	s := data(src)
	switch d := dst.(type) {
	case []float32:
		for i := range d {
			d[i] = float32(s[i])
		}
	case []float64:
		copy(d, s)
	}
}

func (b *naive) Sync() error { return nil }
func (b *naive) Err() error  { return nil }

func (b *naive) Fill(dst *tensor.Tensor, v float64) {
	d := data(dst)
	for i := range d {
		d[i] = rnd(dst, v)
	}
}

func (b *naive) Copy(dst, src *tensor.Tensor) { copy(data(dst), data(src)) }

func (b *naive) CopyChannels(dst *tensor.Tensor, dstOff int, src *tensor.Tensor, srcOff, c int) {
	rows, dc := dst.Shape().Rows()
	_, sc := src.Shape().Rows()
	d, s := data(dst), data(src)
	for r := 0; r < rows; r++ {
		copy(d[r*dc+dstOff:r*dc+dstOff+c], s[r*sc+srcOff:r*sc+srcOff+c])
	}
}

func (b *naive) Squeeze2(dst, src *tensor.Tensor) {
	_, h, w, c := src.Shape().NHWC()
	_, oh, ow, oc := dst.Shape().NHWC()
	d, s := data(dst), data(src)
	for o := range d {
		ch4 := o % oc
		j := (o / oc) % ow
		i := (o / oc / ow) % oh
		n := o / oc / ow / oh
		ch, dy, dx := ch4/4, (ch4%4)/2, ch4%2
		d[o] = s[((n*h+2*i+dy)*w+2*j+dx)*c+ch]
	}
}

func (b *naive) Unsqueeze2(dst, src *tensor.Tensor) {
	_, h, w, c4 := src.Shape().NHWC()
	_, oh, ow, oc := dst.Shape().NHWC()
	d, s := data(dst), data(src)
	for o := range d {
		ch := o % oc
		x := (o / oc) % ow
		y := (o / oc / ow) % oh
		n := o / oc / ow / oh
		d[o] = s[((n*h+y/2)*w+x/2)*c4+ch*4+(y%2)*2+x%2]
	}
}

func (b *naive) Binary(op tensor.BinaryOp, dst, a, bb *tensor.Tensor, bc tensor.Broadcast) {
	av, bv := data(a), data(bb)
	for i := range data(dst) {
		x, y := av[i], bv[(i/bc.Div)%bc.Mod]
		var r float64
		switch op {
		case tensor.Add:
			r = x + y
		case tensor.Sub:
			r = x - y
		case tensor.Mul:
			r = x * y
		case tensor.Div:
			r = x / y
		}
		set(dst, i, r)
	}
}

func (b *naive) Unary(op tensor.UnaryOp, dst, x *tensor.Tensor, p1, p2 float64) {
	xv := data(x)
	for i := range xv {
		v := xv[i]
		var r float64
		switch op {
		case tensor.Exp:
			r = math.Exp(v)
		case tensor.Log:
			r = math.Log(v)
		case tensor.Tanh:
			r = math.Tanh(v)
		case tensor.Sigmoid:
			r = 0.5 * (1 + math.Tanh(v/2))
		case tensor.Relu:
			if v > 0 {
				r = v
			}
		case tensor.Square:
			r = v * v
		case tensor.Sqrt:
			r = math.Sqrt(v)
		case tensor.Neg:
			r = -v
		case tensor.Abs:
			r = math.Abs(v)
		case tensor.Scale:
			r = p1 * v
		case tensor.AddConst:
			r = v + p1
		case tensor.Clamp:
			r = v
			if r < p1 {
				r = p1
			}
			if r > p2 {
				r = p2
			}
		default:
			panic(fmt.Sprintf("naive: unary %v", op))
		}
		set(dst, i, r)
	}
}

func (b *naive) UnaryGrad(op tensor.UnaryGradOp, dx, saved, dy *tensor.Tensor, p1, p2 float64) {
	s, g := data(saved), data(dy)
	for i := range g {
		var r float64
		switch op {
		case tensor.ReluGrad:
			if s[i] > 0 {
				r = g[i]
			}
		case tensor.TanhGrad:
			r = g[i] * (1 - s[i]*s[i])
		case tensor.SigmoidGrad:
			r = g[i] * s[i] * (1 - s[i])
		case tensor.ClampGrad:
			if s[i] >= p1 && s[i] <= p2 {
				r = g[i]
			}
		case tensor.AbsGrad:
			if s[i] > 0 {
				r = g[i]
			} else if s[i] < 0 {
				r = -g[i]
			}
		}
		set(dx, i, r)
	}
}

func (b *naive) Axpy(alpha float64, x, y *tensor.Tensor) {
	xv, yv := data(x), data(y)
	for i := range yv {
		set(y, i, yv[i]+alpha*xv[i])
	}
}

func (b *naive) Reduce(op tensor.ReduceOp, axes tensor.ReduceAxes, dst, src *tensor.Tensor) {
	s := data(src)
	out := make([]float64, dst.Numel())
	cnt := make([]float64, len(out))
	shape := src.Shape()
	c := shape[len(shape)-1]
	per := len(s) / shape[0]
	for i, v := range s {
		var o int
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
		cnt[o]++
	}
	for o := range out {
		if op == tensor.Mean {
			out[o] /= cnt[o]
		}
		set(dst, o, out[o])
	}
}

func (b *naive) Gemm(prec tensor.Precision, transA, transB bool, alpha float64, a, bm *tensor.Tensor, beta float64, c *tensor.Tensor) {
	as, bs, cs := a.Shape(), bm.Shape(), c.Shape()
	r := len(as)
	nb := 1
	if r == 3 {
		nb = as[0]
	}
	m, n := cs[r-2], cs[r-1]
	k := as[r-1]
	if transA {
		k = as[r-2]
	}
	// Strides of op(A)[i,p] and op(B)[p,j].
	ai, ap := as[r-1], 1
	if transA {
		ai, ap = 1, as[r-1]
	}
	bp, bj := bs[r-1], 1
	if transB {
		bp, bj = 1, bs[r-1]
	}
	av, bv, cv := operand(a, prec), operand(bm, prec), data(c)
	for bi := 0; bi < nb; bi++ {
		ao, bo, co := bi*as[r-2]*as[r-1], bi*bs[r-2]*bs[r-1], bi*m*n
		for i := 0; i < m; i++ {
			for j := 0; j < n; j++ {
				var s float64
				for p := 0; p < k; p++ {
					s += av[ao+i*ai+p*ap] * bv[bo+p*bp+j*bj]
				}
				v := alpha * s
				if beta != 0 {
					v += beta * cv[co+i*n+j]
				}
				set(c, co+i*n+j, v)
			}
		}
	}
}

// xAt reads input channel ci at (y, x) of example n, with the zero padding and the edge channel.
func xAt(xv []float64, h, w, cin int, edge bool, n, y, x, ci int) float64 {
	inside := y >= 0 && y < h && x >= 0 && x < w
	if ci == cin {
		if edge && !inside {
			return 1
		}
		return 0
	}
	if !inside {
		return 0
	}
	return xv[((n*h+y)*w+x)*cin+ci]
}

// operand returns t's values as an op at precision prec reads them: rounded to TF32
// (tensor.RoundTF32) for a Float32 tensor at TF32, otherwise as stored.
func operand(t *tensor.Tensor, prec tensor.Precision) []float64 {
	d := data(t)
	if prec != tensor.TF32 || t.DType() != tensor.Float32 {
		return d
	}
	out := make([]float64, len(d))
	for i, v := range d {
		out[i] = float64(tensor.RoundTF32(float32(v)))
	}
	return out
}

func (b *naive) Conv2D(p tensor.ConvParams, y, x, w, bias *tensor.Tensor) {
	nn, h, wd, cin := x.Shape().NHWC()
	cout := y.Shape()[3]
	cw := w.Shape()[2]
	xv, wv, bv := operand(x, p.Precision), operand(w, p.Precision), data(bias)
	pad := p.Pad()
	for n := 0; n < nn; n++ {
		for i := 0; i < h; i++ {
			for j := 0; j < wd; j++ {
				for co := 0; co < cout; co++ {
					var s float64
					if bv != nil {
						s = bv[co]
					}
					for ki := 0; ki < p.K; ki++ {
						for kj := 0; kj < p.K; kj++ {
							for ci := 0; ci < cw; ci++ {
								s += xAt(xv, h, wd, cin, p.EdgeBias, n, i+ki-pad, j+kj-pad, ci) * wv[((ki*p.K+kj)*cw+ci)*cout+co]
							}
						}
					}
					set(y, ((n*h+i)*wd+j)*cout+co, s)
				}
			}
		}
	}
}

func (b *naive) Conv2DBackwardData(p tensor.ConvParams, dx, dy, w *tensor.Tensor) {
	nn, h, wd, cin := dx.Shape().NHWC()
	cout := dy.Shape()[3]
	cw := w.Shape()[2]
	gv, wv := operand(dy, p.Precision), operand(w, p.Precision)
	pad := p.Pad()
	for n := 0; n < nn; n++ {
		for i := 0; i < h; i++ {
			for j := 0; j < wd; j++ {
				for ci := 0; ci < cin; ci++ {
					var s float64
					for ki := 0; ki < p.K; ki++ {
						for kj := 0; kj < p.K; kj++ {
							oi, oj := i+pad-ki, j+pad-kj
							if oi < 0 || oi >= h || oj < 0 || oj >= wd {
								continue
							}
							for co := 0; co < cout; co++ {
								s += gv[((n*h+oi)*wd+oj)*cout+co] * wv[((ki*p.K+kj)*cw+ci)*cout+co]
							}
						}
					}
					set(dx, ((n*h+i)*wd+j)*cin+ci, s)
				}
			}
		}
	}
}

func (b *naive) Conv2DBackwardWeights(p tensor.ConvParams, dw, x, dy *tensor.Tensor) {
	nn, h, wd, cin := x.Shape().NHWC()
	cout := dy.Shape()[3]
	cw := dw.Shape()[2]
	xv, gv := operand(x, p.Precision), operand(dy, p.Precision)
	pad := p.Pad()
	for ki := 0; ki < p.K; ki++ {
		for kj := 0; kj < p.K; kj++ {
			for ci := 0; ci < cw; ci++ {
				for co := 0; co < cout; co++ {
					var s float64
					for n := 0; n < nn; n++ {
						for i := 0; i < h; i++ {
							for j := 0; j < wd; j++ {
								s += xAt(xv, h, wd, cin, p.EdgeBias, n, i+ki-pad, j+kj-pad, ci) * gv[((n*h+i)*wd+j)*cout+co]
							}
						}
					}
					set(dw, ((ki*p.K+kj)*cw+ci)*cout+co, s)
				}
			}
		}
	}
}

func (b *naive) RandUniform(dst *tensor.Tensor, seed, offset uint64) {
	d := data(dst)
	for j := 0; 4*j < len(d); j++ {
		c := offset + uint64(j)
		blk := tensor.Philox4x32([4]uint32{uint32(c), uint32(c >> 32)}, [2]uint32{uint32(seed), uint32(seed >> 32)})
		for k := 0; k < 4 && 4*j+k < len(d); k++ {
			set(dst, 4*j+k, float64(blk[k]>>8)/(1<<24))
		}
	}
}

func (b *naive) RandNormal(dst *tensor.Tensor, seed, offset uint64) {
	d := data(dst)
	for j := 0; 4*j < len(d); j++ {
		v := tensor.PhiloxNormal(tensor.PhiloxBlock(seed, offset, uint64(j)))
		for k := 0; k < 4 && 4*j+k < len(d); k++ {
			set(dst, 4*j+k, v[k])
		}
	}
}

func (b *naive) ActNormForward(y, ld, x, bias, logs *tensor.Tensor, scale float64) {
	b.actNorm(y, ld, x, bias, logs, scale, 1)
}

func (b *naive) ActNormInverse(x, ld, y, bias, logs *tensor.Tensor, scale float64) {
	b.actNorm(x, ld, y, bias, logs, scale, -1)
}

func (b *naive) actNorm(out, ld, in, bias, logs *tensor.Tensor, scale, dir float64) {
	n, h, w, c := in.Shape().NHWC()
	iv, bv, lv := data(in), data(bias), data(logs)
	for i, v := range iv {
		ch := i % c
		if dir > 0 {
			set(out, i, (v+bv[ch])*math.Exp(scale*lv[ch]))
		} else {
			set(out, i, v*math.Exp(-scale*lv[ch])-bv[ch])
		}
	}
	if ld != nil {
		var s float64
		for _, l := range lv {
			s += scale * l
		}
		for k := 0; k < n; k++ {
			set(ld, k, data(ld)[k]+dir*float64(h*w)*s)
		}
	}
}

func (b *naive) ActNormBackward(dx, dbias, dlogs, dy, y, logs, dld *tensor.Tensor, scale float64) {
	n, h, w, c := y.Shape().NHWC()
	gv, yv, lv := data(dy), data(y), data(logs)
	db, dl := make([]float64, c), make([]float64, c)
	for i := range gv {
		ch := i % c
		e := math.Exp(scale * lv[ch])
		set(dx, i, gv[i]*e)
		db[ch] += gv[i] * e
		dl[ch] += scale * gv[i] * yv[i]
	}
	var sd float64
	if dld != nil {
		for k := 0; k < n; k++ {
			sd += data(dld)[k]
		}
	}
	for ch := 0; ch < c; ch++ {
		set(dbias, ch, db[ch])
		set(dlogs, ch, dl[ch]+scale*float64(h*w)*sd)
	}
}

// affineAt returns μ, ℓ and dℓ/dr for element i.
func affineAt(p tensor.AffineParams, hv []float64, c, i int, alpha, beta float64) (mu, l, dldr, t float64) {
	row, ch := i/c, i%c
	o := row * 2 * c
	if p.PerChannel {
		o = 0
	}
	mu, r := hv[o+2*ch], hv[o+2*ch+1]
	if p.Mode == tensor.ScaleTanh {
		t = math.Tanh(r)
		return mu, alpha*t + beta, alpha * (1 - t*t), t
	}
	// log sigmoid(r+2) = −softplus(−(r+2)); its derivative is sigmoid(−(r+2)).
	z := r + 2
	return mu, -math.Log1p(math.Exp(-z)), 1 / (1 + math.Exp(z)), 0
}

func scalars(alpha, beta *tensor.Tensor) (float64, float64) {
	if alpha == nil {
		return 0, 0
	}
	return data(alpha)[0], data(beta)[0]
}

func (b *naive) AffineForward(p tensor.AffineParams, y, ld, x, h, alpha, beta *tensor.Tensor) {
	b.affine(p, y, ld, x, h, alpha, beta, 1)
}

func (b *naive) AffineInverse(p tensor.AffineParams, x, ld, y, h, alpha, beta *tensor.Tensor) {
	b.affine(p, x, ld, y, h, alpha, beta, -1)
}

func (b *naive) affine(p tensor.AffineParams, out, ld, in, h, alpha, beta *tensor.Tensor, dir float64) {
	n, hh, w, c := in.Shape().NHWC()
	a, bt := scalars(alpha, beta)
	iv, hv := data(in), data(h)
	lds := make([]float64, n)
	for i, v := range iv {
		mu, l, _, _ := affineAt(p, hv, c, i, a, bt)
		if dir > 0 {
			set(out, i, (v+mu)*math.Exp(l))
		} else {
			set(out, i, v*math.Exp(-l)-mu)
		}
		lds[i/(hh*w*c)] += l
	}
	if ld != nil {
		for k := range lds {
			set(ld, k, data(ld)[k]+dir*lds[k])
		}
	}
}

func (b *naive) AffineBackward(p tensor.AffineParams, dx, dh, dalpha, dbeta, dy, y, h, alpha, beta, dld *tensor.Tensor) {
	_, hh, w, c := y.Shape().NHWC()
	a, bt := scalars(alpha, beta)
	gv, yv, hv := data(dy), data(y), data(h)
	acc := make([]float64, len(hv))
	var da, db float64
	for i := range gv {
		mu, l, dldr, t := affineAt(p, hv, c, i, a, bt)
		_ = mu
		e := math.Exp(l)
		dl := gv[i] * yv[i]
		if dld != nil {
			dl += data(dld)[i/(hh*w*c)]
		}
		row, ch := i/c, i%c
		o := row * 2 * c
		if p.PerChannel {
			o = 0
		}
		acc[o+2*ch] += gv[i] * e
		acc[o+2*ch+1] += dl * dldr
		da += dl * t
		db += dl
		set(dx, i, gv[i]*e)
	}
	for k, v := range acc {
		set(dh, k, v)
	}
	if p.Mode == tensor.ScaleTanh {
		set(dalpha, 0, da)
		set(dbeta, 0, db)
	}
}

// gaussAt returns μ, log σ, dlogσ/dr and tanh r for element i of z.
func gaussAt(g tensor.GaussianParams, pv []float64, hw, c, i int, alpha, beta float64) (mu, ls, dr, t float64, iMu, iR int) {
	row, ch := i/c, i%c
	if g.BatchBroadcast {
		row %= hw
	}
	if g.Interleaved {
		iMu, iR = row*2*c+2*ch, row*2*c+2*ch+1
	} else {
		iMu, iR = row*2*c+ch, row*2*c+c+ch
	}
	mu, r := pv[iMu], pv[iR]
	if g.Bounded {
		t = math.Tanh(r)
		return mu, alpha*t + beta, alpha * (1 - t*t), t, iMu, iR
	}
	return mu, r, 1, 0, iMu, iR
}

func (b *naive) GaussianLogProb(g tensor.GaussianParams, lp, eps, z, p, alpha, beta *tensor.Tensor) {
	n, h, w, c := z.Shape().NHWC()
	a, bt := scalars(alpha, beta)
	zv, pv := data(z), data(p)
	acc := make([]float64, n)
	for i, v := range zv {
		mu, ls, _, _, _, _ := gaussAt(g, pv, h*w, c, i, a, bt)
		e := (v - mu) * math.Exp(-ls)
		acc[i/(h*w*c)] += -0.5 * (math.Log(2*math.Pi) + 2*ls + e*e)
		if eps != nil {
			set(eps, i, e)
		}
	}
	if lp != nil {
		for k := range acc {
			set(lp, k, data(lp)[k]+acc[k])
		}
	}
}

func (b *naive) GaussianLogProbBackward(g tensor.GaussianParams, dz, dp, dalpha, dbeta, z, p, alpha, beta, dlp *tensor.Tensor) {
	_, h, w, c := z.Shape().NHWC()
	a, bt := scalars(alpha, beta)
	zv, pv, gv := data(z), data(p), data(dlp)
	acc := make([]float64, len(pv))
	var da, db float64
	for i, v := range zv {
		mu, ls, drl, t, iMu, iR := gaussAt(g, pv, h*w, c, i, a, bt)
		d := gv[i/(h*w*c)]
		inv := math.Exp(-ls)
		e := (v - mu) * inv
		gz := -d * e * inv
		dls := d * (e*e - 1)
		set(dz, i, gz)
		acc[iMu] -= gz
		acc[iR] += dls * drl
		da += dls * t
		db += dls
	}
	for k, v := range acc {
		set(dp, k, v)
	}
	if g.Bounded {
		set(dalpha, 0, da)
		set(dbeta, 0, db)
	}
}

func (b *naive) GaussianSample(g tensor.GaussianParams, z, eps, p, alpha, beta *tensor.Tensor) {
	_, h, w, c := z.Shape().NHWC()
	a, bt := scalars(alpha, beta)
	ev, pv := data(eps), data(p)
	for i, e := range ev {
		mu, ls, _, _, _, _ := gaussAt(g, pv, h*w, c, i, a, bt)
		set(z, i, mu+math.Exp(ls)*e)
	}
}

func (b *naive) AdamStep(o tensor.OptimParams, w, m, v, g *tensor.Tensor) {
	if o.LRTensor != nil {
		o.LR = data(o.LRTensor)[0]
	}
	wv, mv, vv, gv := data(w), data(m), data(v), data(g)
	for i := range wv {
		set(m, i, o.Beta1*mv[i]+(1-o.Beta1)*gv[i])
		var den float64
		if o.Kind == tensor.Adamax {
			set(v, i, math.Max(o.Beta2*vv[i], math.Abs(gv[i])))
			den = vv[i] + o.Eps
		} else {
			set(v, i, o.Beta2*vv[i]+(1-o.Beta2)*gv[i]*gv[i])
			den = math.Sqrt(vv[i]) + o.Eps
		}
		set(w, i, o.WeightDecay*wv[i]-o.LR*mv[i]/den)
	}
}

// InvLogDet with gonum's LU (tensor.Slogdet, tensor.Inverse): an independent factorisation, not the
// backends' Gauss-Jordan.
func (b *naive) InvLogDet(inv, logdet, w *tensor.Tensor, scale float64) {
	sh := w.Shape()
	c := sh[len(sh)-1]
	wv := data(w)
	for m := range len(wv) / (c * c) {
		mat := wv[m*c*c : (m+1)*c*c]
		sign, lad := tensor.Slogdet(mat, c)
		in, err := tensor.Inverse(mat, c)
		if sign == 0 || err != nil {
			set(logdet, m, math.Inf(-1))
			for i := range c * c {
				set(inv, m*c*c+i, math.NaN())
			}
			continue
		}
		set(logdet, m, scale*lad)
		for i := range c {
			for j := range c {
				set(inv, m*c*c+j*c+i, in[i*c+j])
			}
		}
	}
}

// UnpackBytes reads src's float32 words back as the bytes they were uploaded from.
func (b *naive) UnpackBytes(dst, src *tensor.Tensor, shift int) {
	words := data(src)
	for i := range dst.Numel() {
		w := math.Float32bits(float32(words[i/4]))
		set(dst, i, float64(byte(w>>(8*(i%4)))>>shift))
	}
}
