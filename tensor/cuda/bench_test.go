package cuda

import (
	"fmt"
	"math/rand/v2"
	"testing"

	"dlf/tensor"
)

// Benchmarks time the device with CUDA events around b.N queued ops (Backend.Time), so the numbers
// are GPU throughput including the per-op launch path, and report GFLOP/s or GB/s:
//
//	go test -run '^$' -bench . -benchtime 20x ./tensor/cuda/
//
// Without a GPU they skip.

func benchBackend(b *testing.B) *Backend {
	b.Helper()
	return newTestBackend(b, WithPoison(false))
}

func benchRand(be *Backend, shape ...int) *tensor.Tensor {
	rng := rand.New(rand.NewPCG(uint64(len(shape)), 1))
	v := make([]float32, tensor.Shape(shape).Numel())
	for i := range v {
		v[i] = float32(rng.Float64()*2 - 1)
	}
	return tensor.FromFloat32(be, v, shape...)
}

// measure runs op b.N times between events after one warm-up call, and reports per-op device time
// and the rates for the given work per op.
func measure(b *testing.B, be *Backend, flops, bytes float64, op func()) {
	b.Helper()
	op()
	if err := be.Sync(); err != nil {
		b.Fatal(err)
	}
	b.ResetTimer()
	d, err := be.Time(func() {
		for i := 0; i < b.N; i++ {
			op()
		}
	})
	if err != nil {
		b.Fatal(err)
	}
	sec := d.Seconds() / float64(b.N)
	b.ReportMetric(sec*1e6, "µs/op(device)")
	if flops > 0 {
		b.ReportMetric(flops/sec/1e9, "GFLOP/s")
	}
	if bytes > 0 {
		b.ReportMetric(bytes/sec/1e9, "GB/s")
	}
}

func BenchmarkGemm(b *testing.B) {
	for _, c := range []struct {
		m, n, k int
		ta, tb  bool
	}{
		{1024, 1024, 1024, false, false},
		{4096, 4096, 4096, false, false},
		{4096, 4096, 4096, true, false},
		{4096, 4096, 4096, false, true},
		{8192, 512, 512, false, false}, // CIFAR hidden 1x1 conv at batch 32
		{512, 512, 8192, true, false},  // its weight gradient (split-K)
		{8192, 12, 12, false, false},   // invertible 1x1 conv
	} {
		b.Run(fmt.Sprintf("%dx%dx%d_ta%v_tb%v", c.m, c.n, c.k, c.ta, c.tb), func(b *testing.B) {
			be := benchBackend(b)
			as, bs := []int{c.m, c.k}, []int{c.k, c.n}
			if c.ta {
				as = []int{c.k, c.m}
			}
			if c.tb {
				bs = []int{c.n, c.k}
			}
			x, y := benchRand(be, as...), benchRand(be, bs...)
			out := tensor.New(be, tensor.Float32, c.m, c.n)
			flops := 2 * float64(c.m) * float64(c.n) * float64(c.k)
			bytes := 4 * float64(c.m*c.k+c.k*c.n+c.m*c.n)
			measure(b, be, flops, bytes, func() { tensor.Gemm(c.ta, c.tb, 1, x, y, 0, out) })
		})
	}
}

// benchConvs are the model's convolutions: CIFAR-10 DLF g_k at batch 32 (first conv, 1x1, the zeros
// conv), the same at level 2, and MNIST's width-128 network at batch 256.
var benchConvs = []struct {
	name               string
	n, h, w, cin, cout int
	p                  tensor.ConvParams
}{
	{"cifar_conv1_6to512_K3", 32, 16, 16, 6, 512, tensor.ConvParams{K: 3, EdgeBias: true}},
	{"cifar_conv2_512to512_K1", 32, 16, 16, 512, 512, tensor.ConvParams{K: 1}},
	{"cifar_zeros_512to12_K3", 32, 16, 16, 512, 12, tensor.ConvParams{K: 3, EdgeBias: true}},
	{"cifar_l2_conv1_12to512_K3", 32, 8, 8, 12, 512, tensor.ConvParams{K: 3, EdgeBias: true}},
	{"mnist_conv1_2to128_K3", 256, 14, 14, 2, 128, tensor.ConvParams{K: 3, EdgeBias: true}},
	{"mnist_conv2_128to128_K1", 256, 14, 14, 128, 128, tensor.ConvParams{K: 1}},
}

