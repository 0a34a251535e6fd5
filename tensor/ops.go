package tensor

import (
	"fmt"
	"unsafe"
)

// mustSame panics unless every tensor lives on the same backend with the same dtype.
func mustSame(op string, ts ...*Tensor) Backend {
	var be Backend
	var dt DType
	for _, t := range ts {
		if t == nil {
			continue
		}
		if be == nil {
			be, dt = t.st.be, t.dtype
			continue
		}
		if t.st.be != be {
			panic(fmt.Sprintf("tensor: %s mixes backends %s and %s", op, be.Name(), t.st.be.Name()))
		}
		if t.dtype != dt {
			panic(fmt.Sprintf("tensor: %s mixes dtypes %v and %v", op, dt, t.dtype))
		}
	}
	return be
}

// mustShape and mustNumel format only on failure, through functions that take strings, so that the
// Shape literals callers pass do not escape to the heap: these checks run on every op of the
// training step and must not allocate.
func mustShape(op, name string, t *Tensor, want Shape) {
	if !t.shape.Equal(want) {
		shapePanic(op, name, t.shape.String(), want.String())
	}
}

func shapePanic(op, name, got, want string) {
	panic(fmt.Sprintf("tensor: %s: %s has shape %s, want %s", op, name, got, want))
}

func mustNumel(op, name string, t *Tensor, want int) {
	if t.st.n != want {
		numelPanic(op, name, t.shape.String(), t.st.n, want)
	}
}

func numelPanic(op, name, shape string, n, want int) {
	panic(fmt.Sprintf("tensor: %s: %s has shape %s (%d elements), want %d elements", op, name, shape, n, want))
}

// Fill sets every element of dst to v.
func Fill(dst *Tensor, v float64) { dst.st.be.Fill(dst, v) }

// Copy copies src into dst; they must have the same element count and dtype.
func Copy(dst, src *Tensor) {
	be := mustSame("Copy", dst, src)
	mustNumel("Copy", "dst", dst, src.st.n)
	be.Copy(dst, src)
}

// Clone returns a new tensor with the same shape and contents.
func Clone(src *Tensor) *Tensor {
	dst := New(src.st.be, src.dtype, src.shape...)
	src.st.be.Copy(dst, src)
	return dst
}

// CopyChannels copies channels [srcOff, srcOff+c) of src into [dstOff, dstOff+c) of dst, row by row
// (a row is everything but the last dimension; both must have the same rows).
func CopyChannels(dst *Tensor, dstOff int, src *Tensor, srcOff, c int) {
	be := mustSame("CopyChannels", dst, src)
	dr, dc := dst.shape.Rows()
	sr, sc := src.shape.Rows()
	if dr != sr || dstOff < 0 || srcOff < 0 || c < 0 || dstOff+c > dc || srcOff+c > sc {
		panic(fmt.Sprintf("tensor: CopyChannels dst %v [%d:%d] from src %v [%d:%d]", dst.shape, dstOff, dstOff+c, src.shape, srcOff, srcOff+c))
	}
	be.CopyChannels(dst, dstOff, src, srcOff, c)
}

// SliceChannels returns a new tensor holding channels [lo, hi) of x.
func SliceChannels(x *Tensor, lo, hi int) *Tensor {
	s := x.shape.Clone()
	s[len(s)-1] = hi - lo
	dst := New(x.st.be, x.dtype, s...)
	CopyChannels(dst, 0, x, lo, hi-lo)
	return dst
}

// ConcatChannels writes the parts side by side along the last dimension into dst.
func ConcatChannels(dst *Tensor, parts ...*Tensor) {
	off := 0
	for _, p := range parts {
		c := p.shape[len(p.shape)-1]
		CopyChannels(dst, off, p, 0, c)
		off += c
	}
	if off != dst.shape[len(dst.shape)-1] {
		panic(fmt.Sprintf("tensor: ConcatChannels parts total %d channels, dst %v", off, dst.shape))
	}
}

