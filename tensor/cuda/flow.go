package cuda

import (
	"fmt"

	"dlf/tensor"
	"dlf/tensor/cuda/cu"
)

// The fused flow ops (kernels/flow.cu). Each launches one data pass that reads every input once and
// writes every output once, plus small finishing kernels for its deterministic reductions.

var oneBlock = cu.D1(1)

// ActNormForward computes y = (x + bias)·exp(scale·logs) and adds H·W·Σ scale·logs to ld (may be nil).
func (b *Backend) ActNormForward(y, ld, x, bias, logs *tensor.Tensor, scale float64) {
	b.actNorm("ActNormForward", y, ld, x, bias, logs, scale, false)
}

// ActNormInverse computes x = y·exp(−scale·logs) − bias and subtracts the logdet from ld (may be nil).
func (b *Backend) ActNormInverse(x, ld, y, bias, logs *tensor.Tensor, scale float64) {
	b.actNorm("ActNormInverse", x, ld, y, bias, logs, scale, true)
}

func (b *Backend) actNorm(op string, out, ld, in, bias, logs *tensor.Tensor, scale float64, inverse bool) {
	n, h, w, c := in.Shape().NHWC()
	total := int64(in.Numel())
	sign := float32(1)
	if inverse {
		sign = -1
	}
	b.run(op, func() error {
		if total > 0 {
			if err := b.k.ActnormFwdF32(b.stream, grid1D(total), block1D, 0, dptr(out), dptr(in), dptr(bias), dptr(logs),
				total, i32(c), float32(scale), b32(inverse)); err != nil {
				return err
			}
		}
		if ld == nil || n == 0 {
			return nil
		}
		return b.k.ChanLogdetF32(b.stream, oneBlock, block1D, 0, dptr(ld), dptr(logs), 0, 0, i32(n), i32(c), 0,
			float32(scale), int64(h)*int64(w), sign)
	})
}

// ActNormBackward computes dx = dy·e, dbias = e·Σdy and dlogs = s·Σdy·y + s·H·W·Σdld per channel.
func (b *Backend) ActNormBackward(dx, dbias, dlogs, dy, y, logs, dld *tensor.Tensor, scale float64) {
	n, h, w, c := y.Shape().NHWC()
	if c == 0 {
		return
	}
	R := int64(n) * int64(h) * int64(w)
	b.run("ActNormBackward", func() error {
		tiles, parts, chunk := colParts(R, c)
		part, err := b.scratch(8 * 2 * int64(c) * int64(parts))
		if err != nil {
			return err
		}
		defer b.alloc.put(part)
		if err := b.k.ChanScaleBwdF32(b.stream, cu.Dim3{X: uint32(tiles), Y: uint32(parts), Z: 1}, block1D, 0,
			dptr(dx), part.ptr, dptr(dy), dptr(y), dptr(logs), 0, 0, R, i32(c), chunk, 0, float32(scale)); err != nil {
			return err
		}
		return b.k.ActnormBwdFinishF32(b.stream, grid1D(int64(c)), block1D, 0, dptr(dbias), dptr(dlogs), part.ptr, dptr(logs),
			dptr(dld), i32(n), i32(c), int32(parts), float32(scale), int64(h)*int64(w))
	})
}

// scaleMode checks an affine mode; the kernels use tensor.ScaleMode's values (1 tanh, 2 sigmoid).
func scaleMode(m tensor.ScaleMode) int32 {
	if m != tensor.ScaleTanh && m != tensor.ScaleSigmoid {
		panic(fmt.Sprintf("cuda: bad affine scale mode %d", m))
	}
	return int32(m)
}

// AffineForward computes y = (x + μ)·e^ℓ and adds Σℓ per example to ld (may be nil).
func (b *Backend) AffineForward(p tensor.AffineParams, y, ld, x, h, alpha, beta *tensor.Tensor) {
	b.affine("AffineForward", p, y, ld, x, h, alpha, beta, false)
}

// AffineInverse computes x = y / e^ℓ − μ and subtracts Σℓ per example from ld (may be nil).
func (b *Backend) AffineInverse(p tensor.AffineParams, x, ld, y, h, alpha, beta *tensor.Tensor) {
	b.affine("AffineInverse", p, x, ld, y, h, alpha, beta, true)
}

