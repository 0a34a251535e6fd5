package autodiff

import "dlf/tensor"

// Var is a value in a differentiable computation.
type Var struct {
	// Value is the variable's tensor; the Var owns one reference to it. It is nil after Release.
	// Optimizers update parameter values in place, and EMA swaps swap this pointer, so ops read it
	// when they run rather than callers caching it.
	Value *tensor.Tensor
	// Grad is the gradient accumulated into a leaf that requires gradients, nil until a Backward
	// reaches it and again after ZeroGrad. The Var owns it exclusively, so optimizers and gradient
	// clipping may modify it in place.
	Grad *tensor.Tensor

	requiresGrad bool

	// Bookkeeping while a tape that produced this Var is alive.
	producer  *node          // the recorded op that produced it, or nil for a leaf
	tape      *Tape          // the tape producer belongs to
	grad      *tensor.Tensor // gradient of an intermediate during Backward
	gradOwned bool           // grad may be modified in place (no other reference shares it)
	restored  bool           // Value belongs to the tape: rebuilt in Backward, or kept by Release
}

// NewVar wraps t as a constant: no gradient flows into it. The Var takes over the caller's
// reference to t.
func NewVar(t *tensor.Tensor) *Var { return &Var{Value: t} }

// NewParam wraps t as a trainable leaf whose gradient accumulates in Grad. The Var takes over the
// caller's reference to t.
func NewParam(t *tensor.Tensor) *Var { return &Var{Value: t, requiresGrad: true} }

// RequiresGrad reports whether gradients flow into v.
func (v *Var) RequiresGrad() bool { return v.requiresGrad }

// SetRequiresGrad turns gradient tracking of a leaf on or off (e.g. to freeze a parameter). It
// panics for a Var produced by a recorded op, whose flag follows from its inputs.
func (v *Var) SetRequiresGrad(on bool) {
	if v.producer != nil {
		panic("autodiff: SetRequiresGrad on a Var produced by a recorded op")
	}
	v.requiresGrad = on
}

// Shape returns the shape of the value.
func (v *Var) Shape() tensor.Shape { return v.Value.Shape() }

// Release drops v's reference to its value (ops that saved it keep theirs). It is idempotent, and
// v's value must not be used afterwards.
//
// One case keeps the reference: when v is the output of a custom op on a live tape (whose backward
// may read its output lazily) and an op recorded later still holds v's storage, releasing would free
// no memory but would leave that backward without its output. The tape then keeps the reference and
// releases it right after the custom op's backward.
func (v *Var) Release() {
	if v.Value == nil || v.restored {
		return
	}
	if p := v.producer; p != nil && p.lazy && !v.tape.done && v.tape.referencedLater(v) {
		v.restored = true
		return
	}
	v.Value.Release()
	v.Value = nil
}

// ZeroGrad releases the accumulated gradient, so the next Backward starts from zero.
func (v *Var) ZeroGrad() {
	if v.Grad != nil {
		v.Grad.Release()
		v.Grad = nil
	}
}

// ZeroGrad releases the gradients of every Var in vs.
func ZeroGrad(vs ...*Var) {
	for _, v := range vs {
		v.ZeroGrad()
	}
}

// Detach returns a constant Var holding a new reference to v's value (shared storage, no gradient).
func Detach(v *Var) *Var { return NewVar(retain(v.Value)) }

// retain returns a new reference to t's storage with the same shape.
func retain(t *tensor.Tensor) *tensor.Tensor { return t.Reshape(t.Shape()...) }
