package cuda

import "dlf/tensor"

// RandUniform fills dst with Philox-4x32-10 uniforms in [0, 1) for (seed, offset), bit-identical to
// tensor.PhiloxUniform on every backend.
func (b *Backend) RandUniform(dst *tensor.Tensor, seed, offset uint64) {
	n := int64(dst.Numel())
	if n == 0 {
		return
	}
	b.run("RandUniform", func() error {
		return b.k.RandUniformF32(b.stream, grid1D(ceilDiv(n, 4)), block1D, 0, dptr(dst), n, seed, offset)
	})
}

// RandNormal fills dst with Philox standard normals (Box–Muller in double precision, as
// tensor.PhiloxNormal) for (seed, offset).
func (b *Backend) RandNormal(dst *tensor.Tensor, seed, offset uint64) {
	n := int64(dst.Numel())
	if n == 0 {
		return
	}
	b.run("RandNormal", func() error {
		return b.k.RandNormalF32(b.stream, grid1D(ceilDiv(n, 4)), block1D, 0, dptr(dst), n, seed, offset)
	})
}
