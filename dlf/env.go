package dlf

import (
	"dlf/autodiff"
	"dlf/tensor"
)

// env is what every layer's forward needs besides its input and parameters.
type env struct {
	// t records the ops (a NoGrad tape for evaluation and sampling).
	t *autodiff.Tape
	// cond is the one-hot class condition [N, classes], or nil without conditioning.
	cond *autodiff.Var
	// dataInit makes Glow's actnorms that are not initialised yet set themselves from the batch.
	dataInit bool
}

// condTerm returns the condition's linear projection cond·Wc ([N, 2C] for Wc [classes, 2C]) broadcast
// over an h×w grid, as an [N, h, w, 2C] Var: the reference's Dense(h → 2·C_k, no bias) added to a
// hyper-network output (dlf-spec §1.6 step 4). The broadcast is a batched GEMM of a column of ones
// with each example's row, so its gradient needs no special op.
func (e *env) condTerm(wc *autodiff.Var, h, w int) *autodiff.Var {
	t := e.t
	n := e.cond.Value.Dim(0)
	c2 := wc.Value.Dim(1)
	p := t.MatMul(e.cond, wc, false, false)
	p3 := t.Reshape(p, n, 1, c2)
	p.Release()
	ones := autodiff.NewVar(tensor.Full(p3.Value.Backend(), p3.Value.DType(), 1, n, h*w, 1))
	ex := t.MatMul(ones, p3, false, false)
	ones.Release()
	p3.Release()
	out := t.Reshape(ex, n, h, w, c2)
	ex.Release()
	return out
}

// addLD returns a + b for per-example log-determinants, where a may be nil (nothing yet). It
// releases both inputs.
func addLD(t *autodiff.Tape, a, b *autodiff.Var) *autodiff.Var {
	if a == nil {
		return b
	}
	s := t.Add(a, b)
	a.Release()
	b.Release()
	return s
}

// release releases every non-nil Var.
func release(vs ...*autodiff.Var) {
	for _, v := range vs {
		if v != nil {
			v.Release()
		}
	}
}

// constVar wraps a fresh reference to t as a constant Var.
func constVar(t *tensor.Tensor) *autodiff.Var { return autodiff.NewVar(t.Reshape(t.Shape()...)) }
