package dlf

import (
	"fmt"
	"math"

	"dlf/autodiff"
	"dlf/tensor"
)

// invConv is the invertible 1x1 convolution y = x·W (+ bias), a GEMM [N·H·W, C] × [C, C]: TensorFlow's
// conv2d with the HWIO filter reshape(W, [1,1,C,C]) computes y[…, o] = Σ_i x[…, i]·W[i, o]
// (dlf-spec §2.4). Its log-determinant is H·W·log|det W| per example.
//
// The full form keeps W itself; its log|det W| is computed on the host in float64 (as the reference
// does), and so is W⁻ᵀ, the gradient of log|det W|. The LU form (Kingma & Dhariwal 2018, §3.2)
// keeps W = P·L·(U + diag(sign·exp(log s))) with P and sign fixed, so log|det W| = Σ log s stays on
// the device.
type invConv struct {
	c  int
	lu bool
	// Handles: weight (full form), or lower, upper, logS and the buffers perm, sign (LU form); bias
	// is noParam without --invconv_bias.
	weight, lower, upper, logS, perm, sign, bias param
	// Constant masks of the LU form: strictly lower ones, strictly upper ones, identity.
	lmask, umask, eye *autodiff.Var
}

// newInvConv registers the layer's tensors in u: a random orthogonal W (the Q of a QR factorisation
// of a Gaussian matrix, as Glow initialises it), or its LU factors.
func newInvConv(u *unit, c int, lu, bias bool) *invConv {
	l := &invConv{c: c, lu: lu, weight: noParam, lower: noParam, upper: noParam, logS: noParam, perm: noParam, sign: noParam, bias: noParam}
	r := u.reg
	orth := func(int) []float64 { return tensor.RandomOrthogonal(r.rng, c) }
	if !lu {
		l.weight = u.param("invconv.weight", true, []int{c, c}, orth)
	} else {
		// P·W = L·U with partial pivoting; the reference's P satisfies W = P·L·U, so it is the
		// transpose of ours: P[perm[i], i] = 1 (scipy.linalg.lu's convention, as Glow uses it).
		var p, lower, upper, logS, sign []float64
		if !r.dry() {
			f := tensor.Factorize(tensor.RandomOrthogonal(r.rng, c), c)
			p, lower = make([]float64, c*c), f.L
			for i, row := range f.Perm {
				p[row*c+i] = 1
			}
			sign, logS, upper = make([]float64, c), make([]float64, c), make([]float64, c*c)
			for i := 0; i < c; i++ {
				s := f.U[i*c+i]
				sign[i] = math.Copysign(1, s)
				logS[i] = math.Log(math.Abs(s))
				for j := i + 1; j < c; j++ {
					upper[i*c+j] = f.U[i*c+j]
				}
			}
		}
		l.perm = u.param("invconv.perm", false, []int{c, c}, values(p))
		l.lower = u.param("invconv.lower", true, []int{c, c}, values(lower))
		l.upper = u.param("invconv.upper", true, []int{c, c}, values(upper))
		l.logS = u.param("invconv.log_s", true, []int{c}, values(logS))
		l.sign = u.param("invconv.sign_s", false, []int{c}, values(sign))
		if !r.dry() {
			lm, um, eye := make([]float64, c*c), make([]float64, c*c), make([]float64, c*c)
			for i := 0; i < c; i++ {
				for j := 0; j < c; j++ {
					switch {
					case j < i:
						lm[i*c+j] = 1
					case j > i:
						um[i*c+j] = 1
					default:
						eye[i*c+j] = 1
					}
				}
			}
			mk := func(v []float64) *autodiff.Var {
				t := tensor.New(r.be, r.dt, c, c)
				t.Upload(v)
				return autodiff.NewVar(t)
			}
			l.lmask, l.umask, l.eye = mk(lm), mk(um), mk(eye)
		}
	}
	if bias {
		l.bias = u.param("invconv.bias", true, []int{c}, zeros)
	}
	return l
}

// matrix returns W as a Var on t: the parameter itself (full form) or
//
//	W = P·(L⊙M_l + I)·(U⊙M_u + diag(sign·exp(log s)))
//
// built from Tape ops (LU form), so gradients reach L, U and log s.
func (l *invConv) matrix(t *autodiff.Tape, pv vars) (w *autodiff.Var) {
	if !l.lu {
		return pv.of(l.weight)
	}
	close := arena(t)
	defer func() { close(w) }()
	lower := t.Add(t.Mul(pv.of(l.lower), l.lmask), l.eye)
	diag := t.Mul(l.eye, t.Mul(t.Exp(pv.of(l.logS)), pv.of(l.sign))) // column j of I times s_j
	upper := t.Add(t.Mul(pv.of(l.upper), l.umask), diag)
	return t.MatMul(pv.of(l.perm), t.MatMul(lower, upper, false, false), false, false)
}