func (b *Backend) affine(op string, p tensor.AffineParams, out, ld, in, h, alpha, beta *tensor.Tensor, inverse bool) {
	mode := scaleMode(p.Mode)
	n, _, _, c := in.Shape().NHWC()
	L := int64(in.Numel()) / int64(max(n, 1))
	if n == 0 || L == 0 {
		return
	}
	sign := float32(1)
	if inverse {
		sign = -1
	}
	b.run(op, func() error {
		parts, chunk := rowParts(int64(n), L)
		var part *buffer
		partPtr := cu.DevicePtr(0)
		// PerChannel: ℓ depends on the channel only, so the logdet is pos·Σ_c ℓ_c (chan_logdet_f32)
		// and the data pass needs no reduction.
		if ld != nil && !p.PerChannel {
			var err error
			if part, err = b.scratch(8 * int64(n) * int64(parts)); err != nil {
				return err
			}
			defer b.alloc.put(part)
			partPtr = part.ptr
		}
		if err := b.k.AffineFwdF32(b.stream, rowGrid(int64(n), parts), block1D, 0, dptr(out), partPtr, dptr(in), dptr(h),
			dptr(alpha), dptr(beta), L, i32(c), chunk, mode, b32(p.PerChannel), b32(inverse)); err != nil {
			return err
		}
		switch {
		case ld == nil:
			return nil
		case p.PerChannel:
			return b.k.ChanLogdetF32(b.stream, oneBlock, block1D, 0, dptr(ld), dptr(h), dptr(alpha), dptr(beta), i32(n),
				i32(c), mode, 0, L/int64(c), sign)
		}
		return b.finish(dptr(ld), part, int64(n), parts, sign, true)
	})
}

// AffineBackward computes dx, dh and, for ScaleTanh, dalpha and dbeta (tensor/cpu's affine.go has
// the formulas).
func (b *Backend) AffineBackward(p tensor.AffineParams, dx, dh, dalpha, dbeta, dy, y, h, alpha, beta, dld *tensor.Tensor) {
	mode := scaleMode(p.Mode)
	n, hh, w, c := y.Shape().NHWC()
	pos := int64(hh) * int64(w)
	L := pos * int64(c)
	tanh := p.Mode == tensor.ScaleTanh
	b.run("AffineBackward", func() error {
		if p.PerChannel {
			if c == 0 {
				return nil
			}
			R := int64(n) * pos
			tiles, parts, chunk := colParts(R, c)
			part, err := b.scratch(8 * 2 * int64(c) * int64(parts))
			if err != nil {
				return err
			}
			defer b.alloc.put(part)
			if err := b.k.ChanScaleBwdF32(b.stream, cu.Dim3{X: uint32(tiles), Y: uint32(parts), Z: 1}, block1D, 0,
				dptr(dx), part.ptr, dptr(dy), dptr(y), dptr(h), dptr(alpha), dptr(beta), R, i32(c), chunk, mode, 0); err != nil {
				return err
			}
			return b.k.AffineBwdPcFinishF32(b.stream, oneBlock, block1D, 0, dptr(dh), dptr(dalpha), dptr(dbeta), part.ptr,
				dptr(h), dptr(alpha), dptr(beta), dptr(dld), i32(n), i32(c), int32(parts), mode, pos)
		}
		if n == 0 || L == 0 {
			if tanh {
				b.zeroScalars(dalpha, dbeta)
			}
			return nil
		}
		parts, chunk := rowParts(int64(n), L)
		partPtr := cu.DevicePtr(0)
		var part *buffer
		if tanh {
			var err error
			if part, err = b.scratch(8 * 2 * int64(n) * int64(parts)); err != nil {
				return err
			}
			defer b.alloc.put(part)
			partPtr = part.ptr
		}
		if err := b.k.AffineBwdF32(b.stream, rowGrid(int64(n), parts), block1D, 0, dptr(dx), dptr(dh), partPtr, dptr(dy),
			dptr(y), dptr(h), dptr(alpha), dptr(beta), dptr(dld), L, chunk, mode); err != nil {
			return err
		}
		if !tanh {
			return nil
		}
		return b.k.Sum2FinishF32(b.stream, oneBlock, block1D, 0, dptr(dalpha), dptr(dbeta), part.ptr,
			int64(n)*int64(parts))
	})
}

// zeroScalars sets one-element gradients to 0 (empty inputs). Call on the worker.
func (b *Backend) zeroScalars(ts ...*tensor.Tensor) {
	for _, t := range ts {
		if t != nil {
			_ = cu.MemsetD32Async(dptr(t), 0, 1, b.stream)
		}
	}
}

