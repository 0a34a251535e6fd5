package cpu

import (
	"math"

	"dlf/tensor"
)

// InvLogDet computes W⁻ᵀ and scale·log|det W| for each matrix of w, in float64 (see
// tensor.Backend.InvLogDet), with the same elimination order as the CUDA kernel (kernels/linalg.cu),
// so that both backends round the same float64 values.
func (b *Backend) InvLogDet(inv, logdet, w *tensor.Tensor, scale float64) {
	if b.dead() {
		return
	}
	sh := w.Shape()
	c := sh[len(sh)-1]
	batch := w.Numel() / (c * c)
	wv := make([]float64, w.Numel())
	if is32(w) {
		for i, x := range data[float32](w) {
			wv[i] = float64(x)
		}
	} else {
		copy(wv, data[float64](w))
	}
	iv := make([]float64, w.Numel())
	lv := make([]float64, batch)
	b.parallel(batch, 1, func(lo, hi int) {
		work := make([]float64, 2*c*c)
		for m := lo; m < hi; m++ {
			lv[m] = invLogDet(iv[m*c*c:(m+1)*c*c], wv[m*c*c:(m+1)*c*c], work, c, scale)
		}
	})
	if is32(inv) {
		copy(data[float32](inv), toF32(iv))
		copy(data[float32](logdet), toF32(lv))
	} else {
		copy(data[float64](inv), iv)
		copy(data[float64](logdet), lv)
	}
}

func toF32(v []float64) []float32 {
	out := make([]float32, len(v))
	for i, x := range v {
		out[i] = float32(x)
	}
	return out
}

// invLogDet inverts the row-major c×c matrix w by Gauss-Jordan elimination with partial pivoting on
// the augmented matrix [W | I] (work: c×2c), writes W⁻ᵀ into invT and returns scale·log|det W|, the
// sum of the log pivot magnitudes (row swaps only flip the sign). A zero pivot returns −Inf with
// invT all NaN. Pivot choice: the first row of largest magnitude, as kernels/linalg.cu chooses.
func invLogDet(invT, w, work []float64, c int, scale float64) float64 {
	n := 2 * c
	for i := range c {
		for j := range c {
			work[i*n+j] = w[i*c+j]
			work[i*n+c+j] = 0
		}
		work[i*n+c+i] = 1
	}
	var lad float64
	for k := range c {
		p, best := k, math.Abs(work[k*n+k])
		for i := k + 1; i < c; i++ {
			if a := math.Abs(work[i*n+k]); a > best {
				p, best = i, a
			}
		}
		if best == 0 {
			for i := range invT {
				invT[i] = math.NaN()
			}
			return math.Inf(-1)
		}
		if p != k {
			for j := range n {
				work[k*n+j], work[p*n+j] = work[p*n+j], work[k*n+j]
			}
		}
		piv := work[k*n+k]
		lad += math.Log(best)
		for j := range n {
			work[k*n+j] /= piv
		}
		for i := range c {
			if i == k {
				continue
			}
			f := work[i*n+k]
			for j := range n {
				// float64(…) keeps the product rounded on its own (no fused multiply-add), as the
				// kernel's __dmul_rn does, so both backends compute the same values.
				work[i*n+j] -= float64(f * work[k*n+j])
			}
		}
	}
	for i := range c {
		for j := range c {
			invT[j*c+i] = work[i*n+c+j]
		}
	}
	return scale * lad
}