// deviceLogDet computes, on w's backend, W⁻ᵀ and the [n] vector of scale·log|det W| (float64
// Gauss-Jordan inside tensor.InvLogDet, one rounding): nothing is downloaded, so the training step
// does not wait for the device here. A singular W gives −Inf and a W⁻ᵀ of NaN.
func deviceLogDet(w *tensor.Tensor, c, n int, scale float64) (invT, ld *tensor.Tensor) {
	be, dt := w.Backend(), w.DType()
	invT = tensor.New(be, dt, c, c)
	lad := tensor.New(be, dt, 1)
	tensor.InvLogDet(invT, lad, w, scale)
	// 0 + x is x: broadcasting the scalar over the examples adds no rounding.
	ld = tensor.Zeros(be, dt, n)
	tensor.AddT(ld, ld, lad)
	lad.Release()
	return invT, ld
}

// logdet returns the per-example log-determinant H·W·log|det W| as an [n] Var.
func (l *invConv) logdet(t *autodiff.Tape, pv vars, w *autodiff.Var, n, hw int) (ld *autodiff.Var) {
	if l.lu {
		// H·W·Σ log s, broadcast to the n examples.
		close := arena(t)
		defer func() { close(ld) }()
		ss := t.Scale(t.Sum(pv.of(l.logS), tensor.AxisAll), float64(hw))
		z := autodiff.NewVar(tensor.Zeros(ss.Value.Backend(), ss.Value.DType(), n))
		t.Adopt(z)
		return t.Add(z, ss)
	}
	// d log|det W| / dW = W⁻ᵀ, from the same factorisation, kept for the backward.
	git, out := deviceLogDet(w.Value, l.c, n, float64(hw))
	var saved []*tensor.Tensor
	if t.Recording() && w.RequiresGrad() {
		saved = []*tensor.Tensor{git}
	} else {
		git.Release()
	}
	return t.Custom("invconv.logdet", []*autodiff.Var{w}, []*tensor.Tensor{out}, saved,
		func(c *autodiff.Context, dys []*tensor.Tensor) []*tensor.Tensor {
			git := c.Saved(0)
			s := tensor.New(git.Backend(), git.DType(), 1)
			tensor.Reduce(tensor.Sum, tensor.AxisAll, s, dys[0])
			dw := tensor.New(git.Backend(), git.DType(), l.c, l.c)
			tensor.MulT(dw, git, s)
			s.Release()
			tensor.UnaryT(tensor.Scale, dw, dw, float64(hw), 0)
			return []*tensor.Tensor{dw}
		})[0]
}

// forward computes y = x·W (+ bias) and the per-example log-determinant.
func (l *invConv) forward(t *autodiff.Tape, pv vars, x *autodiff.Var) (y, ld *autodiff.Var) {
	close := arena(t)
	defer func() { close(y, ld) }()
	n, h, wd, c := x.Value.Shape().NHWC()
	w := l.matrix(t, pv)
	y = t.Reshape(t.MatMul(t.Reshape(x, n*h*wd, c), w, false, false), n, h, wd, c)
	if l.bias != noParam {
		y = t.Add(y, pv.of(l.bias))
	}
	return y, l.logdet(t, pv, w, n, h*wd)
}

// inverse computes x = (y − bias)·W⁻¹, with W⁻¹ (as W⁻ᵀ) and the log-determinant of the inverse
// map, −H·W·log|det W|, from tensor.InvLogDet on the device. With check it reads the
// log-determinant back to refuse a singular W with an error (sampling); without (the recomputing
// backward of a training step, which must not wait for the device) a singular W yields NaN, which
// the trainer reports as a non-finite gradient.
func (l *invConv) inverse(pv vars, y *tensor.Tensor, check bool) (x, ld *tensor.Tensor, err error) {
	n, h, wd, c := y.Shape().NHWC()
	t := autodiff.NoGrad()
	closeW := arena(t)
	w := l.matrix(t, pv)
	invT, ld := deviceLogDet(w.Value, c, n, -float64(h*wd))
	closeW()
	if check && n > 0 && math.IsInf(ld.Float64s()[0], -1) {
		invT.Release()
		ld.Release()
		return nil, nil, fmt.Errorf("dlf: invertible 1x1 conv: W is singular")
	}
	be, dt := y.Backend(), y.DType()
	src := y
	if l.bias != noParam {
		src = tensor.New(be, dt, y.Shape()...)
		tensor.SubT(src, y, pv.of(l.bias).Value)
	}
	s2 := src.Reshape(n*h*wd, c)
	x = tensor.New(be, dt, n, h, wd, c)
	x2 := x.Reshape(n*h*wd, c)
	// x = s·W⁻¹ = s·(W⁻ᵀ)ᵀ.
	tensor.Gemm(false, true, 1, s2, invT, 0, x2)
	x2.Release()
	s2.Release()
	invT.Release()
	if src != y {
		src.Release()
	}
	return x, ld, nil
}

// sumSquares returns Σ ½W² for the L2 term of the objective (dlf-spec §2.7).
func (l *invConv) sumSquares(t *autodiff.Tape, pv vars) (h *autodiff.Var) {
	close := arena(t)
	defer func() { close(h) }()
	return t.Scale(t.Sum(t.Square(l.matrix(t, pv)), tensor.AxisAll), 0.5)
}
