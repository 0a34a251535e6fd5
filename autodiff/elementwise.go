package autodiff

import (
	"fmt"

	"dlf/tensor"
)

// like allocates an uninitialised tensor with x's backend, dtype and shape.
func like(x *tensor.Tensor) *tensor.Tensor {
	return tensor.New(x.Backend(), x.DType(), x.Shape()...)
}

// zerosLike allocates a zero tensor shaped like x.
func zerosLike(x *tensor.Tensor) *tensor.Tensor {
	return tensor.Zeros(x.Backend(), x.DType(), x.Shape()...)
}

// zerosShape allocates a zero tensor of the given shape next to ref.
func zerosShape(ref *tensor.Tensor, s tensor.Shape) *tensor.Tensor {
	return tensor.Zeros(ref.Backend(), ref.DType(), s...)
}

// newShape allocates an uninitialised tensor of the given shape next to ref.
func newShape(ref *tensor.Tensor, s tensor.Shape) *tensor.Tensor {
	return tensor.New(ref.Backend(), ref.DType(), s...)
}

// broadcastKind says how the second operand of a binary op was broadcast, which decides how its
// gradient is reduced.
type broadcastKind uint8

const (
	bcFull    broadcastKind = iota // same element count: no reduction
	bcScalar                       // one element: reduce over everything
	bcChannel                      // per-channel: reduce over all but the last axis
	bcExample                      // per-example: reduce over all but the first axis
)

// broadcastOf classifies b against a with the tensor library's own rule (tensor.BroadcastOf).
func broadcastOf(a, b *tensor.Tensor) broadcastKind {
	bc := tensor.BroadcastOf(a, b)
	switch {
	case b.Numel() == a.Numel():
		return bcFull
	case bc.Mod == 1:
		return bcScalar
	case bc.Div == 1:
		return bcChannel
	default:
		return bcExample
	}
}

// reduceGrad sums g (shaped like the first operand) down to the second operand's shape bs.
func reduceGrad(k broadcastKind, g *tensor.Tensor, bs tensor.Shape) *tensor.Tensor {
	var axes tensor.ReduceAxes
	switch k {
	case bcFull:
		return g.Reshape(bs...)
	case bcScalar:
		axes = tensor.AxisAll
	case bcChannel:
		axes = tensor.AxisChannel
	case bcExample:
		axes = tensor.AxisExample
	}
	r := newShape(g, tensor.ReduceShape(axes, g.Shape()))
	tensor.Reduce(tensor.Sum, axes, r, g)
	if r.Shape().Equal(bs) {
		return r
	}
	out := r.Reshape(bs...)
	r.Release()
	return out
}

// binaryOp records dst = a op b with b broadcast.
func (t *Tape) binaryOp(op tensor.BinaryOp, a, b *Var) *Var {
	k := broadcastOf(a.Value, b.Value)
	y := like(a.Value)
	switch op {
	case tensor.Add:
		tensor.AddT(y, a.Value, b.Value)
	case tensor.Sub:
		tensor.SubT(y, a.Value, b.Value)
	case tensor.Mul:
		tensor.MulT(y, a.Value, b.Value)
	case tensor.Div:
		tensor.DivT(y, a.Value, b.Value)
	}
	var save func() []*tensor.Tensor
	if op == tensor.Mul || op == tensor.Div {
		save = func() []*tensor.Tensor { return []*tensor.Tensor{retain(a.Value), retain(b.Value)} }
	}
	return t.record(op.String(), []*Var{a, b}, []*tensor.Tensor{y}, save, func(c *Context, dys []*tensor.Tensor) []*tensor.Tensor {
		dy := dys[0]
		bs := c.InputShape(1)
		out := make([]*tensor.Tensor, 2)
		switch op {
		case tensor.Add, tensor.Sub:
			if c.NeedsGrad(0) {
				out[0] = retain(dy)
			}
			switch {
			case !c.NeedsGrad(1):
			case op == tensor.Add:
				out[1] = reduceGrad(k, dy, bs)
			case k == bcFull:
				// A fresh tensor: negating the view reduceGrad returns would overwrite dy.
				r := dy.Reshape(bs...)
				out[1] = newShape(dy, bs)
				tensor.UnaryT(tensor.Scale, out[1], r, -1, 0)
				r.Release()
			default:
				out[1] = reduceGrad(k, dy, bs)
				tensor.UnaryT(tensor.Scale, out[1], out[1], -1, 0)
			}
		case tensor.Mul:
			av, bv := c.Saved(0), c.Saved(1)
			if c.NeedsGrad(0) {
				out[0] = like(dy)
				tensor.MulT(out[0], dy, bv)
			}
			if c.NeedsGrad(1) {
				p := like(dy)
				tensor.MulT(p, dy, av)
				out[1] = reduceGrad(k, p, bs)
				p.Release()
			}
		case tensor.Div:
			av, bv := c.Saved(0), c.Saved(1)
			if c.NeedsGrad(0) {
				out[0] = like(dy)
				tensor.DivT(out[0], dy, bv)
			}
			if c.NeedsGrad(1) {
				// d(a/b)/db = −a/b²
				p := like(dy)
				tensor.MulT(p, dy, av)
				tensor.DivT(p, p, bv)
				tensor.DivT(p, p, bv)
				out[1] = reduceGrad(k, p, bs)
				p.Release()
				tensor.UnaryT(tensor.Scale, out[1], out[1], -1, 0)
			}
		}
		return out
	})[0]
}

