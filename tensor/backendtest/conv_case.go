package backendtest

import (
	"fmt"

	"dlf/tensor"
)

type convCase struct {
	g    convGeom
	bias bool
	// fd marks cases small enough for the finite-difference checks.
	fd bool
}

func (c convCase) name() string {
	g := c.g
	s := fmt.Sprintf("%dx%dx%dx%d_to%d_K%d", g.n, g.h, g.w, g.cin, g.cout, g.p.K)
	if g.p.EdgeBias {
		s += "_edge"
	}
	if c.bias {
		s += "_bias"
	}
	return s
}

// convCases: every K ∈ {1, 3} × edge bias × bias on odd shapes, then the model's convolutions at
// hidden widths 128 (MNIST) and 512 (CIFAR) with small batches.
func convCases() []convCase {
	var out []convCase
	small := [][5]int{{3, 5, 7, 3, 4}, {2, 3, 3, 5, 2}, {1, 1, 1, 1, 1}, {1, 4, 3, 2, 3}, {2, 2, 3, 2, 2}}
	for _, sz := range small {
		for _, k := range []int{1, 3} {
			for _, edge := range []bool{false, true} {
				for _, bias := range []bool{false, true} {
					out = append(out, convCase{
						g:    convGeom{sz[0], sz[1], sz[2], sz[3], sz[4], tensor.ConvParams{K: k, EdgeBias: edge}},
						bias: bias,
						fd:   sz[0]*sz[1]*sz[2] <= 12,
					})
				}
			}
		}
	}
	model := []convCase{
		{g: convGeom{2, 14, 14, 2, 128, tensor.ConvParams{K: 3, EdgeBias: true}}},             // MNIST g_k first conv
		{g: convGeom{2, 14, 14, 128, 128, tensor.ConvParams{K: 1}}},                           // MNIST second conv
		{g: convGeom{2, 14, 14, 128, 4, tensor.ConvParams{K: 3, EdgeBias: true}}, bias: true}, // zeros-conv
		{g: convGeom{2, 7, 7, 8, 8, tensor.ConvParams{K: 3, EdgeBias: true}}, bias: true},
		{g: convGeom{1, 16, 16, 6, 512, tensor.ConvParams{K: 3, EdgeBias: true}}}, // CIFAR first conv
		{g: convGeom{1, 8, 8, 512, 512, tensor.ConvParams{K: 1}}},                 // CIFAR second conv
		{g: convGeom{1, 8, 8, 512, 24, tensor.ConvParams{K: 3, EdgeBias: true}}, bias: true},
		{g: convGeom{2, 8, 8, 24, 24, tensor.ConvParams{K: 1}}, bias: true},
	}
	return append(out, model...)
}

