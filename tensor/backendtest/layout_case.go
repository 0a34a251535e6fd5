package backendtest

import (
	"dlf/tensor"
)

// runSqueeze covers Squeeze2 and Unsqueeze2 against the spec's index math, and both round trips.
func runSqueeze(s *suite, t tb) {
	shapes := [][]int{{1, 2, 2, 1}, {2, 28, 28, 1}, {3, 4, 6, 3}, {2, 14, 14, 4}, {2, 16, 16, 12}, {2, 8, 8, 24}, {2, 32, 32, 3}}
	s.op(t, "Squeeze2", func(t tb, dt tensor.DType) {
		for _, sh := range shapes {
			n, h, w, c := sh[0], sh[1], sh[2], sh[3]
			out := []int{n, h / 2, w / 2, 4 * c}
			s.leaf(t, dt, shapeName(sh), func(e *env) {
				xv := e.signed(numel(sh), 0.1, 10)
				x, y := e.tensor(xv, sh...), e.poisoned(out...)
				tensor.Squeeze2(y, x)
				e.expectExact("Squeeze2", y.Shape(), e.get(y), refSqueeze2(sh, xv))
			})
			s.leaf(t, dt, shapeName(sh)+"_roundtrip", func(e *env) {
				xv := e.signed(numel(sh), 0.1, 10)
				x, y, z := e.tensor(xv, sh...), e.poisoned(out...), e.poisoned(sh...)
				tensor.Squeeze2(y, x)
				tensor.Unsqueeze2(z, y)
				e.expectExact("Unsqueeze2(Squeeze2(x))", z.Shape(), e.get(z), xv)
			})
		}
	})
	s.op(t, "Unsqueeze2", func(t tb, dt tensor.DType) {
		for _, big := range shapes {
			n, h, w, c := big[0], big[1], big[2], big[3]
			sh := []int{n, h / 2, w / 2, 4 * c}
			s.leaf(t, dt, shapeName(sh), func(e *env) {
				xv := e.signed(numel(sh), 0.1, 10)
				x, y := e.tensor(xv, sh...), e.poisoned(big...)
				tensor.Unsqueeze2(y, x)
				e.expectExact("Unsqueeze2", y.Shape(), e.get(y), refUnsqueeze2(sh, xv))
			})
			s.leaf(t, dt, shapeName(sh)+"_roundtrip", func(e *env) {
				xv := e.signed(numel(sh), 0.1, 10)
				x, y, z := e.tensor(xv, sh...), e.poisoned(big...), e.poisoned(sh...)
				tensor.Unsqueeze2(y, x)
				tensor.Squeeze2(z, y)
				e.expectExact("Squeeze2(Unsqueeze2(x))", z.Shape(), e.get(z), xv)
			})
		}
	})
}
