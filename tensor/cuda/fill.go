package cuda

import (
	"dlf/tensor"
	"dlf/tensor/cuda/cu"
)

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
