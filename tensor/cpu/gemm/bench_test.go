package gemm

import (
	"fmt"
	"math/rand/v2"
	"runtime"
	"sync"
	"syscall"
	"testing"
	"time"

	"gonum.org/v1/gonum/blas"
	gonumblas "gonum.org/v1/gonum/blas/gonum"
)

// Benchmarks report GFLOP/s (2·m·n·k per product). Compare ours with gonum
// in the same run:
//
//	go test -run '^$' -bench 'Sgemm/1024' -count 5 ./tensor/cpu/gemm/

func randSlice32(n int) []float32 {
	x := make([]float32, n)
	for i := range x {
		x[i] = rand.Float32()*2 - 1
	}
	return x
}

func randSlice64(n int) []float64 {
	x := make([]float64, n)
	for i := range x {
		x[i] = rand.Float64()*2 - 1
	}
	return x
}

func reportGFLOPs(b *testing.B, flops float64) {
	b.ReportMetric(flops*float64(b.N)/b.Elapsed().Seconds()/1e9, "GFLOP/s")
}

// cpuTime returns the user+system CPU time this process has used. On a
// shared machine GFLOP per CPU-second (per-core efficiency) is steadier
// than wall-clock GFLOP/s.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// measure runs f in the benchmark loop and reports GFLOP/s (wall clock)
// and GFLOP/cpu-s for flops per call.
func measure(b *testing.B, flops float64, f func()) {
	c0 := cpuTime()
	for b.Loop() {
		f()
	}
	reportGFLOPs(b, flops)
	if cpu := (cpuTime() - c0).Seconds(); cpu > 0 {
		b.ReportMetric(flops*float64(b.N)/cpu/1e9, "GFLOP/cpu-s")
	}
}

// benchShapes are the square reference size and the shapes the model uses:
// the 1×1 invertible convolution at 14×14×4 (batch 64), the 3×3 coupling
// convolutions lowered to GEMM at hidden width 128 (16×16×128 and
// 14×14×(128+1 edge channel), batch 64), a 1×1 convolution at width 512,
// and a coupling network's narrow output convolution (128+1 → 8).
var benchShapes = []struct {
	name    string
	m, n, k int
}{
	{"1024", 1024, 1024, 1024},
	{"invconv_12544x4x4", 64 * 14 * 14, 4, 4},
	{"conv3x3_16384x128x1152", 16384, 128, 1152},
	{"conv3x3edge_12544x128x1161", 64 * 14 * 14, 128, 9 * 129},
	{"conv1x1_4096x512x512", 64 * 8 * 8, 512, 512},
	{"conv3x3edge_12544x8x1161", 64 * 14 * 14, 8, 9 * 129},
}

func BenchmarkSgemm(b *testing.B) {
	for _, s := range benchShapes {
		a, bb, c := randSlice32(s.m*s.k), randSlice32(s.k*s.n), randSlice32(s.m*s.n)
		flops := 2 * float64(s.m) * float64(s.n) * float64(s.k)
		for _, id := range []kernelID{kernelAuto, kernelAVX2} {
			if !available(id) || (id == kernelAVX2 && s.name != "1024") {
				continue
			}
			o := Options{kernel: id}
			b.Run(fmt.Sprintf("%s/ours-%v", s.name, id), func(b *testing.B) {
				measure(b, flops, func() { o.Sgemm(false, false, s.m, s.n, s.k, 1, a, s.k, bb, s.n, 0, c, s.n) })
			})
		}
		if s.name != "1024" && s.name != "conv1x1_4096x512x512" {
			continue // gonum takes seconds per call on the large shapes
		}
		b.Run(s.name+"/gonum", func(b *testing.B) {
			impl := gonumblas.Implementation{}
			measure(b, flops, func() { impl.Sgemm(blas.NoTrans, blas.NoTrans, s.m, s.n, s.k, 1, a, s.k, bb, s.n, 0, c, s.n) })
		})
	}
}

