package cpu

import (
	"math"

	"dlf/tensor"
)

// Actnorm (Glow, Kingma & Dhariwal 2018, §3.1): y = (x + b_c)·e_c with e_c = exp(s·logs_c), where s is
// the reference's fixed multiplier of the stored log-scale (3 in the hyper-networks, dlf-spec §1.6).
// Its logdet is H·W·Σ_c s·logs_c for every example.

// actNormCost is the per-element cost of the actnorm kernels in minWork units (1.5–3 ns per element
// in BenchmarkActNormForward/Backward: float64 arithmetic and conversions).
const actNormCost = 4

// ActNormForward computes y = (x + bias)·exp(scale·logs) and adds the logdet to ld (may be nil).
func (b *Backend) ActNormForward(y, ld, x, bias, logs *tensor.Tensor, scale float64) {
	if b.dead() {
		return
	}
	if is32(x) {
		actNorm[float32](b, y, ld, x, bias, logs, scale, false)
	} else {
		actNorm[float64](b, y, ld, x, bias, logs, scale, false)
	}
}

// ActNormInverse computes x = y·exp(−scale·logs) − bias and subtracts the logdet from ld (may be nil).
func (b *Backend) ActNormInverse(x, ld, y, bias, logs *tensor.Tensor, scale float64) {
	if b.dead() {
		return
	}
	if is32(x) {
		actNorm[float32](b, x, ld, y, bias, logs, scale, true)
	} else {
		actNorm[float64](b, x, ld, y, bias, logs, scale, true)
	}
}

// actNorm writes out from in: the forward map, or the inverse one when inverse is set.
func actNorm[T float](b *Backend, outT, ldT, inT, biasT, logsT *tensor.Tensor, scale float64, inverse bool) {
	n, h, w, c := inT.Shape().NHWC()
	out, in, bias, logs := data[T](outT), data[T](inT), data[T](biasT), data[T](logsT)
	// Per-channel constants in float64: the shift and the multiplier.
	k := b.scratch(2 * c)
	defer b.release(k)
	sh, mul := k.data[:c], k.data[c:2*c]
	logdet := 0.0
	for j := 0; j < c; j++ {
		l := scale * float64(logs[j])
		logdet += l
		sh[j] = float64(bias[j])
		mul[j] = math.Exp(l)
		if inverse {
			mul[j] = math.Exp(-l)
		}
	}
	rows := n * h * w
	b.parallel(rows, c*actNormCost, func(lo, hi int) {
		if out32, ok := any(out).([]float32); ok {
			actNormRowsF32(out32[lo*c:hi*c], any(in).([]float32)[lo*c:hi*c], sh, mul, inverse)
			return
		}
		for r := lo; r < hi; r++ {
			src, dst := in[r*c:(r+1)*c], out[r*c:(r+1)*c]
			sh, mul := sh[:len(src)], mul[:len(src)]
			if inverse {
				for j, v := range src {
					dst[j] = T(float64(v)*mul[j] - sh[j])
				}
			} else {
				for j, v := range src {
					dst[j] = T((float64(v) + sh[j]) * mul[j])
				}
			}
		}
	})
	if ldT != nil {
		ld := data[T](ldT)
		logdet *= float64(h * w)
		if inverse {
			logdet = -logdet
		}
		for i := range ld {
			ld[i] = T(float64(ld[i]) + logdet)
		}
	}
}

// ActNormBackward computes, with e_c = exp(s·logs_c):
//
//	dx = dy·e
//	dbias_c = Σ_{n,h,w} dy·e  (= e_c·Σ dy)
//	dlogs_c = s·Σ_{n,h,w} dy·y + s·H·W·Σ_n dld_n
//
// from ∂y/∂x = ∂y/∂b = e and ∂y/∂logs = s·y, and ∂ld/∂logs_c = s·H·W for every example.
func (b *Backend) ActNormBackward(dx, dbias, dlogs, dy, y, logs, dld *tensor.Tensor, scale float64) {
	if b.dead() {
		return
	}
	if is32(y) {
		actNormBackward[float32](b, dx, dbias, dlogs, dy, y, logs, dld, scale)
	} else {
		actNormBackward[float64](b, dx, dbias, dlogs, dy, y, logs, dld, scale)
	}
}

