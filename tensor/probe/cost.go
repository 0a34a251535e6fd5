package probe

import "dlf/tensor"

// The records of the backend ops: what each reads and writes and its analytic FLOP count (and its
// byte count where reading every operand once is not the floor). probe_gen.go calls cost<Op> for
// every op of tensor.Backend, so a new op does not compile until it has one here.

// costUpload describes Upload.
func costUpload(dst *tensor.Tensor, src any) *Record {
	return &Record{Op: "upload", Outputs: ins(dst)}
}

// costDownload describes Download.
func costDownload(dst any, src *tensor.Tensor) *Record {
	return &Record{Op: "download", Inputs: ins(src)}
}

// costFill describes Fill.
func costFill(dst *tensor.Tensor, v float64) *Record {
	return &Record{Op: "fill", Outputs: ins(dst)}
}

// costCopy describes Copy.
func costCopy(dst, src *tensor.Tensor) *Record {
	return &Record{Op: "copy", Inputs: ins(src), Outputs: ins(dst)}
}

// costCopyChannels describes CopyChannels.
func costCopyChannels(dst *tensor.Tensor, dstOff int, src *tensor.Tensor, srcOff, c int) *Record {
	rows, _ := src.Shape().Rows()
	b := float64(2 * rows * c * src.DType().Size())
	return &Record{Op: "copy_channels", Inputs: ins(src), Outputs: ins(dst), Bytes: b}
}

// costSqueeze2 describes Squeeze2.
func costSqueeze2(dst, src *tensor.Tensor) *Record {
	return &Record{Op: "squeeze", Inputs: ins(src), Outputs: ins(dst)}
}

// costUnsqueeze2 describes Unsqueeze2.
func costUnsqueeze2(dst, src *tensor.Tensor) *Record {
	return &Record{Op: "unsqueeze", Inputs: ins(src), Outputs: ins(dst)}
}

// costBinary describes Binary.
func costBinary(op tensor.BinaryOp, dst, a, b *tensor.Tensor, bc tensor.Broadcast) *Record {
	return &Record{Op: "binary " + op.String(), Inputs: ins(a, b), Outputs: ins(dst), Flops: numel(dst)}
}

// costUnary describes Unary.
func costUnary(op tensor.UnaryOp, dst, x *tensor.Tensor, p1, p2 float64) *Record {
	return &Record{Op: "unary " + op.String(), Inputs: ins(x), Outputs: ins(dst), Flops: numel(dst)}
}

// costUnaryGrad describes UnaryGrad.
func costUnaryGrad(op tensor.UnaryGradOp, dx, saved, dy *tensor.Tensor, p1, p2 float64) *Record {
	return &Record{Op: "unary_grad", Inputs: ins(saved, dy), Outputs: ins(dx), Flops: 2 * numel(dx)}
}

// costAxpy describes Axpy.
func costAxpy(alpha float64, x, y *tensor.Tensor) *Record {
	return &Record{Op: "axpy", Inputs: ins(x, y), Outputs: ins(y), Flops: 2 * numel(y)}
}

// costReduce describes Reduce.
func costReduce(op tensor.ReduceOp, axes tensor.ReduceAxes, dst, src *tensor.Tensor) *Record {
	f := numel(src)
	if op == tensor.SumSq {
		f *= 2
	}
	return &Record{Op: "reduce", Inputs: ins(src), Outputs: ins(dst), Flops: f}
}

// costGemm describes Gemm.
func costGemm(prec tensor.Precision, transA, transB bool, alpha float64, a, b *tensor.Tensor, beta float64, c *tensor.Tensor) *Record {
	bt, m, n, k := gemmDims(transA, transB, a, b)
	op := "gemm"
	if prec == tensor.TF32 {
		op = "gemm tf32"
	}
	r := &Record{Op: op, Inputs: ins(a, b), Outputs: ins(c), Flops: 2 * float64(bt) * float64(m) * float64(n) * float64(k)}
	if beta != 0 {
		r.Inputs = append(r.Inputs, c)
	}
	return r
}

// costUnpackBytes describes UnpackBytes: one byte read and one element written per output.
func costUnpackBytes(dst, src *tensor.Tensor, shift int) *Record {
	return &Record{Op: "unpack_bytes", Inputs: ins(src), Outputs: ins(dst)}
}

// costInvLogDet describes InvLogDet: Gauss-Jordan on [W | I] is C steps of a C×2C rank-one update,
// 2·C·(C·2C) = 4C³ float64 flops per matrix.
func costInvLogDet(inv, logdet, w *tensor.Tensor, scale float64) *Record {
	sh := w.Shape()
	c := float64(sh[len(sh)-1])
	batch := float64(w.Numel()) / (c * c)
	return &Record{Op: "inv_logdet", Inputs: ins(w), Outputs: ins(inv, logdet), Flops: 4 * batch * c * c * c}
}

