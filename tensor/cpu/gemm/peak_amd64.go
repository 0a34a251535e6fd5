//go:build amd64 && !purego

package gemm

// Register-only FMA loops (peak_amd64.s) that measure the machine's float32
// FMA ceiling for BenchmarkPeak; they are not used by the GEMM itself.

//go:noescape
func fmaPeakAVX512(n int)

//go:noescape
func fmaPeakAVX2(n int)

// peakLoops lists the FMA-ceiling loops this CPU can run and the float32
// flops each performs per iteration.
func peakLoops() []peakLoop {
	var loops []peakLoop
	if hasAVX512 {
		loops = append(loops, peakLoop{"avx512", fmaPeakAVX512, 12 * 32})
	}
	if hasAVX2 {
		loops = append(loops, peakLoop{"avx2", fmaPeakAVX2, 12 * 16})
	}
	return loops
}
