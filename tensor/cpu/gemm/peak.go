package gemm

// peakLoop is one FMA-throughput probe: run(n) performs n iterations of
// flops float32 flops each.
type peakLoop struct {
	name  string
	run   func(n int)
	flops int
}
