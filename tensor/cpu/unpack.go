package cpu

import (
	"unsafe"

	"dlf/tensor"
)

// UnpackBytes sets dst[i] = (byte i of src's storage) >> shift.
func (b *Backend) UnpackBytes(dst, src *tensor.Tensor, shift int) {
	if b.dead() {
		return
	}
	words := data[float32](src)
	bytes := unsafe.Slice((*byte)(unsafe.Pointer(unsafe.SliceData(words))), 4*len(words))
	if is32(dst) {
		unpack(b, data[float32](dst), bytes, shift)
	} else {
		unpack(b, data[float64](dst), bytes, shift)
	}
}

func unpack[T float](b *Backend, d []T, bytes []byte, shift int) {
	b.parallel(len(d), 1, func(lo, hi int) {
		for i := lo; i < hi; i++ {
			d[i] = T(bytes[i] >> shift)
		}
	})
}