func actNormBackward[T float](b *Backend, dxT, dbiasT, dlogsT, dyT, yT, logsT, dldT *tensor.Tensor, scale float64) {
	n, h, w, c := yT.Shape().NHWC()
	dx, dy, y, logs := data[T](dxT), data[T](dyT), data[T](yT), data[T](logsT)
	k := b.scratch(c)
	defer b.release(k)
	e := k.data[:c]
	for j := range e {
		e[j] = math.Exp(scale * float64(logs[j]))
	}
	var dld []T
	if dldT != nil {
		dld = data[T](dldT)
	}
	sdy, sdyy, sdld := channelScaleBackward(b, dx, dy, y, e, n*h*w, c, dld)
	dbias, dlogs := data[T](dbiasT), data[T](dlogsT)
	hw := float64(h * w)
	for j := 0; j < c; j++ {
		dbias[j] = T(e[j] * sdy[j])
		dlogs[j] = T(scale*sdyy[j] + scale*hw*sdld)
	}
}

// channelScaleBackward is the backward pass of a per-channel scale y = (x + μ_c)·e_c over rows×c
// values, shared by actnorm and the per-channel affine coupling as the GPU shares one kernel for
// both: it writes dx = dy·e and returns, per channel, Σdy and Σdy·y, and Σ dld (nil: 0). The row
// sums are reduced per block and the blocks added in order, so the result does not depend on the
// thread count.
func channelScaleBackward[T float](b *Backend, dx, dy, y []T, e []float64, rows, c int, dld []T) (sdy, sdyy []float64, sdld float64) {
	bk := b.flatBlocks(rows, c)
	// Per block Σdy (c) and Σdy·y (c).
	k := b.scratch(2 * c * bk.count)
	defer b.release(k)
	part := k.data
	b.parallel(bk.count, bk.r*c*actNormCost, func(lo, hi int) {
		for i := lo; i < hi; i++ {
			_, r0, r1 := bk.block(i)
			bdy := part[2*c*i : 2*c*i+c]
			bdyy := part[2*c*i+c : 2*c*(i+1)]
			clear(bdy)
			clear(bdyy)
			if dx32, ok := any(dx).([]float32); ok {
				channelScaleRowsF32(dx32[r0*c:r1*c], any(dy).([]float32)[r0*c:r1*c], any(y).([]float32)[r0*c:r1*c], e[:c], bdy, bdyy)
				continue
			}
			for r := r0; r < r1; r++ {
				g, yy, d := dy[r*c:(r+1)*c], y[r*c:(r+1)*c], dx[r*c:(r+1)*c]
				e, bdy, bdyy, yy, d := e[:len(g)], bdy[:len(g)], bdyy[:len(g)], yy[:len(g)], d[:len(g)]
				for j, gv := range g {
					g := float64(gv)
					bdy[j] += g
					bdyy[j] += g * float64(yy[j])
					d[j] = T(g * e[j])
				}
			}
		}
	})
	for _, v := range dld {
		sdld += float64(v)
	}
	sdy, sdyy = make([]float64, c), make([]float64, c)
	for j := 0; j < c; j++ {
		for i := 0; i < bk.count; i++ {
			sdy[j] += part[2*c*i+j]
			sdyy[j] += part[2*c*i+c+j]
		}
	}
	return sdy, sdyy, sdld
}

// affineCost is the per-element cost of the affine kernels in minWork units: a tanh and an exp,
// 30–40 ns per element in BenchmarkAffineForward/Backward against 0.3–0.5 ns for a unit.
const affineCost = 96

