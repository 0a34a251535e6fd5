package autodiff

import (
	"strings"
	"testing"

	"dlf/tensor"
)

// scaleShift is an invertible per-channel layer y = x·exp(s) + b written as a Custom op with a
// hand-written backward. With recompute it saves nothing: its backward rebuilds x = (y − b)·exp(−s)
// from its output when the caller released x, and restores it for x's producer. Without, it saves x
// like an ordinary op.
func scaleShift(t *Tape, x, s, b *Var, recompute bool) *Var {
	es := like(s.Value)
	tensor.UnaryT(tensor.Exp, es, s.Value, 0, 0)
	y := like(x.Value)
	tensor.MulT(y, x.Value, es)
	tensor.AddT(y, y, b.Value)
	es.Release()
	var saved []*tensor.Tensor
	if !recompute {
		saved = []*tensor.Tensor{retain(x.Value)}
	}
	return t.Custom("scaleshift", []*Var{x, s, b}, []*tensor.Tensor{y}, saved, func(c *Context, dys []*tensor.Tensor) []*tensor.Tensor {
		dy := dys[0]
		es := like(s.Value)
		tensor.UnaryT(tensor.Exp, es, s.Value, 0, 0)
		defer es.Release()
		var xv *tensor.Tensor
		if recompute {
			if xv = c.Input(0); xv == nil {
				xv = like(dy)
				tensor.SubT(xv, c.Output(0), b.Value)
				tensor.DivT(xv, xv, es)
				c.RestoreInput(0, xv)
			}
		} else {
			xv = c.Saved(0)
		}
		out := make([]*tensor.Tensor, 3)
		if c.NeedsGrad(0) {
			out[0] = like(dy)
			tensor.MulT(out[0], dy, es)
		}
		if c.NeedsGrad(1) {
			p := like(dy)
			tensor.MulT(p, dy, xv)
			out[1] = like(s.Value)
			tensor.Reduce(tensor.Sum, tensor.AxisChannel, out[1], p)
			p.Release()
			tensor.MulT(out[1], out[1], es)
		}
		if c.NeedsGrad(2) {
			out[2] = like(b.Value)
			tensor.Reduce(tensor.Sum, tensor.AxisChannel, out[2], dy)
		}
		return out
	})[0]
}

// coupling is a Glow-style affine coupling layer for Reversible: y = concat(x1, affine(x2; conv(x1))),
// with the per-example log-determinant as a second output. params: conv weight, conv bias, alpha,
// beta.
func coupling(t *Tape, x *Var, p []*Var) []*Var {
	c := x.Value.Dim(-1) / 2
	parts := t.SplitChannels(x, c, c)
	h := t.Conv2D(parts[0], p[0], p[1], tensor.ConvParams{K: 3, EdgeBias: true})
	y2, ld := t.Affine(tensor.AffineParams{Mode: tensor.ScaleTanh}, parts[1], h, p[2], p[3])
	h.Release()
	parts[1].Release()
	y := t.ConcatChannels(parts[0], y2)
	parts[0].Release()
	y2.Release()
	return []*Var{y, ld}
}

// couplingInverse rebuilds x from y for coupling.
func couplingInverse(y *tensor.Tensor, p []*tensor.Tensor) *tensor.Tensor {
	c := y.Dim(-1) / 2
	y1 := tensor.SliceChannels(y, 0, c)
	y2 := tensor.SliceChannels(y, c, 2*c)
	n, hh, w, _ := y.Shape().NHWC()
	h := tensor.New(y.Backend(), y.DType(), n, hh, w, 2*c)
	tensor.Conv2D(tensor.ConvParams{K: 3, EdgeBias: true}, h, y1, p[0], p[1])
	x2 := like(y2)
	tensor.AffineInverse(tensor.AffineParams{Mode: tensor.ScaleTanh}, x2, nil, y2, h, p[2], p[3])
	x := like(y)
	tensor.ConcatChannels(x, y1, x2)
	for _, t := range []*tensor.Tensor{y1, y2, h, x2} {
		t.Release()
	}
	return x
}

