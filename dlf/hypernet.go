package dlf

import (
	"math"

	"dlf/autodiff"
	"dlf/tensor"
)

// Convolution shapes of the hyper-networks: Glow's conv2d with "edge bias" padding (an extra input
// channel that is 1 on the padded border) for 3×3, plain for 1×1 (dlf-spec §1.6).
var (
	conv3x3 = tensor.ConvParams{K: 3, EdgeBias: true}
	conv1x1 = tensor.ConvParams{K: 1}
)

// actNormScale is the logscale_factor of Glow's actnorm and zeros-conv: logs are stored divided by 3
// and multiplied by 3 on use (dlf-spec §5).
const actNormScale = 3

// hyperNet is the network g that produces a DLT part's (or a Glow coupling's) parameters: conv3×3
// (width) → actnorm → ReLU → conv1×1 (width) → actnorm → ReLU → zeros-conv3×3 with exp(3·t) output
// scale, plus an optional projection of the condition (dlf-spec §1.6, §5).
type hyperNet struct {
	conv1, an1b, an1s, conv2, an2b, an2s, conv3, c3b, c3s int
	// cond is the condition projection's index, or −1.
	cond int
	// flag1, flag2 are the indices of the actnorms' "initialised" buffers when they are
	// data-initialised (Glow), or −1 (DLF).
	flag1, flag2 int
	out          int
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
	g := &hyperNet{cond: -1, flag1: -1, flag2: -1, out: out}
	r := u.reg
	// Glow's conv2d: weights ~ N(0, 0.05²), then actnorm instead of a bias.
	g.conv1 = u.param(prefix+"conv1.weight", true, []int{3, 3, cin + 1, width}, r.normal(0.05))
	g.an1b, g.an1s = g.actnormParams(u, prefix+"actnorm1.", width, hi)
	g.conv2 = u.param(prefix+"conv2.weight", true, []int{1, 1, width, width}, r.normal(0.05))
	g.an2b, g.an2s = g.actnormParams(u, prefix+"actnorm2.", width, hi)
	if hi.dataInit {
		g.flag1 = u.param(prefix+"actnorm1.initialized", false, []int{1}, zeros)
		g.flag2 = u.param(prefix+"actnorm2.initialized", false, []int{1}, zeros)
	}
	g.conv3 = u.param(prefix+"conv3.weight", true, []int{3, 3, width + 1, out}, zeros)
	g.c3b = u.param(prefix+"conv3.bias", true, []int{out}, constant(hi.outBias))
	g.c3s = u.param(prefix+"conv3.logs", true, []int{out}, zeros)
	if classes > 0 {
		// The condition's projection starts at zero so that conditioning changes nothing at init.
		g.cond = u.param(prefix+"cond.weight", true, []int{classes, out}, zeros)
	}
	return g
}

// actnormParams registers an actnorm's bias and logs. DLF's are not data-initialised: the bias has
// TensorFlow's default Glorot-uniform init for its [1,1,1,width] variable (fan_in 1, fan_out width)
// and logs starts at −1, a factor exp(−3) (dlf-spec §1.6, §2.8). Glow's are overwritten by the data
// init, so they start at zero.
func (g *hyperNet) actnormParams(u *unit, prefix string, width int, hi hyperInit) (b, s int) {
	if hi.dataInit {
		b = u.param(prefix+"bias", true, []int{width}, zeros)
		s = u.param(prefix+"logs", true, []int{width}, zeros)
		return b, s
	}
	b = u.param(prefix+"bias", true, []int{width}, u.reg.glorot(1, width))
	s = u.param(prefix+"logs", true, []int{width}, constant(-1))
	return b, s
}

// apply runs g on x [N,H,W,cin] and returns its output [N,H,W,out].
func (g *hyperNet) apply(e *env, pv []*autodiff.Var, x *autodiff.Var) *autodiff.Var {
	t := e.t
	h1 := t.Conv2D(x, pv[g.conv1], nil, conv3x3)
	a1 := actnorm(e, pv, h1, g.an1b, g.an1s, g.flag1)
	h1.Release()
	r1 := t.Relu(a1)
	a1.Release()
	h2 := t.Conv2D(r1, pv[g.conv2], nil, conv1x1)
	r1.Release()
	a2 := actnorm(e, pv, h2, g.an2b, g.an2s, g.flag2)
	h2.Release()
	r2 := t.Relu(a2)
	a2.Release()
	out := zeroConv(t, pv, r2, g.conv3, g.c3b, g.c3s)
	r2.Release()
	if g.cond >= 0 && e.cond != nil {
		_, hh, ww, _ := x.Value.Shape().NHWC()
		ct := e.condTerm(pv[g.cond], hh, ww)
		o2 := t.Add(out, ct)
		out.Release()
		ct.Release()
		out = o2
	}
	return out
}

// zeroConv is Glow's conv2d_zeros: a 3×3 edge-bias convolution without bias, then (· + b)·exp(3·logs)
// per channel — the actnorm op without its log-determinant (dlf-spec §1.6 step 3, §2.5).
func zeroConv(t *autodiff.Tape, pv []*autodiff.Var, x *autodiff.Var, w, b, s int) *autodiff.Var {
	c := t.Conv2D(x, pv[w], nil, conv3x3)
	y, ld := t.ActNorm(c, pv[b], pv[s], actNormScale)
	c.Release()
	ld.Release()
	return y
}

// actnorm applies (x + b)·exp(3·logs) and drops the log-determinant (hyper-networks are not part of
// the flow's Jacobian). With a data-init flag, the first data-init pass sets b and logs from x.
func actnorm(e *env, pv []*autodiff.Var, x *autodiff.Var, b, s, flag int) *autodiff.Var {
	if flag >= 0 && e.dataInit {
		dataInitActNorm(pv[flag], pv[b], pv[s], x.Value)
	}
	y, ld := e.t.ActNorm(x, pv[b], pv[s], actNormScale)
	ld.Release()
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
