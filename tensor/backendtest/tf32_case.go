package backendtest

import (
	"fmt"

	"dlf/tensor"
)

// The TF32 family checks GEMM and the three convolutions at tensor.TF32 on Float32 tensors against
// a float64 reference computed from the operands rounded to TF32 (tensor.RoundTF32, the kernels'
// cvt.rna). With the rounding taken out of the comparison, what is left is the backend's float32
// summation, so the bound is derived rather than chosen:
//
//   - a TF32 operand has an 11-bit significand, so each product of two (11 × 11 = 22 bits) is exact
//     in float32 (range aside: the inputs here are within [0.05, 2] in magnitude);
//   - a sum of K exact terms in float32, in any order or tree — sequential FMA chains, the tensor
//     core's undocumented order within one mma, the split-K slices added in double — is within
//     γ_(K−1)·Σ|terms| of the exact sum, γ_n = n·u/(1 − n·u), u = 2⁻²⁴ (Higham, "Accuracy and
//     Stability of Numerical Algorithms", 2nd ed., §4.2);
//   - the epilogue adds at most three roundings relative to the same scale: alpha·s, + bias, and
//     the fma with beta·c (the reference's scale counts |alpha|·Σ|a·b| + |beta·c| and |bias|).
//
// So |got − want| ≤ γ_(K+2)·scale with K the reduction length of the case. For K = 8 that is
// 6e-7 — tight enough that operands left unrounded (the tensor core then truncates them, a bias of
// up to 2⁻¹⁰ per operand), a wrong fragment index or a stale shared-memory tile fail by orders of
// magnitude — and for the model's longest reduction, K = 9·513 = 4617, it is 2.8e-4.
func tf32Tol(k int) float64 {
	const u = 1.0 / (1 << 24)
	n := float64(k + 2)
	return n * u / (1 - n*u)
}

// tf32Values returns v rounded to TF32 as float32 values (the operands a TF32 op multiplies).
func tf32Values(v []float64) []float64 {
	out := make([]float64, len(v))
	for i, x := range v {
		out[i] = float64(tensor.RoundTF32(float32(x)))
	}
	return out
}

// gemmTF32Cases: one mma tile exactly (16×8×8), sizes one below and above the mma and block tiles,
// odd sizes, the narrow (N ≤ 32), small and large block tiles, split-K (few output tiles, long K),
// the model's 1×1-convolution shapes and batched products — 22 shapes, each in every transposition.
var gemmTF32Cases = []gemmCase{
	{0, 1, 1, 1, nil},
	{0, 3, 5, 7, nil},
	{0, 16, 8, 8, nil},
	{0, 15, 7, 9, nil},
	{0, 17, 9, 7, nil},
	{0, 17, 33, 9, nil},
	{0, 33, 17, 65, nil},
	{0, 64, 64, 64, nil},
	{0, 65, 63, 66, nil},
	{0, 128, 32, 32, nil},
	{0, 129, 31, 33, nil},
	{0, 200, 72, 40, nil},
	{0, 392, 4, 4, nil},
	{0, 98, 8, 8, nil},
	{0, 96, 128, 128, nil},
	{0, 64, 512, 512, [][2]bool{{false, false}, {true, false}}},
	{0, 3, 1000, 5, nil},
	{0, 1541, 24, 1540, [][2]bool{{false, false}, {true, true}}}, // 13×13 large tiles
	{3, 5, 4, 6, nil},
	{4, 16, 12, 16, nil},
	{2, 33, 40, 17, nil},
	{2, 1, 7, 3, nil},
}

// tf32ConvCases: the conformance shapes of runConv (odd sizes, K ∈ {1, 3}, edge bias, bias, the
// model's convolutions) and three large ones that reach the 128×128 tensor-core tile: forward
// (16·32·32 pixels to 128 channels), backward data (to 128 input channels) and backward weights
// (9·513 rows of dw by 512 columns).
func tf32ConvCases() []convCase {
	out := convCases()
	return append(out,
		convCase{g: convGeom{16, 32, 32, 4, 128, tensor.ConvParams{K: 3, EdgeBias: true}}},
		convCase{g: convGeom{16, 32, 32, 128, 4, tensor.ConvParams{K: 3}}},
		convCase{g: convGeom{2, 4, 4, 512, 512, tensor.ConvParams{K: 3, EdgeBias: true}}},
	)
}

