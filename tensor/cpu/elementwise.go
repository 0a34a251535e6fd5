package cpu

import (
	"fmt"
	"math"

	"dlf/tensor"
)

// Binary computes dst[i] = a[i] op b[(i/bc.Div) % bc.Mod].
func (b *Backend) Binary(op tensor.BinaryOp, dst, a, bt *tensor.Tensor, bc tensor.Broadcast) {
	if b.dead() {
		return
	}
	if is32(dst) {
		binary(b, op, data[float32](dst), data[float32](a), data[float32](bt), bc)
	} else {
		binary(b, op, data[float64](dst), data[float64](a), data[float64](bt), bc)
	}
}

// tileElems is the length a narrow per-channel Binary operand is repeated to (a multiple of its
// period), so that the vector-vector loop runs long stretches.
const tileElems = 256

func binary[T float](b *Backend, op tensor.BinaryOp, d, x, y []T, bc tensor.Broadcast) {
	if op < tensor.Add || op > tensor.Div {
		panic(fmt.Sprintf("cpu: unknown binary op %d", op))
	}
	div, mod := max(bc.Div, 1), max(bc.Mod, 1)
	// A per-channel operand with few channels (the flows' 4–24) would make the vector loop run
	// only mod elements per call; repeat it to at least tileElems elements first.
	var tiled *buffer[T]
	if div == 1 && mod > 1 && mod < tileElems && len(d) >= 2*tileElems {
		tiled = pool[T](b).get((tileElems + mod - 1) / mod * mod)
		defer pool[T](b).put(tiled)
		for i := range tiled.data {
			tiled.data[i] = y[i%mod]
		}
	}
	b.parallel(len(d), 1, func(lo, hi int) {
		switch {
		case mod == 1:
			binaryVS(op, d[lo:hi], x[lo:hi], y[0])
		case div == 1 && tiled != nil:
			// Narrow per-channel operand: walk runs of the tiled copy of y.
			t := tiled.data
			for i := lo; i < hi; {
				bi := i % mod
				end := min(hi, i+len(t)-bi)
				binaryVV(op, d[i:end], x[i:end], t[bi:bi+end-i])
				i = end
			}
		case div == 1:
			for i := lo; i < hi; {
				bi := i % mod
				end := min(hi, i+mod-bi)
				binaryVV(op, d[i:end], x[i:end], y[bi:bi+end-i])
				i = end
			}
		default:
			for i := lo; i < hi; {
				q := i / div
				end := min(hi, (q+1)*div)
				binaryVS(op, d[i:end], x[i:end], y[q%mod])
				i = end
			}
		}
	})
}

// binaryVV computes d = x op y elementwise.
func binaryVV[T float](op tensor.BinaryOp, d, x, y []T) {
	x, y = x[:len(d)], y[:len(d)]
	switch op {
	case tensor.Add:
		for i := range d {
			d[i] = x[i] + y[i]
		}
	case tensor.Sub:
		for i := range d {
			d[i] = x[i] - y[i]
		}
	case tensor.Mul:
		for i := range d {
			d[i] = x[i] * y[i]
		}
	case tensor.Div:
		for i := range d {
			d[i] = x[i] / y[i]
		}
	}
}

// binaryVS computes d = x op s.
func binaryVS[T float](op tensor.BinaryOp, d, x []T, s T) {
	x = x[:len(d)]
	switch op {
	case tensor.Add:
		for i := range d {
			d[i] = x[i] + s
		}
	case tensor.Sub:
		for i := range d {
			d[i] = x[i] - s
		}
	case tensor.Mul:
		for i := range d {
			d[i] = x[i] * s
		}
	case tensor.Div:
		for i := range d {
			d[i] = x[i] / s
		}
	}
}

// Unary computes dst = op(x; p1, p2).
func (b *Backend) Unary(op tensor.UnaryOp, dst, x *tensor.Tensor, p1, p2 float64) {
	if b.dead() {
		return
	}
	if is32(dst) {
		unary(b, op, data[float32](dst), data[float32](x), p1, p2)
	} else {
		unary(b, op, data[float64](dst), data[float64](x), p1, p2)
	}
}

// unaryCost is the per-element cost, in minWork units, of the transcendental unary ops (8–10 ns
// for math.Exp in BenchmarkExp).
const unaryCost = 24

func unary[T float](b *Backend, op tensor.UnaryOp, d, x []T, p1, p2 float64) {
	cost := 1
	switch op {
	case tensor.Exp, tensor.Log, tensor.Tanh, tensor.Sigmoid:
		cost = unaryCost
	case tensor.Sqrt, tensor.Neg, tensor.Abs, tensor.Relu, tensor.Square, tensor.Scale, tensor.AddConst, tensor.Clamp:
	default:
		panic(fmt.Sprintf("cpu: unknown unary op %d", op))
	}
	b.parallel(len(d), cost, func(lo, hi int) { unaryRange(op, d[lo:hi], x[lo:hi], p1, p2) })
}

