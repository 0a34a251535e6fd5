package cuda

import "dlf/tensor"

// UnpackBytes sets dst[i] = (byte i of src's storage) >> shift (unpack_u8_f32).
func (b *Backend) UnpackBytes(dst, src *tensor.Tensor, shift int) {
	n := int64(dst.Numel())
	if n == 0 {
		return
	}
	b.run("UnpackBytes", func() error {
		return b.k.UnpackU8F32(b.stream, grid1D(n), block1D, 0, dptr(dst), dptr(src), n, int32(shift))
	})
}
