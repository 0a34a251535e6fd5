package optim

import (
	"math"

	"dlf/autodiff"
	"dlf/tensor"
)

// GradNorm returns the global L2 norm of the gradients of vs (those with a gradient). The sum of
// squares is accumulated on the device (tensor.Reduce SumSq per gradient, added into one scalar) so
// the whole computation reads back a single number.
func GradNorm(vs []*autodiff.Var) float64 {
	acc, part, _ := sumSquares(vs)
	if acc == nil {
		return 0
	}
	defer release(acc, part)
	return math.Sqrt(acc.Item())
}

// sumSquares returns, on the gradients' backend, acc = Σ over every gradient of Σ g² (a [1]
// tensor; nil when no Var has a gradient), the [1] scratch it used, and the gradients.
func sumSquares(vs []*autodiff.Var) (acc, part *tensor.Tensor, grads []*tensor.Tensor) {
	for _, v := range vs {
		g := v.Grad
		if g == nil {
			continue
		}
		if acc == nil {
			acc = tensor.Zeros(g.Backend(), g.DType(), 1)
			part = tensor.New(g.Backend(), g.DType(), 1)
		}
		tensor.Reduce(tensor.SumSq, tensor.AxisAll, part, g)
		tensor.Axpy(1, part, acc)
		grads = append(grads, g)
	}
	return acc, part, grads
}

// ClipGradNorm scales the gradients of vs in place so that their global L2 norm is at most maxNorm,
// and returns the norm before clipping. Gradients are left unchanged when the norm is within bounds,
// when maxNorm ≤ 0 (clipping off), or when the norm is not finite (the caller should see the NaN and
// skip the step rather than have every gradient turned into NaN).
func ClipGradNorm(vs []*autodiff.Var, maxNorm float64) float64 {
	norm := GradNorm(vs)
	if maxNorm <= 0 || !(norm > maxNorm) || math.IsInf(norm, 0) {
		return norm
	}
	s := maxNorm / norm
	for _, v := range vs {
		if v.Grad != nil {
			tensor.UnaryT(tensor.Scale, v.Grad, v.Grad, s, 0)
		}
	}
	return norm
}

// ClipOnDevice is ClipGradNorm without reading anything back: the norm n and the factor
// s = c / max(n, c) = min(1, c/n) are [1] tensors on the gradients' backend, and every gradient is
// multiplied by s, so the clipping can sit inside a captured step (a CUDA graph) and costs no host
// synchronisation. Gradients are unchanged when n ≤ c (s = 1 exactly). A non-finite norm makes s
// NaN and the gradients with it; the step's non-finite checks then see it, as they see a NaN loss.
func ClipOnDevice(vs []*autodiff.Var, maxNorm float64) {
	acc, part, grads := sumSquares(vs)
	defer release(acc, part)
	if acc == nil || maxNorm <= 0 {
		return
	}
	tensor.UnaryT(tensor.Sqrt, acc, acc, 0, 0)
	tensor.UnaryT(tensor.Clamp, acc, acc, maxNorm, math.Inf(1)) // max(n, c)
	tensor.Fill(part, maxNorm)
	tensor.DivT(part, part, acc) // s = c / max(n, c)
	for _, g := range grads {
		tensor.MulT(g, g, part)
	}
}

func release(ts ...*tensor.Tensor) {
	for _, t := range ts {
		if t != nil {
			t.Release()
		}
	}
}

// Vars returns the Vars of params, for GradNorm and ClipGradNorm.
func Vars(params []Param) []*autodiff.Var {
	vs := make([]*autodiff.Var, len(params))
	for i, p := range params {
		vs[i] = p.Var
	}
	return vs
}