// costConv2D describes Conv2D.
func costConv2D(cp tensor.ConvParams, y, x, w, bias *tensor.Tensor) *Record {
	return &Record{Op: convName("conv2d", cp), Inputs: ins(x, w, bias), Outputs: ins(y), Flops: convFlops(w, y)}
}

// costConv2DBackwardData describes Conv2DBackwardData.
func costConv2DBackwardData(cp tensor.ConvParams, dx, dy, w *tensor.Tensor) *Record {
	return &Record{Op: convName("conv2d_bwd_data", cp), Inputs: ins(dy, w), Outputs: ins(dx), Flops: convFlops(w, dy)}
}

// costConv2DBackwardWeights describes Conv2DBackwardWeights.
func costConv2DBackwardWeights(cp tensor.ConvParams, dw, x, dy *tensor.Tensor) *Record {
	return &Record{Op: convName("conv2d_bwd_weights", cp), Inputs: ins(x, dy), Outputs: ins(dw), Flops: convFlops(dw, dy)}
}

// costRandUniform describes RandUniform.
func costRandUniform(dst *tensor.Tensor, seed, offset uint64) *Record {
	return &Record{Op: "rand_uniform", Outputs: ins(dst)}
}

// costRandNormal describes RandNormal.
func costRandNormal(dst *tensor.Tensor, seed, offset uint64) *Record {
	return &Record{Op: "rand_normal", Outputs: ins(dst)}
}

// costActNormForward describes ActNormForward.
func costActNormForward(y, ld, x, bias, logs *tensor.Tensor, scale float64) *Record {
	return &Record{Op: "actnorm", Inputs: ins(x, bias, logs), Outputs: ins(y, ld), Flops: 2 * numel(x)}
}

// costActNormInverse describes ActNormInverse.
func costActNormInverse(x, ld, y, bias, logs *tensor.Tensor, scale float64) *Record {
	return &Record{Op: "actnorm_inverse", Inputs: ins(y, bias, logs), Outputs: ins(x, ld), Flops: 2 * numel(x)}
}

// costActNormBackward describes ActNormBackward.
func costActNormBackward(dx, dbias, dlogs, dy, y, logs, dld *tensor.Tensor, scale float64) *Record {
	return &Record{Op: "actnorm_bwd", Inputs: ins(dy, y, logs, dld), Outputs: ins(dx, dbias, dlogs), Flops: 5 * numel(dy)}
}

// costAffineForward describes AffineForward.
func costAffineForward(ap tensor.AffineParams, y, ld, x, h, alpha, beta *tensor.Tensor) *Record {
	return &Record{Op: "affine", Inputs: ins(x, h, alpha, beta), Outputs: ins(y, ld), Flops: 6 * numel(x)}
}

// costAffineInverse describes AffineInverse.
func costAffineInverse(ap tensor.AffineParams, x, ld, y, h, alpha, beta *tensor.Tensor) *Record {
	return &Record{Op: "affine_inverse", Inputs: ins(y, h, alpha, beta), Outputs: ins(x, ld), Flops: 6 * numel(x)}
}

// costAffineBackward describes AffineBackward.
func costAffineBackward(ap tensor.AffineParams, dx, dh, dalpha, dbeta, dy, y, h, alpha, beta, dld *tensor.Tensor) *Record {
	return &Record{Op: "affine_bwd", Inputs: ins(dy, y, h, alpha, beta, dld), Outputs: ins(dx, dh, dalpha, dbeta), Flops: 12 * numel(dy)}
}

// costGaussianLogProb describes GaussianLogProb.
func costGaussianLogProb(g tensor.GaussianParams, lp, eps, z, pr, alpha, beta *tensor.Tensor) *Record {
	return &Record{Op: "gaussian", Inputs: ins(z, pr, alpha, beta), Outputs: ins(lp, eps), Flops: 8 * numel(z)}
}

// costGaussianLogProbBackward describes GaussianLogProbBackward.
func costGaussianLogProbBackward(g tensor.GaussianParams, dz, dp, dalpha, dbeta, z, pr, alpha, beta, dlp *tensor.Tensor) *Record {
	return &Record{Op: "gaussian_bwd", Inputs: ins(z, pr, alpha, beta, dlp), Outputs: ins(dz, dp, dalpha, dbeta), Flops: 12 * numel(z)}
}

// costGaussianSample describes GaussianSample.
func costGaussianSample(g tensor.GaussianParams, z, eps, pr, alpha, beta *tensor.Tensor) *Record {
	return &Record{Op: "gaussian_sample", Inputs: ins(eps, pr, alpha, beta), Outputs: ins(z), Flops: 4 * numel(z)}
}

// costAdamStep describes AdamStep.
func costAdamStep(o tensor.OptimParams, w, m, v, g *tensor.Tensor) *Record {
	return &Record{Op: "adam", Inputs: ins(w, m, v, g), Outputs: ins(w, m, v), Flops: 10 * numel(w)}
}
