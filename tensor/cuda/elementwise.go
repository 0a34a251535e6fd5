package cuda

import (
	"fmt"

	"dlf/tensor"
	"dlf/tensor/cuda/cu"
)

// vecGrid is the grid of the float4 elementwise kernels: one work item per four elements.
func vecGrid(n int64) cu.Dim3 { return grid1D(ceilDiv(n, 4)) }

// Binary computes dst[i] = a[i] op b[(i/Div) % Mod].
func (b *Backend) Binary(op tensor.BinaryOp, dst, a, bt *tensor.Tensor, bc tensor.Broadcast) {
	if op < tensor.Add || op > tensor.Div {
		panic(fmt.Sprintf("cuda: unknown binary op %d", op))
	}
	n := int64(dst.Numel())
	if n == 0 {
		return
	}
	div, mod := int64(max(bc.Div, 1)), int64(max(bc.Mod, 1))
	b.run("Binary "+op.String(), func() error {
		return b.k.BinaryF32(b.stream, vecGrid(n), block1D, 0, dptr(dst), dptr(a), dptr(bt), n, div, mod, int32(op))
	})
}

// Unary computes dst = op(x; p1, p2).
func (b *Backend) Unary(op tensor.UnaryOp, dst, x *tensor.Tensor, p1, p2 float64) {
	if op < tensor.Exp || op > tensor.Clamp {
		panic(fmt.Sprintf("cuda: unknown unary op %d", op))
	}
	n := int64(dst.Numel())
	if n == 0 {
		return
	}
	b.run("Unary "+op.String(), func() error {
		return b.k.UnaryF32(b.stream, vecGrid(n), block1D, 0, dptr(dst), dptr(x), n, int32(op), float32(p1), float32(p2))
	})
}

// UnaryGrad computes dx from dy and the op's saved input or output.
func (b *Backend) UnaryGrad(op tensor.UnaryGradOp, dx, saved, dy *tensor.Tensor, p1, p2 float64) {
	if op < tensor.ReluGrad || op > tensor.AbsGrad {
		panic(fmt.Sprintf("cuda: unknown unary gradient op %d", op))
	}
	n := int64(dx.Numel())
	if n == 0 {
		return
	}
	b.run("UnaryGrad", func() error {
		return b.k.UnaryGradF32(b.stream, vecGrid(n), block1D, 0, dptr(dx), dptr(saved), dptr(dy), n, int32(op),
			float32(p1), float32(p2))
	})
}

// Axpy computes y += alpha·x.
func (b *Backend) Axpy(alpha float64, x, y *tensor.Tensor) {
	n := int64(y.Numel())
	if n == 0 {
		return
	}
	b.run("Axpy", func() error {
		return b.k.AxpyF32(b.stream, vecGrid(n), block1D, 0, dptr(y), dptr(x), n, float32(alpha))
	})
}
