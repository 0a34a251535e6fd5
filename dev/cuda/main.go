// Command cuda is the kernel workbench of dlf's GEMM and convolution kernels, in the manner of
// llm.c's dev/cuda: every variant — precision (FP32 on CUDA cores, gemm.cuh; TF32 on tensor cores,
// mma.cuh) × block tile (128x128, 64x64, 128x32) — runs on its own on each shape, forced past the
// host's tiling policy (cuda.WithTile), is timed, and is checked against a float64 reference.
//
//	go run ./dev/cuda                          # the model's shapes at their training batches (a GPU)
//	go run ./dev/cuda -shapes emu -reps 1      # small batches, for the CPU emulator (make workbench)
//	go run ./dev/cuda -ops conv_fwd -prec tf32 -tiles 128x128
//
// For each run it prints one row: achieved GFLOP/s, the fraction of the device's FP32 and dense
// TF32 peaks (bench.GPUFloors, bench.GPUTF32Floors, from the driver's clocks), and the check: the
// worst |got − want| over the bound γ_(K+2)·Σ|a·b| (K the reduction length, u = 2⁻²⁴; the
// reference uses the operands rounded to TF32 for TF32 variants, exactly as the kernels round them:
// tensor/backendtest's tf32 family derives the bound). The reference is computed for a random
// sample of output elements (all of them when there are fewer than -check), so model-size shapes
// stay cheap to check. A check above 1 fails the run (exit status 1).
//
// On the emulator (DLF_LIBCUDA=bin/cudaemu/libcuda_emu.so) the timings measure the emulator, not a
// GPU: only the check column means anything there.
package main

import (
	"flag"
	"fmt"
	"math"
	"math/rand/v2"
	"os"
	"slices"
	"strings"
	"time"

	"dlf/bench"
	"dlf/tensor"
	"dlf/tensor/cuda"
)

// problem is one GEMM (m, n, k; "gemm") or one convolution (batch, H, W, Cin → Cout, kernel K,
// edge bias) of a given op.
type problem struct {
	op                     string // gemm, conv_fwd, conv_bwd_data, conv_bwd_filter
	m, n, k                int
	batch, h, w, cin, cout int
	ks                     int
	edge                   bool
	what                   string
}

func (p problem) name() string {
	if p.op == "gemm" {
		return fmt.Sprintf("%dx%dx%d", p.m, p.n, p.k)
	}
	s := fmt.Sprintf("%dx%dx%dx%d→%d k%d", p.batch, p.h, p.w, p.cin, p.cout, p.ks)
	if p.edge {
		s += "e"
	}
	return s
}

// conv returns a convolution problem of op.
func conv(op string, batch, h, w, cin, cout, ks int, edge bool, what string) problem {
	return problem{op: op, batch: batch, h: h, w: w, cin: cin, cout: cout, ks: ks, edge: edge, what: what}
}

// modelConvs lists the hyper-network convolutions of the mnist (width 128, batch 256) and cifar10
// (width 512, batch 32) presets, per level (dlf-spec §6.1 presets; DLT K = 2 parts), at batch b
// (0: the preset's).
func modelConvs(op string, b int) []problem {
	pick := func(def int) int {
		if b > 0 {
			return b
		}
		return def
	}
	var out []problem
	for _, l := range []struct {
		batch, hw, part, width int
		what                   string
	}{
		{pick(256), 14, 2, 128, "mnist level 0"},
		{pick(256), 7, 4, 128, "mnist level 1"},
		{pick(32), 16, 6, 512, "cifar10 level 0"},
		{pick(32), 8, 12, 512, "cifar10 level 1"},
		{pick(32), 4, 24, 512, "cifar10 level 2"},
	} {
		out = append(out,
			conv(op, l.batch, l.hw, l.hw, l.part, l.width, 3, true, l.what+" conv1"),
			conv(op, l.batch, l.hw, l.hw, l.width, l.width, 1, false, l.what+" conv2"),
			conv(op, l.batch, l.hw, l.hw, l.width, 2*l.part, 3, true, l.what+" conv3"))
	}
	return out
}

// shapes returns the problems of a shape set for the selected ops.
func shapes(set string, ops []string) ([]problem, error) {
	var out []problem
	batch := 0
	switch set {
	case "model":
	case "emu":
		batch = 2
	default:
		return nil, fmt.Errorf("-shapes %q: want model or emu", set)
	}
	for _, op := range ops {
		if op == "gemm" {
			gs := [][3]int{{4096, 4096, 4096}, {12544, 128, 128}, {50176, 4, 4}, {1000, 1000, 1000}}
			if set == "emu" {
				gs = [][3]int{{256, 256, 64}, {392, 128, 128}, {1000, 4, 4}, {129, 65, 33}}
			}
			for _, g := range gs {
				out = append(out, problem{op: "gemm", m: g[0], n: g[1], k: g[2], what: "dense"})
			}
			continue
		}
		out = append(out, modelConvs(op, batch)...)
	}
	return out, nil
}

