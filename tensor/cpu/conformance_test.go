package cpu

import (
	"testing"

	"dlf/tensor/backendtest"
)

// TestConformance runs the backend-conformance suite (every op, both dtypes, naive float64
// references, poisoned outputs, finite-difference checks of the backward ops) on a poisoning
// backend: once on one goroutine, and once with three goroutines, the grain lowered to one element
// and reduction blocks of seven elements, so that every op also runs its parallel path and its
// many-block reductions (uneven splits, partial blocks) on the suite's small tensors.
func TestConformance(t *testing.T) {
	t.Run("serial", func(t *testing.T) { backendtest.Run(t, New(WithThreads(1), WithPoison(true))) })
	t.Run("parallel", func(t *testing.T) {
		be := New(WithThreads(3), WithPoison(true))
		be.grain, be.block = 1, 7
		backendtest.Run(t, be)
	})
}
