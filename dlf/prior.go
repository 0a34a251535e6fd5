package dlf

import (
	"fmt"

	"dlf/autodiff"
	"dlf/tensor"
)

// splitPrior is the learned conditional Gaussian prior of a split (dlf-spec §2.5): a zeros-conv maps
// z1 (the kept half) to the parameters of N(z2; μ, σ) for the factored-out half. DLF takes μ and r as
// channel halves and log σ = α·tanh(r) + β (α = 1, β = 0 at init, zeros-conv bias 1); Glow
// interleaves them and uses log σ = r (bias 0).
type splitPrior struct {
	u    *unit
	glow bool
	conv zeroConvParams
	// alpha and beta bound log σ (DLF; noParam in Glow).
	alpha, beta param
}

func newSplitPrior(r *registry, cfg *Config, level, c int) *splitPrior {
	p := &splitPrior{u: r.unit(fmt.Sprintf("level%d.split.", level)), glow: cfg.Flow == FlowGlow, alpha: noParam, beta: noParam}
	half := c / 2
	outBias := 1.0
	if p.glow || cfg.identityDLT() {
		outBias = 0
	}
	p.conv = newZeroConv(p.u, half, c, outBias)
	if !p.glow {
		p.alpha = p.u.param("alpha", true, []int{1}, constant(1))
		p.beta = p.u.param("beta", true, []int{1}, zeros)
	}
	return p
}

// newZeroConv registers a zeros-conv from cin to out channels under "conv.".
func newZeroConv(u *unit, cin, out int, outBias float64) zeroConvParams {
	return zeroConvParams{
		w:    u.param("conv.weight", true, []int{3, 3, cin + 1, out}, zeros),
		b:    u.param("conv.bias", true, []int{out}, constant(outBias)),
		logs: u.param("conv.logs", true, []int{out}, zeros),
		cp:   conv3x3(u.reg.prec),
	}
}

func (p *splitPrior) gauss() tensor.GaussianParams {
	return tensor.GaussianParams{Interleaved: p.glow, Bounded: !p.glow}
}

// bounds returns α and β of log σ = α·tanh(r) + β (nil in Glow).
func (p *splitPrior) bounds() (a, b *autodiff.Var) { return p.u.vars.of(p.alpha), p.u.vars.of(p.beta) }

// params returns the prior's raw parameters [N,H,W,2·C/2] for z1.
func (p *splitPrior) params(t *autodiff.Tape, z1 *autodiff.Var) *autodiff.Var {
	return zeroConv(t, p.u.vars, z1, p.conv)
}

// logProb returns Σ log N(z2; μ(z1), σ(z1)) per example.
func (p *splitPrior) logProb(t *autodiff.Tape, z1, z2 *autodiff.Var) (lp *autodiff.Var) {
	close := arena(t)
	defer func() { close(lp) }()
	a, b := p.bounds()
	return t.GaussianLogProb(p.gauss(), z2, p.params(t, z1), a, b)
}

// eps returns ε = (z2 − μ(z1))·exp(−log σ(z1)), the normalised latent that decodes back to z2.
func (p *splitPrior) eps(z1, z2 *tensor.Tensor) *tensor.Tensor {
	t := autodiff.NoGrad()
	close := arena(t)
	defer close()
	v := constVar(z1)
	t.Adopt(v)
	h := p.params(t, v)
	a, b := p.bounds()
	lp := tensor.Zeros(z2.Backend(), z2.DType(), z2.Dim(0))
	e := tensor.New(z2.Backend(), z2.DType(), z2.Shape()...)
	tensor.GaussianLogProb(p.gauss(), lp, e, z2, h.Value, value(a), value(b))
	lp.Release()
	return e
}

// sample returns z2 = μ(z1) + σ(z1)·ε.
func (p *splitPrior) sample(z1, eps *tensor.Tensor) *tensor.Tensor {
	t := autodiff.NoGrad()
	close := arena(t)
	defer close()
	v := constVar(z1)
	t.Adopt(v)
	h := p.params(t, v)
	a, b := p.bounds()
	z := tensor.New(eps.Backend(), eps.DType(), eps.Shape()...)
	tensor.GaussianSample(p.gauss(), z, eps, h.Value, value(a), value(b))
	return z
}

