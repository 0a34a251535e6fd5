package cuda

import (
	"fmt"
	"math"

	"dlf/tensor"
	"dlf/tensor/cuda/cu"
)

// Upload copies src ([]float32, or []float64 converted on the host) into dst in stream order.
func (b *Backend) Upload(dst *tensor.Tensor, src any) {
	b.run("Upload", func() error {
		p := dptr(dst)
		switch s := src.(type) {
		case []float32:
			return cu.MemcpyHtoDAsync(p, s, b.stream)
		case []float64:
			tmp := make([]float32, len(s))
			for i, v := range s {
				tmp[i] = float32(v)
			}
			// From pageable memory the driver stages the data before returning, so tmp may go.
			return cu.MemcpyHtoDAsync(p, tmp, b.stream)
		}
		panic(fmt.Sprintf("cuda: Upload of %T", src))
	})
}

// Download copies src into dst ([]float32, or []float64 converted on the host) after all queued
// work, and synchronises the stream so that kernel faults surface here. After a failure dst is
// filled with NaN, so stale numbers are never mistaken for results.
func (b *Backend) Download(dst any, src *tensor.Tensor) {
	b.run("Download", func() error {
		p := dptr(src)
		switch d := dst.(type) {
		case []float32:
			if err := cu.MemcpyDtoHAsync(d, p, b.stream); err != nil {
				return err
			}
			return cu.StreamSynchronize(b.stream)
		case []float64:
			tmp := make([]float32, len(d))
			if err := cu.MemcpyDtoHAsync(tmp, p, b.stream); err != nil {
				return err
			}
			if err := cu.StreamSynchronize(b.stream); err != nil {
				return err
			}
			for i, v := range tmp {
				d[i] = float64(v)
			}
			return nil
		}
		panic(fmt.Sprintf("cuda: Download into %T", dst))
	})
	if b.failed.Load() {
		switch d := dst.(type) {
		case []float32:
			for i := range d {
				d[i] = float32(math.NaN())
			}
		case []float64:
			for i := range d {
				d[i] = math.NaN()
			}
		}
	}
}

// Fill sets every element of dst to v (rounded to float32).
func (b *Backend) Fill(dst *tensor.Tensor, v float64) {
	n := int64(dst.Numel())
	if n == 0 {
		return
	}
	b.run("Fill", func() error {
		return b.k.FillF32(b.stream, grid1D(n), block1D, 0, dptr(dst), n, float32(v))
	})
}

// Copy copies src into dst (same element count).
func (b *Backend) Copy(dst, src *tensor.Tensor) {
	n := int64(dst.Numel())
	if n == 0 {
		return
	}
	b.run("Copy", func() error {
		d, s := dptr(dst), dptr(src)
		if d == s {
			return nil // a reshape of itself: nothing to move
		}
		return cu.MemcpyDtoDAsync(d, s, 4*n, b.stream)
	})
}

// CopyChannels copies channels [srcOff, srcOff+c) of every row of src into [dstOff, dstOff+c) of dst.
func (b *Backend) CopyChannels(dst *tensor.Tensor, dstOff int, src *tensor.Tensor, srcOff, c int) {
	rows, dc := dst.Shape().Rows()
	_, sc := src.Shape().Rows()
	if rows == 0 || c == 0 {
		return
	}
	b.run("CopyChannels", func() error {
		if err := checkInt32("channels", int64(max(dc, sc))); err != nil {
			return err
		}
		return b.k.CopyChannelsF32(b.stream, grid1D(int64(rows)*int64(c)), block1D, 0, dptr(dst), dptr(src),
			int64(rows), i32(dc), i32(dstOff), i32(sc), i32(srcOff), i32(c))
	})
}

// Squeeze2 rearranges src [N,H,W,C] into dst [N,H/2,W/2,4C] (Glow's order).
func (b *Backend) Squeeze2(dst, src *tensor.Tensor) {
	_, h, w, c := src.Shape().NHWC()
	n := int64(src.Numel())
	if n == 0 {
		return
	}
	b.run("Squeeze2", func() error {
		if err := checkInt32("Squeeze2 H·W·4C", int64(h)*int64(w)*int64(4*c)); err != nil {
			return err
		}
		return b.k.Squeeze2F32(b.stream, grid1D(n), block1D, 0, dptr(dst), dptr(src), n, i32(h), i32(w), i32(c))
	})
}

// Unsqueeze2 inverts Squeeze2: src [N,H,W,4C] into dst [N,2H,2W,C].
func (b *Backend) Unsqueeze2(dst, src *tensor.Tensor) {
	_, h, w, c4 := src.Shape().NHWC()
	n := int64(src.Numel())
	if n == 0 {
		return
	}
	b.run("Unsqueeze2", func() error {
		if err := checkInt32("Unsqueeze2 H·W·4C", int64(h)*int64(w)*int64(c4)); err != nil {
			return err
		}
		return b.k.Unsqueeze2F32(b.stream, grid1D(n), block1D, 0, dptr(dst), dptr(src), n, i32(h), i32(w), i32(c4/4))
	})
}

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
