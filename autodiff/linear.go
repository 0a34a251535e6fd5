package autodiff

import (
	"fmt"

	"dlf/tensor"
)

// MatMul returns op(a)·op(b) for 2-D operands, or per batch index for 3-D operands [B, rows, cols],
// where op transposes when the flag is set (tensor.Gemm).
func (t *Tape) MatMul(a, b *Var, transA, transB bool) *Var {
	as, bs := a.Value.Shape(), b.Value.Shape()
	r := len(as)
	if (r != 2 && r != 3) || len(bs) != r {
		panic(fmt.Sprintf("autodiff: MatMul of %v and %v", as, bs))
	}
	o := r - 2
	m := as[o]
	if transA {
		m = as[o+1]
	}
	n := bs[o+1]
	if transB {
		n = bs[o]
	}
	cs := tensor.Shape{m, n}
	if r == 3 {
		cs = tensor.Shape{as[0], m, n}
	}
	y := newShape(a.Value, cs)
	tensor.Gemm(transA, transB, 1, a.Value, b.Value, 0, y)
	save := func() []*tensor.Tensor { return []*tensor.Tensor{retain(a.Value), retain(b.Value)} }
	return t.record("matmul", []*Var{a, b}, []*tensor.Tensor{y}, save, func(c *Context, dys []*tensor.Tensor) []*tensor.Tensor {
		av, bv, dy := c.Saved(0), c.Saved(1), dys[0]
		out := make([]*tensor.Tensor, 2)
		// With A' = op(A), B' = op(B) and C = A'B': dA' = dC·B'ᵀ and dB' = A'ᵀ·dC, transposed back
		// where op transposed.
		if c.NeedsGrad(0) {
			out[0] = like(av)
			if !transA {
				tensor.Gemm(false, !transB, 1, dy, bv, 0, out[0])
			} else {
				tensor.Gemm(transB, true, 1, bv, dy, 0, out[0])
			}
		}
		if c.NeedsGrad(1) {
			out[1] = like(bv)
			if !transB {
				tensor.Gemm(!transA, false, 1, av, dy, 0, out[1])
			} else {
				tensor.Gemm(true, transA, 1, dy, av, 0, out[1])
			}
		}
		return out
	})[0]
}

// Conv2D returns conv(x, w) + bias for NHWC x, HWIO w and optional bias [C_out] (nil for none), with
// stride 1 and "same" zero padding; p.EdgeBias adds Glow's border-indicator input channel, so w has
// one more input channel (dlf-spec §1.6).
func (t *Tape) Conv2D(x, w, bias *Var, p tensor.ConvParams) *Var {
	n, h, wd, _ := x.Value.Shape().NHWC()
	cout := w.Value.Dim(-1)
	y := newShape(x.Value, tensor.Shape{n, h, wd, cout})
	var bv *tensor.Tensor
	if bias != nil {
		bv = bias.Value
	}
	tensor.Conv2D(p, y, x.Value, w.Value, bv)
	save := func() []*tensor.Tensor { return []*tensor.Tensor{retain(x.Value), retain(w.Value)} }
	return t.record("conv2d", []*Var{x, w, bias}, []*tensor.Tensor{y}, save, func(c *Context, dys []*tensor.Tensor) []*tensor.Tensor {
		xv, wv, dy := c.Saved(0), c.Saved(1), dys[0]
		out := make([]*tensor.Tensor, 3)
		if c.NeedsGrad(0) {
			out[0] = like(xv)
			tensor.Conv2DBackwardData(p, out[0], dy, wv)
		}
		if c.NeedsGrad(1) {
			out[1] = like(wv)
			tensor.Conv2DBackwardWeights(p, out[1], xv, dy)
		}
		if c.NeedsGrad(2) {
			out[2] = newShape(dy, tensor.Shape{cout})
			tensor.Conv2DBackwardBias(out[2], dy)
		}
		return out
	})[0]
}