// TestGradCheckCustomOps gradient-checks the hand-written custom ops, in chains whose intermediates
// are released so that the recomputing variants must rebuild and restore them.
func TestGradCheckCustomOps(t *testing.T) {
	r, seed := newRand(t)
	be := backend()
	x := []int{2, 3, 3, 4}
	chain := func(recompute bool) GradCheckFunc {
		return func(t *Tape, v []*Var) []*Var {
			h := v[0]
			for l := 0; l < 3; l++ {
				next := scaleShift(t, h, v[1+2*l], v[2+2*l], recompute)
				if l > 0 {
					h.Release()
				}
				h = next
			}
			return one(h)
		}
	}
	chainInputs := []input{in(signed, x...)}
	for range 3 {
		chainInputs = append(chainInputs, in(signed, 4), in(signed, 4))
	}
	params := []input{in(signed, x...), in(signed, 3, 3, 3, 4), in(signed, 4), in(signed, 1), in(signed, 1)}
	cases := []opCase{
		{"custom/storing", chainInputs, chain(false)},
		{"custom/recomputing", chainInputs, chain(true)},
		{"reversible/coupling", params, func(t *Tape, v []*Var) []*Var {
			return t.Reversible("coupling", v[0], v[1:], coupling, couplingInverse)
		}},
		{"reversible/coupling-chain", params, func(t *Tape, v []*Var) []*Var {
			// Two reversible layers and a plain op in front, all intermediates released: the second
			// layer rebuilds the first one's output, the first rebuilds the scale op's output.
			h0 := t.Scale(v[0], 1.5)
			a := t.Reversible("coupling1", h0, v[1:], coupling, couplingInverse)
			h0.Release()
			b := t.Reversible("coupling2", a[0], v[1:], coupling, couplingInverse)
			a[0].Release()
			ld := t.Add(a[1], b[1])
			return []*Var{b[0], ld}
		}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) { runGradCheck(t, be, r, seed, c) })
	}
}

// TestLeafGradientsAccumulate checks that parameter gradients add up across Backward calls until
// ZeroGrad, and that each parameter's gradient is exclusively its own.
func TestLeafGradientsAccumulate(t *testing.T) {
	r, _ := newRand(t)
	be := backend()
	a := NewParam(randTensor(be, tensor.Float64, r, signed, 2, 2, 2, 3))
	b := NewParam(randTensor(be, tensor.Float64, r, signed, 2, 2, 2, 3))
	step := func() {
		tp := NewTape()
		s := tp.Add(a, b) // both gradients are the same upstream gradient
		loss := tp.Sum(tp.Square(s), tensor.AxisAll)
		if err := tp.Backward(loss); err != nil {
			t.Fatal(err)
		}
	}
	step()
	g1 := a.Grad.Float64s()
	if tensor.SameStorage(a.Grad, b.Grad) {
		t.Fatal("two parameters share one gradient tensor")
	}
	step()
	for i, g := range a.Grad.Float64s() {
		if g != 2*g1[i] {
			t.Fatalf("after two backward passes grad[%d] = %v, want %v", i, g, 2*g1[i])
		}
	}
	tensor.UnaryT(tensor.Scale, a.Grad, a.Grad, 0, 0)
	if b.Grad.Float64s()[0] == 0 {
		t.Fatal("scaling one gradient changed another")
	}
	ZeroGrad(a, b)
	if a.Grad != nil || b.Grad != nil {
		t.Fatal("ZeroGrad left a gradient")
	}
	step()
	for i, g := range a.Grad.Float64s() {
		if g != g1[i] {
			t.Fatalf("after ZeroGrad grad[%d] = %v, want %v", i, g, g1[i])
		}
	}
}

func TestNoGradRecordsNothing(t *testing.T) {
	r, _ := newRand(t)
	be := backend()
	w := NewParam(randTensor(be, tensor.Float64, r, signed, 3))
	x := NewVar(randTensor(be, tensor.Float64, r, signed, 2, 2, 2, 3))
	for _, tp := range []*Tape{nil, NoGrad()} {
		y := tp.Exp(tp.Mul(x, w))
		if tp.Len() != 0 || y.RequiresGrad() {
			t.Fatalf("tape %v recorded %d ops", tp, tp.Len())
		}
		y.Release()
	}
	// A recording tape records nothing either when no input needs a gradient.
	tp := NewTape()
	tp.Exp(x)
	if tp.Len() != 0 {
		t.Fatalf("recorded %d ops on constants", tp.Len())
	}
}

func TestTapeMisusePanics(t *testing.T) {
	r, _ := newRand(t)
	be := backend()
	w := NewParam(randTensor(be, tensor.Float64, r, signed, 3))
	expectPanic := func(want string, f func()) {
		t.Helper()
		defer func() {
			if p := recover(); p == nil || !strings.Contains(p.(string), want) {
				t.Errorf("panic %v, want one mentioning %q", p, want)
			}
		}()
		f()
	}
	tp := NewTape()
	loss := tp.Sum(tp.Exp(w), tensor.AxisAll)
	expectPanic("non-scalar", func() { tp.Backward(tp.Exp(w)) })
	if err := tp.Backward(loss); err != nil {
		t.Fatal(err)
	}
	expectPanic("after its Backward", func() { tp.Exp(w) })
	expectPanic("twice", func() { tp.Backward(loss) })
	// A lazy read of an output that was released and never restored names the op.
	tp = NewTape()
	y := tp.Custom("needs-output", []*Var{w}, []*tensor.Tensor{tensor.Clone(w.Value)}, nil, func(c *Context, dys []*tensor.Tensor) []*tensor.Tensor {
		c.Output(0)
		return []*tensor.Tensor{retain(dys[0])}
	})[0]
	l2 := tp.Sum(y, tensor.AxisAll)
	y.Release()
	expectPanic("needs-output backward needs output 0", func() { tp.Backward(l2) })
}
