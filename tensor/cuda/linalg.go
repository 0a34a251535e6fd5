package cuda

import (
	"dlf/tensor"
	"dlf/tensor/cuda/cu"
)

// InvLogDet computes W⁻ᵀ and scale·log|det W| of every matrix of w on the device (inv_logdet_f32:
// one block per matrix, float64 Gauss-Jordan in a scratch block), queued on the stream like any op:
// no synchronisation, so the invertible 1×1 convolution costs the host nothing but a launch.
func (b *Backend) InvLogDet(inv, logdet, w *tensor.Tensor, scale float64) {
	sh := w.Shape()
	c := sh[len(sh)-1]
	if c == 0 {
		return
	}
	batch := w.Numel() / (c * c)
	b.run("InvLogDet", func() error {
		work, err := b.scratch(8 * int64(batch) * (2*int64(c)*int64(c) + int64(c)))
		if err != nil {
			return err
		}
		defer b.alloc.put(work)
		return b.k.InvLogdetF32(b.stream, cu.Dim3{X: uint32(batch), Y: 1, Z: 1}, block1D, 0,
			dptr(inv), dptr(logdet), dptr(w), work.ptr, i32(c), scale)
	})
}
