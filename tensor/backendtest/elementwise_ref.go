package backendtest

import (
	"fmt"
	"math"

	"dlf/tensor"
)

// bcastKind names how the second operand of a binary op is shaped relative to the first.
type bcastKind int

const (
	bcFull     bcastKind = iota // same shape
	bcChannel                   // [C]: one value per last index
	bcChannel4                  // [1,…,1,C]
	bcExample                   // [N,1,…,1]: one value per first index
	bcExample1                  // [N]
	bcScalar                    // [1]
)

func (k bcastKind) String() string {
	return [...]string{"full", "perchannel", "perchannel4d", "perexample", "perexample1d", "scalar"}[k]
}

// shape returns b's shape for a of shape s.
func (k bcastKind) shape(s []int) []int {
	r := len(s)
	// keep returns a shape of a's rank with ones everywhere but dimension d.
	keep := func(d int) []int {
		out := make([]int, r)
		for i := range out {
			out[i] = 1
		}
		out[d] = s[d]
		return out
	}
	switch k {
	case bcFull:
		return append([]int(nil), s...)
	case bcChannel:
		return []int{s[r-1]}
	case bcChannel4:
		return keep(r - 1)
	case bcExample:
		return keep(0)
	case bcExample1:
		return []int{s[0]}
	case bcScalar:
		return []int{1}
	}
	panic("bad broadcast kind")
}

// unravel returns the multi-index of flat index i in shape s (row-major).
func unravel(s []int, i int) []int {
	idx := make([]int, len(s))
	for d := len(s) - 1; d >= 0; d-- {
		idx[d] = i % s[d]
		i /= s[d]
	}
	return idx
}

// refBinary computes a op b elementwise over shape s, picking b's element from the multi-index of
// each element of a: the same element (full), its last index (per-channel), its first index
// (per-example) or element 0 (scalar).
func refBinary(op tensor.BinaryOp, s []int, a, b []float64, k bcastKind) []ev {
	out := make([]ev, len(a))
	for i := range a {
		idx := unravel(s, i)
		var bj int
		switch k {
		case bcFull:
			bj = i
		case bcChannel, bcChannel4:
			bj = idx[len(idx)-1]
		case bcExample, bcExample1:
			bj = idx[0]
		case bcScalar:
			bj = 0
		}
		x, y := in(a[i]), in(b[bj])
		switch op {
		case tensor.Add:
			out[i] = x.add(y)
		case tensor.Sub:
			out[i] = x.sub(y)
		case tensor.Mul:
			out[i] = x.mul(y)
		case tensor.Div:
			out[i] = x.div(y)
		default:
			panic(fmt.Sprintf("refBinary: op %v", op))
		}
	}
	return out
}

// refUnary applies op to each element. Each of these ops rounds once, so the scale is |result|,
// except AddConst, a sum whose scale is |x| + |p1|.
func refUnary(op tensor.UnaryOp, x []float64, p1, p2 float64) []ev {
	out := make([]ev, len(x))
	for i, v := range x {
		var r float64
		switch op {
		case tensor.Exp:
			r = math.Exp(v)
		case tensor.Log:
			r = math.Log(v)
		case tensor.Tanh:
			r = math.Tanh(v)
		case tensor.Sigmoid:
			r = 1 / (1 + math.Exp(-v))
		case tensor.Relu:
			r = math.Max(v, 0)
		case tensor.Square:
			r = v * v
		case tensor.Sqrt:
			r = math.Sqrt(v)
		case tensor.Neg:
			r = -v
		case tensor.Abs:
			r = math.Abs(v)
		case tensor.Scale:
			r = p1 * v
		case tensor.AddConst:
			out[i] = in(v).add(in(p1))
			continue
		case tensor.Clamp:
			r = math.Min(math.Max(v, p1), p2)
		default:
			panic(fmt.Sprintf("refUnary: op %v", op))
		}
		out[i] = in(r)
	}
	return out
}

// refUnaryGrad computes the input gradient of a unary op from the saved value and dy.
func refUnaryGrad(op tensor.UnaryGradOp, saved, dy []float64, p1, p2 float64) []ev {
	out := make([]ev, len(dy))
	one := in(1)
	for i := range dy {
		s, g := in(saved[i]), in(dy[i])
		switch op {
		case tensor.ReluGrad:
			if saved[i] > 0 {
				out[i] = g
			} else {
				out[i] = in(0)
			}
		case tensor.TanhGrad:
			out[i] = g.mul(one.sub(s.mul(s)))
		case tensor.SigmoidGrad:
			out[i] = g.mul(s).mul(one.sub(s))
		case tensor.ClampGrad:
			if p1 <= saved[i] && saved[i] <= p2 {
				out[i] = g
			} else {
				out[i] = in(0)
			}
		case tensor.AbsGrad:
			switch {
			case saved[i] > 0:
				out[i] = g
			case saved[i] < 0:
				out[i] = g.neg()
			default:
				out[i] = in(0)
			}
		default:
			panic(fmt.Sprintf("refUnaryGrad: op %v", op))
		}
	}
	return out
}

// refAxpy computes y + alpha·x.
func refAxpy(alpha float64, x, y []float64) []ev {
	out := make([]ev, len(y))
	for i := range y {
		out[i] = in(y[i]).add(in(x[i]).scale(alpha))
	}
	return out
}
