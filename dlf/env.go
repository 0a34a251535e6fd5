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
	// noSync marks work inside a training step's backward, which must not wait for the device
	// (no checks that read values back).
	noSync bool
}

// arena opens an arena on the tape for the layer that calls it: every Var the tape's ops create from
// then on (and every constant handed to adopt) is released when the returned close runs, except the
// results passed to close, which go to the caller's arena. A layer's forward thus states its
// equations without a Release after each op:
//
//	close := e.arena()
//	defer func() { close(y, ld) }()
func (e *env) arena() (close func(keep ...*autodiff.Var)) { return arena(e.t) }

// arena is env.arena for code that holds a tape rather than an env.
func arena(t *autodiff.Tape) (close func(keep ...*autodiff.Var)) {
	mark := t.Mark()
	return func(keep ...*autodiff.Var) { t.ReleaseSince(mark, keep...) }
}

// adopt puts constants made outside the tape's ops into the current arena, and returns the first.
func (e *env) adopt(vs ...*autodiff.Var) *autodiff.Var {
	e.t.Adopt(vs...)
	return vs[0]
}

// condTerm returns the condition's linear projection cond·Wc ([N, 2C] for Wc [classes, 2C]) broadcast
// over an h×w grid, as an [N, h, w, 2C] Var: the reference's Dense(h → 2·C_k, no bias) added to a
// hyper-network output (dlf-spec §1.6 step 4). The broadcast is a batched GEMM of a column of ones
// with each example's row, so its gradient needs no special op.
func (e *env) condTerm(wc *autodiff.Var, h, w int) (out *autodiff.Var) {
	close := e.arena()
	defer func() { close(out) }()
	t := e.t
	n, c2 := e.cond.Value.Dim(0), wc.Value.Dim(1)
	p := t.Reshape(t.MatMul(e.cond, wc, false, false), n, 1, c2)
	ones := e.adopt(autodiff.NewVar(tensor.Full(p.Value.Backend(), p.Value.DType(), 1, n, h*w, 1)))
	return t.Reshape(t.MatMul(ones, p, false, false), n, h, w, c2)
}

// sumLD returns a + b for per-example log-determinants, where a may be nil (nothing yet).
func sumLD(t *autodiff.Tape, a, b *autodiff.Var) *autodiff.Var {
	if a == nil {
		return b
	}
	return t.Add(a, b)
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