// runConv covers Conv2D, Conv2DBackwardData, Conv2DBackwardWeights and the bias gradient, against
// the direct references and, in float64, central differences of Conv2D.
func runConv(s *suite, t tb) {
	cases := convCases()
	s.op(t, "Conv2D", func(t tb, dt tensor.DType) {
		for _, cc := range cases {
			s.leaf(t, dt, cc.name(), func(e *env) {
				g := cc.g
				e.describe("%+v bias=%v", g.p, cc.bias)
				xv := e.signed(g.n*g.h*g.w*g.cin, 0.1, 2)
				wv := e.signed(g.p.K*g.p.K*g.cinW()*g.cout, 0.05, 1)
				x := e.tensor(xv, g.n, g.h, g.w, g.cin)
				w := e.tensor(wv, g.p.K, g.p.K, g.cinW(), g.cout)
				var bias *tensor.Tensor
				var bv []float64
				if cc.bias {
					bv = e.signed(g.cout, 0.1, 2)
					bias = e.tensor(bv, g.cout)
				}
				y := e.poisoned(g.n, g.h, g.w, g.cout)
				want, scale := refConv2D(g, xv, wv, bv)
				tensor.Conv2D(g.p, y, x, w, bias)
				e.expect("Conv2D y", y, want, scale, e.tol.Matmul)
			})
		}
	})
	s.op(t, "Conv2DBackwardData", func(t tb, dt tensor.DType) {
		for _, cc := range cases {
			if cc.bias {
				continue // the bias does not enter the data gradient
			}
			s.leaf(t, dt, cc.name(), func(e *env) {
				g := cc.g
				e.describe("%+v", g.p)
				dyv := e.signed(g.n*g.h*g.w*g.cout, 0.1, 2)
				wv := e.signed(g.p.K*g.p.K*g.cinW()*g.cout, 0.05, 1)
				dy := e.tensor(dyv, g.n, g.h, g.w, g.cout)
				w := e.tensor(wv, g.p.K, g.p.K, g.cinW(), g.cout)
				dx := e.poisoned(g.n, g.h, g.w, g.cin)
				want, scale := refConv2DBackwardData(g, dyv, wv)
				tensor.Conv2DBackwardData(g.p, dx, dy, w)
				e.expect("Conv2DBackwardData dx", dx, want, scale, e.tol.Matmul)
			})
		}
	})
	s.op(t, "Conv2DBackwardWeights", func(t tb, dt tensor.DType) {
		for _, cc := range cases {
			if cc.bias {
				continue
			}
			s.leaf(t, dt, cc.name(), func(e *env) {
				g := cc.g
				e.describe("%+v", g.p)
				xv := e.signed(g.n*g.h*g.w*g.cin, 0.1, 2)
				dyv := e.signed(g.n*g.h*g.w*g.cout, 0.1, 2)
				x := e.tensor(xv, g.n, g.h, g.w, g.cin)
				dy := e.tensor(dyv, g.n, g.h, g.w, g.cout)
				dw := e.poisoned(g.p.K, g.p.K, g.cinW(), g.cout)
				want, scale := refConv2DBackwardWeights(g, xv, dyv)
				tensor.Conv2DBackwardWeights(g.p, dw, x, dy)
				e.expect("Conv2DBackwardWeights dw", dw, want, scale, e.tol.Matmul)
			})
		}
	})
	s.op(t, "Conv2DBackwardBias", func(t tb, dt tensor.DType) {
		for _, cc := range cases {
			if !cc.bias {
				continue
			}
			s.leaf(t, dt, cc.name(), func(e *env) {
				g := cc.g
				dyv := e.signed(g.n*g.h*g.w*g.cout, 0.1, 2)
				dy := e.tensor(dyv, g.n, g.h, g.w, g.cout)
				db := e.poisoned(g.cout)
				want, scale := split(refReduce(tensor.Sum, tensor.AxisChannel, []int{g.n, g.h, g.w, g.cout}, dyv))
				tensor.Conv2DBackwardBias(db, dy)
				e.expect("Conv2DBackwardBias db", db, want, scale, e.tol.Reduction)
			})
		}
	})
	s.op(t, "Conv2DGradCheck", func(t tb, dt tensor.DType) {
		if dt != tensor.Float64 {
			return
		}
		for _, cc := range cases {
			if !cc.fd {
				continue
			}
			s.leaf(t, dt, cc.name()+"_fd", func(e *env) { convFD(e, cc) })
		}
	})
}

// convFD checks dx, dw and dbias from the backward ops against central differences of
// L = Σ dy·Conv2D(x, w, bias).
func convFD(e *env, cc convCase) {
	g := cc.g
	e.describe("%+v bias=%v; central differences of Conv2D", g.p, cc.bias)
	xs, ws, ys := []int{g.n, g.h, g.w, g.cin}, []int{g.p.K, g.p.K, g.cinW(), g.cout}, []int{g.n, g.h, g.w, g.cout}
	xv, wv := e.signed(numel(xs), 0.1, 2), e.signed(numel(ws), 0.05, 1)
	dyv := e.signed(numel(ys), 0.1, 2)
	var bv []float64
	if cc.bias {
		bv = e.signed(g.cout, 0.1, 2)
	}
	dy := e.tensor(dyv, ys...)
	dx, dw := e.poisoned(xs...), e.poisoned(ws...)
	tensor.Conv2DBackwardData(g.p, dx, dy, e.tensor(wv, ws...))
	tensor.Conv2DBackwardWeights(g.p, dw, e.tensor(xv, xs...), dy)
	inputs := []fdInput{{"x", xs, xv, e.get(dx)}, {"w", ws, wv, e.get(dw)}}
	if cc.bias {
		db := e.poisoned(g.cout)
		tensor.Conv2DBackwardBias(db, dy)
		inputs = append(inputs, fdInput{"bias", []int{g.cout}, bv, e.get(db)})
	}
	_, ys0 := refConv2D(g, xv, wv, bv)
	e.fdCheck(inputs, [][]float64{dyv}, [][]float64{ys0}, func() [][]float64 {
		var bias *tensor.Tensor
		if cc.bias {
			bias = e.tensor(bv, g.cout)
		}
		y := e.poisoned(ys...)
		tensor.Conv2D(g.p, y, e.tensor(xv, xs...), e.tensor(wv, ws...), bias)
		return [][]float64{e.get(y)}
	})
}
