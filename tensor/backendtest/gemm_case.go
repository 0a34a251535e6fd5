package backendtest

import (
	"fmt"

	"dlf/tensor"
)

type gemmCase struct {
	batch   int // 0: 2-D operands; otherwise 3-D with this batch size
	m, k, n int
	// trans lists the (transA, transB) combinations to run; nil means all four.
	trans [][2]bool
}

var allTrans = [][2]bool{{false, false}, {false, true}, {true, false}, {true, true}}

// gemmCases: odd sizes, a single element, the 1x1 convolution and invertible-1x1 shapes of the
// model ([N·H·W, C] × [C, C]), the hidden widths 128 and 512 (forward NN, data gradient NT, weight
// gradient TN), and batched 3-D products.
var gemmCases = []gemmCase{
	{0, 3, 5, 7, nil},
	{0, 1, 1, 1, nil},
	{0, 17, 33, 9, nil},
	{0, 64, 1, 5, nil},
	{0, 392, 4, 4, nil},
	{0, 98, 8, 8, nil},
	{0, 512, 12, 12, nil},
	{0, 96, 128, 128, [][2]bool{{false, false}, {false, true}, {true, false}}},
	{0, 64, 512, 512, [][2]bool{{false, false}, {false, true}, {true, false}}},
	{3, 5, 4, 6, nil},
	{4, 16, 12, 16, nil},
	{2, 1, 7, 3, nil},
}

// gemmScalars are the (alpha, beta) pairs: plain, scaled, accumulating, and beta = 1.
var gemmScalars = [][2]float64{{1, 0}, {-0.75, 0}, {0.5, 1.25}, {1, 1}}

func transName(t [2]bool) string {
	s := ""
	for _, x := range t {
		if x {
			s += "T"
		} else {
			s += "N"
		}
	}
	return s
}

// runGemm covers Gemm: every transpose combination, alpha/beta (with beta = 0 on a NaN-poisoned c),
// 2-D and batched 3-D.
func runGemm(s *suite, t tb) {
	s.op(t, "Gemm", func(t tb, dt tensor.DType) {
		for _, gc := range gemmCases {
			trans := gc.trans
			if trans == nil {
				trans = allTrans
			}
			for _, tr := range trans {
				for si, ab := range gemmScalars {
					if gc.m*gc.k*gc.n > 1<<20 && si > 2 {
						continue // the largest products run three scalar pairs only
					}
					dims := fmt.Sprintf("%dx%dx%d", gc.m, gc.k, gc.n)
					if gc.batch > 0 {
						dims = fmt.Sprintf("b%d_%s", gc.batch, dims)
					}
					name := fmt.Sprintf("%s_%s_a%g_b%g", transName(tr), dims, ab[0], ab[1])
					s.leaf(t, dt, name, func(e *env) {
						gemmLeaf(e, gc, tr[0], tr[1], ab[0], ab[1])
					})
				}
			}
		}
	})
}

// gemmOperands draws a case's operands: a, b and (with beta ≠ 0) c with their values, or a
// NaN-poisoned c when beta = 0 (which must not be read).
func gemmOperands(e *env, gc gemmCase, ta, tb bool, alpha, beta float64) (a, b, c *tensor.Tensor, av, bv, cv []float64) {
	nb := max(gc.batch, 1)
	m, k, n := gc.m, gc.k, gc.n
	ash, bsh, csh := []int{m, k}, []int{k, n}, []int{m, n}
	if ta {
		ash = []int{k, m}
	}
	if tb {
		bsh = []int{n, k}
	}
	if gc.batch > 0 {
		ash = append([]int{nb}, ash...)
		bsh = append([]int{nb}, bsh...)
		csh = append([]int{nb}, csh...)
	}
	e.describe("c = %g·op(a)·op(b) + %g·c, transA=%v transB=%v, a %v, b %v, c %v", alpha, beta, ta, tb, ash, bsh, csh)
	av, bv = e.signed(numel(ash), 0.1, 2), e.signed(numel(bsh), 0.1, 2)
	a, b = e.tensor(av, ash...), e.tensor(bv, bsh...)
	if beta == 0 {
		c = e.poisoned(csh...)
	} else {
		cv = e.signed(numel(csh), 0.1, 2)
		c = e.tensor(cv, csh...)
	}
	return a, b, c, av, bv, cv
}

func gemmLeaf(e *env, gc gemmCase, ta, tb bool, alpha, beta float64) {
	a, b, c, av, bv, cv := gemmOperands(e, gc, ta, tb, alpha, beta)
	want, scale := refGemm(ta, tb, max(gc.batch, 1), gc.m, gc.n, gc.k, alpha, av, bv, beta, cv)
	tensor.Gemm(ta, tb, alpha, a, b, beta, c)
	e.expect("Gemm c", c, want, scale, e.tol.Matmul)
}