// Squeeze2 rearranges src [N,H,W,C] into dst [N,H/2,W/2,4C] (Glow's order, dlf-spec §2.2).
func Squeeze2(dst, src *Tensor) {
	be := mustSame("Squeeze2", dst, src)
	n, h, w, c := src.shape.NHWC()
	if h%2 != 0 || w%2 != 0 {
		panic(fmt.Sprintf("tensor: Squeeze2 of %v needs even H and W", src.shape))
	}
	mustShape("Squeeze2", "dst", dst, Shape{n, h / 2, w / 2, 4 * c})
	be.Squeeze2(dst, src)
}

// Unsqueeze2 inverts Squeeze2: src [N,H,W,4C] into dst [N,2H,2W,C].
func Unsqueeze2(dst, src *Tensor) {
	be := mustSame("Unsqueeze2", dst, src)
	n, h, w, c := src.shape.NHWC()
	if c%4 != 0 {
		panic(fmt.Sprintf("tensor: Unsqueeze2 of %v needs C divisible by 4", src.shape))
	}
	mustShape("Unsqueeze2", "dst", dst, Shape{n, 2 * h, 2 * w, c / 4})
	be.Unsqueeze2(dst, src)
}

// BroadcastOf derives how b broadcasts against a: same element count (full), [C] or [1,…,1,C]
// (per-channel: C is a's last dimension), [N] or [N,1,…,1] (per-example: N is a's first), or one
// element (scalar). Anything else panics with both shapes. When b could be read two ways (e.g. N = C
// with a 1-D b), the 1-D form means per-channel; use [N,1,1,1] for per-example.
func BroadcastOf(a, b *Tensor) Broadcast {
	na, nb := a.st.n, b.st.n
	switch {
	case nb == na:
		return Broadcast{Div: 1, Mod: max(na, 1)}
	case nb == 1:
		return Broadcast{Div: 1, Mod: 1}
	}
	ones := func(s Shape) bool {
		for _, d := range s {
			if d != 1 {
				return false
			}
		}
		return true
	}
	bs := b.shape
	if len(a.shape) > 0 {
		c := a.shape[len(a.shape)-1]
		if len(bs) > 0 && bs[len(bs)-1] == c && ones(bs[:len(bs)-1]) {
			return Broadcast{Div: 1, Mod: c}
		}
		n := a.shape[0]
		if len(bs) > 0 && bs[0] == n && ones(bs[1:]) && n > 0 {
			return Broadcast{Div: na / n, Mod: n}
		}
	}
	panic(fmt.Sprintf("tensor: cannot broadcast %v against %v", b.shape, a.shape))
}

func binary(op BinaryOp, dst, a, b *Tensor) {
	be := mustSame(op.String(), dst, a, b)
	mustShape(op.String(), "dst", dst, a.shape)
	be.Binary(op, dst, a, b, BroadcastOf(a, b))
}

// AddT computes dst = a + b with b broadcast (see BroadcastOf). dst may alias a or b.
func AddT(dst, a, b *Tensor) { binary(Add, dst, a, b) }

// SubT computes dst = a − b with b broadcast.
func SubT(dst, a, b *Tensor) { binary(Sub, dst, a, b) }

// MulT computes dst = a · b with b broadcast.
func MulT(dst, a, b *Tensor) { binary(Mul, dst, a, b) }

// DivT computes dst = a / b with b broadcast.
func DivT(dst, a, b *Tensor) { binary(Div, dst, a, b) }

// UnaryT computes dst = op(x; p1, p2). dst may alias x.
func UnaryT(op UnaryOp, dst, x *Tensor, p1, p2 float64) {
	be := mustSame(op.String(), dst, x)
	mustShape(op.String(), "dst", dst, x.shape)
	be.Unary(op, dst, x, p1, p2)
}

// UnaryGradT computes the input gradient of a unary op (see UnaryGradOp). dx may alias dy.
func UnaryGradT(op UnaryGradOp, dx, saved, dy *Tensor, p1, p2 float64) {
	be := mustSame("UnaryGrad", dx, saved, dy)
	mustShape("UnaryGrad", "saved", saved, dy.shape)
	mustShape("UnaryGrad", "dx", dx, dy.shape)
	be.UnaryGrad(op, dx, saved, dy, p1, p2)
}