// runTF32 covers Gemm and the three convolution ops at tensor.TF32 (Float32 only: Float64 tensors
// ignore the precision, and their own families cover them).
func runTF32(s *suite, t tb) {
	s.op(t, "GemmTF32", func(t tb, dt tensor.DType) {
		if dt != tensor.Float32 {
			return
		}
		for _, gc := range gemmTF32Cases {
			trans := gc.trans
			if trans == nil {
				trans = allTrans
			}
			for _, tr := range trans {
				for si, ab := range [][2]float64{{1, 0}, {0.5, 1.25}} {
					if gc.m*gc.n > 1<<20 && si > 0 {
						continue
					}
					dims := fmt.Sprintf("%dx%dx%d", gc.m, gc.k, gc.n)
					if gc.batch > 0 {
						dims = fmt.Sprintf("b%d_%s", gc.batch, dims)
					}
					name := fmt.Sprintf("%s_%s_a%g_b%g", transName(tr), dims, ab[0], ab[1])
					s.leaf(t, dt, name, func(e *env) { gemmTF32Leaf(e, gc, tr[0], tr[1], ab[0], ab[1]) })
				}
			}
		}
	})
	cases := tf32ConvCases()
	s.op(t, "Conv2DTF32", func(t tb, dt tensor.DType) {
		if dt != tensor.Float32 {
			return
		}
		for _, cc := range cases {
			s.leaf(t, dt, cc.name(), func(e *env) {
				g := cc.g
				g.p.Precision = tensor.TF32
				e.describe("%+v bias=%v", g.p, cc.bias)
				xv := e.signed(g.n*g.h*g.w*g.cin, 0.1, 2)
				wv := e.signed(g.p.K*g.p.K*g.cinW()*g.cout, 0.05, 1)
				var bias *tensor.Tensor
				var bv []float64
				if cc.bias {
					bv = e.signed(g.cout, 0.1, 2)
					bias = e.tensor(bv, g.cout)
				}
				y := e.poisoned(g.n, g.h, g.w, g.cout)
				want, scale := refConv2D(g, tf32Values(xv), tf32Values(wv), bv)
				tensor.Conv2D(g.p, y, e.tensor(xv, g.n, g.h, g.w, g.cin), e.tensor(wv, g.p.K, g.p.K, g.cinW(), g.cout), bias)
				e.expect("Conv2D y (tf32)", y, want, scale, tf32Tol(g.p.K*g.p.K*g.cinW()))
			})
		}
	})
	s.op(t, "Conv2DBackwardDataTF32", func(t tb, dt tensor.DType) {
		if dt != tensor.Float32 {
			return
		}
		for _, cc := range cases {
			if cc.bias {
				continue
			}
			s.leaf(t, dt, cc.name(), func(e *env) {
				g := cc.g
				g.p.Precision = tensor.TF32
				e.describe("%+v", g.p)
				dyv := e.signed(g.n*g.h*g.w*g.cout, 0.1, 2)
				wv := e.signed(g.p.K*g.p.K*g.cinW()*g.cout, 0.05, 1)
				dx := e.poisoned(g.n, g.h, g.w, g.cin)
				want, scale := refConv2DBackwardData(g, tf32Values(dyv), tf32Values(wv))
				tensor.Conv2DBackwardData(g.p, dx, e.tensor(dyv, g.n, g.h, g.w, g.cout), e.tensor(wv, g.p.K, g.p.K, g.cinW(), g.cout))
				e.expect("Conv2DBackwardData dx (tf32)", dx, want, scale, tf32Tol(g.p.K*g.p.K*g.cout))
			})
		}
	})
	s.op(t, "Conv2DBackwardWeightsTF32", func(t tb, dt tensor.DType) {
		if dt != tensor.Float32 {
			return
		}
		for _, cc := range cases {
			if cc.bias {
				continue
			}
			s.leaf(t, dt, cc.name(), func(e *env) {
				g := cc.g
				g.p.Precision = tensor.TF32
				e.describe("%+v", g.p)
				xv := e.signed(g.n*g.h*g.w*g.cin, 0.1, 2)
				dyv := e.signed(g.n*g.h*g.w*g.cout, 0.1, 2)
				dw := e.poisoned(g.p.K, g.p.K, g.cinW(), g.cout)
				want, scale := refConv2DBackwardWeights(g, tf32Values(xv), tf32Values(dyv))
				tensor.Conv2DBackwardWeights(g.p, dw, e.tensor(xv, g.n, g.h, g.w, g.cin), e.tensor(dyv, g.n, g.h, g.w, g.cout))
				e.expect("Conv2DBackwardWeights dw (tf32)", dw, want, scale, tf32Tol(g.n*g.h*g.w))
			})
		}
	})
}

func gemmTF32Leaf(e *env, gc gemmCase, ta, tb bool, alpha, beta float64) {
	a, b, c, av, bv, cv := gemmOperands(e, gc, ta, tb, alpha, beta)
	want, scale := refGemm(ta, tb, max(gc.batch, 1), gc.m, gc.n, gc.k, alpha, tf32Values(av), tf32Values(bv), beta, cv)
	tensor.GemmPrecision(tensor.TF32, ta, tb, alpha, a, b, beta, c)
	e.expect("Gemm c (tf32)", c, want, scale, tf32Tol(gc.k))
}
