package cpu

import (
	"math"

	"dlf/tensor"
)

// Diagonal Gaussian priors (dlf-spec §2.5, §2.6; Glow's split prior, §5). With d = z − μ and
// q = e^{−2 log σ}:
//
//	log N(z; μ, σ) = −½(ln 2π + 2 log σ + d²q)
//	∂/∂z = −d·q,  ∂/∂μ = d·q,  ∂/∂log σ = d²q − 1
//
// and, when log σ = α·tanh(r) + β, ∂log σ/∂r = α(1 − tanh² r), ∂/∂α = tanh r, ∂/∂β = 1.

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