// logScale turns the raw parameter r of an affine transform or a bounded Gaussian into a log-scale.
type logScale struct {
	mode        tensor.ScaleMode
	alpha, beta float64
}

// eval returns ℓ(r), e^ℓ, tanh r (ScaleTanh only) and dℓ/dr.
func (s logScale) eval(r float64) (l, e, t, g float64) {
	if s.mode == tensor.ScaleSigmoid {
		// ℓ = log σ(z) = −softplus(−z) with z = r + 2; one exponential u = e^{−|z|} gives ℓ, σ(z)
		// and σ(−z) without overflow.
		z := r + 2
		u := math.Exp(-math.Abs(z))
		if z >= 0 {
			return -math.Log1p(u), 1 / (1 + u), 0, u / (1 + u)
		}
		return z - math.Log1p(u), u / (1 + u), 0, 1 / (1 + u)
	}
	t = math.Tanh(r)
	l = s.alpha*t + s.beta
	return l, math.Exp(l), t, s.alpha * (1 - t*t)
}

func newLogScale[T float](mode tensor.ScaleMode, alpha, beta *tensor.Tensor) logScale {
	s := logScale{mode: mode}
	if mode == tensor.ScaleTanh {
		s.alpha, s.beta = float64(data[T](alpha)[0]), float64(data[T](beta)[0])
	}
	return s
}

// AffineForward computes y = (x + μ)·e^ℓ and adds Σℓ per example to ld (may be nil).
func (b *Backend) AffineForward(p tensor.AffineParams, y, ld, x, h, alpha, beta *tensor.Tensor) {
	if b.dead() {
		return
	}
	if is32(x) {
		affine[float32](b, p, y, ld, x, h, alpha, beta, false)
	} else {
		affine[float64](b, p, y, ld, x, h, alpha, beta, false)
	}
}

// AffineInverse computes x = y·e^−ℓ − μ and subtracts Σℓ per example from ld (may be nil).
func (b *Backend) AffineInverse(p tensor.AffineParams, x, ld, y, h, alpha, beta *tensor.Tensor) {
	if b.dead() {
		return
	}
	if is32(x) {
		affine[float32](b, p, x, ld, y, h, alpha, beta, true)
	} else {
		affine[float64](b, p, x, ld, y, h, alpha, beta, true)
	}
}

// affine writes out from in with the forward map, or the inverse one when inverse is set.
func affine[T float](b *Backend, p tensor.AffineParams, outT, ldT, inT, hT, alphaT, betaT *tensor.Tensor, inverse bool) {
	n, hh, w, c := inT.Shape().NHWC()
	out, in, h, ld := data[T](outT), data[T](inT), data[T](hT), data[T](ldT)
	s := newLogScale[T](p.Mode, alphaT, betaT)
	pos := hh * w
	sign := 1.0
	if inverse {
		sign = -1
	}
	if p.PerChannel {
		// One (μ, ℓ) per channel for every position: evaluate them once, then it is an actnorm.
		k := b.scratch(2 * c)
		defer b.release(k)
		mu, mul := k.data[:c], k.data[c:]
		sumL := 0.0
		for j := 0; j < c; j++ {
			l, e, _, _ := s.eval(float64(h[2*j+1]))
			sumL += l
			mu[j] = float64(h[2*j])
			mul[j] = e
			if inverse {
				mul[j] = 1 / e
			}
		}
		b.parallel(n*pos, c*actNormCost, func(lo, hi int) {
			for r := lo; r < hi; r++ {
				src, dst := in[r*c:(r+1)*c], out[r*c:(r+1)*c]
				mu, mul := mu[:len(src)], mul[:len(src)]
				if inverse {
					for j, v := range src {
						dst[j] = T(float64(v)*mul[j] - mu[j])
					}
				} else {
					for j, v := range src {
						dst[j] = T((float64(v) + mu[j]) * mul[j])
					}
				}
			}
		})
		for i := range ld {
			ld[i] = T(float64(ld[i]) + sign*float64(pos)*sumL)
		}
		return
	}
	bk := b.exampleBlocks(n, pos, c)
	var part *buffer[float64]
	if ld != nil {
		part = b.scratch(bk.count)
		defer b.release(part)
	}
	b.parallel(bk.count, bk.r*c*affineCost, func(lo, hi int) {
		for i := lo; i < hi; i++ {
			_, r0, r1 := bk.block(i)
			sumL := 0.0
			for r := r0; r < r1; r++ {
				src, dst, hr := in[r*c:(r+1)*c], out[r*c:(r+1)*c], h[2*r*c:2*(r+1)*c]
				hr = hr[:2*len(src)]
				for j, v := range src {
					l, e, _, _ := s.eval(float64(hr[2*j+1]))
					sumL += l
					if inverse {
						dst[j] = T(float64(v)/e - float64(hr[2*j]))
					} else {
						dst[j] = T((float64(v) + float64(hr[2*j])) * e)
					}
				}
			}
			if part != nil {
				part.data[i] = sumL
			}
		}
	})
	if ld != nil {
		addPerExample(ld, part.data, bk.perEx, sign)
	}
}

