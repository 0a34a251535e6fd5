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

// forward computes z1, z2 = split(x), h = NN(z1) and y = concat(z1, z2'), with z2' = z2 + h
// (additive) or z2' = (z2 + h[0::2])·sigmoid(h[1::2] + 2) and log-determinant Σ log sigmoid (affine).
func (cp *coupling) forward(e *env, pv vars, x *autodiff.Var) (y, ld *autodiff.Var) {
	close := e.arena()
	defer func() { close(y, ld) }()
	zs := e.t.SplitChannels(x, cp.half, cp.half)
	z2, ld := cp.transform(e, pv, zs[0], zs[1])
	return e.t.ConcatChannels(zs[0], z2), ld
}

// transform returns z2' and the log-determinant; h = NN(z1) is freed before the caller concatenates.
func (cp *coupling) transform(e *env, pv vars, z1, z2 *autodiff.Var) (y2, ld *autodiff.Var) {
	close := e.arena()
	defer func() { close(y2, ld) }()
	h := cp.net.apply(e, pv, z1)
	if cp.additive {
		return e.t.Add(z2, h), autodiff.NewVar(tensor.Zeros(z2.Value.Backend(), z2.Value.DType(), z2.Value.Dim(0)))
	}
	return e.t.Affine(sigmoidAffine, z2, h, nil, nil)
}

// inverse computes z2 = y2 − h or y2·sigmoid(…)⁻¹ − h[0::2] with h = NN(y1), and the inverse
// log-determinant.
func (cp *coupling) inverse(e *env, pv vars, y *tensor.Tensor) (x, ld *tensor.Tensor) {
	close := e.arena()
	defer close()
	be, dt := y.Backend(), y.DType()
	y1 := tensor.SliceChannels(y, 0, cp.half)
	y2 := tensor.SliceChannels(y, cp.half, 2*cp.half)
	h := cp.net.apply(e, pv, e.adopt(constVar(y1)))
	x2 := tensor.New(be, dt, y2.Shape()...)
	ld = tensor.Zeros(be, dt, y.Dim(0))
	if cp.additive {
		tensor.SubT(x2, y2, h.Value)
	} else {
		tensor.AffineInverse(sigmoidAffine, x2, ld, y2, h.Value, nil, nil)
	}
	x = tensor.New(be, dt, y.Shape()...)
	tensor.ConcatChannels(x, y1, x2)
	y1.Release()
	y2.Release()
	x2.Release()
	return x, ld
}

// flowActNorm is Glow's actnorm flow layer: y = (x + b)·exp(3·logs) per channel, log-determinant
// H·W·Σ 3·logs, data-initialised on the first batch (dlf-spec §5).
type flowActNorm struct{ p actnormParams }

func newFlowActNorm(u *unit, c int) *flowActNorm {
	return &flowActNorm{actnormParams{
		b:    u.param("actnorm.bias", true, []int{c}, zeros),
		logs: u.param("actnorm.logs", true, []int{c}, zeros),
		flag: u.param("actnorm.initialized", false, []int{1}, zeros),
	}}
}

func (a *flowActNorm) forward(e *env, pv vars, x *autodiff.Var) (y, ld *autodiff.Var) {
	if e.dataInit {
		dataInitActNorm(pv.of(a.p.flag), pv.of(a.p.b), pv.of(a.p.logs), x.Value)
	}
	return e.t.ActNorm(x, pv.of(a.p.b), pv.of(a.p.logs), actNormScale)
}

func (a *flowActNorm) inverse(pv vars, y *tensor.Tensor) (x, ld *tensor.Tensor) {
	x = tensor.New(y.Backend(), y.DType(), y.Shape()...)
	ld = tensor.Zeros(y.Backend(), y.DType(), y.Dim(0))
	tensor.ActNormInverse(x, ld, y, pv.of(a.p.b).Value, pv.of(a.p.logs).Value, actNormScale)
	return x, ld
}
