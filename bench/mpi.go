package bench

import (
	"fmt"
	"math/rand/v2"

	"dlf/tensor/collective/mpi"
)

// MPI times Open MPI's MPI_Allreduce (in place, float32, sum then a 1/N scale) over the ranks of c
// as HostRing is timed: every rank calls it, each call starts after a barrier, and rank 0's median
// and minimum are reported. Each rank's data is drawn from a seed of its rank, so every rank can
// rebuild the float64 mean and check the first result. peakGBS (> 0) is the memory bandwidth for
// the floor (ranks on one machine share it); 0 leaves the floor out.
func MPI(c *mpi.Comm, sizes []int64, iters, warmup int, peakGBS float64) (*AllReduceResult, error) {
	n := c.Size()
	res := &AllReduceResult{
		Impl: "dlf", Device: "cpu", Transport: "MPI_Allreduce (Open MPI, " + c.Library() + ")",
		Ranks: n, Op: "avg", DType: "float32", Iters: iters, Warmup: warmup, MemGBS: peakGBS,
		Note: fmt.Sprintf("%d processes under mpirun; the all-reduce algorithm and transport are Open MPI's", n),
	}
	for _, b := range sizes {
		elems := int(b / 4)
		all := make([][]float32, n)
		for r := range all {
			all[r] = make([]float32, elems)
		}
		want := fillRanks(rand.New(rand.NewPCG(uint64(b), 17)), all)
		buf := append([]float32(nil), all[c.Rank()]...)
		first := true
		var check string
		call := func() error {
			if err := c.Barrier(); err != nil {
				return err
			}
			if err := mpi.AllReduce(c, buf, true); err != nil {
				return err
			}
			if first {
				first = false
				check = checkMean([][]float32{buf}, want)
			}
			return nil
		}
		med, best, err := timeCalls(iters, warmup, call)
		if err != nil {
			return nil, fmt.Errorf("all-reduce of %d bytes: %w", b, err)
		}
		row := newAllreduceRow(b, elems, n, med, best, check)
		if peakGBS > 0 {
			row.Floor = peakGBS * busFactor(n) / hostRingTrafficFactor(n)
			row.Frac = row.BusBW / row.Floor
		}
		res.Rows = append(res.Rows, row)
	}
	return res, nil
}