// Axpy computes y += alpha·x (same element count).
func Axpy(alpha float64, x, y *Tensor) {
	be := mustSame("Axpy", x, y)
	mustNumel("Axpy", "x", x, y.st.n)
	be.Axpy(alpha, x, y)
}

// ReduceShape returns the shape Reduce writes for src and axes.
func ReduceShape(axes ReduceAxes, src Shape) Shape {
	switch axes {
	case AxisAll:
		return Shape{1}
	case AxisExample:
		return Shape{src[0]}
	case AxisChannel:
		return Shape{src[len(src)-1]}
	}
	panic(fmt.Sprintf("tensor: bad reduce axes %d", axes))
}

// Reduce writes the reduction of src over axes into dst (shape ReduceShape(axes, src.Shape())).
func Reduce(op ReduceOp, axes ReduceAxes, dst, src *Tensor) {
	be := mustSame("Reduce", dst, src)
	if len(src.shape) == 0 {
		panic("tensor: Reduce of a rank-0 tensor")
	}
	mustShape("Reduce", "dst", dst, ReduceShape(axes, src.shape))
	be.Reduce(op, axes, dst, src)
}

// Gemm computes c = alpha·op(a)·op(b) + beta·c for 2-D operands, or per batch for 3-D operands.
func Gemm(transA, transB bool, alpha float64, a, b *Tensor, beta float64, c *Tensor) {
	GemmPrecision(FP32, transA, transB, alpha, a, b, beta, c)
}

// GemmPrecision is Gemm at precision prec (TF32: operands rounded to TF32, float32 sums; Float32
// tensors only, Float64 ignores it). The model keeps its GEMMs — the invertible 1×1 convolution,
// the prior's broadcast, the condition projection — in FP32; this is for callers that want tensor
// cores for a dense layer.
func GemmPrecision(prec Precision, transA, transB bool, alpha float64, a, b *Tensor, beta float64, c *Tensor) {
	if !prec.valid() {
		panic(fmt.Sprintf("tensor: Gemm with unknown precision %v", prec))
	}
	be := mustSame("Gemm", a, b, c)
	r := len(a.shape)
	if (r != 2 && r != 3) || len(b.shape) != r || len(c.shape) != r {
		panic(fmt.Sprintf("tensor: Gemm wants 2-D or 3-D operands, got %v × %v → %v", a.shape, b.shape, c.shape))
	}
	o := r - 2
	m, k := a.shape[o], a.shape[o+1]
	if transA {
		m, k = k, m
	}
	kb, n := b.shape[o], b.shape[o+1]
	if transB {
		kb, n = n, kb
	}
	ok := k == kb && c.shape[o] == m && c.shape[o+1] == n
	if r == 3 {
		ok = ok && a.shape[0] == b.shape[0] && a.shape[0] == c.shape[0]
	}
	if !ok {
		panic(fmt.Sprintf("tensor: Gemm(transA=%v, transB=%v) of %v × %v → %v", transA, transB, a.shape, b.shape, c.shape))
	}
	if SameStorage(a, c) || SameStorage(b, c) {
		panic("tensor: Gemm output aliases an input")
	}
	be.Gemm(prec, transA, transB, alpha, a, b, beta, c)
}

// ConvWeightShape returns the HWIO weight shape of a convolution from cin to cout channels.
func ConvWeightShape(p ConvParams, cin, cout int) Shape {
	if p.EdgeBias {
		cin++
	}
	return Shape{p.K, p.K, cin, cout}
}

