package autodiff

import (
	"fmt"

	"dlf/tensor"
)

// BackwardFunc is an op's backward: given the gradients dys of its outputs (nil for an output no
// gradient reached), it returns one gradient per input, or nil where the input needs none
// (Context.NeedsGrad) or receives zero. dys are read-only and stay owned by the tape. Each returned
// tensor is a reference the tape takes over: a fresh tensor, or a new reference (Reshape) to a dy when
// the gradient passes through unchanged; the same *Tensor must not be returned twice.
type BackwardFunc func(c *Context, dys []*tensor.Tensor) []*tensor.Tensor

// node is one recorded op.
type node struct {
	name     string
	inputs   []*Var // nil entries for optional inputs that were absent
	inShapes []tensor.Shape
	outputs  []*Var
	saved    []*tensor.Tensor
	backward BackwardFunc
	// discard holds tensors to release once the backward has returned (see RestoreInput).
	discard []*tensor.Tensor
	// idx is the node's position on the tape.
	idx int
	// lazy marks ops whose backward may read their outputs through the Context (custom ops): a
	// released output that a later op still references is kept for them (see Var.Release).
	lazy bool
}

// Tape records differentiable ops in order for one forward/backward pass. The zero value is not
// used: create tapes with NewTape or NoGrad. A nil *Tape behaves like NoGrad. A Tape is not safe for
// concurrent use.
type Tape struct {
	nodes  []*node
	noGrad bool
	done   bool
	// arena holds the Vars created while arenas (Mark calls without their ReleaseSince) are open.
	arena  []*Var
	arenas int
	// restoredLeaves are leaves whose values a backward rebuilt; they are released at the end.
	restoredLeaves []*Var
	// gradReady, when set, is called once per leaf when Backward has finished its gradient (see
	// OnGradReady in gradhook.go).
	gradReady func(v *Var)
}

// NewTape returns a tape that records ops for Backward.
func NewTape() *Tape { return &Tape{} }

// NoGrad returns a tape that records nothing: ops compute values only and save nothing, which is
// what evaluation and sampling want.
func NoGrad() *Tape { return &Tape{noGrad: true} }

// Recording reports whether ops on t are recorded for Backward.
func (t *Tape) Recording() bool { return t != nil && !t.noGrad }

// Len returns the number of recorded ops.
func (t *Tape) Len() int {
	if t == nil {
		return 0
	}
	return len(t.nodes)
}

// needGrad reports whether an op on vs must be recorded.
func (t *Tape) needGrad(vs ...*Var) bool {
	if !t.Recording() {
		return false
	}
	for _, v := range vs {
		if v != nil && v.requiresGrad {
			if t.done {
				panic("autodiff: op recorded on a tape after its Backward; use a new Tape per pass")
			}
			return true
		}
	}
	return false
}

// record wraps outs as Vars and, when gradients are needed, records the op. save is called only
// then, so ops take references to what their backward needs only when there will be a backward.
func (t *Tape) record(name string, inputs []*Var, outs []*tensor.Tensor, save func() []*tensor.Tensor, bw BackwardFunc) []*Var {
	vars := make([]*Var, len(outs))
	for i, o := range outs {
		vars[i] = &Var{Value: o}
	}
	t.track(vars)
	if !t.needGrad(inputs...) {
		return vars
	}
	n := &node{name: name, inputs: inputs, outputs: vars, backward: bw, idx: len(t.nodes)}
	n.inShapes = make([]tensor.Shape, len(inputs))
	for i, in := range inputs {
		if in != nil {
			n.inShapes[i] = in.Value.Shape().Clone()
		}
	}
	if save != nil {
		n.saved = save()
	}
	for _, v := range vars {
		v.requiresGrad = true
		v.producer = n
		v.tape = t
	}
	t.nodes = append(t.nodes, n)
	return vars
}