// Add returns a + b, with b broadcast against a: the same element count, per-channel ([C] or
// [1,…,1,C]), per-example ([N,1,…,1]) or a scalar (see tensor.BroadcastOf).
func (t *Tape) Add(a, b *Var) *Var { return t.binaryOp(tensor.Add, a, b) }

// Sub returns a − b with b broadcast as in Add.
func (t *Tape) Sub(a, b *Var) *Var { return t.binaryOp(tensor.Sub, a, b) }

// Mul returns a · b with b broadcast as in Add.
func (t *Tape) Mul(a, b *Var) *Var { return t.binaryOp(tensor.Mul, a, b) }

// Div returns a / b with b broadcast as in Add.
func (t *Tape) Div(a, b *Var) *Var { return t.binaryOp(tensor.Div, a, b) }

// Scale returns s·x.
func (t *Tape) Scale(x *Var, s float64) *Var {
	y := like(x.Value)
	tensor.UnaryT(tensor.Scale, y, x.Value, s, 0)
	return t.record("scale", []*Var{x}, []*tensor.Tensor{y}, nil, func(c *Context, dys []*tensor.Tensor) []*tensor.Tensor {
		dx := like(dys[0])
		tensor.UnaryT(tensor.Scale, dx, dys[0], s, 0)
		return []*tensor.Tensor{dx}
	})[0]
}

// Neg returns −x.
func (t *Tape) Neg(x *Var) *Var { return t.Scale(x, -1) }

// AddConst returns x + s.
func (t *Tape) AddConst(x *Var, s float64) *Var {
	y := like(x.Value)
	tensor.UnaryT(tensor.AddConst, y, x.Value, s, 0)
	return t.record("addconst", []*Var{x}, []*tensor.Tensor{y}, nil, func(c *Context, dys []*tensor.Tensor) []*tensor.Tensor {
		return []*tensor.Tensor{retain(dys[0])}
	})[0]
}

// unary records y = op(x) whose backward is computed by grad from dy and the saved tensor (x or y,
// as savesOutput says).
func (t *Tape) unary(op tensor.UnaryOp, x *Var, savesOutput bool, grad func(dx, dy, saved *tensor.Tensor)) *Var {
	y := like(x.Value)
	tensor.UnaryT(op, y, x.Value, 0, 0)
	save := func() []*tensor.Tensor {
		if savesOutput {
			return []*tensor.Tensor{retain(y)}
		}
		return []*tensor.Tensor{retain(x.Value)}
	}
	return t.record(op.String(), []*Var{x}, []*tensor.Tensor{y}, save, func(c *Context, dys []*tensor.Tensor) []*tensor.Tensor {
		dx := like(dys[0])
		grad(dx, dys[0], c.Saved(0))
		return []*tensor.Tensor{dx}
	})[0]
}