// addPerExample adds sign·(the sum of each example's block partials, in block order) to ld.
func addPerExample[T float](ld []T, part []float64, perEx int, sign float64) {
	for e := range ld {
		s := 0.0
		for _, v := range part[e*perEx : (e+1)*perEx] {
			s += v
		}
		ld[e] = T(float64(ld[e]) + sign*s)
	}
}

// AffineBackward computes dx, dh and, for ScaleTanh, dalpha and dbeta (see the formulas above). In
// ScaleSigmoid mode dalpha and dbeta are not touched.
func (b *Backend) AffineBackward(p tensor.AffineParams, dx, dh, dalpha, dbeta, dy, y, h, alpha, beta, dld *tensor.Tensor) {
	if b.dead() {
		return
	}
	if is32(y) {
		affineBackward[float32](b, p, dx, dh, dalpha, dbeta, dy, y, h, alpha, beta, dld)
	} else {
		affineBackward[float64](b, p, dx, dh, dalpha, dbeta, dy, y, h, alpha, beta, dld)
	}
}

func affineBackward[T float](b *Backend, p tensor.AffineParams, dxT, dhT, dalphaT, dbetaT, dyT, yT, hT, alphaT, betaT, dldT *tensor.Tensor) {
	n, hh, w, c := yT.Shape().NHWC()
	dx, dh, dy, y, h, dld := data[T](dxT), data[T](dhT), data[T](dyT), data[T](yT), data[T](hT), data[T](dldT)
	s := newLogScale[T](p.Mode, alphaT, betaT)
	pos := hh * w
	var da, db float64
	if p.PerChannel {
		// Σ_{n,pos} dℓ_c = Σ dy·y + pos·Σ_n dld_n, so only Σdy and Σdy·y per channel are needed
		// from the data; the dld term does not depend on the position.
		k := b.scratch(3 * c)
		defer b.release(k)
		e, g, t := k.data[:c], k.data[c:2*c], k.data[2*c:3*c]
		for j := 0; j < c; j++ {
			_, e[j], t[j], g[j] = s.eval(float64(h[2*j+1]))
		}
		sdy, sdyy, sdld := channelScaleBackward(b, dx, dy, y, e, n*pos, c, dld)
		for j := 0; j < c; j++ {
			s1, s2 := sdy[j], sdyy[j]
			dl := s2 + float64(pos)*sdld
			dh[2*j] = T(e[j] * s1)
			dh[2*j+1] = T(dl * g[j])
			da += dl * t[j]
			db += dl
		}
	} else {
		bk := b.exampleBlocks(n, pos, c)
		part := b.scratch(2 * bk.count)
		defer b.release(part)
		b.parallel(bk.count, bk.r*c*affineCost, func(lo, hi int) {
			for i := lo; i < hi; i++ {
				ex, r0, r1 := bk.block(i)
				dl0 := 0.0
				if dld != nil {
					dl0 = float64(dld[ex])
				}
				var sa, sb float64
				for r := r0; r < r1; r++ {
					gr, yr, d := dy[r*c:(r+1)*c], y[r*c:(r+1)*c], dx[r*c:(r+1)*c]
					hr, dhr := h[2*r*c:2*(r+1)*c], dh[2*r*c:2*(r+1)*c]
					yr, d, hr, dhr = yr[:len(gr)], d[:len(gr)], hr[:2*len(gr)], dhr[:2*len(gr)]
					for j, gv := range gr {
						gg := float64(gv)
						_, e, t, gl := s.eval(float64(hr[2*j+1]))
						dl := gg*float64(yr[j]) + dl0
						d[j] = T(gg * e)
						dhr[2*j] = T(gg * e)
						dhr[2*j+1] = T(dl * gl)
						sa += dl * t
						sb += dl
					}
				}
				part.data[2*i], part.data[2*i+1] = sa, sb
			}
		})
		for i := 0; i < bk.count; i++ {
			da += part.data[2*i]
			db += part.data[2*i+1]
		}
	}
	if p.Mode == tensor.ScaleTanh {
		data[T](dalphaT)[0] = T(da)
		data[T](dbetaT)[0] = T(db)
	}
}

