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
	// Part 1: h0, α₁, β₁ and the condition projection W_c (noParam when absent).
	h0, a0, b0, c0 param
	// Parts 2..K: hyper-networks g_k and bounds α_k, β_k.
	nets         []*hyperNet
	alpha, beta  []param
	identityInit bool
}

// newDLT registers a DLT over c channels in u under "dlt.".
func newDLT(u *unit, cfg *Config, c int) *dlt {
	k := cfg.Parts
	d := &dlt{inverseD: cfg.Decomposition == 1, coupling: cfg.AffineCoupling, h0: noParam, a0: noParam, b0: noParam, c0: noParam,
		identityInit: cfg.identityDLT()}
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
	d.alpha = make([]param, k)
	d.beta = make([]param, k)
	for i := 1; i < k; i++ {
		p := fmt.Sprintf("dlt.part%d.", i)
		d.nets[i] = newHyperNet(u, p, d.parts[i-1], cfg.Width, 2*d.parts[i], classes, hyperInit{outBias: outBias, dataInit: cfg.Init == InitData})
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
// vector h0 (broadcast per channel), or, with a condition, h0 plus the condition's projection at
// every position.
func (d *dlt) firstParams(e *env, pv vars, x *autodiff.Var) (*autodiff.Var, tensor.AffineParams) {
	if d.c0 == noParam || e.cond == nil {
		return pv.of(d.h0), tanhVector
	}
	_, h, w, _ := x.Value.Shape().NHWC()
	return e.t.Add(e.condTerm(pv.of(d.c0), h, w), pv.of(d.h0)), tanhFull
}

// forward computes y and the per-example log-determinant Σ_k Σ ℓ_k (dlf-spec §1.4):
//
//	y_1 = (x_1 + μ'_1)·exp(α_1·tanh r_1 + β_1),  (μ'_1, r_1) = h0 (+ cond·W_c)
//	y_k = (x_k + μ'_k)·exp(α_k·tanh r_k + β_k),  (μ'_k, r_k) = g_k(x_{k−1}), or g_k(y_{k−1}) inverse
func (d *dlt) forward(e *env, pv vars, x *autodiff.Var) (y, ld *autodiff.Var) {
	close := e.arena()
	defer func() { close(y, ld) }()
	t := e.t
	xs := t.SplitChannels(x, d.parts...)
	ys := make([]*autodiff.Var, len(d.parts))
	if d.coupling {
		ys[0] = xs[0]
	} else {
		h, mode := d.firstParams(e, pv, xs[0])
		ys[0], ld = t.Affine(mode, xs[0], h, pv.of(d.a0), pv.of(d.b0))
	}
	for k := 1; k < len(d.parts); k++ {
		src := xs[k-1]
		if d.inverseD {
			src = ys[k-1]
		}
		var l *autodiff.Var
		ys[k], l = t.Affine(tanhFull, xs[k], d.nets[k].apply(e, pv, src), pv.of(d.alpha[k]), pv.of(d.beta[k]))
		ld = sumLD(t, ld, l)
	}
	return t.ConcatChannels(ys...), ld
}

// inverse computes x from y (sequential over parts for decomposition 0, parallel for 1) and the
// log-determinant of the inverse map, −Σ ℓ.
func (d *dlt) inverse(e *env, pv vars, y *tensor.Tensor) (x, ld *tensor.Tensor) {
	close := e.arena()
	defer close()
	k := len(d.parts)
	be, dt := y.Backend(), y.DType()
	ld = tensor.Zeros(be, dt, y.Dim(0))
	ys := make([]*tensor.Tensor, k)
	xs := make([]*tensor.Tensor, k)
	for i := range ys {
		ys[i] = tensor.SliceChannels(y, d.offs[i], d.offs[i]+d.parts[i])
	}
	if d.coupling {
		xs[0] = tensor.Clone(ys[0])
	} else {
		h, mode := d.firstParams(e, pv, e.adopt(constVar(ys[0])))
		xs[0] = tensor.New(be, dt, ys[0].Shape()...)
		tensor.AffineInverse(mode, xs[0], ld, ys[0], h.Value, pv.of(d.a0).Value, pv.of(d.b0).Value)
	}
	for i := 1; i < k; i++ {
		src := xs[i-1]
		if d.inverseD {
			src = ys[i-1]
		}
		h := d.nets[i].apply(e, pv, e.adopt(constVar(src)))
		xs[i] = tensor.New(be, dt, ys[i].Shape()...)
		tensor.AffineInverse(tanhFull, xs[i], ld, ys[i], h.Value, pv.of(d.alpha[i]).Value, pv.of(d.beta[i]).Value)
	}
	x = tensor.New(be, dt, y.Shape()...)
	tensor.ConcatChannels(x, xs...)
	for i := range xs {
		xs[i].Release()
		ys[i].Release()
	}
	return x, ld
}