// topPrior is the learned prior of the top latent (dlf-spec §2.6): a zeros-conv applied to an
// all-zeros tensor, so the parameters are the bias plus the edge channel's contribution near the
// borders; μ and r are channel halves. DLF bounds log σ = α·tanh(r) + β; Glow uses r. With
// conditioning, a zero-initialised linear map of the one-hot label is added (Glow's ycond).
type topPrior struct {
	u       *unit
	glow    bool
	h, w, c int
	conv    zeroConvParams
	// alpha and beta bound log σ (noParam in Glow); cond is the label projection (or noParam).
	alpha, beta, cond param
}

func newTopPrior(r *registry, cfg *Config) *topPrior {
	h, w, c := cfg.ChannelsAt(cfg.Levels - 1)
	p := &topPrior{u: r.unit("top."), glow: cfg.Flow == FlowGlow, h: h, w: w, c: c, alpha: noParam, beta: noParam, cond: noParam}
	outBias := 1.0
	if p.glow || cfg.identityDLT() {
		outBias = 0
	}
	p.conv = newZeroConv(p.u, 2*c, 2*c, outBias)
	if !p.glow {
		p.alpha = p.u.param("alpha", true, []int{1}, constant(1))
		p.beta = p.u.param("beta", true, []int{1}, zeros)
	}
	if cfg.Conditioning {
		p.cond = p.u.param("cond.weight", true, []int{cfg.NumClasses, 2 * c}, zeros)
	}
	return p
}

// params returns the prior's raw parameters: [1,h,w,2c] shared by the batch, or [N,h,w,2c] with a
// condition.
func (p *topPrior) params(e *env) (h *autodiff.Var, g tensor.GaussianParams) {
	close := e.arena()
	defer func() { close(h) }()
	t, pv := e.t, p.u.vars
	be, dt := pv.of(p.conv.b).Value.Backend(), pv.of(p.conv.b).Value.DType()
	zero := e.adopt(autodiff.NewVar(tensor.Zeros(be, dt, 1, p.h, p.w, 2*p.c)))
	h = zeroConv(t, pv, zero, p.conv)
	g = tensor.GaussianParams{Bounded: !p.glow, BatchBroadcast: true}
	if p.cond == noParam || e.cond == nil {
		return h, g
	}
	// Broadcast h [1,h,w,2c] over the batch as ones[N,1]·h[1, h·w·2c] (the tensor library's
	// broadcasts are per channel, per example or scalar), then add the label's projection.
	n, m := e.cond.Value.Dim(0), p.h*p.w*2*p.c
	ones := e.adopt(autodiff.NewVar(tensor.Full(be, dt, 1, n, 1)))
	hb := t.Reshape(t.MatMul(ones, t.Reshape(h, 1, m), false, false), n, p.h, p.w, 2*p.c)
	g.BatchBroadcast = false
	return t.Add(hb, e.condTerm(pv.of(p.cond), p.h, p.w)), g
}

// bounds returns α and β of log σ = α·tanh(r) + β (nil in Glow).
func (p *topPrior) bounds() (a, b *autodiff.Var) { return p.u.vars.of(p.alpha), p.u.vars.of(p.beta) }

// logProb returns Σ log N(z; μ, σ) per example.
func (p *topPrior) logProb(e *env, z *autodiff.Var) (lp *autodiff.Var) {
	close := e.arena()
	defer func() { close(lp) }()
	h, g := p.params(e)
	a, b := p.bounds()
	return e.t.GaussianLogProb(g, z, h, a, b)
}

// eps returns ε = (z − μ)·exp(−log σ).
func (p *topPrior) eps(e *env, z *tensor.Tensor) *tensor.Tensor {
	close := e.arena()
	defer close()
	h, g := p.params(e)
	a, b := p.bounds()
	lp := tensor.Zeros(z.Backend(), z.DType(), z.Dim(0))
	out := tensor.New(z.Backend(), z.DType(), z.Shape()...)
	tensor.GaussianLogProb(g, lp, out, z, h.Value, value(a), value(b))
	lp.Release()
	return out
}

// sample returns z = μ + σ·ε.
func (p *topPrior) sample(e *env, eps *tensor.Tensor) *tensor.Tensor {
	close := e.arena()
	defer close()
	h, g := p.params(e)
	a, b := p.bounds()
	z := tensor.New(eps.Backend(), eps.DType(), eps.Shape()...)
	tensor.GaussianSample(g, z, eps, h.Value, value(a), value(b))
	return z
}

// value returns v's tensor, or nil for a nil Var.
func value(v *autodiff.Var) *tensor.Tensor {
	if v == nil {
		return nil
	}
	return v.Value
}
