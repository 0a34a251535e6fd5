package tensor

// Backend computes every op on one device. Implementations: tensor/cpu (pure Go, Float32 and Float64)
// and tensor/cuda (hand-written kernels, Float32).
//
// Methods are called through the package-level functions of this package, which have already checked
// shapes, dtypes and that every tensor lives on this backend; a backend may therefore trust its
// arguments. Output tensors are fully overwritten unless a method says it accumulates. Destinations are
// written only after all inputs are read, element by element, so elementwise ops may alias dst with an
// input; other ops (including the fused flow ops) must not alias. Gradient outputs (dx, dbias, dlogs,
// dh, dp, dalpha, dbeta, dw) are overwritten, never accumulated; only ld/lp logdet vectors, Axpy's y,
// Gemm with beta ≠ 0 and the optimizer state accumulate.
type Backend interface {
	// Name identifies the backend and device, e.g. "cpu" or "cuda:0".
	Name() string
	// Supports reports whether the backend can hold tensors of dtype dt.
	Supports(dt DType) bool
	// Alloc returns a buffer for n elements, or nil after recording the failure (see Err).
	Alloc(dt DType, n int) Buffer
	// Free gives a buffer back. It may be called from any goroutine, including the GC's cleanup.
	Free(b Buffer)
	// Upload copies src ([]float32 or []float64, converted as needed) into dst.
	Upload(dst *Tensor, src any)
	// Download copies src into dst ([]float32 or []float64, converted as needed).
	Download(dst any, src *Tensor)
	// Sync waits for all queued work and returns Err.
	Sync() error
	// Err returns the first failure recorded by the backend, or nil.
	Err() error

	// Fill sets every element of dst to v.
	Fill(dst *Tensor, v float64)
	// Copy copies src to dst (same number of elements, same dtype; shapes may differ).
	Copy(dst, src *Tensor)
	// CopyChannels copies channels [srcOff, srcOff+c) of every row of src into channels
	// [dstOff, dstOff+c) of the same row of dst, where a row is everything but the last dimension. It
	// implements channel slices and concatenation (the DLT partitions).
	CopyChannels(dst *Tensor, dstOff int, src *Tensor, srcOff, c int)
	// Squeeze2 rearranges src [N,H,W,C] into dst [N,H/2,W/2,4C] with Glow's channel order: output
	// channel c·4 + dy·2 + dx holds src[n, 2i+dy, 2j+dx, c] (dlf-spec §2.2). Unsqueeze2 is its inverse.
	Squeeze2(dst, src *Tensor)
	// Unsqueeze2 inverts Squeeze2: src [N,H,W,4C] into dst [N,2H,2W,C].
	Unsqueeze2(dst, src *Tensor)

	// Binary computes dst[i] = a[i] op b[bi], with b broadcast as described by Broadcast.
	Binary(op BinaryOp, dst, a, b *Tensor, bc Broadcast)
	// Unary computes dst = op(x) with the op's scalar parameters p1, p2 (see UnaryOp).
	Unary(op UnaryOp, dst, x *Tensor, p1, p2 float64)
	// UnaryGrad computes the input gradient dx of a unary op from the upstream gradient dy and the
	// op's saved value (see UnaryGradOp for which value each op wants).
	UnaryGrad(op UnaryGradOp, dx, saved, dy *Tensor, p1, p2 float64)
	// Axpy computes y += alpha·x.
	Axpy(alpha float64, x, y *Tensor)
	// Reduce writes the reduction of src over the given axes into dst: a [1] tensor for AxisAll, [N]
	// for AxisExample (over H,W,C of an [N,...] tensor) and [C] for AxisChannel (over all but the
	// last dimension).
	Reduce(op ReduceOp, axes ReduceAxes, dst, src *Tensor)

	// Gemm computes c = alpha·op(a)·op(b) + beta·c for 2-D operands, or for each batch index of 3-D
	// operands [B, rows, cols]. With beta = 0, c is not read (it may hold NaN). prec TF32 rounds
	// op(a) and op(b) to TF32 first (Float32 only; see Precision).
	Gemm(prec Precision, transA, transB bool, alpha float64, a, b *Tensor, beta float64, c *Tensor)
	// InvLogDet computes, for each C×C matrix W of w ([B,C,C], or one [C,C]), in float64 by
	// Gauss-Jordan elimination with partial pivoting: inv = W⁻ᵀ (the shape of w) and
	// logdet[b] = scale·log|det W| rounded once ([B], or [1]). A zero pivot (a singular W) gives
	// logdet −Inf and an inverse of NaN. It keeps the invertible 1×1 convolution's log-determinant
	// and its gradient W⁻ᵀ on the device: no host round trip in the training step.
	InvLogDet(inv, logdet, w *Tensor, scale float64)

	// Conv2D computes y = conv(x, w) + bias for NHWC x [N,H,W,Cin], HWIO w [K,K,Cin',Cout] and
	// y [N,H,W,Cout], stride 1, zero "same" padding (K-1)/2; with EdgeBias, Cin' = Cin+1 and the extra
	// input channel — the last one, index Cin, as in Glow — is 1 at padded positions and 0 inside
	// (dlf-spec §1.6). With K = 1 nothing is padded, so that channel's weight gradient is exactly 0.
	// bias [Cout] may be nil.
	Conv2D(p ConvParams, y, x, w, bias *Tensor)
	// Conv2DBackwardData computes dx from dy and w.
	Conv2DBackwardData(p ConvParams, dx, dy, w *Tensor)
	// Conv2DBackwardWeights computes dw from x and dy.
	Conv2DBackwardWeights(p ConvParams, dw, x, dy *Tensor)

	// UnpackBytes sets dst[i] = (byte i of src) >> shift, where src is a Float32 tensor whose storage
	// holds raw bytes, four per element in memory order (an image batch uploaded as it is, without a
	// conversion on the host): a quarter of the upload, and exact values.
	UnpackBytes(dst, src *Tensor, shift int)
	// RandUniform fills dst with Philox uniforms in [0, 1) for (seed, offset); see PhiloxUniform.
	RandUniform(dst *Tensor, seed, offset uint64)
	// RandNormal fills dst with Philox standard normals for (seed, offset); see PhiloxNormal.
	RandNormal(dst *Tensor, seed, offset uint64)

	// ActNormForward computes y = (x + bias[c])·exp(scale·logs[c]) and adds H·W·Σ_c scale·logs[c] to
	// every ld[n] (ld may be nil). Inverse does x = y·exp(-scale·logs) − bias and subtracts the same.
	ActNormForward(y, ld, x, bias, logs *Tensor, scale float64)
	// ActNormInverse is the exact inverse of ActNormForward (ld may be nil).
	ActNormInverse(x, ld, y, bias, logs *Tensor, scale float64)
	// ActNormBackward computes dx, dbias and dlogs from dy, the forward output y, logs and the
	// per-example logdet gradient dld [N] (may be nil). It needs y, not x, so a recomputing backward
	// can drop x.
	ActNormBackward(dx, dbias, dlogs, dy, y, logs, dld *Tensor, scale float64)

	// AffineForward is the DLT / coupling affine transform of one channel part, see AffineParams.
	AffineForward(p AffineParams, y, ld, x, h, alpha, beta *Tensor)
	// AffineInverse is the exact inverse of AffineForward; it subtracts the logdet from ld.
	AffineInverse(p AffineParams, x, ld, y, h, alpha, beta *Tensor)
	// AffineBackward computes dx, dh, dalpha, dbeta from dy, the forward output y, h, alpha, beta and
	// the logdet gradient dld [N]. dalpha and dbeta are [1] and are overwritten; in the Sigmoid
	// mode they are ignored (may be nil).
	AffineBackward(p AffineParams, dx, dh, dalpha, dbeta, dy, y, h, alpha, beta, dld *Tensor)

	// GaussianLogProb adds Σ log N(z; μ, σ) per example to lp [N] and, when eps is non-nil, writes
	// eps = (z − μ)·exp(−log σ); see GaussianParams for how (μ, log σ) come from the parameters p.
	// lp and dlp below are required; alpha, beta, dalpha and dbeta are used only when Bounded and are
	// otherwise ignored (they may be nil).
	GaussianLogProb(g GaussianParams, lp, eps, z, p, alpha, beta *Tensor)
	// GaussianLogProbBackward computes dz, dp, dalpha, dbeta from the per-example gradient dlp [N].
	GaussianLogProbBackward(g GaussianParams, dz, dp, dalpha, dbeta, z, p, alpha, beta, dlp *Tensor)
	// GaussianSample writes z = μ + exp(log σ)·eps (the inverse of the eps output above).
	GaussianSample(g GaussianParams, z, eps, p, alpha, beta *Tensor)

	// AdamStep updates w, m and v in place from the gradient g; see OptimParams. The weight update
	// uses the new m and v.
	AdamStep(o OptimParams, w, m, v, g *Tensor)
}