func BenchmarkConv(b *testing.B) {
	for _, c := range benchConvs {
		ws := tensor.ConvWeightShape(c.p, c.cin, c.cout)
		cinW := ws[2]
		pix := float64(c.n * c.h * c.w)
		flops := 2 * pix * float64(c.p.K*c.p.K*cinW*c.cout)
		xb, yb, wb := 4*pix*float64(c.cin), 4*pix*float64(c.cout), 4*float64(tensor.Shape(ws).Numel())
		b.Run(c.name+"/fwd", func(b *testing.B) {
			be := benchBackend(b)
			x, w, bias := benchRand(be, c.n, c.h, c.w, c.cin), benchRand(be, ws...), benchRand(be, c.cout)
			y := tensor.New(be, tensor.Float32, c.n, c.h, c.w, c.cout)
			measure(b, be, flops, xb+yb+wb, func() { tensor.Conv2D(c.p, y, x, w, bias) })
		})
		b.Run(c.name+"/bwd_data", func(b *testing.B) {
			be := benchBackend(b)
			dy, w := benchRand(be, c.n, c.h, c.w, c.cout), benchRand(be, ws...)
			dx := tensor.New(be, tensor.Float32, c.n, c.h, c.w, c.cin)
			measure(b, be, 2*pix*float64(c.p.K*c.p.K*c.cout*c.cin), xb+yb+wb,
				func() { tensor.Conv2DBackwardData(c.p, dx, dy, w) })
		})
		b.Run(c.name+"/bwd_weights", func(b *testing.B) {
			be := benchBackend(b)
			x, dy := benchRand(be, c.n, c.h, c.w, c.cin), benchRand(be, c.n, c.h, c.w, c.cout)
			dw := tensor.New(be, tensor.Float32, ws...)
			measure(b, be, flops, xb+yb+wb, func() { tensor.Conv2DBackwardWeights(c.p, dw, x, dy) })
		})
	}
}

// BenchmarkElementwise: 32 Mi floats (128 MiB per operand), far beyond the L2 cache.
func BenchmarkElementwise(b *testing.B) {
	const n = 32 << 20
	b.Run("add", func(b *testing.B) {
		be := benchBackend(b)
		x, y, z := benchRand(be, n), benchRand(be, n), tensor.New(be, tensor.Float32, n)
		measure(b, be, 0, 12*n, func() { tensor.AddT(z, x, y) })
	})
	b.Run("mul_per_channel", func(b *testing.B) {
		be := benchBackend(b)
		x, y, z := benchRand(be, n/512, 512), benchRand(be, 512), tensor.New(be, tensor.Float32, n/512, 512)
		measure(b, be, 0, 8*n, func() { tensor.MulT(z, x, y) })
	})
	b.Run("exp", func(b *testing.B) {
		be := benchBackend(b)
		x, z := benchRand(be, n), tensor.New(be, tensor.Float32, n)
		measure(b, be, 0, 8*n, func() { tensor.UnaryT(tensor.Exp, z, x, 0, 0) })
	})
	b.Run("axpy", func(b *testing.B) {
		be := benchBackend(b)
		x, y := benchRand(be, n), benchRand(be, n)
		measure(b, be, 2*n, 12*n, func() { tensor.Axpy(0.5, x, y) })
	})
	b.Run("sum_all", func(b *testing.B) {
		be := benchBackend(b)
		x, s := benchRand(be, n), tensor.New(be, tensor.Float32, 1)
		measure(b, be, n, 4*n, func() { tensor.Reduce(tensor.Sum, tensor.AxisAll, s, x) })
	})
	b.Run("sum_channel_512", func(b *testing.B) {
		be := benchBackend(b)
		x, s := benchRand(be, n/512, 512), tensor.New(be, tensor.Float32, 512)
		measure(b, be, n, 4*n, func() { tensor.Reduce(tensor.Sum, tensor.AxisChannel, s, x) })
	})
	b.Run("rand_normal", func(b *testing.B) {
		be := benchBackend(b)
		z := tensor.New(be, tensor.Float32, n)
		measure(b, be, 0, 4*n, func() { tensor.RandNormal(z, 1, 0) })
	})
	b.Run("adam", func(b *testing.B) {
		be := benchBackend(b)
		w, m, v, g := benchRand(be, n), benchRand(be, n), benchRand(be, n), benchRand(be, n)
		tensor.UnaryT(tensor.Abs, v, v, 0, 0)
		o := tensor.OptimParams{Kind: tensor.Adam, LR: 1e-3, Beta1: 0.9, Beta2: 0.999, Eps: 1e-8, WeightDecay: 1}
		measure(b, be, 0, 28*n, func() { tensor.AdamStep(o, w, m, v, g) })
	})
}