// ln2pi is ln(2π).
const ln2pi = 1.8378770664093454835606594728112352797227949472755668

// gaussianCost is the per-element cost of the Gaussian kernels in minWork units: a tanh and an exp,
// 35–60 ns per element in BenchmarkGaussianLogProb/Backward.
const gaussianCost = 96

// gaussLayout says where μ and r of channel j sit in a row of p (2C values): μ = row[j·step],
// r = row[rOff + j·step] (interleaved: step 2, rOff 1; halves: step 1, rOff C).
type gaussLayout struct {
	step, rOff int
	scale      logScale
	bounded    bool
	broadcast  bool
}

func newGaussLayout[T float](g tensor.GaussianParams, c int, alpha, beta *tensor.Tensor) gaussLayout {
	l := gaussLayout{step: 1, rOff: c, bounded: g.Bounded, broadcast: g.BatchBroadcast}
	if g.Interleaved {
		l.step, l.rOff = 2, 1
	}
	if g.Bounded {
		l.scale = newLogScale[T](tensor.ScaleTanh, alpha, beta)
	}
	return l
}

// logSigma returns log σ, tanh r (bounded only) and ∂log σ/∂r for raw r.
func (l gaussLayout) logSigma(r float64) (ls, t, g float64) {
	if !l.bounded {
		return r, 0, 1
	}
	t = math.Tanh(r)
	return l.scale.alpha*t + l.scale.beta, t, l.scale.alpha * (1 - t*t)
}

// pRow returns the row of p that global row r of z (example ex, pos rows per example) reads.
func (l gaussLayout) pRow(r, ex, pos int) int {
	if l.broadcast {
		return r - ex*pos
	}
	return r
}

// GaussianLogProb adds Σ log N(z; μ, σ) per example to lp (may be nil) and writes
// eps = (z − μ)·e^{−log σ} when eps is non-nil.
func (b *Backend) GaussianLogProb(g tensor.GaussianParams, lp, eps, z, p, alpha, beta *tensor.Tensor) {
	if b.dead() {
		return
	}
	if is32(z) {
		gaussianLogProb[float32](b, g, lp, eps, z, p, alpha, beta)
	} else {
		gaussianLogProb[float64](b, g, lp, eps, z, p, alpha, beta)
	}
}

