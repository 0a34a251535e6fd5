package backendtest

import (
	"fmt"

	"dlf/tensor"
)

// runReduce covers every ReduceOp × ReduceAxes on 4-D, 3-D and 2-D shapes.
func runReduce(s *suite, t tb) {
	shapes := append(append([][]int(nil), actShapes...), []int{6, 10}, []int{4, 9, 5}, []int{1, 7}, []int{8, 16, 16, 12})
	ops := []tensor.ReduceOp{tensor.Sum, tensor.Mean, tensor.SumSq}
	axes := []tensor.ReduceAxes{tensor.AxisAll, tensor.AxisExample, tensor.AxisChannel}
	opName := map[tensor.ReduceOp]string{tensor.Sum: "sum", tensor.Mean: "mean", tensor.SumSq: "sumsq"}
	axName := map[tensor.ReduceAxes]string{tensor.AxisAll: "all", tensor.AxisExample: "example", tensor.AxisChannel: "channel"}
	s.op(t, "Reduce", func(t tb, dt tensor.DType) {
		for _, op := range ops {
			for _, ax := range axes {
				for _, sh := range shapes {
					s.leaf(t, dt, fmt.Sprintf("%s_%s_%s", opName[op], axName[ax], shapeName(sh)), func(e *env) {
						e.describe("op %s over %s", opName[op], axName[ax])
						xv := e.signed(numel(sh), 0.1, 4)
						want, scale := split(refReduce(op, ax, sh, xv))
						x := e.tensor(xv, sh...)
						dst := e.poisoned(tensor.ReduceShape(ax, sh)...)
						tensor.Reduce(op, ax, dst, x)
						e.expect("Reduce", dst, want, scale, e.tol.Reduction)
					})
				}
			}
		}
	})
}