// BenchmarkFused times the flow kernels at CIFAR-10 level-0 shapes, batch 32: the 16×16×12 actnorm
// input, a 6-channel DLT part with its 12-channel h, and the split prior on 6 channels.
func BenchmarkFused(b *testing.B) {
	const n, h, w = 32, 16, 16
	b.Run("actnorm_fwd_12", func(b *testing.B) {
		be := benchBackend(b)
		x, bias, logs := benchRand(be, n, h, w, 12), benchRand(be, 12), benchRand(be, 12)
		y, ld := tensor.New(be, tensor.Float32, n, h, w, 12), benchRand(be, n)
		measure(b, be, 0, 8*n*h*w*12, func() { tensor.ActNormForward(y, ld, x, bias, logs, 3) })
	})
	b.Run("actnorm_bwd_512", func(b *testing.B) {
		be := benchBackend(b)
		dy, y, logs, dld := benchRand(be, n, h, w, 512), benchRand(be, n, h, w, 512), benchRand(be, 512), benchRand(be, n)
		dx := tensor.New(be, tensor.Float32, n, h, w, 512)
		db, ds := tensor.New(be, tensor.Float32, 512), tensor.New(be, tensor.Float32, 512)
		measure(b, be, 0, 12*n*h*w*512, func() { tensor.ActNormBackward(dx, db, ds, dy, y, logs, dld, 3) })
	})
	p := tensor.AffineParams{Mode: tensor.ScaleTanh}
	b.Run("affine_fwd_6", func(b *testing.B) {
		be := benchBackend(b)
		x, hh := benchRand(be, n, h, w, 6), benchRand(be, n, h, w, 12)
		al, bt := benchRand(be, 1), benchRand(be, 1)
		y, ld := tensor.New(be, tensor.Float32, n, h, w, 6), benchRand(be, n)
		measure(b, be, 0, 16*n*h*w*6, func() { tensor.AffineForward(p, y, ld, x, hh, al, bt) })
	})
	b.Run("affine_bwd_6", func(b *testing.B) {
		be := benchBackend(b)
		dy, y, hh := benchRand(be, n, h, w, 6), benchRand(be, n, h, w, 6), benchRand(be, n, h, w, 12)
		al, bt, dld := benchRand(be, 1), benchRand(be, 1), benchRand(be, n)
		dx, dh := tensor.New(be, tensor.Float32, n, h, w, 6), tensor.New(be, tensor.Float32, n, h, w, 12)
		da, db := tensor.New(be, tensor.Float32, 1), tensor.New(be, tensor.Float32, 1)
		measure(b, be, 0, 32*n*h*w*6, func() { tensor.AffineBackward(p, dx, dh, da, db, dy, y, hh, al, bt, dld) })
	})
	g := tensor.GaussianParams{Bounded: true}
	b.Run("gauss_logp_6", func(b *testing.B) {
		be := benchBackend(b)
		z, pp := benchRand(be, n, h, w, 6), benchRand(be, n, h, w, 12)
		al, bt, lp := benchRand(be, 1), benchRand(be, 1), benchRand(be, n)
		eps := tensor.New(be, tensor.Float32, n, h, w, 6)
		measure(b, be, 0, 16*n*h*w*6, func() { tensor.GaussianLogProb(g, lp, eps, z, pp, al, bt) })
	})
	b.Run("gauss_bwd_6", func(b *testing.B) {
		be := benchBackend(b)
		z, pp := benchRand(be, n, h, w, 6), benchRand(be, n, h, w, 12)
		al, bt, dlp := benchRand(be, 1), benchRand(be, 1), benchRand(be, n)
		dz, dp := tensor.New(be, tensor.Float32, n, h, w, 6), tensor.New(be, tensor.Float32, n, h, w, 12)
		da, db := tensor.New(be, tensor.Float32, 1), tensor.New(be, tensor.Float32, 1)
		measure(b, be, 0, 28*n*h*w*6, func() { tensor.GaussianLogProbBackward(g, dz, dp, da, db, z, pp, al, bt, dlp) })
	})
	b.Run("squeeze_32x32x3", func(b *testing.B) {
		be := benchBackend(b)
		x, y := benchRand(be, n, 32, 32, 3), tensor.New(be, tensor.Float32, n, 16, 16, 12)
		measure(b, be, 0, 8*n*32*32*3, func() { tensor.Squeeze2(y, x) })
	})
}
