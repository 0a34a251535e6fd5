package dlf

import (
	"math"

	"dlf/autodiff"
	"dlf/tensor"
)

// Convolution shapes of the hyper-networks: Glow's conv2d with "edge bias" padding (an extra input
// channel that is 1 on the padded border) for 3×3, plain for 1×1 (dlf-spec §1.6), at the model's
// convolution precision.
func conv3x3(prec tensor.Precision) tensor.ConvParams {
	return tensor.ConvParams{K: 3, EdgeBias: true, Precision: prec}
}

func conv1x1(prec tensor.Precision) tensor.ConvParams {
	return tensor.ConvParams{K: 1, Precision: prec}
}

// actNormScale is the logscale_factor of Glow's actnorm and zeros-conv: logs are stored divided by 3
// and multiplied by 3 on use (dlf-spec §5).
const actNormScale = 3

// hyperNet is the network g that produces a DLT part's (or a Glow coupling's) parameters: conv3×3
// (width) → actnorm → ReLU → conv1×1 (width) → actnorm → ReLU → zeros-conv3×3 with exp(3·t) output
// scale, plus an optional projection of the condition (dlf-spec §1.6, §5).
type hyperNet struct {
	conv1, conv2 param
	an1, an2     actnormParams
	conv3        zeroConvParams
	// cond is the condition projection W_c, or noParam.
	cond param
	out  int
	// c3, c1 are the 3×3 and 1×1 convolutions' parameters.
	c3, c1 tensor.ConvParams
}

// actnormParams are an actnorm's bias b and log-scale logs, and its "initialised" flag when Glow's
// data-dependent init sets it (noParam in DLF).
type actnormParams struct{ b, logs, flag param }

// zeroConvParams are Glow's conv2d_zeros weight, bias and log-scale, and its convolution's
// parameters.
type zeroConvParams struct {
	w, b, logs param
	cp         tensor.ConvParams
}

// hyperInit chooses the hyper-network initialisation.
type hyperInit struct {
	// dataInit: Glow's actnorms, set from the first batch; otherwise DLF's fixed actnorm init
	// (bias Glorot-uniform, logs −1, dlf-spec §2.8).
	dataInit bool
	// outBias is the zeros-conv's bias initial value: 1 in DLF, 0 in Glow and in the identity init.
	outBias float64
}

// newHyperNet registers g under u with names prefix+"conv1.weight", … for cin input and out output
// channels.
func newHyperNet(u *unit, prefix string, cin, width, out, classes int, hi hyperInit) *hyperNet {
	r := u.reg
	g := &hyperNet{cond: noParam, out: out, c3: conv3x3(r.prec), c1: conv1x1(r.prec)}
	// Glow's conv2d: weights ~ N(0, 0.05²), then actnorm instead of a bias.
	g.conv1 = u.param(prefix+"conv1.weight", true, []int{3, 3, cin + 1, width}, r.normal(0.05))
	g.an1 = newActnormParams(u, prefix+"actnorm1.", width, hi)
	g.conv2 = u.param(prefix+"conv2.weight", true, []int{1, 1, width, width}, r.normal(0.05))
	g.an2 = newActnormParams(u, prefix+"actnorm2.", width, hi)
	if hi.dataInit {
		g.an1.flag = u.param(prefix+"actnorm1.initialized", false, []int{1}, zeros)
		g.an2.flag = u.param(prefix+"actnorm2.initialized", false, []int{1}, zeros)
	}
	g.conv3 = zeroConvParams{
		w:    u.param(prefix+"conv3.weight", true, []int{3, 3, width + 1, out}, zeros),
		b:    u.param(prefix+"conv3.bias", true, []int{out}, constant(hi.outBias)),
		logs: u.param(prefix+"conv3.logs", true, []int{out}, zeros),
		cp:   conv3x3(r.prec),
	}
	if classes > 0 {
		// The condition's projection starts at zero so that conditioning changes nothing at init.
		g.cond = u.param(prefix+"cond.weight", true, []int{classes, out}, zeros)
	}
	return g
}

// newActnormParams registers an actnorm's bias and logs. DLF's are not data-initialised: the bias
// has TensorFlow's default Glorot-uniform init for its [1,1,1,width] variable (fan_in 1, fan_out
// width) and logs starts at −1, a factor exp(−3) (dlf-spec §1.6, §2.8). Glow's are overwritten by
// the data init, so they start at zero.
func newActnormParams(u *unit, prefix string, width int, hi hyperInit) actnormParams {
	a := actnormParams{flag: noParam}
	if hi.dataInit {
		a.b = u.param(prefix+"bias", true, []int{width}, zeros)
		a.logs = u.param(prefix+"logs", true, []int{width}, zeros)
		return a
	}
	a.b = u.param(prefix+"bias", true, []int{width}, u.reg.glorot(1, width))
	a.logs = u.param(prefix+"logs", true, []int{width}, constant(-1))
	return a
}

