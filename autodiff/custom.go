package autodiff

import (
	"fmt"

	"dlf/tensor"
)

// Context is what an op's backward sees of its record.
type Context struct {
	t *Tape
	n *node
}

// Name returns the op's name.
func (c *Context) Name() string { return c.n.name }

// Saved returns the i-th tensor the op saved at record time.
func (c *Context) Saved(i int) *tensor.Tensor { return c.n.saved[i] }

// NumInputs returns the number of inputs (including absent optional ones).
func (c *Context) NumInputs() int { return len(c.n.inputs) }

// NeedsGrad reports whether input i is present and requires a gradient; a backward may skip the
// work for inputs that do not.
func (c *Context) NeedsGrad(i int) bool {
	in := c.n.inputs[i]
	return in != nil && in.requiresGrad
}

// InputShape returns the shape input i had when the op was recorded.
func (c *Context) InputShape(i int) tensor.Shape { return c.n.inShapes[i] }

// Input returns the current value of input i, or nil when it has been released and not restored.
func (c *Context) Input(i int) *tensor.Tensor {
	if in := c.n.inputs[i]; in != nil {
		return in.Value
	}
	return nil
}

// Output returns the current value of output i. It panics when the value has been released and no
// downstream op restored it: an op that reads its output lazily needs the caller to keep it, or a
// recomputing consumer to rebuild it.
func (c *Context) Output(i int) *tensor.Tensor {
	v := c.n.outputs[i].Value
	if v == nil {
		panic(fmt.Sprintf("autodiff: %s backward needs output %d, which was released and not restored by a downstream op", c.n.name, i))
	}
	return v
}

// RestoreInput hands the tape a rebuilt value x of input i (typically computed by inverting the
// op from its output). When the input's value was released, x becomes its value, which the op that
// produced the input then reads as its output; the tape frees it once that producer's backward has
// run. When the input still has its value, x is released after this backward returns. Either way x
// stays valid for the rest of this backward.
func (c *Context) RestoreInput(i int, x *tensor.Tensor) {
	in := c.n.inputs[i]
	if in == nil || in.Value != nil {
		c.n.discard = append(c.n.discard, x)
		return
	}
	if want := c.n.inShapes[i]; !x.Shape().Equal(want) {
		panic(fmt.Sprintf("autodiff: %s restores input %d with shape %v, want %v", c.n.name, i, x.Shape(), want))
	}
	in.Value = x
	in.restored = true
	if in.producer == nil || in.tape != c.t {
		c.t.restoredLeaves = append(c.t.restoredLeaves, in)
	}
}

// Custom records an op computed by the caller. outputs are the op's results (the returned Vars take
// them over); saved are references the backward needs (the tape takes them over and releases them
// after the backward, or at once when nothing is recorded). inputs may hold nil for absent optional
// inputs. The backward may also read inputs and outputs lazily through the Context and rebuild
// released inputs with RestoreInput.
func (t *Tape) Custom(name string, inputs []*Var, outputs []*tensor.Tensor, saved []*tensor.Tensor, backward BackwardFunc) []*Var {
	if !t.needGrad(inputs...) {
		for _, s := range saved {
			if s != nil {
				s.Release()
			}
		}
		saved = nil
	}
	vars := t.record(name, inputs, outputs, func() []*tensor.Tensor { return saved }, backward)
	if len(vars) > 0 && vars[0].producer != nil {
		vars[0].producer.lazy = true
	}
	return vars
}

// ReversibleFunc computes an invertible layer with Tape ops: outputs[0] is the layer's output y,
// from which the inverse rebuilds x; further outputs (e.g. a per-example log-determinant) are
// allowed. It must be deterministic, since the backward runs it again.
type ReversibleFunc func(t *Tape, x *Var, params []*Var) []*Var

// InverseFunc rebuilds the layer's input from its output y and the parameter values. It returns a
// new tensor.
type InverseFunc func(y *tensor.Tensor, params []*tensor.Tensor) *tensor.Tensor

// Reversible records an invertible layer that saves nothing for its backward. The forward runs f
// without recording; the backward takes the output y (kept by the caller or restored by a downstream
// reversible layer), rebuilds x with inverse when x was released, restores it for the op that
// produced it, runs f again on a private tape and backpropagates through it. A chain of reversible
// layers whose intermediates the caller releases therefore holds one layer's activations at a time
// during backward, at the price of one extra forward and one inverse per layer. The rebuilt x equals
// the original up to the inverse's rounding, so gradients agree with a storing layer's to working
// precision, not bit for bit.
func (t *Tape) Reversible(name string, x *Var, params []*Var, f ReversibleFunc, inverse InverseFunc) []*Var {
	outs := f(NoGrad(), x, params)
	vals := make([]*tensor.Tensor, len(outs))
	for i, o := range outs {
		vals[i], o.Value = o.Value, nil
	}
	inputs := append([]*Var{x}, params...)
	return t.Custom(name, inputs, vals, nil, func(c *Context, dys []*tensor.Tensor) []*tensor.Tensor {
		pv := make([]*tensor.Tensor, len(params))
		for i, p := range params {
			pv[i] = p.Value
		}
		xv := c.Input(0)
		if xv == nil {
			xv = inverse(c.Output(0), pv)
			c.RestoreInput(0, xv)
		}
		sub := NewTape()
		xs := &Var{Value: retain(xv), requiresGrad: c.NeedsGrad(0)}
		ps := make([]*Var, len(params))
		for i, p := range params {
			ps[i] = &Var{Value: retain(p.Value), requiresGrad: c.NeedsGrad(i + 1)}
		}
		re := f(sub, xs, ps)
		var roots []*Var
		var grads []*tensor.Tensor
		for j, o := range re {
			if dys[j] != nil && o.requiresGrad {
				roots = append(roots, o)
				grads = append(grads, dys[j])
			}
		}
		if len(roots) > 0 {
			sub.BackwardFrom(roots, grads)
		} else {
			sub.Release()
		}
		for _, o := range re {
			o.Release()
		}
		dxs := make([]*tensor.Tensor, len(inputs))
		dxs[0] = xs.Grad
		xs.Release()
		for i, p := range ps {
			dxs[i+1] = p.Grad
			p.Release()
		}
		return dxs
	})
}
