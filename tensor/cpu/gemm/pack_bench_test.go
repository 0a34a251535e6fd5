package gemm

import (
	"fmt"
	"testing"
)

// BenchmarkPackA measures packing one mc×kc block of A into mr-row panels
// (14: the AVX-512 float32 kernel; 28: the narrow ones), in elements per
// CPU-nanosecond.
func BenchmarkPackA(b *testing.B) {
	const mc, kc, lda = 168, 256, 1024
	a := randSlice32(kc * lda) // k×lda (transposed) or mc×lda (not)
	dst := make([]float32, mc*kc)
	for _, trans := range []bool{false, true} {
		for _, mr := range []int{14, 28} {
			name := fmt.Sprintf("N/mr=%d", mr)
			if trans {
				name = fmt.Sprintf("T/mr=%d", mr)
			}
			b.Run(name, func(b *testing.B) {
				c0 := cpuTime()
				for b.Loop() {
					packA(trans, a, lda, 0, 0, mc, kc, mr, dst)
				}
				b.ReportMetric(float64(mc*kc)*float64(b.N)/float64((cpuTime()-c0).Nanoseconds()), "elem/cpu-ns")
			})
		}
	}
}