// dims returns the product's M, N and reduction length K as the kernel sees them.
func (p problem) dims() (m, n, k int) {
	cp := p.cin
	if p.edge {
		cp++
	}
	pix := p.batch * p.h * p.w
	switch p.op {
	case "gemm":
		return p.m, p.n, p.k
	case "conv_fwd":
		return pix, p.cout, p.ks * p.ks * cp
	case "conv_bwd_data":
		return pix, p.cin, p.ks * p.ks * p.cout
	}
	return p.ks * p.ks * cp, p.cout, pix // conv_bwd_filter
}

// instance holds a problem's operands on the host and the device.
type instance struct {
	p           problem
	a, b        []float32 // gemm: A [m,k], B [k,n]; conv: the two inputs of the op
	ta, tb, out *tensor.Tensor
	cp          tensor.ConvParams
}

func newInstance(be *cuda.Backend, p problem, prec tensor.Precision, rng *rand.Rand) *instance {
	in := &instance{p: p, cp: tensor.ConvParams{K: p.ks, EdgeBias: p.edge, Precision: prec}}
	fill := func(n int, lo, hi float64) []float32 {
		v := make([]float32, n)
		for i := range v {
			v[i] = float32((lo + (hi-lo)*rng.Float64()) * float64(1-2*rng.IntN(2)))
		}
		return v
	}
	cw := p.cin
	if p.edge {
		cw++
	}
	x := []int{p.batch, p.h, p.w, p.cin}
	w := []int{p.ks, p.ks, cw, p.cout}
	y := []int{p.batch, p.h, p.w, p.cout}
	var as, bs, os []int
	switch p.op {
	case "gemm":
		as, bs, os = []int{p.m, p.k}, []int{p.k, p.n}, []int{p.m, p.n}
	case "conv_fwd":
		as, bs, os = x, w, y
	case "conv_bwd_data":
		as, bs, os = y, w, x
	default:
		as, bs, os = x, y, w
	}
	in.a, in.b = fill(prod(as), 0.1, 2), fill(prod(bs), 0.05, 1)
	in.ta, in.tb = tensor.FromFloat32(be, in.a, as...), tensor.FromFloat32(be, in.b, bs...)
	in.out = tensor.New(be, tensor.Float32, os...)
	return in
}

func prod(s []int) int {
	n := 1
	for _, v := range s {
		n *= v
	}
	return n
}

// run launches the op once.
func (in *instance) run(prec tensor.Precision) {
	switch in.p.op {
	case "gemm":
		tensor.GemmPrecision(prec, false, false, 1, in.ta, in.tb, 0, in.out)
	case "conv_fwd":
		tensor.Conv2D(in.cp, in.out, in.ta, in.tb, nil)
	case "conv_bwd_data":
		tensor.Conv2DBackwardData(in.cp, in.out, in.ta, in.tb)
	default:
		tensor.Conv2DBackwardWeights(in.cp, in.out, in.ta, in.tb)
	}
}

// check compares up to samples output elements with the float64 reference and returns the worst
// |got − want| / (γ_(K+2)·Σ|terms|).
func (in *instance) check(prec tensor.Precision, samples int, rng *rand.Rand) float64 {
	got := in.out.Float32s()
	a, b := in.a, in.b
	if prec == tensor.TF32 {
		a, b = slices.Clone(a), slices.Clone(b)
		tensor.RoundTF32Slice(a)
		tensor.RoundTF32Slice(b)
	}
	_, _, k := in.p.dims()
	const u = 1.0 / (1 << 24)
	gamma := float64(k+2) * u / (1 - float64(k+2)*u)
	idx := make([]int, 0, samples)
	if len(got) <= samples {
		for i := range got {
			idx = append(idx, i)
		}
	} else {
		for range samples {
			idx = append(idx, rng.IntN(len(got)))
		}
	}
	worst := 0.0
	for _, i := range idx {
		want, scale := in.reference(a, b, i)
		d := math.Abs(float64(got[i]) - want)
		if d == 0 {
			continue // exact (also where the reference is an exact 0 of scale 0)
		}
		r := d / (gamma * scale)
		if math.IsNaN(r) {
			return math.Inf(1)
		}
		worst = max(worst, r)
	}
	return worst
}

