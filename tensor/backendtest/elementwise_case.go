package backendtest

import (
	"math"

	"dlf/tensor"
)

// elemShapes adds a 2-D matrix and a 1-D vector to the activation shapes for elementwise ops.
var elemShapes = append(append([][]int(nil), actShapes...), []int{6, 10}, []int{13})

// runBinary covers Add, Sub, Mul, Div with every broadcast form and with dst aliasing a or b.
func runBinary(s *suite, t tb) {
	ops := []struct {
		op tensor.BinaryOp
		f  func(dst, a, b *tensor.Tensor)
	}{
		{tensor.Add, tensor.AddT}, {tensor.Sub, tensor.SubT}, {tensor.Mul, tensor.MulT}, {tensor.Div, tensor.DivT},
	}
	for _, o := range ops {
		name := map[tensor.BinaryOp]string{tensor.Add: "Add", tensor.Sub: "Sub", tensor.Mul: "Mul", tensor.Div: "Div"}[o.op]
		s.op(t, name, func(t tb, dt tensor.DType) {
			for _, sh := range elemShapes {
				for _, k := range []bcastKind{bcFull, bcChannel, bcChannel4, bcExample, bcExample1, bcScalar} {
					if !broadcastUnambiguous(sh, k) {
						continue
					}
					aliases := []string{"", "dstA"}
					if k == bcFull {
						aliases = append(aliases, "dstB")
					}
					for _, alias := range aliases {
						cname := shapeName(sh) + "_" + k.String()
						if alias != "" {
							cname += "_" + alias
						}
						s.leaf(t, dt, cname, func(e *env) {
							bs := k.shape(sh)
							e.describe("b %v (%v), alias %q", bs, k, alias)
							av := e.signed(numel(sh), 0.1, 4)
							var bv []float64
							if o.op == tensor.Div {
								bv = e.signed(numel(bs), 0.5, 2)
							} else {
								bv = e.signed(numel(bs), 0.1, 4)
							}
							want, scale := split(refBinary(o.op, sh, av, bv, k))
							a, b := e.tensor(av, sh...), e.tensor(bv, bs...)
							dst := a
							switch alias {
							case "":
								dst = e.poisoned(sh...)
							case "dstB":
								dst = b
							}
							o.f(dst, a, b)
							e.expect(o.op.String(), dst, want, scale, e.tol.Elementwise)
							if alias != "dstB" {
								e.expectExact("b (must be unchanged)", b.Shape(), e.get(b), bv)
							}
						})
					}
				}
			}
		})
	}
}

// broadcastUnambiguous reports whether b of kind k against a of shape s is read the way k means
// (tensor.BroadcastOf prefers full, then scalar, then per-channel, then per-example).
func broadcastUnambiguous(s []int, k bcastKind) bool {
	n, c, total := s[0], s[len(s)-1], numel(s)
	switch k {
	case bcFull:
		return true
	case bcScalar:
		return total > 1
	case bcChannel, bcChannel4:
		return c > 1 && c != total && (k == bcChannel || len(s) > 1)
	case bcExample:
		return len(s) > 1 && n > 1 && n != total && c != 1
	case bcExample1:
		return len(s) > 1 && n > 1 && n != total && n != c
	}
	return false
}

type unaryCase struct {
	op     tensor.UnaryOp
	name   string
	gen    func(e *env, n int) []float64
	p1, p2 func(e *env) float64
}

