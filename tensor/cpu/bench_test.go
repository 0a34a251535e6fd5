package cpu

import (
	"fmt"
	"math/rand/v2"
	"testing"

	"dlf/tensor"
)

// Benchmarks of the bandwidth-bound ops at the model's shapes, float32. Each sets b.SetBytes to the
// bytes the op must move (every input read once, every output written once), so the MB/s column is
// the achieved bandwidth and can be compared with BenchmarkCopy, the floor; cpu-ns/op and cpu-MB/s
// are the same measured in process CPU time, which a shared machine disturbs less. Run with
//
//	go test -run '^$' -bench . -benchmem ./tensor/cpu/          # all goroutines
//	go test -run '^$' -bench . -benchmem -cpu 1 ./tensor/cpu/   # one goroutine per op

// benchShapes are activations of the flows (MNIST levels, CIFAR levels) and hyper-network hidden
// layers at widths 128 and 512.
var benchShapes = [][4]int{
	{64, 14, 14, 4},
	{64, 7, 7, 8},
	{32, 16, 16, 12},
	{32, 8, 8, 24},
	{64, 14, 14, 128},
	{32, 16, 16, 512},
}

func shapeLabel(s [4]int) string { return fmt.Sprintf("%dx%dx%dx%d", s[0], s[1], s[2], s[3]) }

// benchT returns a float32 tensor of the shape with values in [lo, hi).
func benchT(be *Backend, r *rand.Rand, lo, hi float64, shape ...int) *tensor.Tensor {
	return fromF64(be, tensor.Float32, randv(r, tensor.Shape(shape).Numel(), lo, hi), shape...)
}

// runShapes runs body for every shape; elems is how many float32 values the op moves per element
// of the activation.
func runShapes(b *testing.B, shapes [][4]int, elems float64, body func(b *testing.B, be *Backend, r *rand.Rand, n, h, w, c int) func()) {
	for _, s := range shapes {
		b.Run(shapeLabel(s), func(b *testing.B) {
			be := New()
			r := rand.New(rand.NewPCG(1, 2))
			op := body(b, be, r, s[0], s[1], s[2], s[3])
			b.SetBytes(int64(elems * 4 * float64(s[0]*s[1]*s[2]*s[3])))
			b.ReportAllocs()
			op()
			b.ResetTimer()
			cpu0 := processCPU()
			for b.Loop() {
				op()
			}
			reportCPU(b, cpu0, elems*4*float64(s[0]*s[1]*s[2]*s[3]))
		})
	}
}

// reportCPU adds the process CPU time per op (cpu-ns/op) and the bandwidth it implies (cpu-MB/s,
// bytes per op over CPU time per op; with several goroutines this is per core) to the results.
func reportCPU(b *testing.B, cpu0 int64, bytes float64) {
	cpu := processCPU() - cpu0
	if cpu <= 0 || b.N == 0 {
		return
	}
	ns := float64(cpu) / float64(b.N)
	b.ReportMetric(ns, "cpu-ns/op")
	b.ReportMetric(bytes/ns*1e3, "cpu-MB/s")
}

// BenchmarkCopy is the bandwidth floor: tensor.Copy (a parallel memmove), 2 values per element.
func BenchmarkCopy(b *testing.B) {
	runShapes(b, benchShapes, 2, func(b *testing.B, be *Backend, r *rand.Rand, n, h, w, c int) func() {
		x, y := benchT(be, r, -1, 1, n, h, w, c), tensor.New(be, tensor.Float32, n, h, w, c)
		return func() { tensor.Copy(y, x) }
	})
}

// BenchmarkCopySerial is Go's copy on one goroutine, for comparison with the parallel floor.
func BenchmarkCopySerial(b *testing.B) {
	runShapes(b, benchShapes, 2, func(b *testing.B, be *Backend, r *rand.Rand, n, h, w, c int) func() {
		x, y := make([]float32, n*h*w*c), make([]float32, n*h*w*c)
		return func() { copy(y, x) }
	})
}