func checkConv(op string, p ConvParams, x, w, y, bias *Tensor) {
	if p.K < 1 || p.K%2 == 0 {
		panic(fmt.Sprintf("tensor: %s with even or non-positive kernel size %d", op, p.K))
	}
	if !p.Precision.valid() {
		panic(fmt.Sprintf("tensor: %s with unknown precision %v", op, p.Precision))
	}
	n, h, wd, cin := x.shape.NHWC()
	cout := w.shape[len(w.shape)-1]
	mustShape(op, "w", w, ConvWeightShape(p, cin, cout))
	mustShape(op, "y", y, Shape{n, h, wd, cout})
	if bias != nil {
		mustShape(op, "bias", bias, Shape{cout})
	}
}

// Conv2D computes y = conv(x, w) + bias (bias may be nil); see Backend.Conv2D.
func Conv2D(p ConvParams, y, x, w, bias *Tensor) {
	be := mustSame("Conv2D", y, x, w, bias)
	checkConv("Conv2D", p, x, w, y, bias)
	be.Conv2D(p, y, x, w, bias)
}

// Conv2DBackwardData computes the input gradient dx of Conv2D.
func Conv2DBackwardData(p ConvParams, dx, dy, w *Tensor) {
	be := mustSame("Conv2DBackwardData", dx, dy, w)
	checkConv("Conv2DBackwardData", p, dx, w, dy, nil)
	be.Conv2DBackwardData(p, dx, dy, w)
}

// Conv2DBackwardWeights computes the weight gradient dw of Conv2D.
func Conv2DBackwardWeights(p ConvParams, dw, x, dy *Tensor) {
	be := mustSame("Conv2DBackwardWeights", dw, x, dy)
	checkConv("Conv2DBackwardWeights", p, x, dw, dy, nil)
	be.Conv2DBackwardWeights(p, dw, x, dy)
}

// RandUniform fills dst with Philox uniforms in [0,1) and returns the next unused offset.
func RandUniform(dst *Tensor, seed, offset uint64) uint64 {
	dst.st.be.RandUniform(dst, seed, offset)
	return offset + PhiloxBlocks(dst.st.n)
}

// UnpackBytes sets dst[i] = (byte i of src) >> shift for the first Numel(dst) bytes held by the
// Float32 tensor src (see Backend.UnpackBytes and PackBytes).
func UnpackBytes(dst, src *Tensor, shift int) {
	if dst.st.be != src.st.be {
		panic(fmt.Sprintf("tensor: UnpackBytes mixes backends %s and %s", dst.st.be.Name(), src.st.be.Name()))
	}
	if src.dtype != Float32 {
		panic(fmt.Sprintf("tensor: UnpackBytes: the packed source must be Float32, got %v", src.dtype))
	}
	if 4*src.st.n < dst.st.n {
		panic(fmt.Sprintf("tensor: UnpackBytes: %d packed elements hold %d bytes, %d wanted", src.st.n, 4*src.st.n, dst.st.n))
	}
	if shift < 0 || shift > 7 {
		panic(fmt.Sprintf("tensor: UnpackBytes: shift %d", shift))
	}
	dst.st.be.UnpackBytes(dst, src, shift)
}

// PackBytes returns b's bytes as the float32 words that UnpackBytes reads (the last one padded with
// zeros), reusing buf when it is large enough: upload them into a Float32 tensor of len(words)
// elements.
func PackBytes(buf []float32, b []byte) []float32 {
	n := (len(b) + 3) / 4
	if cap(buf) < n {
		buf = make([]float32, n)
	}
	buf = buf[:n]
	words := unsafe.Slice((*byte)(unsafe.Pointer(unsafe.SliceData(buf))), 4*n)
	copy(words, b)
	clear(words[len(b):])
	return buf
}

// RandNormal fills dst with Philox standard normals and returns the next unused offset.
func RandNormal(dst *Tensor, seed, offset uint64) uint64 {
	dst.st.be.RandNormal(dst, seed, offset)
	return offset + PhiloxBlocks(dst.st.n)
}

func checkLD(op string, ld *Tensor, n int) {
	if ld != nil {
		mustShape(op, "logdet", ld, Shape{n})
	}
}