func unaryCases() []unaryCase {
	signed := func(lo, hi float64) func(e *env, n int) []float64 {
		return func(e *env, n int) []float64 { return e.signed(n, lo, hi) }
	}
	pos := func(lo, hi float64) func(e *env, n int) []float64 {
		return func(e *env, n int) []float64 { return e.positive(n, lo, hi) }
	}
	// Parameters that an op ignores get arbitrary values, to check they are ignored.
	junk := func(e *env) float64 { return e.scalar(0.5, 5) }
	return []unaryCase{
		{tensor.Exp, "Exp", signed(0.01, 3), junk, junk},
		{tensor.Log, "Log", pos(0.05, 8), junk, junk},
		{tensor.Tanh, "Tanh", signed(0.01, 2), junk, junk},
		{tensor.Sigmoid, "Sigmoid", signed(0.01, 3), junk, junk},
		{tensor.Relu, "Relu", signed(0.01, 2), junk, junk},
		{tensor.Square, "Square", signed(0.1, 3), junk, junk},
		{tensor.Sqrt, "Sqrt", pos(0.01, 9), junk, junk},
		{tensor.Neg, "Neg", signed(0.1, 3), junk, junk},
		{tensor.Abs, "Abs", signed(0.1, 3), junk, junk},
		{tensor.Scale, "Scale", signed(0.1, 3), func(e *env) float64 { return e.scalar(0.3, 2) }, junk},
		{tensor.AddConst, "AddConst", signed(0.1, 3), func(e *env) float64 { return e.scalar(0.3, 2) }, junk},
		{tensor.Clamp, "Clamp", clampInputs, func(*env) float64 { return -0.75 }, func(*env) float64 { return 0.6 }},
	}
}

// clampInputs avoids the clamp bounds (−0.75, 0.6) by 1e-3, so that rounding the bounds to the
// dtype cannot flip a comparison.
func clampInputs(e *env, n int) []float64 {
	out := e.signed(n, 0.01, 2)
	for i, v := range out {
		if math.Abs(v+0.75) < 1e-3 || math.Abs(v-0.6) < 1e-3 {
			out[i] = e.round(v + 0.01)
		}
	}
	return out
}

// runUnary covers every UnaryOp, out of place and in place.
func runUnary(s *suite, t tb) {
	for _, uc := range unaryCases() {
		s.op(t, uc.name, func(t tb, dt tensor.DType) {
			for _, sh := range elemShapes {
				for _, alias := range []bool{false, true} {
					cname := shapeName(sh)
					if alias {
						cname += "_inplace"
					}
					s.leaf(t, dt, cname, func(e *env) {
						p1, p2 := uc.p1(e), uc.p2(e)
						e.describe("p1=%g p2=%g inplace=%v", p1, p2, alias)
						xv := uc.gen(e, numel(sh))
						want, scale := split(refUnary(uc.op, xv, p1, p2))
						x := e.tensor(xv, sh...)
						dst := x
						if !alias {
							dst = e.poisoned(sh...)
						}
						tensor.UnaryT(uc.op, dst, x, p1, p2)
						e.expect(uc.name, dst, want, scale, e.tol.Elementwise)
					})
				}
			}
		})
	}
}

type unaryGradCase struct {
	op      tensor.UnaryGradOp
	name    string
	fwd     tensor.UnaryOp
	saveOut bool // the saved tensor is the forward output y (else the input x)
	gen     func(e *env, n int) []float64
}

func unaryGradCases() []unaryGradCase {
	// Inputs stay 1e-2 away from the kinks of relu/abs/clamp, far beyond any rounding and beyond
	// the finite-difference step.
	return []unaryGradCase{
		{tensor.ReluGrad, "ReluGrad", tensor.Relu, false, func(e *env, n int) []float64 { return e.signed(n, 0.01, 2) }},
		{tensor.TanhGrad, "TanhGrad", tensor.Tanh, true, func(e *env, n int) []float64 { return e.signed(n, 0.01, 1.5) }},
		{tensor.SigmoidGrad, "SigmoidGrad", tensor.Sigmoid, true, func(e *env, n int) []float64 { return e.signed(n, 0.01, 3) }},
		{tensor.ClampGrad, "ClampGrad", tensor.Clamp, false, func(e *env, n int) []float64 {
			out := clampInputs(e, n)
			for i, v := range out {
				if math.Abs(v+0.75) < 1e-2 || math.Abs(v-0.6) < 1e-2 {
					out[i] = e.round(v + 0.03)
				}
			}
			return out
		}},
		{tensor.AbsGrad, "AbsGrad", tensor.Abs, false, func(e *env, n int) []float64 { return e.signed(n, 0.01, 2) }},
	}
}