func BenchmarkFill(b *testing.B) {
	runShapes(b, benchShapes, 1, func(b *testing.B, be *Backend, r *rand.Rand, n, h, w, c int) func() {
		y := tensor.New(be, tensor.Float32, n, h, w, c)
		return func() { tensor.Fill(y, 0.5) }
	})
}

func BenchmarkAdd(b *testing.B) {
	runShapes(b, benchShapes, 3, func(b *testing.B, be *Backend, r *rand.Rand, n, h, w, c int) func() {
		x, y, z := benchT(be, r, -1, 1, n, h, w, c), benchT(be, r, -1, 1, n, h, w, c), tensor.New(be, tensor.Float32, n, h, w, c)
		return func() { tensor.AddT(z, x, y) }
	})
}

func BenchmarkMulPerChannel(b *testing.B) {
	runShapes(b, benchShapes, 2, func(b *testing.B, be *Backend, r *rand.Rand, n, h, w, c int) func() {
		x, s, z := benchT(be, r, -1, 1, n, h, w, c), benchT(be, r, -1, 1, c), tensor.New(be, tensor.Float32, n, h, w, c)
		return func() { tensor.MulT(z, x, s) }
	})
}

func BenchmarkRelu(b *testing.B) {
	runShapes(b, benchShapes, 2, func(b *testing.B, be *Backend, r *rand.Rand, n, h, w, c int) func() {
		x, z := benchT(be, r, -1, 1, n, h, w, c), tensor.New(be, tensor.Float32, n, h, w, c)
		return func() { tensor.UnaryT(tensor.Relu, z, x, 0, 0) }
	})
}

func BenchmarkReluGrad(b *testing.B) {
	runShapes(b, benchShapes, 3, func(b *testing.B, be *Backend, r *rand.Rand, n, h, w, c int) func() {
		x, g, z := benchT(be, r, -1, 1, n, h, w, c), benchT(be, r, -1, 1, n, h, w, c), tensor.New(be, tensor.Float32, n, h, w, c)
		return func() { tensor.UnaryGradT(tensor.ReluGrad, z, x, g, 0, 0) }
	})
}

func BenchmarkExp(b *testing.B) {
	runShapes(b, benchShapes, 2, func(b *testing.B, be *Backend, r *rand.Rand, n, h, w, c int) func() {
		x, z := benchT(be, r, -1, 1, n, h, w, c), tensor.New(be, tensor.Float32, n, h, w, c)
		return func() { tensor.UnaryT(tensor.Exp, z, x, 0, 0) }
	})
}

func BenchmarkAxpy(b *testing.B) {
	runShapes(b, benchShapes, 3, func(b *testing.B, be *Backend, r *rand.Rand, n, h, w, c int) func() {
		x, y := benchT(be, r, -1, 1, n, h, w, c), benchT(be, r, -1, 1, n, h, w, c)
		return func() { tensor.Axpy(1e-9, x, y) }
	})
}

func BenchmarkReduceSumAll(b *testing.B) {
	benchReduce(b, tensor.Sum, tensor.AxisAll)
}

func BenchmarkReduceSumExample(b *testing.B) {
	benchReduce(b, tensor.Sum, tensor.AxisExample)
}

func BenchmarkReduceSumChannel(b *testing.B) {
	benchReduce(b, tensor.Sum, tensor.AxisChannel)
}

func benchReduce(b *testing.B, op tensor.ReduceOp, axes tensor.ReduceAxes) {
	runShapes(b, benchShapes, 1, func(b *testing.B, be *Backend, r *rand.Rand, n, h, w, c int) func() {
		x := benchT(be, r, -1, 1, n, h, w, c)
		out := tensor.New(be, tensor.Float32, tensor.ReduceShape(axes, x.Shape())...)
		return func() { tensor.Reduce(op, axes, out, x) }
	})
}

// evenShapes are the benchmark shapes Squeeze2 accepts (even H and W).
func evenShapes() [][4]int {
	var out [][4]int
	for _, s := range benchShapes {
		if s[1]%2 == 0 && s[2]%2 == 0 {
			out = append(out, s)
		}
	}
	return out
}

