package backendtest

import (
	"math"

	"dlf/tensor"
)

// The fused flow ops, straight from their formulas (tensor/backend.go, dlf-spec §1.5, §2.5, §5).
// Shapes are NHWC [N,H,W,C]; "row" is the flat position n·H·W + h·W + w.

// ln2π is the constant of the Gaussian log-density.
var ln2π = math.Log(2 * math.Pi)

// ActNorm: y = (x + bias[c])·exp(s·logs[c]); ld[n] += H·W·Σ_c s·logs[c].

func refActNormLD(n, hw int, logs []float64, s float64, ld0 []float64, sign float64) []ev {
	var sum ev
	for _, l := range logs {
		sum = sum.add(in(l).scale(s))
	}
	out := make([]ev, n)
	for i := range out {
		out[i] = in(ld0[i]).add(sum.scale(sign * float64(hw)))
	}
	return out
}

func refActNormForward(shape []int, x, bias, logs []float64, s float64, ld0 []float64) (y, ld []ev) {
	n, h, w, c := shape[0], shape[1], shape[2], shape[3]
	y = make([]ev, len(x))
	for i := range x {
		ch := i % c
		y[i] = in(x[i]).add(in(bias[ch])).mul(expE(in(logs[ch]).scale(s)))
	}
	if ld0 != nil {
		ld = refActNormLD(n, h*w, logs, s, ld0, 1)
	}
	return y, ld
}

func refActNormInverse(shape []int, y, bias, logs []float64, s float64, ld0 []float64) (x, ld []ev) {
	n, h, w, c := shape[0], shape[1], shape[2], shape[3]
	x = make([]ev, len(y))
	for i := range y {
		ch := i % c
		x[i] = in(y[i]).mul(expE(in(logs[ch]).scale(-s))).sub(in(bias[ch]))
	}
	if ld0 != nil {
		ld = refActNormLD(n, h*w, logs, s, ld0, -1)
	}
	return x, ld
}

// refActNormBackward: dx = dy·e, dbias[c] = Σ dy·e, dlogs[c] = s·Σ dy·y + s·H·W·Σ_n dld[n], with
// e = exp(s·logs[c]); the forward's ∂y/∂logs = s·y and ∂ld[n]/∂logs[c] = s·H·W.
func refActNormBackward(shape []int, dy, y, logs, dld []float64, s float64) (dx, dbias, dlogs []ev) {
	n, h, w, c := shape[0], shape[1], shape[2], shape[3]
	dx = make([]ev, len(dy))
	dbias = make([]ev, c)
	dlogs = make([]ev, c)
	for i := range dy {
		ch := i % c
		dx[i] = in(dy[i]).mul(expE(in(logs[ch]).scale(s)))
		dbias[ch] = dbias[ch].add(dx[i])
		dlogs[ch] = dlogs[ch].add(in(dy[i]).mul(in(y[i])).scale(s))
	}
	if dld != nil {
		var sum ev
		for i := 0; i < n; i++ {
			sum = sum.add(in(dld[i]))
		}
		for ch := range dlogs {
			dlogs[ch] = dlogs[ch].add(sum.scale(s * float64(h*w)))
		}
	}
	return dx, dbias, dlogs
}

// Affine (DLT part / coupling): μ = h[..., 2c], r = h[..., 2c+1]; ℓ = α·tanh(r) + β (ScaleTanh) or
// log sigmoid(r + 2) (ScaleSigmoid); y = (x + μ)·exp(ℓ); ld[n] += Σ ℓ.

type affineCase struct {
	p           tensor.AffineParams
	shape       []int // of x
	h           []float64
	alpha, beta float64
}

// at returns the indices of μ and r in h for row and channel ch, and (μ, r, ℓ, tanh r or sigmoid(r+2)).
func (a affineCase) at(row, ch int) (iMu, iR int, mu, r, l, t ev) {
	c := a.shape[3]
	base := row * 2 * c
	if a.p.PerChannel {
		base = 0
	}
	iMu, iR = base+2*ch, base+2*ch+1
	mu, r = in(a.h[iMu]), in(a.h[iR])
	if a.p.Mode == tensor.ScaleTanh {
		t = tanhE(r)
		l = t.scale(a.alpha).add(in(a.beta))
	} else {
		t = sigmoidE(r.add(in(2)))
		l = logE(t)
	}
	return
}

func (a affineCase) forward(x, ld0 []float64) (y, ld []ev) {
	c := a.shape[3]
	hw := a.shape[1] * a.shape[2]
	y = make([]ev, len(x))
	if ld0 != nil {
		ld = evs(ld0)
	}
	for i := range x {
		row, ch := i/c, i%c
		_, _, mu, _, l, _ := a.at(row, ch)
		y[i] = in(x[i]).add(mu).mul(expE(l))
		if ld != nil {
			ld[row/hw] = ld[row/hw].add(l)
		}
	}
	return y, ld
}

func (a affineCase) inverse(y, ld0 []float64) (x, ld []ev) {
	c := a.shape[3]
	hw := a.shape[1] * a.shape[2]
	x = make([]ev, len(y))
	if ld0 != nil {
		ld = evs(ld0)
	}
	for i := range y {
		row, ch := i/c, i%c
		_, _, mu, _, l, _ := a.at(row, ch)
		x[i] = in(y[i]).mul(expE(l.neg())).sub(mu)
		if ld != nil {
			ld[row/hw] = ld[row/hw].sub(l)
		}
	}
	return x, ld
}