// BinaryOp names an elementwise binary op.
type BinaryOp uint8

// The binary ops.
const (
	Add BinaryOp = iota + 1
	Sub
	Mul
	Div
)

// String returns the op's name.
func (o BinaryOp) String() string {
	return [...]string{"?", "add", "sub", "mul", "div"}[min(int(o), 4)]
}

// Broadcast tells how b is indexed for element i of a and dst: b[(i / Div) % Mod]. Full operands have
// Div=1, Mod=numel; per-channel Div=1, Mod=C; per-example Div=H·W·C, Mod=N; scalar Div=1, Mod=1.
// The package-level functions derive it from b's shape.
type Broadcast struct {
	Div, Mod int
}

// UnaryOp names an elementwise unary op. Ops with parameters say which.
type UnaryOp uint8

// The unary ops.
const (
	Exp      UnaryOp = iota + 1
	Log              // natural log
	Tanh             //
	Sigmoid          // 1/(1+exp(-x))
	Relu             // max(x, 0)
	Square           // x²
	Sqrt             //
	Neg              // -x
	Abs              //
	Scale            // p1·x
	AddConst         // x + p1
	Clamp            // min(max(x, p1), p2)
)

// String returns the op's name.
func (o UnaryOp) String() string {
	names := [...]string{"?", "exp", "log", "tanh", "sigmoid", "relu", "square", "sqrt", "neg", "abs",
		"scale", "addconst", "clamp"}
	if int(o) < len(names) {
		return names[o]
	}
	return "?"
}