func BenchmarkSqueeze2(b *testing.B) {
	runShapes(b, evenShapes(), 2, func(b *testing.B, be *Backend, r *rand.Rand, n, h, w, c int) func() {
		x, y := benchT(be, r, -1, 1, n, h, w, c), tensor.New(be, tensor.Float32, n, h/2, w/2, 4*c)
		return func() { tensor.Squeeze2(y, x) }
	})
}

// BenchmarkCopyChannels copies the second half of the channels (a DLT partition slice).
func BenchmarkCopyChannels(b *testing.B) {
	runShapes(b, benchShapes, 1, func(b *testing.B, be *Backend, r *rand.Rand, n, h, w, c int) func() {
		x, y := benchT(be, r, -1, 1, n, h, w, c), tensor.New(be, tensor.Float32, n, h, w, c/2)
		return func() { tensor.CopyChannels(y, 0, x, c/2, c/2) }
	})
}

func BenchmarkRandUniform(b *testing.B) {
	runShapes(b, benchShapes, 1, func(b *testing.B, be *Backend, r *rand.Rand, n, h, w, c int) func() {
		y := tensor.New(be, tensor.Float32, n, h, w, c)
		return func() { tensor.RandUniform(y, 1, 0) }
	})
}

func BenchmarkRandNormal(b *testing.B) {
	runShapes(b, benchShapes, 1, func(b *testing.B, be *Backend, r *rand.Rand, n, h, w, c int) func() {
		y := tensor.New(be, tensor.Float32, n, h, w, c)
		return func() { tensor.RandNormal(y, 1, 0) }
	})
}

func BenchmarkActNormForward(b *testing.B) {
	runShapes(b, benchShapes, 2, func(b *testing.B, be *Backend, r *rand.Rand, n, h, w, c int) func() {
		x, y := benchT(be, r, -1, 1, n, h, w, c), tensor.New(be, tensor.Float32, n, h, w, c)
		bias, logs, ld := benchT(be, r, -1, 1, c), benchT(be, r, -0.3, 0.3, c), benchT(be, r, -1, 1, n)
		return func() { tensor.ActNormForward(y, ld, x, bias, logs, 3) }
	})
}

func BenchmarkActNormBackward(b *testing.B) {
	runShapes(b, benchShapes, 3, func(b *testing.B, be *Backend, r *rand.Rand, n, h, w, c int) func() {
		y, dy, dx := benchT(be, r, -1, 1, n, h, w, c), benchT(be, r, -1, 1, n, h, w, c), tensor.New(be, tensor.Float32, n, h, w, c)
		logs, dld := benchT(be, r, -0.3, 0.3, c), benchT(be, r, -1, 1, n)
		db, dl := tensor.New(be, tensor.Float32, c), tensor.New(be, tensor.Float32, c)
		return func() { tensor.ActNormBackward(dx, db, dl, dy, y, logs, dld, 3) }
	})
}

// The affine and Gaussian ops act on flow activations (one DLT part, one prior), not hidden layers.
var flowShapes = benchShapes[:4]

func BenchmarkAffineForward(b *testing.B) {
	runShapes(b, flowShapes, 4, func(b *testing.B, be *Backend, r *rand.Rand, n, h, w, c int) func() {
		x, y := benchT(be, r, -1, 1, n, h, w, c), tensor.New(be, tensor.Float32, n, h, w, c)
		hh, ld := benchT(be, r, -1, 1, n, h, w, 2*c), benchT(be, r, -1, 1, n)
		alpha, beta := benchT(be, r, 0.5, 1, 1), benchT(be, r, -3, -2, 1)
		p := tensor.AffineParams{Mode: tensor.ScaleTanh}
		return func() { tensor.AffineForward(p, y, ld, x, hh, alpha, beta) }
	})
}

