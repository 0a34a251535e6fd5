package conv

import (
	"fmt"
	"math/rand/v2"
	"strings"
	"syscall"
	"testing"
	"time"
)

// cpuTime returns the user+system CPU time this process has used. On a
// shared machine GFLOP per CPU-second (per-core efficiency) is steadier
// than wall-clock GFLOP/s, so the benchmarks report both.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// measure runs f in the benchmark loop and reports GFLOP/s (wall clock) and
// GFLOP/cpu-s (per core busy) for flops per call.
func measure(b *testing.B, flops float64, f func()) {
	b.ReportAllocs()
	c0 := cpuTime()
	for b.Loop() {
		f()
	}
	cpu := (cpuTime() - c0).Seconds()
	if flops > 0 {
		b.ReportMetric(flops*float64(b.N)/b.Elapsed().Seconds()/1e9, "GFLOP/s")
		if cpu > 0 {
			b.ReportMetric(flops*float64(b.N)/cpu/1e9, "GFLOP/cpu-s")
		}
	}
}

// Benchmarks report GFLOP/s, counting 2·N·H·W·K²·Cin'·Cout per pass
// (forward, backward-data and backward-weights each; bias is not counted),
// the same count reference/bench_conv_torch.py uses. Run:
//
//	go test -run '^$' -bench . -count 5 ./tensor/cpu/conv/

func randT[T Float](n int) []T {
	x := make([]T, n)
	for i := range x {
		x[i] = T(rand.Float64()*2 - 1)
	}
	return x
}

// benchParams are the comparison case against PyTorch (N=64, 16×16,
// 32→32, 3×3, with bias; on all cores and on one) and the model's hidden-width-128 coupling
// convolutions at 14×14 (MNIST level 1, batch 64).
var benchParams = []struct {
	name string
	p    Params
}{
	{"N64_16x16_32to32_K3", Params{N: 64, H: 16, W: 16, Cin: 32, Cout: 32, K: 3}},
	{"N64_16x16_32to32_K3_threads1", Params{N: 64, H: 16, W: 16, Cin: 32, Cout: 32, K: 3, Threads: 1}},
	{"N64_14x14_4to128_K3edge", Params{N: 64, H: 14, W: 14, Cin: 4, Cout: 128, K: 3, EdgeBias: true}},
	{"N64_14x14_128to128_K1", Params{N: 64, H: 14, W: 14, Cin: 128, Cout: 128, K: 1}},
	{"N64_14x14_128to8_K3edge", Params{N: 64, H: 14, W: 14, Cin: 128, Cout: 8, K: 3, EdgeBias: true}},
	// The mnist preset's hyper-network convolutions at bench's CPU batch of 16 (width 128, K = 2):
	// level 0 at 14×14 (parts of 2 channels, output 4), level 1 at 7×7 (parts of 4, output 8).
	{"N16_14x14_2to128_K3edge", Params{N: 16, H: 14, W: 14, Cin: 2, Cout: 128, K: 3, EdgeBias: true}},
	{"N16_14x14_128to128_K1", Params{N: 16, H: 14, W: 14, Cin: 128, Cout: 128, K: 1}},
	{"N16_14x14_128to4_K3edge", Params{N: 16, H: 14, W: 14, Cin: 128, Cout: 4, K: 3, EdgeBias: true}},
	{"N16_7x7_4to128_K3edge", Params{N: 16, H: 7, W: 7, Cin: 4, Cout: 128, K: 3, EdgeBias: true}},
	{"N16_7x7_128to8_K3edge", Params{N: 16, H: 7, W: 7, Cin: 128, Cout: 8, K: 3, EdgeBias: true}},
}

func BenchmarkConv(b *testing.B) {
	for _, bp := range benchParams {
		benchConv[float32](b, bp.name, bp.p)
	}
	benchConv[float64](b, benchParams[0].name, benchParams[0].p)
}

func benchConv[T Float](b *testing.B, name string, p Params) {
	x, w, bias := randT[T](p.Rows()*p.Cin), randT[T](p.WeightLen()), randT[T](p.Cout)
	y, dy := make([]T, p.Rows()*p.Cout), randT[T](p.Rows()*p.Cout)
	dx, dw, db := make([]T, len(x)), make([]T, len(w)), make([]T, len(bias))
	typ := fmt.Sprintf("%T", T(0))
	b.Run(name+"/"+typ+"/fwd", func(b *testing.B) {
		measure(b, p.Flops(), func() { Forward(p, x, w, bias, y) })
	})
	b.Run(name+"/"+typ+"/fwdbwd", func(b *testing.B) {
		measure(b, 3*p.Flops(), func() {
			Forward(p, x, w, bias, y)
			BackwardData(p, dy, w, dx, false)
			BackwardWeights(p, x, dy, dw, false)
			BackwardBias(p, dy, db, false)
		})
	})
	if (name != benchParams[0].name && !strings.HasPrefix(name, "N16_")) || typ != "float32" {
		return
	}
	for _, part := range []struct {
		name string
		f    func()
	}{
		{"bwddata", func() { BackwardData(p, dy, w, dx, false) }},
		{"bwdweights", func() { BackwardWeights(p, x, dy, dw, false) }},
		{"bwdbias", func() { BackwardBias(p, dy, db, false) }},
	} {
		flops := p.Flops()
		if part.name == "bwdbias" {
			flops = 0
		}
		b.Run(name+"/"+typ+"/"+part.name, func(b *testing.B) { measure(b, flops, part.f) })
	}
}
