package mpi

import (
	"fmt"

	"dlf/tensor/collective"
)

// Ring adapts a Comm to collective.Transport, so that collective.Reducer averages gradient buckets
// between processes exactly as it does between the goroutine ranks of a HostRing: one process per
// rank, the bucket order and the bucketing unchanged. With two ranks the averages are bit-identical
// to HostRing's (a + b is commutative, and both scale the sum by 1/2 afterwards).
type Ring[T Float] struct{ c *Comm }

// NewRing wraps c.
func NewRing[T Float](c *Comm) *Ring[T] { return &Ring[T]{c: c} }

// Ranks is the world size.
func (r *Ring[T]) Ranks() int { return r.c.Size() }

// AllReduce is collective.Sum or collective.Avg over MPI; rank must be this process's.
func (r *Ring[T]) AllReduce(rank int, buf []T, op collective.Op) error {
	if rank != r.c.Rank() {
		return fmt.Errorf("mpi: all-reduce on behalf of rank %d in the process of rank %d", rank, r.c.Rank())
	}
	if op != collective.Sum && op != collective.Avg {
		return fmt.Errorf("mpi: all-reduce op %v: want Sum or Avg", op)
	}
	if len(buf) == 0 {
		return nil
	}
	return AllReduce(r.c, buf, op == collective.Avg)
}

var _ collective.Transport[float32] = (*Ring[float32])(nil)
