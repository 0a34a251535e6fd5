package autodiff

import (
	"fmt"

	"dlf/tensor"
)

// Reshape returns x with a new shape (one dimension may be -1), sharing its storage.
func (t *Tape) Reshape(x *Var, shape ...int) *Var {
	xs := x.Value.Shape().Clone()
	y := x.Value.Reshape(shape...)
	return t.record("reshape", []*Var{x}, []*tensor.Tensor{y}, nil, func(c *Context, dys []*tensor.Tensor) []*tensor.Tensor {
		return []*tensor.Tensor{dys[0].Reshape(xs...)}
	})[0]
}

// SliceChannels returns channels [lo, hi) of x (the last axis).
func (t *Tape) SliceChannels(x *Var, lo, hi int) *Var {
	xs := x.Value.Shape().Clone()
	y := tensor.SliceChannels(x.Value, lo, hi)
	return t.record("slice", []*Var{x}, []*tensor.Tensor{y}, nil, func(c *Context, dys []*tensor.Tensor) []*tensor.Tensor {
		dx := zerosShape(dys[0], xs)
		tensor.CopyChannels(dx, lo, dys[0], 0, hi-lo)
		return []*tensor.Tensor{dx}
	})[0]
}

// SplitChannels splits x along the last axis into consecutive parts of the given sizes, which must
// add up to the channel count. Its backward writes every part's gradient into one tensor, cheaper
// than several SliceChannels.
func (t *Tape) SplitChannels(x *Var, sizes ...int) []*Var {
	xs := x.Value.Shape().Clone()
	total := 0
	for _, s := range sizes {
		total += s
	}
	if total != xs[len(xs)-1] {
		panic(fmt.Sprintf("autodiff: SplitChannels of %v into %v", xs, sizes))
	}
	parts := make([]*tensor.Tensor, len(sizes))
	off := 0
	for i, s := range sizes {
		parts[i] = tensor.SliceChannels(x.Value, off, off+s)
		off += s
	}
	return t.record("split", []*Var{x}, parts, nil, func(c *Context, dys []*tensor.Tensor) []*tensor.Tensor {
		var dx *tensor.Tensor
		for _, dy := range dys {
			if dy == nil {
				dx = zerosShape(firstNonNil(dys), xs)
				break
			}
		}
		if dx == nil {
			dx = newShape(dys[0], xs)
		}
		off := 0
		for i, dy := range dys {
			if dy != nil {
				tensor.CopyChannels(dx, off, dy, 0, sizes[i])
			}
			off += sizes[i]
		}
		return []*tensor.Tensor{dx}
	})
}

func firstNonNil(ts []*tensor.Tensor) *tensor.Tensor {
	for _, t := range ts {
		if t != nil {
			return t
		}
	}
	return nil
}

// ConcatChannels joins the parts side by side along the last axis.
func (t *Tape) ConcatChannels(parts ...*Var) *Var {
	s := parts[0].Value.Shape().Clone()
	sizes := make([]int, len(parts))
	total := 0
	for i, p := range parts {
		sizes[i] = p.Value.Dim(-1)
		total += sizes[i]
	}
	s[len(s)-1] = total
	y := newShape(parts[0].Value, s)
	vals := make([]*tensor.Tensor, len(parts))
	for i, p := range parts {
		vals[i] = p.Value
	}
	tensor.ConcatChannels(y, vals...)
	return t.record("concat", parts, []*tensor.Tensor{y}, nil, func(c *Context, dys []*tensor.Tensor) []*tensor.Tensor {
		out := make([]*tensor.Tensor, len(parts))
		off := 0
		for i, n := range sizes {
			if c.NeedsGrad(i) {
				out[i] = tensor.SliceChannels(dys[0], off, off+n)
			}
			off += n
		}
		return out
	})[0]
}

// Squeeze2 rearranges x [N,H,W,C] into [N,H/2,W/2,4C] in Glow's channel order (dlf-spec §2.2).
func (t *Tape) Squeeze2(x *Var) *Var {
	n, h, w, ch := x.Value.Shape().NHWC()
	y := newShape(x.Value, tensor.Shape{n, h / 2, w / 2, 4 * ch})
	tensor.Squeeze2(y, x.Value)
	return t.record("squeeze2", []*Var{x}, []*tensor.Tensor{y}, nil, func(c *Context, dys []*tensor.Tensor) []*tensor.Tensor {
		dx := newShape(dys[0], tensor.Shape{n, h, w, ch})
		tensor.Unsqueeze2(dx, dys[0])
		return []*tensor.Tensor{dx}
	})[0]
}

// Unsqueeze2 inverts Squeeze2: x [N,H,W,4C] into [N,2H,2W,C].
func (t *Tape) Unsqueeze2(x *Var) *Var {
	n, h, w, ch := x.Value.Shape().NHWC()
	y := newShape(x.Value, tensor.Shape{n, 2 * h, 2 * w, ch / 4})
	tensor.Unsqueeze2(y, x.Value)
	return t.record("unsqueeze2", []*Var{x}, []*tensor.Tensor{y}, nil, func(c *Context, dys []*tensor.Tensor) []*tensor.Tensor {
		dx := newShape(dys[0], tensor.Shape{n, h, w, ch})
		tensor.Squeeze2(dx, dys[0])
		return []*tensor.Tensor{dx}
	})[0]
}
