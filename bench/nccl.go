package bench

import (
	"fmt"
	"math/rand/v2"

	"dlf/tensor"
	"dlf/tensor/collective"
	"dlf/tensor/collective/nccl"
	"dlf/tensor/cuda"
)

// NCCL times NCCL's all-reduce as dlf uses it for gradients (in place, float32, ncclSum then a 1/N
// scale kernel: nccl.Group.AllReduceTensor) over the ranks of g, one process per rank, each on its
// GPU be. Every call starts after a barrier and ends when the group's stream is done; rank 0's
// median and minimum are reported. Each rank's data is drawn from a seed of the size, so every rank
// rebuilds the float64 mean and checks the first result. how says how the ranks met.
func NCCL(g *nccl.Group, be *cuda.Backend, how string, sizes []int64, iters, warmup int) (*AllReduceResult, error) {
	n := g.Size()
	lib := g.Comm().Library()
	res := &AllReduceResult{
		Impl: "dlf", Device: "cuda", Transport: fmt.Sprintf("ncclAllReduce (NCCL %s, %s)", lib.VersionString(), lib.Path()),
		Ranks: n, Op: "avg", DType: "float32", Iters: iters, Warmup: warmup,
		Note: fmt.Sprintf("%d process(es), one GPU each (%s); the algorithm and transport are NCCL's", n, how),
	}
	for _, b := range sizes {
		elems := int(b / 4)
		all := make([][]float32, n)
		for r := range all {
			all[r] = make([]float32, elems)
		}
		want := fillRanks(rand.New(rand.NewPCG(uint64(b), 17)), all)
		var t *tensor.Tensor
		if err := be.Device().Do(func() error {
			t = tensor.FromFloat32(be, all[g.Rank()], elems)
			return be.Err()
		}); err != nil {
			return nil, fmt.Errorf("%d-byte buffer: %w", b, err)
		}
		first := true
		var check string
		call := func() error {
			if err := g.Barrier(); err != nil {
				return err
			}
			if err := g.AllReduceTensor(t, collective.Avg); err != nil {
				return err
			}
			if first {
				first = false
				var got []float32
				_ = be.Device().Do(func() error { got = t.Float32s(); return nil })
				check = checkMean([][]float32{got}, want)
			}
			return nil
		}
		med, best, err := timeCalls(iters, warmup, call)
		_ = be.Device().Do(func() error { t.Release(); return nil })
		if err != nil {
			return nil, fmt.Errorf("all-reduce of %d bytes: %w", b, err)
		}
		res.Rows = append(res.Rows, newAllreduceRow(b, elems, n, med, best, check))
	}
	return res, nil
}