// GaussianLogProb adds Σ log N(z; μ, σ) per example to lp (may be nil) and writes eps (may be nil).
func (b *Backend) GaussianLogProb(g tensor.GaussianParams, lp, eps, z, p, alpha, beta *tensor.Tensor) {
	n, _, _, c := z.Shape().NHWC()
	L := int64(z.Numel()) / int64(max(n, 1))
	if n == 0 || L == 0 || (lp == nil && eps == nil) {
		return
	}
	b.run("GaussianLogProb", func() error {
		parts, chunk := rowParts(int64(n), L)
		partPtr := cu.DevicePtr(0)
		var part *buffer
		if lp != nil {
			var err error
			if part, err = b.scratch(8 * int64(n) * int64(parts)); err != nil {
				return err
			}
			defer b.alloc.put(part)
			partPtr = part.ptr
		}
		if err := b.k.GaussLogpF32(b.stream, rowGrid(int64(n), parts), block1D, 0, dptr(eps), partPtr, dptr(z), dptr(p),
			dptr(alpha), dptr(beta), L, i32(c), chunk, b32(g.Interleaved), b32(g.Bounded), b32(g.BatchBroadcast)); err != nil {
			return err
		}
		if lp == nil {
			return nil
		}
		return b.finish(dptr(lp), part, int64(n), parts, 1, true)
	})
}

// GaussianLogProbBackward computes dz, dp and, when bounded, dalpha and dbeta from dlp (nil: zero).
func (b *Backend) GaussianLogProbBackward(g tensor.GaussianParams, dz, dp, dalpha, dbeta, z, p, alpha, beta, dlp *tensor.Tensor) {
	n, _, _, c := z.Shape().NHWC()
	L := int64(z.Numel()) / int64(max(n, 1))
	inter, bounded := b32(g.Interleaved), b32(g.Bounded)
	b.run("GaussianLogProbBackward", func() error {
		if L == 0 || n == 0 {
			if g.BatchBroadcast && dp.Numel() > 0 {
				if err := cu.MemsetD32Async(dptr(dp), 0, int64(dp.Numel()), b.stream); err != nil {
					return err
				}
			}
			if g.Bounded {
				b.zeroScalars(dalpha, dbeta)
			}
			return nil
		}
		if g.BatchBroadcast {
			if err := checkInt32("GaussianLogProbBackward H·W·C", L); err != nil {
				return err
			}
			tiles, parts, chunk := colParts(int64(n), int(L))
			part, err := b.scratch(8 * 2 * L * int64(parts))
			if err != nil {
				return err
			}
			defer b.alloc.put(part)
			if err := b.k.GaussBwdBcastF32(b.stream, cu.Dim3{X: uint32(tiles), Y: uint32(parts), Z: 1}, block1D, 0,
				dptr(dz), part.ptr, dptr(z), dptr(p), dptr(alpha), dptr(beta), dptr(dlp), i32(n), int32(L), i32(c), chunk,
				inter, bounded); err != nil {
				return err
			}
			fg := grid1D(L)
			part2, err := b.scratch(8 * 2 * int64(fg.X))
			if err != nil {
				return err
			}
			defer b.alloc.put(part2)
			if err := b.k.GaussBwdBcastFinishF32(b.stream, fg, block1D, 0, dptr(dp), part2.ptr, part.ptr, dptr(p),
				dptr(alpha), dptr(beta), int32(L), i32(c), int32(parts), inter, bounded); err != nil {
				return err
			}
			if !g.Bounded {
				return nil
			}
			return b.k.Sum2FinishF32(b.stream, oneBlock, block1D, 0, dptr(dalpha), dptr(dbeta), part2.ptr, int64(fg.X))
		}
		parts, chunk := rowParts(int64(n), L)
		partPtr := cu.DevicePtr(0)
		var part *buffer
		if g.Bounded {
			var err error
			if part, err = b.scratch(8 * 2 * int64(n) * int64(parts)); err != nil {
				return err
			}
			defer b.alloc.put(part)
			partPtr = part.ptr
		}
		if err := b.k.GaussBwdF32(b.stream, rowGrid(int64(n), parts), block1D, 0, dptr(dz), dptr(dp), partPtr, dptr(z),
			dptr(p), dptr(alpha), dptr(beta), dptr(dlp), L, i32(c), chunk, inter, bounded); err != nil {
			return err
		}
		if !g.Bounded {
			return nil
		}
		return b.k.Sum2FinishF32(b.stream, oneBlock, block1D, 0, dptr(dalpha), dptr(dbeta), part.ptr,
			int64(n)*int64(parts))
	})
}

// GaussianSample writes z = μ + e^{log σ}·eps.
func (b *Backend) GaussianSample(g tensor.GaussianParams, z, eps, p, alpha, beta *tensor.Tensor) {
	n, _, _, c := z.Shape().NHWC()
	total := int64(z.Numel())
	if total == 0 {
		return
	}
	L := total / int64(max(n, 1))
	b.run("GaussianSample", func() error {
		return b.k.GaussSampleF32(b.stream, grid1D(total), block1D, 0, dptr(z), dptr(eps), dptr(p), dptr(alpha),
			dptr(beta), total, L, i32(c), b32(g.Interleaved), b32(g.Bounded), b32(g.BatchBroadcast))
	})
}