// ActNormForward computes y = (x + bias)·exp(scale·logs) per channel and adds the logdet to ld (may
// be nil).
func ActNormForward(y, ld, x, bias, logs *Tensor, scale float64) {
	be := mustSame("ActNormForward", y, ld, x, bias, logs)
	n, _, _, c := x.shape.NHWC()
	mustShape("ActNormForward", "y", y, x.shape)
	mustShape("ActNormForward", "bias", bias, Shape{c})
	mustShape("ActNormForward", "logs", logs, Shape{c})
	checkLD("ActNormForward", ld, n)
	be.ActNormForward(y, ld, x, bias, logs, scale)
}

// ActNormInverse inverts ActNormForward and subtracts its logdet from ld (may be nil).
func ActNormInverse(x, ld, y, bias, logs *Tensor, scale float64) {
	be := mustSame("ActNormInverse", x, ld, y, bias, logs)
	n, _, _, c := y.shape.NHWC()
	mustShape("ActNormInverse", "x", x, y.shape)
	mustShape("ActNormInverse", "bias", bias, Shape{c})
	mustShape("ActNormInverse", "logs", logs, Shape{c})
	checkLD("ActNormInverse", ld, n)
	be.ActNormInverse(x, ld, y, bias, logs, scale)
}

// ActNormBackward computes dx, dbias, dlogs of ActNormForward from dy, the output y, logs and the
// logdet gradient dld (may be nil).
func ActNormBackward(dx, dbias, dlogs, dy, y, logs, dld *Tensor, scale float64) {
	be := mustSame("ActNormBackward", dx, dbias, dlogs, dy, y, logs, dld)
	n, _, _, c := y.shape.NHWC()
	mustShape("ActNormBackward", "dy", dy, y.shape)
	mustShape("ActNormBackward", "dx", dx, y.shape)
	mustShape("ActNormBackward", "dbias", dbias, Shape{c})
	mustShape("ActNormBackward", "dlogs", dlogs, Shape{c})
	mustShape("ActNormBackward", "logs", logs, Shape{c})
	checkLD("ActNormBackward", dld, n)
	be.ActNormBackward(dx, dbias, dlogs, dy, y, logs, dld, scale)
}

func checkAffine(op string, p AffineParams, x, y, ld, h, alpha, beta *Tensor) {
	n, hh, w, c := x.shape.NHWC()
	mustShape(op, "y", y, x.shape)
	if p.PerChannel {
		mustNumel(op, "h", h, 2*c)
	} else {
		mustShape(op, "h", h, Shape{n, hh, w, 2 * c})
	}
	checkLD(op, ld, n)
	if p.Mode == ScaleTanh {
		mustNumel(op, "alpha", alpha, 1)
		mustNumel(op, "beta", beta, 1)
	} else if p.Mode != ScaleSigmoid {
		panic(fmt.Sprintf("tensor: %s: bad scale mode %d", op, p.Mode))
	}
}

// AffineForward applies y = (x + μ)·exp(ℓ) with (μ, r) interleaved in h and adds Σℓ to ld (may be
// nil); see AffineParams. alpha and beta are [1] tensors (unused in ScaleSigmoid mode).
func AffineForward(p AffineParams, y, ld, x, h, alpha, beta *Tensor) {
	be := mustSame("AffineForward", y, ld, x, h, alpha, beta)
	checkAffine("AffineForward", p, x, y, ld, h, alpha, beta)
	be.AffineForward(p, y, ld, x, h, alpha, beta)
}

// AffineInverse inverts AffineForward: x = y·exp(−ℓ) − μ, and subtracts Σℓ from ld (may be nil).
func AffineInverse(p AffineParams, x, ld, y, h, alpha, beta *Tensor) {
	be := mustSame("AffineInverse", x, ld, y, h, alpha, beta)
	checkAffine("AffineInverse", p, y, x, ld, h, alpha, beta)
	be.AffineInverse(p, x, ld, y, h, alpha, beta)
}

