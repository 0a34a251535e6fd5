package dlf

import (
	"dlf/autodiff"
	"dlf/tensor"
)

// coupling is Glow's coupling layer (dlf-spec §5): z1, z2 are the channel halves, h = NN(z1), and
// either z2 ← (z2 + h[0::2])·sigmoid(h[1::2] + 2) (affine) or z2 ← z2 + h (additive).
type coupling struct {
	half     int
	additive bool
	net      *hyperNet
}

func newCoupling(u *unit, cfg *Config, c int) *coupling {
	cp := &coupling{half: c / 2, additive: cfg.Coupling == CouplingAdditive}
	out := c // affine: shift and scale for each of the c/2 channels, interleaved
	if cp.additive {
		out = c / 2
	}
	// Glow's hyper-network: data-initialised actnorms and a zeros-conv with bias 0; no conditioning
	// (Glow conditions only the top prior).
	cp.net = newHyperNet(u, "coupling.", c/2, cfg.Width, out, 0, hyperInit{dataInit: true})
	return cp
}

var sigmoidAffine = tensor.AffineParams{Mode: tensor.ScaleSigmoid}

func (cp *coupling) forward(e *env, pv []*autodiff.Var, x *autodiff.Var) (y, ld *autodiff.Var) {
	t := e.t
	zs := t.SplitChannels(x, cp.half, cp.half)
	h := cp.net.apply(e, pv, zs[0])
	var y2 *autodiff.Var
	if cp.additive {
		y2 = t.Add(zs[1], h)
		ld = autodiff.NewVar(tensor.Zeros(x.Value.Backend(), x.Value.DType(), x.Value.Dim(0)))
	} else {
		y2, ld = t.Affine(sigmoidAffine, zs[1], h, nil, nil)
	}
	h.Release()
	y = t.ConcatChannels(zs[0], y2)
	release(zs[0], zs[1], y2)
	return y, ld
}

func (cp *coupling) inverse(e *env, pv []*autodiff.Var, y *tensor.Tensor) (x, ld *tensor.Tensor) {
	be, dt := y.Backend(), y.DType()
	y1 := tensor.SliceChannels(y, 0, cp.half)
	y2 := tensor.SliceChannels(y, cp.half, 2*cp.half)
	v1 := constVar(y1)
	h := cp.net.apply(e, pv, v1)
	v1.Release()
	x2 := tensor.New(be, dt, y2.Shape()...)
	ld = tensor.Zeros(be, dt, y.Dim(0))
	if cp.additive {
		tensor.SubT(x2, y2, h.Value)
	} else {
		tensor.AffineInverse(sigmoidAffine, x2, ld, y2, h.Value, nil, nil)
	}
	h.Release()
	x = tensor.New(be, dt, y.Shape()...)
	tensor.ConcatChannels(x, y1, x2)
	y1.Release()
	y2.Release()
	x2.Release()
	return x, ld
}

// flowActNorm is Glow's actnorm flow layer: y = (x + b)·exp(3·logs) per channel, log-determinant
// H·W·Σ 3·logs, data-initialised on the first batch (dlf-spec §5).
type flowActNorm struct{ b, s, flag int }

func newFlowActNorm(u *unit, c int) *flowActNorm {
	return &flowActNorm{
		b:    u.param("actnorm.bias", true, []int{c}, zeros),
		s:    u.param("actnorm.logs", true, []int{c}, zeros),
		flag: u.param("actnorm.initialized", false, []int{1}, zeros),
	}
}

func (a *flowActNorm) forward(e *env, pv []*autodiff.Var, x *autodiff.Var) (y, ld *autodiff.Var) {
	if e.dataInit {
		dataInitActNorm(pv[a.flag], pv[a.b], pv[a.s], x.Value)
	}
	return e.t.ActNorm(x, pv[a.b], pv[a.s], actNormScale)
}

func (a *flowActNorm) inverse(pv []*autodiff.Var, y *tensor.Tensor) (x, ld *tensor.Tensor) {
	x = tensor.New(y.Backend(), y.DType(), y.Shape()...)
	ld = tensor.Zeros(y.Backend(), y.DType(), y.Dim(0))
	tensor.ActNormInverse(x, ld, y, pv[a.b].Value, pv[a.s].Value, actNormScale)
	return x, ld
}
