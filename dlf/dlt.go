package dlf

import (
	"fmt"

	"dlf/autodiff"
	"dlf/tensor"
)

// dlt is the dynamic linear transformation (dlf-spec §1): x is split along channels into K
// contiguous parts and
//
//	y_k = (x_k + μ'_k) ⊙ exp(ℓ_k),  ℓ_k = α_k·tanh(r_k) + β_k,
//
// where (μ'_1, r_1) come from a learned vector h0 (plus the condition) and (μ'_k, r_k) for k ≥ 2 from
// a hyper-network g_k applied to x_{k−1} (non-inverse, decomposition 0) or to y_{k−1} (inverse,
// decomposition 1). The shift and raw scale are interleaved along g's output channels. With
// affine-coupling mode (K = 2) part 1 is the identity.
type dlt struct {
	parts    []int // channel count of each part
	offs     []int // first channel of each part
	inverseD bool  // decomposition 1
	coupling bool  // part 1 is the identity
	// Part 1: h0, α, β and the condition projection (−1 when absent).
	h0, a0, b0, c0 int
	// Parts 2..K: hyper-networks and bounds.
	nets         []*hyperNet
	alpha, beta  []int
	identityInit bool
}

// newDLT registers a DLT over c channels in u under "dlt.".
func newDLT(u *unit, cfg *Config, c int) *dlt {
	k := cfg.Parts
	d := &dlt{inverseD: cfg.Decomposition == 1, coupling: cfg.AffineCoupling, h0: -1, a0: -1, b0: -1, c0: -1,
		identityInit: cfg.Init == InitIdentity}
	for i := 0; i < k; i++ {
		d.offs = append(d.offs, i*c/k)
		d.parts = append(d.parts, c/k)
	}
	classes := 0
	if cfg.Conditioning {
		classes = cfg.NumClasses
	}
	beta, outBias := -3.0, 1.0 // the reference's init (dlf-spec §2.8)
	if d.identityInit {
		beta, outBias = 0, 0
	}
	r := u.reg
	if !d.coupling {
		c1 := d.parts[0]
		// h0 is the reference's [1,1,1,2·C_1] variable with the default Glorot-uniform init
		// (fan_in 1, fan_out 2·C_1); stored flat.
		h0 := r.glorot(1, 2*c1)
		if d.identityInit {
			h0 = zeros
		}
		d.h0 = u.param("dlt.part0.h0", true, []int{2 * c1}, h0)
		d.a0 = u.param("dlt.part0.alpha", true, []int{1}, constant(1))
		d.b0 = u.param("dlt.part0.beta", true, []int{1}, constant(beta))
		if classes > 0 {
			d.c0 = u.param("dlt.part0.cond.weight", true, []int{classes, 2 * c1}, zeros)
		}
	}
	d.nets = make([]*hyperNet, k)
	d.alpha = make([]int, k)
	d.beta = make([]int, k)
	for i := 1; i < k; i++ {
		p := fmt.Sprintf("dlt.part%d.", i)
		d.nets[i] = newHyperNet(u, p, d.parts[i-1], cfg.Width, 2*d.parts[i], classes, hyperInit{outBias: outBias})
		d.alpha[i] = u.param(p+"alpha", true, []int{1}, constant(1))
		d.beta[i] = u.param(p+"beta", true, []int{1}, constant(beta))
	}
	return d
}

var (
	tanhVector = tensor.AffineParams{Mode: tensor.ScaleTanh, PerChannel: true}
	tanhFull   = tensor.AffineParams{Mode: tensor.ScaleTanh}
)

// firstParams returns the raw parameters h of part 1 and the affine mode they need: the learned
// vector (broadcast per channel), or, with a condition, the vector plus the condition's projection at
// every position.
func (d *dlt) firstParams(e *env, pv []*autodiff.Var, x *autodiff.Var) (*autodiff.Var, tensor.AffineParams, bool) {
	if d.c0 < 0 || e.cond == nil {
		return pv[d.h0], tanhVector, false
	}
	_, h, w, _ := x.Value.Shape().NHWC()
	ct := e.condTerm(pv[d.c0], h, w)
	hv := e.t.Add(ct, pv[d.h0])
	ct.Release()
	return hv, tanhFull, true
}

// forward computes y and the per-example log-determinant Σ_k Σ ℓ_k (dlf-spec §1.4).
func (d *dlt) forward(e *env, pv []*autodiff.Var, x *autodiff.Var) (y, ld *autodiff.Var) {
	t := e.t
	k := len(d.parts)
	xs := t.SplitChannels(x, d.parts...)
	ys := make([]*autodiff.Var, k)
	if d.coupling {
		ys[0] = xs[0]
	} else {
		h, mode, owned := d.firstParams(e, pv, xs[0])
		ys[0], ld = t.Affine(mode, xs[0], h, pv[d.a0], pv[d.b0])
		if owned {
			h.Release()
		}
	}
	for i := 1; i < k; i++ {
		src := xs[i-1]
		if d.inverseD {
			src = ys[i-1]
		}
		h := d.nets[i].apply(e, pv, src)
		var l *autodiff.Var
		ys[i], l = t.Affine(tanhFull, xs[i], h, pv[d.alpha[i]], pv[d.beta[i]])
		h.Release()
		ld = addLD(t, ld, l)
	}
	y = t.ConcatChannels(ys...)
	release(xs...)
	if !d.coupling {
		release(ys...)
	} else {
		release(ys[1:]...)
	}
	return y, ld
}

// inverse computes x from y (sequential over parts for decomposition 0, parallel for 1) and the
// log-determinant of the inverse map, −Σ ℓ.
func (d *dlt) inverse(e *env, pv []*autodiff.Var, y *tensor.Tensor) (x, ld *tensor.Tensor) {
	k := len(d.parts)
	be, dt := y.Backend(), y.DType()
	n := y.Dim(0)
	ld = tensor.Zeros(be, dt, n)
	ys := make([]*tensor.Tensor, k)
	xs := make([]*tensor.Tensor, k)
	for i := range ys {
		ys[i] = tensor.SliceChannels(y, d.offs[i], d.offs[i]+d.parts[i])
	}
	if d.coupling {
		xs[0] = tensor.Clone(ys[0])
	} else {
		yv := constVar(ys[0])
		h, mode, owned := d.firstParams(e, pv, yv)
		xs[0] = tensor.New(be, dt, ys[0].Shape()...)
		tensor.AffineInverse(mode, xs[0], ld, ys[0], h.Value, pv[d.a0].Value, pv[d.b0].Value)
		if owned {
			h.Release()
		}
		yv.Release()
	}
	for i := 1; i < k; i++ {
		src := xs[i-1]
		if d.inverseD {
			src = ys[i-1]
		}
		sv := constVar(src)
		h := d.nets[i].apply(e, pv, sv)
		sv.Release()
		xs[i] = tensor.New(be, dt, ys[i].Shape()...)
		tensor.AffineInverse(tanhFull, xs[i], ld, ys[i], h.Value, pv[d.alpha[i]].Value, pv[d.beta[i]].Value)
		h.Release()
	}
	x = tensor.New(be, dt, y.Shape()...)
	tensor.ConcatChannels(x, xs...)
	for i := range xs {
		xs[i].Release()
		ys[i].Release()
	}
	return x, ld
}