// Exp returns e^x; its backward uses the saved output (dx = dy·y).
func (t *Tape) Exp(x *Var) *Var {
	return t.unary(tensor.Exp, x, true, func(dx, dy, y *tensor.Tensor) { tensor.MulT(dx, dy, y) })
}

// Log returns the natural logarithm of x (dx = dy/x).
func (t *Tape) Log(x *Var) *Var {
	return t.unary(tensor.Log, x, false, func(dx, dy, x *tensor.Tensor) { tensor.DivT(dx, dy, x) })
}

// Tanh returns tanh(x) (dx = dy·(1 − y²)).
func (t *Tape) Tanh(x *Var) *Var {
	return t.unary(tensor.Tanh, x, true, func(dx, dy, y *tensor.Tensor) { tensor.UnaryGradT(tensor.TanhGrad, dx, y, dy, 0, 0) })
}

// Sigmoid returns 1/(1+e^−x) (dx = dy·y·(1 − y)).
func (t *Tape) Sigmoid(x *Var) *Var {
	return t.unary(tensor.Sigmoid, x, true, func(dx, dy, y *tensor.Tensor) { tensor.UnaryGradT(tensor.SigmoidGrad, dx, y, dy, 0, 0) })
}

// Relu returns max(x, 0); it saves its output, which has the same sign pattern as x, so a following
// op that also keeps the output shares the memory.
func (t *Tape) Relu(x *Var) *Var {
	return t.unary(tensor.Relu, x, true, func(dx, dy, y *tensor.Tensor) { tensor.UnaryGradT(tensor.ReluGrad, dx, y, dy, 0, 0) })
}

// Square returns x² (dx = 2·x·dy).
func (t *Tape) Square(x *Var) *Var {
	return t.unary(tensor.Square, x, false, func(dx, dy, x *tensor.Tensor) {
		tensor.MulT(dx, dy, x)
		tensor.UnaryT(tensor.Scale, dx, dx, 2, 0)
	})
}

// reduceCount returns how many elements one output element of a reduction over axes sums.
func reduceCount(axes tensor.ReduceAxes, s tensor.Shape) int {
	return s.Numel() / max(tensor.ReduceShape(axes, s).Numel(), 1)
}

// broadcastShape returns the shape under which a reduction's result broadcasts back against the
// reduced tensor: [1] (scalar), [C] (per-channel) or [N,1,…,1] (per-example; a 1-D [N] would read as
// per-channel).
func broadcastShape(axes tensor.ReduceAxes, s tensor.Shape) tensor.Shape {
	if axes != tensor.AxisExample {
		return tensor.ReduceShape(axes, s)
	}
	out := make(tensor.Shape, len(s))
	for i := range out {
		out[i] = 1
	}
	out[0] = s[0]
	return out
}

// reduce records Sum or Mean over axes.
func (t *Tape) reduce(op tensor.ReduceOp, axes tensor.ReduceAxes, x *Var) *Var {
	xs := x.Value.Shape()
	y := newShape(x.Value, tensor.ReduceShape(axes, xs))
	tensor.Reduce(op, axes, y, x.Value)
	name := fmt.Sprintf("sum%d", axes)
	if op == tensor.Mean {
		name = fmt.Sprintf("mean%d", axes)
	}
	return t.record(name, []*Var{x}, []*tensor.Tensor{y}, nil, func(c *Context, dys []*tensor.Tensor) []*tensor.Tensor {
		dx := zerosShape(dys[0], xs)
		g := dys[0].Reshape(broadcastShape(axes, xs)...)
		tensor.AddT(dx, dx, g)
		g.Release()
		if op == tensor.Mean {
			tensor.UnaryT(tensor.Scale, dx, dx, 1/float64(reduceCount(axes, xs)), 0)
		}
		return []*tensor.Tensor{dx}
	})[0]
}

// Sum reduces x over axes: AxisAll gives [1], AxisExample [N], AxisChannel [C].
func (t *Tape) Sum(x *Var, axes tensor.ReduceAxes) *Var { return t.reduce(tensor.Sum, axes, x) }

// Mean is Sum divided by the number of reduced elements.
func (t *Tape) Mean(x *Var, axes tensor.ReduceAxes) *Var { return t.reduce(tensor.Mean, axes, x) }