// reference returns output element i of the op in float64 from the operands a, b, and its scale
// Σ|terms|. The edge-bias channel (1 on the padded border, 0 inside) is exact.
func (in *instance) reference(a, b []float32, i int) (want, scale float64) {
	p := in.p
	add := func(x, y float64) {
		want += x * y
		scale += math.Abs(x * y)
	}
	if p.op == "gemm" {
		r, c := i/p.n, i%p.n
		for q := 0; q < p.k; q++ {
			add(float64(a[r*p.k+q]), float64(b[q*p.n+c]))
		}
		return want, scale
	}
	cw := p.cin
	if p.edge {
		cw++
	}
	pad := (p.ks - 1) / 2
	// xAt is the input value (with the edge channel and zero padding) at (n, y, x, c).
	xAt := func(img []float32, n, y, x, c int) float64 {
		inside := y >= 0 && y < p.h && x >= 0 && x < p.w
		if c == p.cin {
			if inside {
				return 0
			}
			return 1
		}
		if !inside {
			return 0
		}
		return float64(img[((n*p.h+y)*p.w+x)*p.cin+c])
	}
	switch p.op {
	case "conv_fwd": // a = x, b = w; i indexes y [n,h,w,cout]
		co, pix := i%p.cout, i/p.cout
		n, y, x := pix/(p.h*p.w), pix/p.w%p.h, pix%p.w
		for ki := 0; ki < p.ks; ki++ {
			for kj := 0; kj < p.ks; kj++ {
				for c := 0; c < cw; c++ {
					add(xAt(a, n, y+ki-pad, x+kj-pad, c), float64(b[((ki*p.ks+kj)*cw+c)*p.cout+co]))
				}
			}
		}
	case "conv_bwd_data": // a = dy, b = w; i indexes dx [n,h,w,cin]
		ci, pix := i%p.cin, i/p.cin
		n, y, x := pix/(p.h*p.w), pix/p.w%p.h, pix%p.w
		for ki := 0; ki < p.ks; ki++ {
			for kj := 0; kj < p.ks; kj++ {
				oy, ox := y+pad-ki, x+pad-kj
				if oy < 0 || oy >= p.h || ox < 0 || ox >= p.w {
					continue
				}
				for co := 0; co < p.cout; co++ {
					add(float64(a[((n*p.h+oy)*p.w+ox)*p.cout+co]), float64(b[((ki*p.ks+kj)*cw+ci)*p.cout+co]))
				}
			}
		}
	default: // a = x, b = dy; i indexes dw [k,k,cw,cout]
		co, r := i%p.cout, i/p.cout
		c, tap := r%cw, r/cw
		ki, kj := tap/p.ks, tap%p.ks
		for n := 0; n < p.batch; n++ {
			for y := 0; y < p.h; y++ {
				for x := 0; x < p.w; x++ {
					add(xAt(a, n, y+ki-pad, x+kj-pad, c), float64(b[((n*p.h+y)*p.w+x)*p.cout+co]))
				}
			}
		}
	}
	return want, scale
}

func main() {
	var (
		set     = flag.String("shapes", "model", "shape set: model (the presets' convolutions at their training batches, and large GEMMs) or emu (batch 2, small GEMMs: for the CPU emulator)")
		opsFlag = flag.String("ops", "gemm,conv_fwd,conv_bwd_data,conv_bwd_filter", "ops to run, comma-separated")
		precs   = flag.String("prec", "fp32,tf32", "precisions to run, comma-separated")
		tiles   = flag.String("tiles", strings.Join(cuda.Tiles(), ","), "block tiles to run, comma-separated (the policy's choice is marked *)")
		reps    = flag.Int("reps", 10, "timed launches per variant (after one warm-up launch)")
		samples = flag.Int("check", 512, "output elements checked against the float64 reference per variant")
		gpu     = flag.Int("gpu", 0, "CUDA device ordinal")
		floors  = flag.Bool("floors", false, "print each shape's roofline floors (FP32 and TF32 compute, memory) from the device's clocks instead of running kernels")
	)
	flag.Parse()
	if *floors {
		if err := printFloors(*set, strings.Split(*opsFlag, ","), *gpu); err != nil {
			fmt.Fprintln(os.Stderr, "dev/cuda:", err)
			os.Exit(1)
		}
		return
	}
	if err := run(*set, strings.Split(*opsFlag, ","), strings.Split(*precs, ","), strings.Split(*tiles, ","), *reps, *samples, *gpu); err != nil {
		fmt.Fprintln(os.Stderr, "dev/cuda:", err)
		os.Exit(1)
	}
}

