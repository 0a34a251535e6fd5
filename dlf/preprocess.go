package dlf

import (
	"fmt"
	"math"
	"slices"

	"dlf/tensor"
)

// Preprocess turns an NHWC uint8 batch of n images into the flow's input (dlf-spec §2.1): pixels
// reduced to n_bits as floor(x / 2^(8−n_bits)) (skipped when reduced says the loader already did it),
// scaled to x/n_bins − 0.5, plus uniform dequantisation noise in [0, 1/n_bins) from Philox (seed,
// offset), so the same seed gives the same batch on every backend. It returns the batch and the next
// unused Philox offset.
func (m *Model) Preprocess(images []uint8, n int, reduced bool, seed, offset uint64) (*tensor.Tensor, uint64, error) {
	c := m.cfg
	if n < 1 || len(images) != n*c.Dims() {
		return nil, offset, fmt.Errorf("dlf: preprocess: %d bytes for %d images of %d×%d×%d", len(images), n, c.ImageH, c.ImageW, c.ImageC)
	}
	x := tensor.New(m.be, m.dt, n, c.ImageH, c.ImageW, c.ImageC)
	next, err := m.PreprocessInto(x, images, n, reduced, seed, offset)
	if err != nil {
		x.Release()
		return nil, offset, err
	}
	return x, next, nil
}

// PreprocessInto is Preprocess writing the batch into x, a [n, H, W, C] tensor of the model's
// backend and type (a CUDA graph's static input, so a replayed step needs no copy of its batch).
func (m *Model) PreprocessInto(x *tensor.Tensor, images []uint8, n int, reduced bool, seed, offset uint64) (uint64, error) {
	c := m.cfg
	d := c.Dims()
	if n < 1 || len(images) != n*d {
		return offset, fmt.Errorf("dlf: preprocess: %d bytes for %d images of %d×%d×%d", len(images), n, c.ImageH, c.ImageW, c.ImageC)
	}
	if !slices.Equal(x.Shape(), []int{n, c.ImageH, c.ImageW, c.ImageC}) || x.DType() != m.dt {
		return offset, fmt.Errorf("dlf: preprocess: the destination is %v %v, want %d images of %d×%d×%d in %v", x.DType(), x.Shape(), n, c.ImageH, c.ImageW, c.ImageC, m.dt)
	}
	shift := 8 - c.NumBits
	bins := float64(int(1) << c.NumBits)
	if reduced {
		shift = 0
		for i, p := range images {
			if int(p) >= int(bins) {
				return offset, fmt.Errorf("dlf: preprocess: byte %d of the batch is %d, not a %d-bit value", i, p, c.NumBits)
			}
		}
	}
	// The bytes go up as they are, a quarter of the float32 traffic, and become values on the
	// device (exactly: p >> shift is an integer below 256).
	m.pack = tensor.PackBytes(m.pack, images)
	if m.packed == nil || m.packed.Numel() != len(m.pack) {
		m.packed.Release()
		m.packed = tensor.New(m.be, tensor.Float32, len(m.pack))
	}
	m.packed.Upload(m.pack)
	tensor.UnpackBytes(x, m.packed, shift)
	// The noise buffer is kept between batches of one size, as the packed bytes are.
	if m.noise == nil || m.noise.Numel() != n*d || m.noise.DType() != m.dt {
		m.noise.Release()
		m.noise = tensor.New(m.be, m.dt, n, c.ImageH, c.ImageW, c.ImageC)
	}
	offset = tensor.RandUniform(m.noise, seed, offset)
	tensor.AddT(x, x, m.noise)
	// (p + u)/n_bins − 0.5 with u ~ U[0, 1).
	tensor.UnaryT(tensor.Scale, x, x, 1/bins, 0)
	tensor.UnaryT(tensor.AddConst, x, x, -0.5, 0)
	return offset, m.be.Err()
}

// Postprocess maps continuous images x (model space, [−0.5, 0.5)) to NHWC uint8 pixels:
// clip(floor((x + 0.5)·n_bins)·(256/n_bins), 0, 255) (dlf-spec §2.9).
func (m *Model) Postprocess(x *tensor.Tensor) []uint8 {
	bins := float64(int(1) << m.cfg.NumBits)
	v := x.Float64s()
	out := make([]uint8, len(v))
	for i, f := range v {
		q := math.Floor((f+0.5)*bins) * (256 / bins)
		if math.IsNaN(q) {
			q = 0
		}
		out[i] = uint8(min(max(q, 0), 255))
	}
	return out
}
