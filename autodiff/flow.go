package autodiff

import "dlf/tensor"

// value returns v's tensor, or nil for an absent optional input.
func value(v *Var) *tensor.Tensor {
	if v == nil {
		return nil
	}
	return v.Value
}

// releaseUnless releases t unless keep is set, and returns t or nil accordingly; the fused backward
// kernels compute every gradient, and the ones nobody asked for are dropped at once.
func releaseUnless(keep bool, t *tensor.Tensor) *tensor.Tensor {
	if keep || t == nil {
		return t
	}
	t.Release()
	return nil
}

// ActNorm applies y = (x + bias)·exp(scale·logs) per channel to x [N,H,W,C] with bias and logs of
// shape [C], and returns y and the per-example log-determinant [N] (H·W·Σ scale·logs). Its backward
// is the fused tensor.ActNormBackward, which reads the output y rather than x.
func (t *Tape) ActNorm(x, bias, logs *Var, scale float64) (y, logdet *Var) {
	n := x.Value.Dim(0)
	yv := like(x.Value)
	ld := zerosShape(x.Value, tensor.Shape{n})
	tensor.ActNormForward(yv, ld, x.Value, bias.Value, logs.Value, scale)
	save := func() []*tensor.Tensor { return []*tensor.Tensor{retain(yv), retain(logs.Value)} }
	out := t.record("actnorm", []*Var{x, bias, logs}, []*tensor.Tensor{yv, ld}, save, func(c *Context, dys []*tensor.Tensor) []*tensor.Tensor {
		ys, ls := c.Saved(0), c.Saved(1)
		dy := dys[0]
		if dy == nil {
			dy = zerosLike(ys)
			defer dy.Release()
		}
		dx, db, dl := like(ys), like(ls), like(ls)
		tensor.ActNormBackward(dx, db, dl, dy, ys, ls, dys[1], scale)
		return []*tensor.Tensor{releaseUnless(c.NeedsGrad(0), dx), releaseUnless(c.NeedsGrad(1), db), releaseUnless(c.NeedsGrad(2), dl)}
	})
	return out[0], out[1]
}

// Affine applies the DLT / coupling transform y = (x + μ)·exp(ℓ) to x [N,H,W,C] with (μ, raw scale)
// interleaved in h (see tensor.AffineParams), and returns y and the per-example log-determinant [N].
// alpha and beta are the one-element bounds of ScaleTanh mode and are nil in ScaleSigmoid mode.
// Its backward is the fused tensor.AffineBackward, which reads y rather than x.
func (t *Tape) Affine(p tensor.AffineParams, x, h, alpha, beta *Var) (y, logdet *Var) {
	n := x.Value.Dim(0)
	yv := like(x.Value)
	ld := zerosShape(x.Value, tensor.Shape{n})
	tensor.AffineForward(p, yv, ld, x.Value, h.Value, value(alpha), value(beta))
	save := func() []*tensor.Tensor {
		s := []*tensor.Tensor{retain(yv), retain(h.Value), nil, nil}
		if alpha != nil {
			s[2], s[3] = retain(alpha.Value), retain(beta.Value)
		}
		return s
	}
	out := t.record("affine", []*Var{x, h, alpha, beta}, []*tensor.Tensor{yv, ld}, save, func(c *Context, dys []*tensor.Tensor) []*tensor.Tensor {
		ys, hs, as, bs := c.Saved(0), c.Saved(1), c.Saved(2), c.Saved(3)
		dy := dys[0]
		if dy == nil {
			dy = zerosLike(ys)
			defer dy.Release()
		}
		dx, dh := like(ys), like(hs)
		var da, db *tensor.Tensor
		if p.Mode == tensor.ScaleTanh {
			da, db = like(as), like(bs)
		}
		tensor.AffineBackward(p, dx, dh, da, db, dy, ys, hs, as, bs, dys[1])
		return []*tensor.Tensor{releaseUnless(c.NeedsGrad(0), dx), releaseUnless(c.NeedsGrad(1), dh),
			releaseUnless(c.NeedsGrad(2), da), releaseUnless(c.NeedsGrad(3), db)}
	})
	return out[0], out[1]
}

// GaussianLogProb returns Σ log N(z; μ, σ) per example, [N], for z [N,H,W,C] with (μ, log σ) taken
// from p [N or 1, H, W, 2C] as g describes (tensor.GaussianParams); alpha and beta are the
// one-element bounds when g.Bounded and nil otherwise. Its backward is the fused
// tensor.GaussianLogProbBackward.
func (t *Tape) GaussianLogProb(g tensor.GaussianParams, z, p, alpha, beta *Var) *Var {
	n := z.Value.Dim(0)
	lp := zerosShape(z.Value, tensor.Shape{n})
	tensor.GaussianLogProb(g, lp, nil, z.Value, p.Value, value(alpha), value(beta))
	save := func() []*tensor.Tensor {
		s := []*tensor.Tensor{retain(z.Value), retain(p.Value), nil, nil}
		if alpha != nil {
			s[2], s[3] = retain(alpha.Value), retain(beta.Value)
		}
		return s
	}
	return t.record("gaussian", []*Var{z, p, alpha, beta}, []*tensor.Tensor{lp}, save, func(c *Context, dys []*tensor.Tensor) []*tensor.Tensor {
		zs, ps, as, bs := c.Saved(0), c.Saved(1), c.Saved(2), c.Saved(3)
		dz, dp := like(zs), like(ps)
		var da, db *tensor.Tensor
		if g.Bounded {
			da, db = like(as), like(bs)
		}
		tensor.GaussianLogProbBackward(g, dz, dp, da, db, zs, ps, as, bs, dys[0])
		return []*tensor.Tensor{releaseUnless(c.NeedsGrad(0), dz), releaseUnless(c.NeedsGrad(1), dp),
			releaseUnless(c.NeedsGrad(2), da), releaseUnless(c.NeedsGrad(3), db)}
	})[0]
}
