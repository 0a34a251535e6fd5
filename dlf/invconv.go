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
	// Indices into the unit: weight (full form), or lower, upper, logS and the buffers perm, sign
	// (LU form); bias is −1 without --invconv_bias.
	weight, lower, upper, logS, perm, sign, bias int
	// Constant masks of the LU form: strictly lower ones, strictly upper ones, identity.
	lmask, umask, eye *autodiff.Var
}

// newInvConv registers the layer's tensors in u: a random orthogonal W (the Q of a QR factorisation
// of a Gaussian matrix, as Glow initialises it), or its LU factors.
func newInvConv(u *unit, c int, lu, bias bool) *invConv {
	l := &invConv{c: c, lu: lu, weight: -1, lower: -1, upper: -1, logS: -1, perm: -1, sign: -1, bias: -1}
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

// matrix returns W as a Var on t: the parameter itself (full form) or P·(L⊙M_l + I)·(U⊙M_u +
// diag(sign·exp(log s))) built from Tape ops (LU form), so gradients reach L, U and log s.
func (l *invConv) matrix(t *autodiff.Tape, pv []*autodiff.Var) (w *autodiff.Var, owned bool) {
	if !l.lu {
		return pv[l.weight], false
	}
	lm := t.Mul(pv[l.lower], l.lmask)
	lo := t.Add(lm, l.eye)
	lm.Release()
	es := t.Exp(pv[l.logS])
	s := t.Mul(es, pv[l.sign])
	es.Release()
	d := t.Mul(l.eye, s) // column j of I times s[j]: diag(s)
	s.Release()
	um := t.Mul(pv[l.upper], l.umask)
	up := t.Add(um, d)
	um.Release()
	d.Release()
	lu := t.MatMul(lo, up, false, false)
	lo.Release()
	up.Release()
	w = t.MatMul(pv[l.perm], lu, false, false)
	lu.Release()
	return w, true
}

// hostMatrix returns W in float64 on the host (row-major C×C).
func (l *invConv) hostMatrix(pv []*autodiff.Var) []float64 {
	w, owned := l.matrix(autodiff.NoGrad(), pv)
	out := w.Value.Float64s()
	if owned {
		w.Release()
	}
	return out
}

// logdet returns the per-example log-determinant H·W·log|det W| as an [n] Var.
func (l *invConv) logdet(t *autodiff.Tape, pv []*autodiff.Var, w *autodiff.Var, n, hw int) *autodiff.Var {
	if l.lu {
		s := t.Sum(pv[l.logS], tensor.AxisAll)
		ss := t.Scale(s, float64(hw))
		s.Release()
		z := autodiff.NewVar(tensor.Zeros(ss.Value.Backend(), ss.Value.DType(), n))
		ld := t.Add(z, ss)
		z.Release()
		ss.Release()
		return ld
	}
	wh := w.Value.Float64s()
	sign, lad := tensor.Slogdet(wh, l.c)
	if sign == 0 {
		lad = math.Inf(-1)
	}
	be, dt := w.Value.Backend(), w.Value.DType()
	out := tensor.Full(be, dt, float64(hw)*lad, n)
	var saved []*tensor.Tensor
	if t.Recording() && w.RequiresGrad() {
		// d log|det W| / dW = W⁻ᵀ, computed with the forward's W and kept for the backward.
		inv, err := tensor.Inverse(wh, l.c)
		git := tensor.Full(be, dt, math.NaN(), l.c, l.c)
		if err == nil {
			tr := make([]float64, len(inv))
			for i := 0; i < l.c; i++ {
				for j := 0; j < l.c; j++ {
					tr[i*l.c+j] = inv[j*l.c+i]
				}
			}
			git.Upload(tr)
		}
		saved = []*tensor.Tensor{git}
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
func (l *invConv) forward(t *autodiff.Tape, pv []*autodiff.Var, x *autodiff.Var) (y, ld *autodiff.Var) {
	n, h, wd, c := x.Value.Shape().NHWC()
	w, owned := l.matrix(t, pv)
	x2 := t.Reshape(x, n*h*wd, c)
	y2 := t.MatMul(x2, w, false, false)
	x2.Release()
	y = t.Reshape(y2, n, h, wd, c)
	y2.Release()
	if l.bias >= 0 {
		yb := t.Add(y, pv[l.bias])
		y.Release()
		y = yb
	}
	ld = l.logdet(t, pv, w, n, h*wd)
	if owned {
		w.Release()
	}
	return y, ld
}

// inverse computes x = (y − bias)·W⁻¹ with W⁻¹ from a float64 host inverse, and the log-determinant
// of the inverse map, −H·W·log|det W|.
func (l *invConv) inverse(pv []*autodiff.Var, y *tensor.Tensor) (x, ld *tensor.Tensor, err error) {
	n, h, wd, c := y.Shape().NHWC()
	wh := l.hostMatrix(pv)
	inv, err := tensor.Inverse(wh, c)
	if err != nil {
		return nil, nil, fmt.Errorf("dlf: invertible 1x1 conv: %w", err)
	}
	_, lad := tensor.Slogdet(wh, c)
	be, dt := y.Backend(), y.DType()
	wi := tensor.New(be, dt, c, c)
	wi.Upload(inv)
	src := y
	if l.bias >= 0 {
		src = tensor.New(be, dt, y.Shape()...)
		tensor.SubT(src, y, pv[l.bias].Value)
	}
	s2 := src.Reshape(n*h*wd, c)
	x = tensor.New(be, dt, n, h, wd, c)
	x2 := x.Reshape(n*h*wd, c)
	tensor.Gemm(false, false, 1, s2, wi, 0, x2)
	x2.Release()
	s2.Release()
	wi.Release()
	if src != y {
		src.Release()
	}
	return x, tensor.Full(be, dt, -float64(h*wd)*lad, n), nil
}

// sumSquares returns Σ ½W² for the L2 term of the objective (dlf-spec §2.7).
func (l *invConv) sumSquares(t *autodiff.Tape, pv []*autodiff.Var) *autodiff.Var {
	w, owned := l.matrix(t, pv)
	sq := t.Square(w)
	if owned {
		w.Release()
	}
	s := t.Sum(sq, tensor.AxisAll)
	sq.Release()
	h := t.Scale(s, 0.5)
	s.Release()
	return h
}