// AffineBackward computes dx, dh, dalpha, dbeta of AffineForward from dy, the output y and the
// logdet gradient dld (may be nil). With PerChannel, dh is [2C]-sized (summed over positions).
func AffineBackward(p AffineParams, dx, dh, dalpha, dbeta, dy, y, h, alpha, beta, dld *Tensor) {
	be := mustSame("AffineBackward", dx, dh, dalpha, dbeta, dy, y, h, alpha, beta, dld)
	checkAffine("AffineBackward", p, y, dx, dld, h, alpha, beta)
	mustShape("AffineBackward", "dy", dy, y.shape)
	mustShape("AffineBackward", "dh", dh, h.shape)
	if p.Mode == ScaleTanh {
		mustNumel("AffineBackward", "dalpha", dalpha, 1)
		mustNumel("AffineBackward", "dbeta", dbeta, 1)
	}
	be.AffineBackward(p, dx, dh, dalpha, dbeta, dy, y, h, alpha, beta, dld)
}

func checkGaussian(op string, g GaussianParams, z, p, alpha, beta, lp *Tensor) {
	n, h, w, c := z.shape.NHWC()
	pn := n
	if g.BatchBroadcast {
		pn = 1
	}
	mustShape(op, "p", p, Shape{pn, h, w, 2 * c})
	checkLD(op, lp, n)
	if g.Bounded {
		mustNumel(op, "alpha", alpha, 1)
		mustNumel(op, "beta", beta, 1)
	}
}

// GaussianLogProb adds Σ log N(z; μ, σ) per example to lp and writes eps (may be nil).
func GaussianLogProb(g GaussianParams, lp, eps, z, p, alpha, beta *Tensor) {
	be := mustSame("GaussianLogProb", lp, eps, z, p, alpha, beta)
	checkGaussian("GaussianLogProb", g, z, p, alpha, beta, lp)
	if eps != nil {
		mustShape("GaussianLogProb", "eps", eps, z.shape)
	}
	be.GaussianLogProb(g, lp, eps, z, p, alpha, beta)
}

// GaussianLogProbBackward computes dz, dp, dalpha, dbeta from the per-example gradient dlp.
func GaussianLogProbBackward(g GaussianParams, dz, dp, dalpha, dbeta, z, p, alpha, beta, dlp *Tensor) {
	be := mustSame("GaussianLogProbBackward", dz, dp, dalpha, dbeta, z, p, alpha, beta, dlp)
	checkGaussian("GaussianLogProbBackward", g, z, p, alpha, beta, dlp)
	mustShape("GaussianLogProbBackward", "dz", dz, z.shape)
	mustShape("GaussianLogProbBackward", "dp", dp, p.shape)
	if g.Bounded {
		mustNumel("GaussianLogProbBackward", "dalpha", dalpha, 1)
		mustNumel("GaussianLogProbBackward", "dbeta", dbeta, 1)
	}
	be.GaussianLogProbBackward(g, dz, dp, dalpha, dbeta, z, p, alpha, beta, dlp)
}

// GaussianSample writes z = μ + exp(log σ)·eps.
func GaussianSample(g GaussianParams, z, eps, p, alpha, beta *Tensor) {
	be := mustSame("GaussianSample", z, eps, p, alpha, beta)
	checkGaussian("GaussianSample", g, z, p, alpha, beta, nil)
	mustShape("GaussianSample", "eps", eps, z.shape)
	be.GaussianSample(g, z, eps, p, alpha, beta)
}

// AdamStep updates w, m, v in place from g (all the same shape).
func AdamStep(o OptimParams, w, m, v, g *Tensor) {
	be := mustSame("AdamStep", w, m, v, g, o.LRTensor)
	if o.LRTensor != nil {
		mustNumel("AdamStep", "LRTensor", o.LRTensor, 1)
	}
	mustShape("AdamStep", "m", m, w.shape)
	mustShape("AdamStep", "v", v, w.shape)
	mustShape("AdamStep", "g", g, w.shape)
	be.AdamStep(o, w, m, v, g)
}

// Conv2DBackwardBias computes the bias gradient of Conv2D: the per-channel sum of dy.
func Conv2DBackwardBias(db, dy *Tensor) { Reduce(Sum, AxisChannel, db, dy) }