func gaussianLogProb[T float](b *Backend, g tensor.GaussianParams, lpT, epsT, zT, pT, alphaT, betaT *tensor.Tensor) {
	n, h, w, c := zT.Shape().NHWC()
	lp, eps, z, p := data[T](lpT), data[T](epsT), data[T](zT), data[T](pT)
	lay := newGaussLayout[T](g, c, alphaT, betaT)
	pos := h * w
	bk := b.exampleBlocks(n, pos, c)
	part := b.scratch(bk.count)
	defer b.release(part)
	b.parallel(bk.count, bk.r*c*gaussianCost, func(lo, hi int) {
		for i := lo; i < hi; i++ {
			ex, r0, r1 := bk.block(i)
			sum := 0.0
			for r := r0; r < r1; r++ {
				zr := z[r*c : (r+1)*c]
				pr := lay.pRow(r, ex, pos)
				prow := p[2*pr*c : 2*(pr+1)*c]
				var er []T
				if eps != nil {
					er = eps[r*c : (r+1)*c]
				}
				for j, zv := range zr {
					mu, rr := float64(prow[j*lay.step]), float64(prow[lay.rOff+j*lay.step])
					ls, _, _ := lay.logSigma(rr)
					u := (float64(zv) - mu) * math.Exp(-ls)
					sum += -0.5 * (ln2pi + 2*ls + u*u)
					if er != nil {
						er[j] = T(u)
					}
				}
			}
			part.data[i] = sum
		}
	})
	if lp != nil {
		addPerExample(lp, part.data, bk.perEx, 1)
	}
}

// GaussianSample writes z = μ + e^{log σ}·eps.
func (b *Backend) GaussianSample(g tensor.GaussianParams, z, eps, p, alpha, beta *tensor.Tensor) {
	if b.dead() {
		return
	}
	if is32(z) {
		gaussianSample[float32](b, g, z, eps, p, alpha, beta)
	} else {
		gaussianSample[float64](b, g, z, eps, p, alpha, beta)
	}
}

func gaussianSample[T float](b *Backend, g tensor.GaussianParams, zT, epsT, pT, alphaT, betaT *tensor.Tensor) {
	n, h, w, c := zT.Shape().NHWC()
	z, eps, p := data[T](zT), data[T](epsT), data[T](pT)
	lay := newGaussLayout[T](g, c, alphaT, betaT)
	pos := h * w
	b.parallel(n*pos, c*gaussianCost, func(lo, hi int) {
		for r := lo; r < hi; r++ {
			zr, er := z[r*c:(r+1)*c], eps[r*c:(r+1)*c]
			pr := lay.pRow(r, r/max(pos, 1), pos)
			prow := p[2*pr*c : 2*(pr+1)*c]
			er = er[:len(zr)]
			for j := range zr {
				mu, rr := float64(prow[j*lay.step]), float64(prow[lay.rOff+j*lay.step])
				ls, _, _ := lay.logSigma(rr)
				zr[j] = T(mu + math.Exp(ls)*float64(er[j]))
			}
		}
	})
}

// GaussianLogProbBackward computes dz, dp and, when bounded, dalpha and dbeta from the per-example
// gradient dlp (nil means zero). With BatchBroadcast, dp sums over the batch in example order. When
// not bounded, dalpha and dbeta are not touched.
func (b *Backend) GaussianLogProbBackward(g tensor.GaussianParams, dz, dp, dalpha, dbeta, z, p, alpha, beta, dlp *tensor.Tensor) {
	if b.dead() {
		return
	}
	if is32(z) {
		gaussianBackward[float32](b, g, dz, dp, dalpha, dbeta, z, p, alpha, beta, dlp)
	} else {
		gaussianBackward[float64](b, g, dz, dp, dalpha, dbeta, z, p, alpha, beta, dlp)
	}
}