// apply runs g on x [N,H,W,cin] and returns its output [N,H,W,out]:
//
//	g(x) = zeroconv(ReLU(actnorm(conv1×1(ReLU(actnorm(conv3×3(x))))))) (+ cond·W_c)
func (g *hyperNet) apply(e *env, pv vars, x *autodiff.Var) (out *autodiff.Var) {
	close := e.arena()
	defer func() { close(out) }()
	t := e.t
	out = chain(x,
		func(v *autodiff.Var) *autodiff.Var { return t.Conv2D(v, pv.of(g.conv1), nil, g.c3) },
		func(v *autodiff.Var) *autodiff.Var { return actnorm(e, pv, v, g.an1) },
		t.Relu,
		func(v *autodiff.Var) *autodiff.Var { return t.Conv2D(v, pv.of(g.conv2), nil, g.c1) },
		func(v *autodiff.Var) *autodiff.Var { return actnorm(e, pv, v, g.an2) },
		t.Relu,
		func(v *autodiff.Var) *autodiff.Var { return zeroConv(t, pv, v, g.conv3) },
	)
	if g.cond != noParam && e.cond != nil {
		_, hh, ww, _ := x.Value.Shape().NHWC()
		out = t.Add(out, e.condTerm(pv.of(g.cond), hh, ww))
	}
	return out
}

// chain applies the stages to x in order and releases each intermediate as soon as the next stage
// has consumed it (never x): a pipeline of ops whose intermediates nothing else reads keeps at most
// two of them alive, which matters for evaluation and sampling, where the tape saves nothing.
func chain(x *autodiff.Var, stages ...func(*autodiff.Var) *autodiff.Var) *autodiff.Var {
	v := x
	for _, f := range stages {
		next := f(v)
		if v != x {
			v.Release()
		}
		v = next
	}
	return v
}

// zeroConv is Glow's conv2d_zeros: a 3×3 edge-bias convolution without bias, then (· + b)·exp(3·logs)
// per channel — the actnorm op without its log-determinant (dlf-spec §1.6 step 3, §2.5).
func zeroConv(t *autodiff.Tape, pv vars, x *autodiff.Var, p zeroConvParams) (y *autodiff.Var) {
	close := arena(t)
	defer func() { close(y) }()
	return chain(x,
		func(v *autodiff.Var) *autodiff.Var { return t.Conv2D(v, pv.of(p.w), nil, p.cp) },
		func(v *autodiff.Var) *autodiff.Var {
			y, _ := t.ActNorm(v, pv.of(p.b), pv.of(p.logs), actNormScale)
			return y
		},
	)
}

// actnorm applies (x + b)·exp(3·logs) and drops the log-determinant (hyper-networks are not part of
// the flow's Jacobian). With a data-init flag, the first data-init pass sets b and logs from x. The
// log-determinant it drops is released with the caller's arena.
func actnorm(e *env, pv vars, x *autodiff.Var, p actnormParams) *autodiff.Var {
	if p.flag != noParam && e.dataInit {
		dataInitActNorm(pv.of(p.flag), pv.of(p.b), pv.of(p.logs), x.Value)
	}
	y, _ := e.t.ActNorm(x, pv.of(p.b), pv.of(p.logs), actNormScale)
	return y
}

// dataInitActNorm performs Glow's data-dependent actnorm initialisation unless flag says it has
// been done: b = −mean and logs = log(1/(std + 1e-6))/3 per channel over the batch, where std is
// the root of the mean of the centred squares (Kingma & Dhariwal 2018, §3.1; dlf-spec §5). It sets
// the flag, so it happens once per layer; the flag lives in checkpoints.
func dataInitActNorm(flag, b, s *autodiff.Var, x *tensor.Tensor) {
	if flag.Value.Item() != 0 {
		return
	}
	_, _, _, c := x.Shape().NHWC()
	v := x.Float64s()
	rows := len(v) / c
	mean := make([]float64, c)
	for i := 0; i < rows; i++ {
		for j := 0; j < c; j++ {
			mean[j] += v[i*c+j]
		}
	}
	for j := range mean {
		mean[j] /= float64(rows)
	}
	vr := make([]float64, c)
	for i := 0; i < rows; i++ {
		for j := 0; j < c; j++ {
			d := v[i*c+j] - mean[j]
			vr[j] += d * d
		}
	}
	bias := make([]float64, c)
	logs := make([]float64, c)
	for j := range vr {
		bias[j] = -mean[j]
		logs[j] = math.Log(1/(math.Sqrt(vr[j]/float64(rows))+1e-6)) / actNormScale
	}
	b.Value.Upload(bias)
	s.Value.Upload(logs)
	flag.Value.Upload([]float64{1})
}