// Backward computes the gradient of loss, a one-element Var produced on this tape, with respect to
// every leaf that requires gradients, accumulating into their Grad. It consumes the tape: saved
// tensors and intermediate gradients are released as the walk passes them, and the tape records
// nothing afterwards. It returns the backend's error state (see tensor.Backend.Err).
func (t *Tape) Backward(loss *Var) error {
	if loss.Value == nil || loss.Value.Numel() != 1 {
		panic(fmt.Sprintf("autodiff: Backward from a non-scalar %v; use BackwardFrom", shapeOf(loss)))
	}
	seed := tensor.Full(loss.Value.Backend(), loss.Value.DType(), 1, loss.Value.Shape()...)
	defer seed.Release()
	return t.BackwardFrom([]*Var{loss}, []*tensor.Tensor{seed})
}

// BackwardFrom starts the backward pass from several outputs with the given gradients (borrowed:
// neither modified nor released). Otherwise it is Backward.
func (t *Tape) BackwardFrom(outs []*Var, grads []*tensor.Tensor) error {
	if t == nil || t.noGrad {
		panic("autodiff: Backward on a tape that does not record")
	}
	if t.done {
		panic("autodiff: Backward called twice on one tape")
	}
	if len(outs) != len(grads) {
		panic(fmt.Sprintf("autodiff: BackwardFrom with %d outputs and %d gradients", len(outs), len(grads)))
	}
	var be tensor.Backend
	for i, o := range outs {
		if !o.requiresGrad {
			panic("autodiff: Backward from a value that does not depend on anything requiring a gradient")
		}
		if !grads[i].Shape().Equal(o.Value.Shape()) {
			panic(fmt.Sprintf("autodiff: BackwardFrom gradient %v for output %v", grads[i].Shape(), o.Value.Shape()))
		}
		be = o.Value.Backend()
		t.accumulate(o, retain(grads[i]), false, o.Value.Shape(), "BackwardFrom")
	}
	t.done = true
	ready := t.leafReadyIndex(outs)
	for k := len(t.nodes) - 1; k >= 0; k-- {
		t.runNode(t.nodes[k])
		t.nodes[k] = nil
		ready.fire(t.gradReady, k)
	}
	ready.fire(t.gradReady, -1)
	t.finish()
	return be.Err()
}

// runNode runs one op's backward, routes the input gradients and frees what the op no longer needs.
func (t *Tape) runNode(n *node) {
	dys := make([]*tensor.Tensor, len(n.outputs))
	reached := false
	for j, o := range n.outputs {
		dys[j] = o.grad
		reached = reached || o.grad != nil
	}
	if reached {
		c := &Context{t: t, n: n}
		dxs := n.backward(c, dys)
		if len(dxs) != len(n.inputs) {
			panic(fmt.Sprintf("autodiff: %s backward returned %d gradients for %d inputs", n.name, len(dxs), len(n.inputs)))
		}
		for i, dx := range dxs {
			if dx == nil {
				continue
			}
			for k := i + 1; k < len(dxs); k++ {
				if dxs[k] == dx {
					panic(fmt.Sprintf("autodiff: %s backward returned the same tensor for inputs %d and %d", n.name, i, k))
				}
			}
			in := n.inputs[i]
			if in == nil || !in.requiresGrad {
				dx.Release()
				continue
			}
			t.accumulate(in, dx, t.exclusive(n, i, dx, dys, dxs), n.inShapes[i], n.name)
		}
	}
	for _, o := range n.outputs {
		if o.grad != nil {
			o.grad.Release()
			o.grad = nil
		}
		// A value a downstream backward rebuilt (or one kept for this op after its owner released
		// it) was needed only by this op, which has now run.
		if o.restored {
			o.Value.Release()
			o.Value, o.restored = nil, false
		}
		// The Var outlives the tape as a plain value: drop the links that would keep the graph
		// (and every input value) reachable.
		o.producer, o.tape, o.requiresGrad = nil, nil, false
	}
	for _, s := range n.saved {
		if s != nil {
			s.Release()
		}
	}
	for _, s := range n.discard {
		s.Release()
	}
	n.saved, n.discard, n.inputs, n.outputs = nil, nil, nil, nil
}