func gaussianBackward[T float](b *Backend, g tensor.GaussianParams, dzT, dpT, dalphaT, dbetaT, zT, pT, alphaT, betaT, dlpT *tensor.Tensor) {
	n, h, w, c := zT.Shape().NHWC()
	dz, dp, z, p, dlp := data[T](dzT), data[T](dpT), data[T](zT), data[T](pT), data[T](dlpT)
	lay := newGaussLayout[T](g, c, alphaT, betaT)
	pos := h * w
	gradOf := func(ex int) float64 {
		if dlp == nil {
			return 0
		}
		return float64(dlp[ex])
	}
	// elem computes one element's gradients: it writes dz[zi] and returns dμ, dr and the
	// contributions to dα and dβ.
	elem := func(zi int, mu, rr, gl float64) (dmu, dr, sa, sb float64) {
		ls, t, dlsdr := lay.logSigma(rr)
		inv := math.Exp(-ls)
		u := (float64(z[zi]) - mu) * inv // d·e^{−log σ}
		dq := gl * u * inv               // dlp·d·q
		dls := gl * (u*u - 1)            // dlp·(d²q − 1)
		dz[zi] = T(-dq)
		return dq, dls * dlsdr, dls * t, dls
	}
	var part *buffer[float64]
	var count int
	if g.BatchBroadcast {
		// Blocks of positions; each sums its dp over the examples in order, so dp is
		// deterministic without a per-example partial of the whole of dp.
		bk := b.flatBlocks(pos, 2*c)
		count = bk.count
		k := b.scratch(2*bk.count + 2*c*bk.r*bk.count)
		defer b.release(k)
		part = k
		acc := k.data[2*bk.count:]
		b.parallel(bk.count, bk.r*c*n*gaussianCost, func(lo, hi int) {
			for i := lo; i < hi; i++ {
				_, p0, p1 := bk.block(i)
				a := acc[2*c*bk.r*i : 2*c*bk.r*i+2*c*(p1-p0)]
				clear(a)
				var sa, sb float64
				for ex := 0; ex < n; ex++ {
					gl := gradOf(ex)
					for q := p0; q < p1; q++ {
						prow := p[2*q*c : 2*(q+1)*c]
						arow := a[2*c*(q-p0) : 2*c*(q-p0+1)]
						zr := (ex*pos + q) * c
						for j := 0; j < c; j++ {
							mi, ri := j*lay.step, lay.rOff+j*lay.step
							dmu, dr, da, db := elem(zr+j, float64(prow[mi]), float64(prow[ri]), gl)
							arow[mi] += dmu
							arow[ri] += dr
							sa += da
							sb += db
						}
					}
				}
				out := dp[2*c*p0 : 2*c*p1]
				for k, v := range a {
					out[k] = T(v)
				}
				k.data[2*i], k.data[2*i+1] = sa, sb
			}
		})
	} else {
		bk := b.exampleBlocks(n, pos, c)
		count = bk.count
		part = b.scratch(2 * bk.count)
		defer b.release(part)
		b.parallel(bk.count, bk.r*c*gaussianCost, func(lo, hi int) {
			for i := lo; i < hi; i++ {
				ex, r0, r1 := bk.block(i)
				gl := gradOf(ex)
				var sa, sb float64
				for r := r0; r < r1; r++ {
					prow := p[2*r*c : 2*(r+1)*c]
					drow := dp[2*r*c : 2*(r+1)*c]
					for j := 0; j < c; j++ {
						mi, ri := j*lay.step, lay.rOff+j*lay.step
						dmu, dr, da, db := elem(r*c+j, float64(prow[mi]), float64(prow[ri]), gl)
						drow[mi] = T(dmu)
						drow[ri] = T(dr)
						sa += da
						sb += db
					}
				}
				part.data[2*i], part.data[2*i+1] = sa, sb
			}
		})
	}
	if g.Bounded {
		var da, db float64
		for i := 0; i < count; i++ {
			da += part.data[2*i]
			db += part.data[2*i+1]
		}
		data[T](dalphaT)[0] = T(da)
		data[T](dbetaT)[0] = T(db)
	}
}
