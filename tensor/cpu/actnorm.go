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
	rows := n * h * w
	bk := b.flatBlocks(rows, c)
	// Scratch: e (c), then per block Σdy (c) and Σdy·y (c).
	k := b.scratch(c + 2*c*bk.count)
	defer b.release(k)
	e := k.data[:c]
	for j := range e {
		e[j] = math.Exp(scale * float64(logs[j]))
	}
	part := k.data[c:]
	b.parallel(bk.count, bk.r*c*actNormCost, func(lo, hi int) {
		for i := lo; i < hi; i++ {
			_, r0, r1 := bk.block(i)
			sdy := part[2*c*i : 2*c*i+c]
			sdyy := part[2*c*i+c : 2*c*(i+1)]
			clear(sdy)
			clear(sdyy)
			for r := r0; r < r1; r++ {
				g, yy, d := dy[r*c:(r+1)*c], y[r*c:(r+1)*c], dx[r*c:(r+1)*c]
				e, sdy, sdyy, yy, d := e[:len(g)], sdy[:len(g)], sdyy[:len(g)], yy[:len(g)], d[:len(g)]
				for j, gv := range g {
					g := float64(gv)
					sdy[j] += g
					sdyy[j] += g * float64(yy[j])
					d[j] = T(g * e[j])
				}
			}
		}
	})
	sdld := 0.0
	if dldT != nil {
		for _, v := range data[T](dldT) {
			sdld += float64(v)
		}
	}
	dbias, dlogs := data[T](dbiasT), data[T](dlogsT)
	hw := float64(h * w)
	for j := 0; j < c; j++ {
		var s1, s2 float64
		for i := 0; i < bk.count; i++ {
			s1 += part[2*c*i+j]
			s2 += part[2*c*i+c+j]
		}
		dbias[j] = T(e[j] * s1)
		dlogs[j] = T(scale*s2 + scale*hw*sdld)
	}
}