// backward: dx = dμ = dy·exp(ℓ); dℓ = dy·y + dld[n] (∂y/∂ℓ = y); dr = dℓ·α·(1 − tanh² r) and
// dα = Σ dℓ·tanh r, dβ = Σ dℓ (ScaleTanh), or dr = dℓ·(1 − sigmoid(r+2)) (ScaleSigmoid). With
// PerChannel, dh sums over every position.
func (a affineCase) backward(dy, y, dld []float64) (dx, dh []ev, dalpha, dbeta ev) {
	c := a.shape[3]
	hw := a.shape[1] * a.shape[2]
	dx = make([]ev, len(dy))
	dh = make([]ev, len(a.h))
	one := in(1)
	for i := range dy {
		row, ch := i/c, i%c
		iMu, iR, _, _, l, t := a.at(row, ch)
		dx[i] = in(dy[i]).mul(expE(l))
		dl := in(dy[i]).mul(in(y[i]))
		if dld != nil {
			dl = dl.add(in(dld[row/hw]))
		}
		var dr ev
		if a.p.Mode == tensor.ScaleTanh {
			dr = dl.scale(a.alpha).mul(one.sub(t.mul(t)))
			dalpha = dalpha.add(dl.mul(t))
			dbeta = dbeta.add(dl)
		} else {
			dr = dl.mul(one.sub(t))
		}
		if a.p.PerChannel {
			dh[iMu] = dh[iMu].add(dx[i])
			dh[iR] = dh[iR].add(dr)
		} else {
			dh[iMu], dh[iR] = dx[i], dr
		}
	}
	return dx, dh, dalpha, dbeta
}

// Gaussian: (μ, r) from p [N or 1, H, W, 2C], interleaved (μ = p[2c], r = p[2c+1]) or halves
// (μ = p[c], r = p[C+c]); log σ = α·tanh(r) + β (Bounded) or r; eps = (z − μ)·exp(−log σ);
// lp[n] += Σ −½(ln 2π + 2 log σ + eps²) (dlf-spec §2.5).

type gaussCase struct {
	g           tensor.GaussianParams
	shape       []int // of z
	p           []float64
	alpha, beta float64
}

// at returns the indices of μ and r in p for z's row and channel ch, with μ, log σ and tanh r.
func (q gaussCase) at(row, ch int) (iMu, iR int, mu, ls, t ev) {
	c := q.shape[3]
	prow := row
	if q.g.BatchBroadcast {
		prow = row % (q.shape[1] * q.shape[2])
	}
	base := prow * 2 * c
	if q.g.Interleaved {
		iMu, iR = base+2*ch, base+2*ch+1
	} else {
		iMu, iR = base+ch, base+c+ch
	}
	mu = in(q.p[iMu])
	r := in(q.p[iR])
	if q.g.Bounded {
		t = tanhE(r)
		ls = t.scale(q.alpha).add(in(q.beta))
	} else {
		ls = r
	}
	return
}

func (q gaussCase) logProb(z, lp0 []float64) (lp, eps []ev) {
	c := q.shape[3]
	hw := q.shape[1] * q.shape[2]
	lp = evs(lp0)
	eps = make([]ev, len(z))
	for i := range z {
		row, ch := i/c, i%c
		_, _, mu, ls, _ := q.at(row, ch)
		eps[i] = in(z[i]).sub(mu).mul(expE(ls.neg()))
		term := in(ln2π).add(ls.scale(2)).add(eps[i].mul(eps[i])).scale(-0.5)
		lp[row/hw] = lp[row/hw].add(term)
	}
	return lp, eps
}

// backward: with eps as above and d = dlp[n], dz = −d·eps·exp(−log σ), dμ = −dz,
// d log σ = d·(eps² − 1); dr = dlogσ·α·(1 − tanh² r) (Bounded) or dlogσ; dα = Σ dlogσ·tanh r,
// dβ = Σ dlogσ. With BatchBroadcast, dp sums over the batch.
func (q gaussCase) backward(z, dlp []float64) (dz, dp []ev, dalpha, dbeta ev) {
	c := q.shape[3]
	hw := q.shape[1] * q.shape[2]
	dz = make([]ev, len(z))
	dp = make([]ev, len(q.p))
	one := in(1)
	for i := range z {
		row, ch := i/c, i%c
		iMu, iR, mu, ls, t := q.at(row, ch)
		inv := expE(ls.neg())
		eps := in(z[i]).sub(mu).mul(inv)
		d := in(dlp[row/hw])
		dz[i] = d.mul(eps).mul(inv).neg()
		dls := d.mul(eps.mul(eps).sub(one))
		dr := dls
		if q.g.Bounded {
			dr = dls.scale(q.alpha).mul(one.sub(t.mul(t)))
			dalpha = dalpha.add(dls.mul(t))
			dbeta = dbeta.add(dls)
		}
		if q.g.BatchBroadcast {
			dp[iMu] = dp[iMu].add(dz[i].neg())
			dp[iR] = dp[iR].add(dr)
		} else {
			dp[iMu], dp[iR] = dz[i].neg(), dr
		}
	}
	return dz, dp, dalpha, dbeta
}

// sample: z = μ + exp(log σ)·eps.
func (q gaussCase) sample(eps []float64) []ev {
	c := q.shape[3]
	z := make([]ev, len(eps))
	for i := range eps {
		_, _, mu, ls, _ := q.at(i/c, i%c)
		z[i] = mu.add(expE(ls).mul(in(eps[i])))
	}
	return z
}