// unaryRange applies op to one range. Transcendental functions are evaluated in float64 and
// rounded once, so float32 results are correctly rounded up to the float64 library's error.
func unaryRange[T float](op tensor.UnaryOp, d, x []T, p1, p2 float64) {
	x = x[:len(d)]
	switch op {
	case tensor.Exp:
		for i := range d {
			d[i] = T(math.Exp(float64(x[i])))
		}
	case tensor.Log:
		for i := range d {
			d[i] = T(math.Log(float64(x[i])))
		}
	case tensor.Tanh:
		for i := range d {
			d[i] = T(math.Tanh(float64(x[i])))
		}
	case tensor.Sigmoid:
		for i := range d {
			d[i] = T(sigmoid(float64(x[i])))
		}
	case tensor.Relu:
		if d32, ok := any(d).([]float32); ok {
			reluF32(d32, any(x).([]float32))
			return
		}
		// The builtin max compiles to branch-free code; a compare-and-branch mispredicts on
		// every other element of zero-mean activations (about 2× slower).
		for i, v := range x {
			d[i] = max(v, 0)
		}
	case tensor.Square:
		for i, v := range x {
			d[i] = v * v
		}
	case tensor.Sqrt:
		for i := range d {
			d[i] = T(math.Sqrt(float64(x[i])))
		}
	case tensor.Neg:
		for i, v := range x {
			d[i] = -v
		}
	case tensor.Abs:
		for i := range d {
			d[i] = T(math.Abs(float64(x[i])))
		}
	case tensor.Scale:
		s := T(p1)
		for i, v := range x {
			d[i] = s * v
		}
	case tensor.AddConst:
		s := T(p1)
		for i, v := range x {
			d[i] = v + s
		}
	case tensor.Clamp:
		lo, hi := T(p1), T(p2)
		for i, v := range x {
			d[i] = min(max(v, lo), hi)
		}
	}
}

// sigmoid is 1/(1+e^-x), evaluated so that exp never overflows.
func sigmoid(x float64) float64 {
	if x >= 0 {
		return 1 / (1 + math.Exp(-x))
	}
	e := math.Exp(x)
	return e / (1 + e)
}

// softplus is log(1+e^x) without overflow or loss of small values.
func softplus(x float64) float64 {
	return max(x, 0) + math.Log1p(math.Exp(-math.Abs(x)))
}

// UnaryGrad computes dx from the upstream gradient dy and the saved input or output of a unary op.
func (b *Backend) UnaryGrad(op tensor.UnaryGradOp, dx, saved, dy *tensor.Tensor, p1, p2 float64) {
	if b.dead() {
		return
	}
	if is32(dx) {
		unaryGrad(b, op, data[float32](dx), data[float32](saved), data[float32](dy), p1, p2)
	} else {
		unaryGrad(b, op, data[float64](dx), data[float64](saved), data[float64](dy), p1, p2)
	}
}

func unaryGrad[T float](b *Backend, op tensor.UnaryGradOp, dx, s, dy []T, p1, p2 float64) {
	if op < tensor.ReluGrad || op > tensor.AbsGrad {
		panic(fmt.Sprintf("cpu: unknown unary gradient op %d", op))
	}
	b.parallel(len(dx), 1, func(lo, hi int) {
		d, s, g := dx[lo:hi], s[lo:hi], dy[lo:hi]
		s, g = s[:len(d)], g[:len(d)]
		// The masks are computed as 0/1 integers and multiplied in, exactly the documented
		// dy·[cond]: the compiler turns the integer selects into SETcc, where an if/else on
		// the float compare would mispredict on every other element of zero-mean data (measured
		// 2–4× slower).
		switch op {
		case tensor.ReluGrad:
			if d32, ok := any(d).([]float32); ok {
				reluGradF32(d32, any(s).([]float32), any(g).([]float32))
				return
			}
			for i := range d {
				k := 0
				if s[i] > 0 {
					k = 1
				}
				d[i] = g[i] * T(k)
			}
		case tensor.TanhGrad:
			for i := range d {
				y := s[i]
				d[i] = g[i] * (1 - y*y)
			}
		case tensor.SigmoidGrad:
			for i := range d {
				y := s[i]
				d[i] = g[i] * y * (1 - y)
			}
		case tensor.ClampGrad:
			lo, hi := T(p1), T(p2)
			for i := range d {
				k0, k1 := 0, 0
				if s[i] >= lo {
					k0 = 1
				}
				if s[i] <= hi {
					k1 = 1
				}
				d[i] = g[i] * T(k0&k1)
			}
		case tensor.AbsGrad:
			for i := range d {
				kp, kn := 0, 0
				if s[i] > 0 {
					kp = 1
				}
				if s[i] < 0 {
					kn = 1
				}
				d[i] = g[i] * T(kp-kn)
			}
		}
	})
}

// Axpy computes y += alpha·x.
func (b *Backend) Axpy(alpha float64, x, y *tensor.Tensor) {
	if b.dead() {
		return
	}
	if is32(y) {
		axpy(b, float32(alpha), data[float32](x), data[float32](y))
	} else {
		axpy(b, alpha, data[float64](x), data[float64](y))
	}
}

func axpy[T float](b *Backend, a T, x, y []T) {
	b.parallel(len(y), 1, func(lo, hi int) {
		ys, xs := y[lo:hi], x[lo:hi]
		for i := range ys {
			ys[i] += a * xs[i]
		}
	})
}