// runUnaryGrad covers every UnaryGradOp against its formula (with dx aliasing dy too) and, in
// float64, against central differences of the forward Unary op.
func runUnaryGrad(s *suite, t tb) {
	const p1, p2 = -0.75, 0.6
	for _, gc := range unaryGradCases() {
		s.op(t, gc.name, func(t tb, dt tensor.DType) {
			for _, sh := range elemShapes {
				for _, alias := range []bool{false, true} {
					cname := shapeName(sh)
					if alias {
						cname += "_inplace"
					}
					s.leaf(t, dt, cname, func(e *env) {
						e.describe("p1=%g p2=%g, dx aliases dy: %v", p1, p2, alias)
						xv := gc.gen(e, numel(sh))
						saved := xv
						if gc.saveOut {
							saved, _ = split(refUnary(gc.fwd, xv, p1, p2))
							saved = e.roundAll(saved)
						}
						dyv := e.signed(numel(sh), 0.1, 3)
						want, scale := split(refUnaryGrad(gc.op, saved, dyv, p1, p2))
						sv, dy := e.tensor(saved, sh...), e.tensor(dyv, sh...)
						dx := dy
						if !alias {
							dx = e.poisoned(sh...)
						}
						tensor.UnaryGradT(gc.op, dx, sv, dy, p1, p2)
						e.expect(gc.name, dx, want, scale, e.tol.Elementwise)
					})
				}
			}
			if dt != tensor.Float64 {
				return
			}
			for _, sh := range fdShapes {
				s.leaf(t, dt, shapeName(sh)+"_fd", func(e *env) {
					e.describe("central differences of Unary %v", gc.fwd)
					xv := gc.gen(e, numel(sh))
					dyv := e.signed(numel(sh), 0.1, 3)
					x := e.tensor(xv, sh...)
					y := e.poisoned(sh...)
					tensor.UnaryT(gc.fwd, y, x, p1, p2)
					saved := x
					if gc.saveOut {
						saved = y
					}
					dx := e.poisoned(sh...)
					tensor.UnaryGradT(gc.op, dx, saved, e.tensor(dyv, sh...), p1, p2)
					e.fdElementwise(gc.name, sh, xv, dyv, e.get(dx), func(xs []float64) []float64 {
						xt, yt := e.tensor(xs, sh...), e.poisoned(sh...)
						tensor.UnaryT(gc.fwd, yt, xt, p1, p2)
						return e.get(yt)
					})
				})
			}
		})
	}
}

// runAxpy covers y += alpha·x, with x of the same shape and flattened.
func runAxpy(s *suite, t tb) {
	s.op(t, "Axpy", func(t tb, dt tensor.DType) {
		for _, sh := range elemShapes {
			for _, flat := range []bool{false, true} {
				cname := shapeName(sh)
				if flat {
					cname += "_xflat"
				}
				s.leaf(t, dt, cname, func(e *env) {
					alpha := e.scalar(0.3, 2)
					e.describe("alpha=%g", alpha)
					xv, yv := e.signed(numel(sh), 0.1, 4), e.signed(numel(sh), 0.1, 4)
					want, scale := split(refAxpy(alpha, xv, yv))
					xs := sh
					if flat {
						xs = []int{numel(sh)}
					}
					x, y := e.tensor(xv, xs...), e.tensor(yv, sh...)
					tensor.Axpy(alpha, x, y)
					e.expect("Axpy y", y, want, scale, e.tol.Elementwise)
					e.expectExact("Axpy x (must be unchanged)", x.Shape(), e.get(x), xv)
				})
			}
		}
	})
}
