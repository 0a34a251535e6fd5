package backendtest

import (
	"fmt"

	"dlf/tensor"
)

// refReduce reduces x of shape s with explicit loops over the kept index and the reduced ones.
func refReduce(op tensor.ReduceOp, axes tensor.ReduceAxes, s []int, x []float64) []ev {
	numel := len(x)
	// term returns the summand of element i and its scale.
	term := func(i int) ev {
		v := in(x[i])
		if op == tensor.SumSq {
			return v.mul(v)
		}
		return v
	}
	var out []ev
	var count int
	switch axes {
	case tensor.AxisAll:
		out = make([]ev, 1)
		for i := 0; i < numel; i++ {
			out[0] = out[0].add(term(i))
		}
		count = numel
	case tensor.AxisExample:
		n := s[0]
		inner := 1
		for _, d := range s[1:] {
			inner *= d
		}
		out = make([]ev, n)
		for e := 0; e < n; e++ {
			for j := 0; j < inner; j++ {
				out[e] = out[e].add(term(e*inner + j))
			}
		}
		count = inner
	case tensor.AxisChannel:
		c := s[len(s)-1]
		rows := numel / c
		out = make([]ev, c)
		for ch := 0; ch < c; ch++ {
			for r := 0; r < rows; r++ {
				out[ch] = out[ch].add(term(r*c + ch))
			}
		}
		count = rows
	default:
		panic(fmt.Sprintf("refReduce: axes %v", axes))
	}
	if op == tensor.Mean {
		for i := range out {
			out[i] = out[i].scale(1 / float64(count))
		}
	}
	return out
}
