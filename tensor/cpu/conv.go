package cpu

import (
	"dlf/tensor"
	"dlf/tensor/cpu/conv"
)

// convParams maps a stride-1 "same" convolution of x [N,H,W,Cin] to Cout channels onto package conv's
// description of it.
func (b *Backend) convParams(p tensor.ConvParams, x, w *tensor.Tensor) conv.Params {
	n, h, wd, cin := x.Shape().NHWC()
	return conv.Params{N: n, H: h, W: wd, Cin: cin, Cout: w.Dim(-1), K: p.K, EdgeBias: p.EdgeBias, Threads: b.threads}
}

// Conv2D computes y = conv(x, w) + bias (bias may be nil) with package conv's im2col + GEMM lowering.
// At p.Precision TF32 the float32 path reads TF32-rounded copies of x and w (tf32Operands), as the
// CUDA kernels round them on their way into shared memory; so do the two backward ops with their
// operands. The edge-bias indicator channel (0 or 1) is exact either way.
func (b *Backend) Conv2D(p tensor.ConvParams, y, x, w, bias *tensor.Tensor) {
	if b.dead() {
		return
	}
	cp := b.convParams(p, x, w)
	if cp.Rows() == 0 || cp.Cout == 0 {
		return // nothing to write
	}
	if is32(y) {
		ops, done := b.tf32Operands(p.Precision, data[float32](x), data[float32](w))
		defer done()
		conv.Forward(cp, ops[0], ops[1], data[float32](bias), data[float32](y))
	} else {
		conv.Forward(cp, data[float64](x), data[float64](w), data[float64](bias), data[float64](y))
	}
}

// Conv2DBackwardData computes dx of Conv2D from dy and w (overwriting dx).
func (b *Backend) Conv2DBackwardData(p tensor.ConvParams, dx, dy, w *tensor.Tensor) {
	if b.dead() {
		return
	}
	cp := b.convParams(p, dx, w)
	if cp.Rows() == 0 || cp.Cin == 0 {
		return // nothing to write
	}
	if cp.Cout == 0 {
		b.Fill(dx, 0)
		return
	}
	if is32(dx) {
		ops, done := b.tf32Operands(p.Precision, data[float32](dy), data[float32](w))
		defer done()
		conv.BackwardData(cp, ops[0], ops[1], data[float32](dx), false)
	} else {
		conv.BackwardData(cp, data[float64](dy), data[float64](w), data[float64](dx), false)
	}
}

// Conv2DBackwardWeights computes dw of Conv2D from x and dy (overwriting dw).
func (b *Backend) Conv2DBackwardWeights(p tensor.ConvParams, dw, x, dy *tensor.Tensor) {
	if b.dead() {
		return
	}
	cp := b.convParams(p, x, dw)
	if cp.Rows() == 0 || cp.Cout == 0 {
		b.Fill(dw, 0) // a sum over no pixels
		return
	}
	if is32(dw) {
		ops, done := b.tf32Operands(p.Precision, data[float32](x), data[float32](dy))
		defer done()
		conv.BackwardWeights(cp, ops[0], ops[1], data[float32](dw), false)
	} else {
		conv.BackwardWeights(cp, data[float64](x), data[float64](dy), data[float64](dw), false)
	}
}