// exclusive reports whether dx, returned for input i, may be modified in place: it shares storage
// with nothing that stays alive (another returned gradient, a saved tensor, a value) except an
// output gradient that is itself exclusive, which is released right after this op.
func (t *Tape) exclusive(n *node, i int, dx *tensor.Tensor, dys, dxs []*tensor.Tensor) bool {
	for j, dy := range dys {
		if dy != nil && tensor.SameStorage(dx, dy) && !n.outputs[j].gradOwned {
			return false
		}
	}
	for k, o := range dxs {
		if k != i && o != nil && tensor.SameStorage(dx, o) {
			return false
		}
	}
	for _, s := range n.saved {
		if s != nil && tensor.SameStorage(dx, s) {
			return false
		}
	}
	for _, vs := range [][]*Var{n.inputs, n.outputs} {
		for _, v := range vs {
			if v != nil && v.Value != nil && tensor.SameStorage(dx, v.Value) {
				return false
			}
		}
	}
	return true
}

// accumulate adds g (a reference the tape owns) to v's gradient. owned says g may be modified in
// place. Leaf gradients end up exclusive to the Var; intermediate ones are combined out of place when
// neither side may be modified.
func (t *Tape) accumulate(v *Var, g *tensor.Tensor, owned bool, shape tensor.Shape, op string) {
	if !g.Shape().Equal(shape) {
		if g.Numel() != shape.Numel() {
			panic(fmt.Sprintf("autodiff: %s backward returned a gradient of shape %v for an input of shape %v", op, g.Shape(), shape))
		}
		r := g.Reshape(shape...)
		g.Release()
		g = r
	}
	if v.producer == nil || v.tape != t {
		// A leaf: the gradient the user sees must be exclusively theirs.
		switch {
		case v.Grad != nil:
			tensor.Axpy(1, g, v.Grad)
			g.Release()
		case owned:
			v.Grad = g
		default:
			v.Grad = tensor.Clone(g)
			g.Release()
		}
		return
	}
	switch {
	case v.grad == nil:
		v.grad, v.gradOwned = g, owned
	case v.gradOwned:
		tensor.Axpy(1, g, v.grad)
		g.Release()
	case owned:
		tensor.Axpy(1, v.grad, g)
		v.grad.Release()
		v.grad, v.gradOwned = g, true
	default:
		sum := tensor.Clone(v.grad)
		tensor.Axpy(1, g, sum)
		v.grad.Release()
		g.Release()
		v.grad, v.gradOwned = sum, true
	}
}

// finish releases whatever the backward walk left: values rebuilt for leaves.
func (t *Tape) finish() {
	for _, v := range t.restoredLeaves {
		if v.restored {
			v.Value.Release()
			v.Value, v.restored = nil, false
		}
	}
	t.restoredLeaves = nil
	t.nodes = nil
}

// Release frees everything the tape holds without running Backward (e.g. after a forward pass whose
// gradients turned out not to be needed) and disconnects the Vars it produced. The tape records
// nothing afterwards.
func (t *Tape) Release() {
	if t == nil {
		return
	}
	t.done = true
	for _, n := range t.nodes {
		for _, o := range n.outputs {
			if o.grad != nil {
				o.grad.Release()
				o.grad = nil
			}
			if o.restored {
				o.Value.Release()
				o.Value, o.restored = nil, false
			}
			o.producer, o.tape, o.requiresGrad = nil, nil, false
		}
		for _, s := range n.saved {
			if s != nil {
				s.Release()
			}
		}
		n.saved, n.inputs, n.outputs = nil, nil, nil
	}
	t.finish()
}

// referencedLater reports whether an op recorded after v's producer still holds v's storage: a
// saved tensor or an output view of it. Releasing v then frees no memory, so the tape keeps the
// reference for the producer's backward instead.
func (t *Tape) referencedLater(v *Var) bool {
	for k := len(t.nodes) - 1; k > v.producer.idx; k-- {
		n := t.nodes[k]
		for _, s := range n.saved {
			if s != nil && tensor.SameStorage(s, v.Value) {
				return true
			}
		}
		for _, o := range n.outputs {
			if o.Value != nil && tensor.SameStorage(o.Value, v.Value) {
				return true
			}
		}
	}
	return false
}

func shapeOf(v *Var) string {
	if v == nil || v.Value == nil {
		return "released value"
	}
	return v.Value.Shape().String()
}