func BenchmarkSgemmTrans(b *testing.B) {
	const n = 1024
	a, bb, c := randSlice32(n*n), randSlice32(n*n), randSlice32(n*n)
	for tr := 0; tr < 4; tr++ {
		tA, tB := tr&1 != 0, tr&2 != 0
		b.Run(fmt.Sprintf("tA=%v,tB=%v", tA, tB), func(b *testing.B) {
			measure(b, 2*n*n*n, func() { Sgemm(tA, tB, n, n, n, 1, a, n, bb, n, 0, c, n) })
		})
	}
}

func BenchmarkSgemmThreads1(b *testing.B) {
	const n = 1024
	a, bb, c := randSlice32(n*n), randSlice32(n*n), randSlice32(n*n)
	o := Options{Threads: 1}
	measure(b, 2*n*n*n, func() { o.Sgemm(false, false, n, n, n, 1, a, n, bb, n, 0, c, n) })
}

func BenchmarkDgemm(b *testing.B) {
	const n = 1024
	a, bb, c := randSlice64(n*n), randSlice64(n*n), randSlice64(n*n)
	for _, id := range []kernelID{kernelAuto, kernelAVX2, kernelGo} {
		if !available(id) {
			continue
		}
		o := Options{kernel: id}
		b.Run(fmt.Sprintf("1024/ours-%v", id), func(b *testing.B) {
			measure(b, 2*n*n*n, func() { o.Dgemm(false, false, n, n, n, 1, a, n, bb, n, 0, c, n) })
		})
	}
	b.Run("1024/gonum", func(b *testing.B) {
		impl := gonumblas.Implementation{}
		measure(b, 2*n*n*n, func() { impl.Dgemm(blas.NoTrans, blas.NoTrans, n, n, n, 1, a, n, bb, n, 0, c, n) })
	})
}

func BenchmarkSgemmBatched(b *testing.B) {
	const batch, m, n, k = 64, 196, 4, 4
	a, bb, c := randSlice32(batch*m*k), randSlice32(k*n), randSlice32(batch*m*n)
	measure(b, 2*batch*m*n*k, func() { SgemmBatched(false, false, batch, m, n, k, 1, a, m*k, k, bb, 0, n, 0, c, m*n, n) })
}

// BenchmarkPeak measures the float32 FMA ceiling (register-only loops, one
// per goroutine) on one core and on all cores: the roofline for the GEMM
// figures.
func BenchmarkPeak(b *testing.B) {
	for _, l := range peakLoops() {
		for _, threads := range []int{1, runtime.GOMAXPROCS(0)} {
			b.Run(fmt.Sprintf("%s/threads=%d", l.name, threads), func(b *testing.B) {
				const iters = 1 << 22
				for b.Loop() {
					var wg sync.WaitGroup
					for range threads {
						wg.Go(func() { l.run(iters) })
					}
					wg.Wait()
				}
				reportGFLOPs(b, float64(threads)*iters*float64(l.flops))
			})
		}
	}
}

// BenchmarkBandwidth measures main-memory copy bandwidth with a 256 MiB
// copy split across all cores (bytes read + written per second): the floor
// for memory-bound steps such as im2col and packing of large operands.
func BenchmarkBandwidth(b *testing.B) {
	const n = 32 << 20 // float64s = 256 MiB
	src, dst := make([]float64, n), make([]float64, n)
	for i := range src {
		src[i] = float64(i)
		dst[i] = 1 // fault the pages in before timing
	}
	threads := runtime.GOMAXPROCS(0)
	for b.Loop() {
		var wg sync.WaitGroup
		for t := range threads {
			lo, hi := part(n, threads, t), part(n, threads, t+1)
			wg.Go(func() { copy(dst[lo:hi], src[lo:hi]) })
		}
		wg.Wait()
	}
	b.ReportMetric(2*8*n*float64(b.N)/b.Elapsed().Seconds()/1e9, "GB/s")
}