// printFloors prints, per shape, the FLOPs, the bytes every variant must move at least (both
// inputs read and the output written once, float32), and the roofline time at the FP32 and the
// TF32 peak: the fastest any FP32 or TF32 kernel can be, and so the largest speed-up TF32 can give
// on that shape (compute-bound shapes: the ratio of the peaks; memory-bound ones: less).
func printFloors(set string, ops []string, gpu int) error {
	problems, err := shapes(set, ops)
	if err != nil {
		return err
	}
	be, err := cuda.New(gpu)
	if err != nil {
		return err
	}
	defer be.Close()
	clocks, err := be.Clocks()
	if err != nil {
		return err
	}
	fp32, tf32 := bench.GPUFloors(clocks), bench.GPUTF32Floors(clocks)
	fmt.Printf("device: %s\n  %s\n  %s\n\n", clocks.Name, fp32.Source, tf32.Source)
	fmt.Println("| op | shape | what | GFLOP | MB | FP32 floor µs | TF32 floor µs | bound at TF32 | max TF32 gain |")
	fmt.Println("|---|---|---|---:|---:|---:|---:|---|---:|")
	for _, p := range problems {
		m, n, k := p.dims()
		flops := 2 * float64(m) * float64(n) * float64(k)
		var in, out int
		switch p.op {
		case "gemm":
			in, out = p.m*p.k+p.k*p.n, p.m*p.n
		default:
			cw := p.cin
			if p.edge {
				cw++
			}
			x, w, y := p.batch*p.h*p.w*p.cin, p.ks*p.ks*cw*p.cout, p.batch*p.h*p.w*p.cout
			switch p.op {
			case "conv_fwd":
				in, out = x+w, y
			case "conv_bwd_data":
				in, out = y+w, x
			default:
				in, out = x+y, w
			}
		}
		bytes := 4 * float64(in+out)
		mem := bytes / (fp32.GBS * 1e9)
		t32 := max(flops/(fp32.GFLOPS*1e9), mem)
		ttf := max(flops/(tf32.GFLOPS*1e9), mem)
		bound := "compute"
		if mem >= flops/(tf32.GFLOPS*1e9) {
			bound = "memory"
		}
		fmt.Printf("| %s | %s | %s | %.3f | %.2f | %.2f | %.2f | %s | %.1f× |\n", p.op, p.name(), p.what, flops/1e9, bytes/1e6,
			t32*1e6, ttf*1e6, bound, t32/ttf)
	}
	return nil
}

func run(set string, ops, precs, tiles []string, reps, samples, gpu int) error {
	problems, err := shapes(set, ops)
	if err != nil {
		return err
	}
	var ps []tensor.Precision
	for _, s := range precs {
		p, err := tensor.ParsePrecision(s)
		if err != nil {
			return fmt.Errorf("-prec: %w", err)
		}
		ps = append(ps, p)
	}
	policy, err := cuda.New(gpu)
	if err != nil {
		return err
	}
	defer policy.Close()
	clocks, err := policy.Clocks()
	if err != nil {
		return err
	}
	fp32, tf32 := bench.GPUFloors(clocks), bench.GPUTF32Floors(clocks)
	fmt.Printf("device: %s\n  %s\n  %s\n\n", clocks.Name, fp32.Source, tf32.Source)
	fmt.Println("| op | shape | what | prec | tile | ms | GFLOP/s | % FP32 peak | % TF32 peak | check (≤ 1) |")
	fmt.Println("|---|---|---|---|---|---:|---:|---:|---:|---:|")
	backends := map[string]*cuda.Backend{}
	defer func() {
		for _, b := range backends {
			b.Close()
		}
	}()
	rng := rand.New(rand.NewPCG(1, 2))
	failed := 0
	for _, p := range problems {
		m, n, k := p.dims()
		flops := 2 * float64(m) * float64(n) * float64(k)
		for _, prec := range ps {
			for _, tl := range tiles {
				be, ok := backends[tl]
				if !ok {
					if be, err = cuda.New(gpu, cuda.WithTile(tl)); err != nil {
						return err
					}
					backends[tl] = be
				}
				in := newInstance(be, p, prec, rng)
				in.run(prec) // warm-up (module load, first-touch allocations)
				if err := be.Sync(); err != nil {
					return fmt.Errorf("%s %s %v %s: %w", p.op, p.name(), prec, tl, err)
				}
				start := time.Now()
				for range reps {
					in.run(prec)
				}
				if err := be.Sync(); err != nil {
					return fmt.Errorf("%s %s %v %s: %w", p.op, p.name(), prec, tl, err)
				}
				sec := time.Since(start).Seconds() / float64(max(reps, 1))
				worst := in.check(prec, samples, rng)
				mark := ""
				if tl == cuda.PolicyTile(int64(m), int64(n)) {
					mark = "*"
				}
				verdict := fmt.Sprintf("%.3g", worst)
				if !(worst <= 1) {
					verdict += " FAIL"
					failed++
				}
				gf := flops / sec / 1e9
				fmt.Printf("| %s | %s | %s | %v | %s%s | %.3f | %.0f | %.1f | %.1f | %s |\n", p.op, p.name(), p.what, prec, tl, mark,
					sec*1e3, gf, 100*gf/fp32.GFLOPS, 100*gf/math.Max(tf32.GFLOPS, 1e-9), verdict)
			}
		}
	}
	if failed > 0 {
		return fmt.Errorf("%d variants exceed the bound", failed)
	}
	return nil
}
