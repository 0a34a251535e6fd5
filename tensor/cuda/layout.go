package cuda

import (
	"dlf/tensor"
)

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