// UnaryGradOp names the dedicated backward kernels of unary ops whose gradient is not a single
// Binary op. The saved tensor is the op's input x or output y as stated.
type UnaryGradOp uint8

// The unary backward ops.
const (
	ReluGrad    UnaryGradOp = iota + 1 // dx = dy·[x > 0]; saved = x (or y: same sign pattern)
	TanhGrad                           // dx = dy·(1 − y²); saved = y
	SigmoidGrad                        // dx = dy·y·(1 − y); saved = y
	ClampGrad                          // dx = dy·[p1 ≤ x ≤ p2]; saved = x
	AbsGrad                            // dx = dy·sign(x); saved = x
)

// ReduceOp names a reduction.
type ReduceOp uint8

// The reductions.
const (
	Sum   ReduceOp = iota + 1
	Mean           // Sum divided by the number of reduced elements
	SumSq          // Σ x²
)

// ReduceAxes names the reduced axes.
type ReduceAxes uint8

// The reduction axes.
const (
	AxisAll     ReduceAxes = iota + 1 // everything → [1]
	AxisExample                       // all but the first → [N]
	AxisChannel                       // all but the last → [C]
)

// ConvParams describes a stride-1 "same" convolution.
type ConvParams struct {
	// K is the (odd) kernel size: 1 or 3 in the model.
	K int
	// EdgeBias adds Glow's border-indicator input channel (dlf-spec §1.6).
	EdgeBias bool
	// Precision is the arithmetic of the three convolution ops on Float32 tensors: FP32 (the zero
	// value) or TF32, which rounds x (or dy) and w to TF32 before multiplying. The edge-bias
	// indicator (0 or 1) and the bias are exact either way.
	Precision Precision
}

// Pad is the zero padding on each side.
func (p ConvParams) Pad() int { return (p.K - 1) / 2 }

// ScaleMode selects how an affine transform turns raw parameters into a log-scale.
type ScaleMode uint8

// The scale modes.
const (
	// ScaleTanh is DLF's bounded log-scale ℓ = α·tanh(r) + β (dlf-spec §1.5).
	ScaleTanh ScaleMode = iota + 1
	// ScaleSigmoid is Glow's affine coupling: scale = sigmoid(r + 2), so ℓ = log sigmoid(r + 2)
	// (dlf-spec §5); α and β are not used.
	ScaleSigmoid
)

// AffineParams configures the affine transform of one channel part x [N,H,W,C]:
//
//	y = (x + μ) · exp(ℓ),  logdet[n] += Σ_{h,w,c} ℓ
//
// with h interleaved along channels: μ = h[..., 2c] (shift) and r = h[..., 2c+1] (raw log-scale),
// as in the reference code. h is [N,H,W,2C], or [1,1,1,2C] broadcast to every position when
// PerChannel is set (DLF's first part, from a learned vector).
type AffineParams struct {
	Mode       ScaleMode
	PerChannel bool
}

// GaussianParams configures a diagonal Gaussian whose parameters come from a tensor p with 2C
// channels for z with C channels.
type GaussianParams struct {
	// Interleaved takes μ = p[..., 2c], r = p[..., 2c+1] (Glow); otherwise halves: μ = p[..., :C],
	// r = p[..., C:] (DLF's split and top priors, dlf-spec §2.5).
	Interleaved bool
	// Bounded takes log σ = α·tanh(r) + β (DLF); otherwise log σ = r (Glow).
	Bounded bool
	// BatchBroadcast means p has batch size 1 and is shared by every example (the top prior).
	BatchBroadcast bool
}

// OptimKind names an optimizer update rule.
type OptimKind uint8

// The optimizers.
const (
	// Adamax: m = β1·m + (1−β1)·g; v = max(β2·v, |g|); w = wd·w − lr·m/(v + ε).
	Adamax OptimKind = iota + 1
	// Adam: m = β1·m + (1−β1)·g; v = β2·v + (1−β2)·g²; w = wd·w − lr·m/(√v + ε).
	Adam
)

// OptimParams are the scalars of one optimizer step. LR is the effective rate for this step, with any
// bias correction already applied by the caller (the reference's lr·√(1−β2^t)/(1−β1^t), spec §3.1).
// WeightDecay is the reference's multiplicative factor (1 = off). LRTensor, when set, is a [1]
// tensor of the step's backend from which the update reads its rate on the device instead of LR, so
// that a captured update (a CUDA graph) takes a new rate at each replay: the value in the tensor is
// the rate rounded to the tensor's dtype, exactly what LR becomes as a float32 kernel argument.
type OptimParams struct {
	Kind                  OptimKind
	LR, Beta1, Beta2, Eps float64
	WeightDecay           float64
	LRTensor              *Tensor
}