func BenchmarkAffineBackward(b *testing.B) {
	runShapes(b, flowShapes, 7, func(b *testing.B, be *Backend, r *rand.Rand, n, h, w, c int) func() {
		y, dy, dx := benchT(be, r, -1, 1, n, h, w, c), benchT(be, r, -1, 1, n, h, w, c), tensor.New(be, tensor.Float32, n, h, w, c)
		hh, dh, dld := benchT(be, r, -1, 1, n, h, w, 2*c), tensor.New(be, tensor.Float32, n, h, w, 2*c), benchT(be, r, -1, 1, n)
		alpha, beta := benchT(be, r, 0.5, 1, 1), benchT(be, r, -3, -2, 1)
		da, db := tensor.New(be, tensor.Float32, 1), tensor.New(be, tensor.Float32, 1)
		p := tensor.AffineParams{Mode: tensor.ScaleTanh}
		return func() { tensor.AffineBackward(p, dx, dh, da, db, dy, y, hh, alpha, beta, dld) }
	})
}

func BenchmarkGaussianLogProb(b *testing.B) {
	runShapes(b, flowShapes, 4, func(b *testing.B, be *Backend, r *rand.Rand, n, h, w, c int) func() {
		z, eps := benchT(be, r, -1, 1, n, h, w, c), tensor.New(be, tensor.Float32, n, h, w, c)
		p, lp := benchT(be, r, -1, 1, n, h, w, 2*c), benchT(be, r, -1, 1, n)
		alpha, beta := benchT(be, r, 0.5, 1, 1), benchT(be, r, -0.5, 0.5, 1)
		g := tensor.GaussianParams{Bounded: true}
		return func() { tensor.GaussianLogProb(g, lp, eps, z, p, alpha, beta) }
	})
}

func BenchmarkGaussianLogProbBackward(b *testing.B) {
	runShapes(b, flowShapes, 6, func(b *testing.B, be *Backend, r *rand.Rand, n, h, w, c int) func() {
		z, dz := benchT(be, r, -1, 1, n, h, w, c), tensor.New(be, tensor.Float32, n, h, w, c)
		p, dp, dlp := benchT(be, r, -1, 1, n, h, w, 2*c), tensor.New(be, tensor.Float32, n, h, w, 2*c), benchT(be, r, -1, 1, n)
		alpha, beta := benchT(be, r, 0.5, 1, 1), benchT(be, r, -0.5, 0.5, 1)
		da, db := tensor.New(be, tensor.Float32, 1), tensor.New(be, tensor.Float32, 1)
		g := tensor.GaussianParams{Bounded: true}
		return func() { tensor.GaussianLogProbBackward(g, dz, dp, da, db, z, p, alpha, beta, dlp) }
	})
}

// BenchmarkAdamStep updates a parameter tensor of the given size (3×3 conv weights of the hidden
// layers are 3·3·C·512 values; the shapes here stand in for parameter counts).
func BenchmarkAdamStep(b *testing.B) {
	runShapes(b, benchShapes, 7, func(b *testing.B, be *Backend, r *rand.Rand, n, h, w, c int) func() {
		wt, m := benchT(be, r, -1, 1, n, h, w, c), benchT(be, r, -1, 1, n, h, w, c)
		v, g := benchT(be, r, 0, 1, n, h, w, c), benchT(be, r, -1, 1, n, h, w, c)
		o := tensor.OptimParams{Kind: tensor.Adamax, LR: 1e-9, Beta1: 0.9, Beta2: 0.999, Eps: 1e-8, WeightDecay: 1}
		return func() { tensor.AdamStep(o, wt, m, v, g) }
	})
}

// BenchmarkAllocRelease is one training-step-like allocation and release of a tensor through the
// size-class pools.
func BenchmarkAllocRelease(b *testing.B) {
	be := New()
	b.ReportAllocs()
	for b.Loop() {
		t := tensor.New(be, tensor.Float32, 64, 14, 14, 128)
		t.Release()
	}
}

// BenchmarkForkJoin measures what parallel adds to an op that is split across two goroutines: one
// goroutine start, two trivial bodies and the join. It is the overhead minWork is sized against.
func BenchmarkForkJoin(b *testing.B) {
	be := New(WithThreads(2))
	be.grain = 1
	var sink [2]int
	b.ReportAllocs()
	for b.Loop() {
		be.parallel(2, 1, func(lo, hi int) { sink[lo] += hi })
	}
}
