package conv

import (
	"fmt"
	"runtime"
	"sync"

	"dlf/tensor/cpu/gemm"
)

// Float is the element type of every routine in this package.
type Float interface{ float32 | float64 }

// Params describes one convolution (see the package documentation for the
// layouts).
type Params struct {
	N, H, W   int  // batch size and spatial size of input and output
	Cin, Cout int  // input channels (not counting the edge channel) and output channels
	K         int  // kernel size, odd; padding is (K−1)/2
	EdgeBias  bool // add Glow's edge indicator channel, so the weight has Cin+1 input channels
	// Threads is the most goroutines a call may use; ≤ 0 means
	// runtime.GOMAXPROCS(0).
	Threads int
}

// CinW returns Cin', the number of input channels of the weight: Cin, plus
// one with EdgeBias.
func (p Params) CinW() int {
	if p.EdgeBias {
		return p.Cin + 1
	}
	return p.Cin
}

// Rows returns N·H·W, the number of pixels (GEMM rows).
func (p Params) Rows() int { return p.N * p.H * p.W }

// WeightLen returns K·K·Cin'·Cout, the length of the weight.
func (p Params) WeightLen() int { return p.K * p.K * p.CinW() * p.Cout }

// Flops returns the multiply-add count of the forward pass times two
// (2·N·H·W·K·K·Cin'·Cout), the usual convolution flop count; each of the
// two GEMM-based backward passes costs about the same.
func (p Params) Flops() float64 {
	return 2 * float64(p.Rows()) * float64(p.K*p.K*p.CinW()) * float64(p.Cout)
}

func (p Params) threads() int {
	if p.Threads > 0 {
		return p.Threads
	}
	return runtime.GOMAXPROCS(0)
}

// check panics, naming the function and the sizes, when p is malformed or a
// slice does not have the length p implies.
func (p Params) check(fn string, lens ...namedLen) {
	if p.N <= 0 || p.H <= 0 || p.W <= 0 || p.Cin <= 0 || p.Cout <= 0 || p.K <= 0 || p.K%2 == 0 {
		panic(fmt.Sprintf("conv: %s: bad params N=%d H=%d W=%d Cin=%d Cout=%d K=%d (sizes must be positive and K odd)",
			fn, p.N, p.H, p.W, p.Cin, p.Cout, p.K))
	}
	for _, l := range lens {
		if l.got != l.want && !(l.optional && l.got == 0) {
			panic(fmt.Sprintf("conv: %s: len(%s)=%d, want %s = %d (N=%d H=%d W=%d Cin=%d Cout=%d K=%d EdgeBias=%v)",
				fn, l.name, l.got, l.formula, l.want, p.N, p.H, p.W, p.Cin, p.Cout, p.K, p.EdgeBias))
		}
	}
}

type namedLen struct {
	name, formula string
	got, want     int
	optional      bool // may be empty (bias)
}

// Forward computes y = conv(x, w) + bias: x is [N,H,W,Cin], w is
// [K,K,Cin',Cout], bias is [Cout] or nil, y is [N,H,W,Cout] and is
// overwritten (it is not read, so it may hold NaN).
func Forward[T Float](p Params, x, w, bias, y []T) {
	p.check("Forward",
		namedLen{"x", "N·H·W·Cin", len(x), p.Rows() * p.Cin, false},
		namedLen{"w", "K·K·Cin'·Cout", len(w), p.WeightLen(), false},
		namedLen{"bias", "Cout", len(bias), p.Cout, true},
		namedLen{"y", "N·H·W·Cout", len(y), p.Rows() * p.Cout, false})
	forward(p, x, w, bias, y, 0)
}

// BackwardData computes the gradient with respect to x of a loss whose
// gradient with respect to y is dy: dx = Σ over taps of dy shifted and
// multiplied by the transposed weight. dy is [N,H,W,Cout], w is
// [K,K,Cin',Cout], dx is [N,H,W,Cin]. With accumulate the gradient is added
// to dx; otherwise dx is overwritten without being read. The edge channel
// is a constant and gets no gradient.
func BackwardData[T Float](p Params, dy, w, dx []T, accumulate bool) {
	p.check("BackwardData",
		namedLen{"dy", "N·H·W·Cout", len(dy), p.Rows() * p.Cout, false},
		namedLen{"w", "K·K·Cin'·Cout", len(w), p.WeightLen(), false},
		namedLen{"dx", "N·H·W·Cin", len(dx), p.Rows() * p.Cin, false})
	beta := T(0)
	if accumulate {
		beta = 1
	}
	if p.K == 1 {
		// dx = dy · W[:Cin]ᵀ; the edge row of W (if any) multiplies a
		// constant and has no input gradient.
		pb := getPacked[T]()
		pb.Pack(gemm.Options{}, true, p.Cout, p.Cin, w[:p.Cin*p.Cout], p.Cout)
		parallelRows(p.Rows(), p.threads(), 2*p.Cin*p.Cout, func(r0, r1 int) {
			gemm.GemmPacked(single, false, r1-r0, 1, dy[r0*p.Cout:r1*p.Cout], p.Cout, pb, beta, dx[r0*p.Cin:r1*p.Cin], p.Cin)
		})
		putPacked(pb)
		return
	}
	// Flip the kernel spatially and swap its channel axes, then run the
	// forward convolution of dy with it.
	k, cinW := p.K, p.CinW()
	wt := getScratch[T](k * k * p.Cout * p.Cin)
	for kh := 0; kh < k; kh++ {
		for kw := 0; kw < k; kw++ {
			src := w[((k-1-kh)*k+(k-1-kw))*cinW*p.Cout:]
			dst := (*wt)[(kh*k+kw)*p.Cout*p.Cin:]
			for ci := 0; ci < p.Cin; ci++ {
				for co := 0; co < p.Cout; co++ {
					dst[co*p.Cin+ci] = src[ci*p.Cout+co]
				}
			}
		}
	}
	q := p
	q.Cin, q.Cout, q.EdgeBias = p.Cout, p.Cin, false
	forward(q, dy, (*wt)[:k*k*p.Cout*p.Cin], nil, dx, beta)
	putScratch(wt)
}

// BackwardWeights computes the gradient with respect to the weight:
// dw[kh][kw][ci][co] = Σ over pixels of patch(x)[kh][kw][ci] · dy[co],
// including the edge channel's row when EdgeBias is set. x is [N,H,W,Cin],
// dy is [N,H,W,Cout], dw is [K,K,Cin',Cout]. With accumulate the gradient
// is added to dw; otherwise dw is overwritten without being read.
func BackwardWeights[T Float](p Params, x, dy, dw []T, accumulate bool) {
	p.check("BackwardWeights",
		namedLen{"x", "N·H·W·Cin", len(x), p.Rows() * p.Cin, false},
		namedLen{"dy", "N·H·W·Cout", len(dy), p.Rows() * p.Cout, false},
		namedLen{"dw", "K·K·Cin'·Cout", len(dw), p.WeightLen(), false})
	if p.useTaps() {
		backwardWeightsTaps(p, x, dy, dw, accumulate)
		return
	}
	kd := p.K * p.K * p.CinW()
	rows, threads := p.Rows(), p.threads()
	// Each goroutine sums its blocks into its own kd×Cout partial (the first
	// goroutine uses dw itself); the partials are added in a fixed order.
	// Each block is the depth of one GEMM that reads and writes the whole
	// partial, so blocks hold at least minDepthRows pixels even when that
	// exceeds colBudget (wide layers).
	colCap := max(blockRows(kd, sizeOf[T](), 1), minDepthRows)
	workers := max(1, min(threads, ceilDiv(rows, 8), rows*2*kd*p.Cout/minWorkerFlops))
	parts := make([]*[]T, workers)
	var wg sync.WaitGroup
	for t := 0; t < workers; t++ {
		r0, r1 := rows*t/workers, rows*(t+1)/workers
		var out []T
		beta := T(0)
		if t == 0 {
			out = dw
			if accumulate {
				beta = 1
			}
		} else {
			parts[t] = getScratch[T](kd * p.Cout)
			out = (*parts[t])[:kd*p.Cout]
		}
		work := func() {
			if p.K == 1 {
				// The patch matrix is x itself; the edge row (always 0 for
				// K = 1) is handled below.
				gemm.Gemm(single, true, false, p.Cin, p.Cout, r1-r0, 1, x[r0*p.Cin:r1*p.Cin], p.Cin, dy[r0*p.Cout:r1*p.Cout], p.Cout, beta, out, p.Cout)
				if p.EdgeBias && beta == 0 {
					clear(out[p.Cin*p.Cout : (p.Cin+1)*p.Cout])
				}
				return
			}
			col := getScratch[T](colCap * kd)
			for b0 := r0; b0 < r1; b0 += colCap {
				b1 := min(r1, b0+colCap)
				im2col(p, x, b0, b1, *col)
				gemm.Gemm(single, true, false, kd, p.Cout, b1-b0, 1, (*col)[:(b1-b0)*kd], kd, dy[b0*p.Cout:b1*p.Cout], p.Cout, beta, out, p.Cout)
				beta = 1
			}
			putScratch(col)
		}
		if t == workers-1 {
			work()
		} else {
			wg.Go(work)
		}
	}
	wg.Wait()
	for t := 1; t < workers; t++ {
		for i, v := range (*parts[t])[:kd*p.Cout] {
			dw[i] += v
		}
		putScratch(parts[t])
	}
}

// BackwardBias computes db[co] = Σ over pixels of dy[co] (dy is
// [N,H,W,Cout], db is [Cout]), summing in float64. With accumulate the sum
// is added to db; otherwise db is overwritten without being read.
func BackwardBias[T Float](p Params, dy, db []T, accumulate bool) {
	p.check("BackwardBias",
		namedLen{"dy", "N·H·W·Cout", len(dy), p.Rows() * p.Cout, false},
		namedLen{"db", "Cout", len(db), p.Cout, false})
	rows, cout := p.Rows(), p.Cout
	workers := min(p.threads(), ceilDiv(rows*cout, 1<<15))
	sums := make([]float64, workers*cout)
	parallelFixed(workers, func(t int) {
		sumRows(dy, cout, rows*t/workers, rows*(t+1)/workers, sums[t*cout:(t+1)*cout])
	})
	for c := 0; c < cout; c++ {
		var s float64
		for t := 0; t < workers; t++ {
			s += sums[t*cout+c]
		}
		if accumulate {
			s += float64(db[c])
		}
		db[c] = T(s)
	}
}

// sumRows adds rows [r0, r1) of the row-major matrix dy (cout columns) into
// s in float64. Four rows are combined per pass so that each s[c] is loaded
// and stored once per four rows rather than once per row.
func sumRows[T Float](dy []T, cout, r0, r1 int, s []float64) {
	s = s[:cout]
	r := r0
	for ; r+4 <= r1; r += 4 {
		d0 := dy[r*cout : (r+1)*cout]
		d1 := dy[(r+1)*cout : (r+2)*cout]
		d2 := dy[(r+2)*cout : (r+3)*cout]
		d3 := dy[(r+3)*cout : (r+4)*cout]
		for c := range s {
			s[c] += (float64(d0[c]) + float64(d1[c])) + (float64(d2[c]) + float64(d3[c]))
		}
	}
	for ; r < r1; r++ {
		for c, v := range dy[r*cout : (r+1)*cout] {
			s[c] += float64(v)
		}
	}
}

// forward computes y = conv(x, w) + bias + beta·y (y is not read when
// beta == 0); arguments are already checked.
func forward[T Float](p Params, x, w, bias, y []T, beta T) {
	if p.useTaps() {
		forwardTaps(p, x, w, bias, y, beta)
		return
	}
	rows, cout := p.Rows(), p.Cout
	addBias := func(r0, r1 int) {
		if len(bias) == 0 {
			return
		}
		for r := r0; r < r1; r++ {
			row := y[r*cout : (r+1)*cout]
			for c, b := range bias[:len(row)] {
				row[c] += b
			}
		}
	}
	// The weight is packed once and shared by every goroutine and block.
	// With K = 1 there is no padding and the input rows are the patches;
	// with EdgeBias the indicator is then always 0, so the weight's last
	// input row drops out.
	kd := p.K * p.K * p.CinW()
	if p.K == 1 {
		kd = p.Cin
	}
	pb := getPacked[T]()
	pb.Pack(gemm.Options{}, false, kd, cout, w[:kd*cout], cout)
	if p.K == 1 {
		parallelRows(rows, p.threads(), 2*kd*cout, func(r0, r1 int) {
			for b0 := r0; b0 < r1; b0 += 1024 {
				// Blocks of rows keep the output in cache for the bias.
				b1 := min(r1, b0+1024)
				gemm.GemmPacked(single, false, b1-b0, 1, x[b0*p.Cin:b1*p.Cin], p.Cin, pb, beta, y[b0*cout:b1*cout], cout)
				addBias(b0, b1)
			}
		})
		putPacked(pb)
		return
	}
	colCap := blockRows(kd, sizeOf[T](), pb.RowTile())
	parallelRows(rows, p.threads(), 2*kd*cout, func(r0, r1 int) {
		col := getScratch[T](min(colCap, r1-r0) * kd)
		for b0 := r0; b0 < r1; b0 += colCap {
			b1 := min(r1, b0+colCap)
			im2col(p, x, b0, b1, *col)
			gemm.GemmPacked(single, false, b1-b0, 1, (*col)[:(b1-b0)*kd], kd, pb, beta, y[b0*cout:b1*cout], cout)
			addBias(b0, b1)
		}
		putScratch(col)
	})
	putPacked(pb)
}

// im2col writes the patch rows of pixels [r0, r1) into col (row stride
// K·K·Cin'): row r holds, for each tap (kh, kw) in row-major order, the Cin
// input channels at (h+kh−p, w+kw−p) — zeros when that lies in the padding
// — followed, with EdgeBias, by the indicator (1 in the padding, else 0).
func im2col[T Float](p Params, x []T, r0, r1 int, col []T) {
	k, pad, cin, cinW := p.K, (p.K-1)/2, p.Cin, p.CinW()
	kd := k * k * cinW
	hw := p.H * p.W
	n, h, w := r0/hw, (r0/p.W)%p.H, r0%p.W
	for r := r0; r < r1; r++ {
		dst := col[(r-r0)*kd : (r-r0+1)*kd]
		img := x[n*hw*cin : (n+1)*hw*cin]
		for kh := 0; kh < k; kh++ {
			ih := h + kh - pad
			seg := dst[kh*k*cinW : (kh+1)*k*cinW]
			if ih < 0 || ih >= p.H {
				fillPad(seg, cin, cinW)
				continue
			}
			iw0 := w - pad
			if !p.EdgeBias && iw0 >= 0 && iw0+k <= p.W {
				// The whole kernel row lies inside: one contiguous copy.
				copy(seg, img[(ih*p.W+iw0)*cin:(ih*p.W+iw0+k)*cin])
				continue
			}
			for kw := 0; kw < k; kw++ {
				iw := iw0 + kw
				tap := seg[kw*cinW : (kw+1)*cinW]
				if iw < 0 || iw >= p.W {
					fillPad(tap, cin, cinW)
					continue
				}
				copyChannels(tap[:cin], img[(ih*p.W+iw)*cin:(ih*p.W+iw+1)*cin])
				if cinW > cin {
					tap[cin] = 0
				}
			}
		}
		if w++; w == p.W {
			w = 0
			if h++; h == p.H {
				h = 0
				n++
			}
		}
	}
}

// copyChannels copies one pixel's channels. For the few channels of a
// flow's first levels (2–12) a plain loop beats the call into memmove.
func copyChannels[T Float](dst, src []T) {
	if len(src) > 16 {
		copy(dst, src)
		return
	}
	dst = dst[:len(src)]
	for i, v := range src {
		dst[i] = v
	}
}

// fillPad writes padding taps: zeros for the Cin input channels and, when
// the taps have an edge channel (cinW > cin), 1 for the indicator.
func fillPad[T Float](seg []T, cin, cinW int) {
	if cinW == cin {
		clear(seg)
		return
	}
	for t := 0; t < len(seg); t += cinW {
		clear(seg[t : t+cin])
		seg[t+cin] = 1
	}
}

// colBudget is the patch-matrix scratch per goroutine in bytes. 192 KiB
// leaves room in the 1 MiB L2 of the Zen 4 cores this was tuned on for the
// GEMM's packed copy of the same block (about as large), the packed weight
// and the output rows, so each block is built, packed and multiplied
// without leaving L2.
const colBudget = 192 << 10

// minDepthRows is the fewest pixels per backward-weights block: a block is
// the depth k of a GEMM that loads and stores the whole K·K·Cin'×Cout
// gradient, which a depth of a few hundred amortises.
const minDepthRows = 256

// minBlockRows is the fewest pixels per forward block: every block streams
// the whole packed weight through the cache once, so a wide layer whose
// patches overflow colBudget still takes blocks of at least this many rows.
const minBlockRows = 64

// blockRows returns how many patch rows of width kd fit in colBudget,
// rounded down to a multiple of tile (the GEMM's row tile), and at least
// minBlockRows rounded up to a tile.
func blockRows(kd, size, tile int) int {
	return max(colBudget/(kd*size)/tile, (minBlockRows+tile-1)/tile) * tile
}

func sizeOf[T Float]() int {
	var zero T
	if _, ok := any(zero).(float32); ok {
		return 4
	}
	return 8
}

func ceilDiv(a, b int) int { return (a + b - 1) / b }

// minWorkerFlops is the least work, in flops, worth a goroutine of its
// own: about a million (≈10 µs on one core), as package gemm's threshold for
// splitting one GEMM. Below it, waking a goroutine and joining it (2–6 µs
// on a loaded machine) and the second core's cold caches cost more than
// they save: a small-batch flow step (4 images of 14×14, a 3×3 conv from 2
// channels) ran 30% slower on two threads than on one before this bound.
// A variable so that tests can force the parallel paths on small shapes.
var minWorkerFlops = 1 << 20

// parallelRows splits rows [0, rows) into one contiguous range per
// goroutine (at most threads, each at least 64 rows and minWorkerFlops of
// work at rowFlops per row, unless there is only one) and runs f on each,
// the last on the calling goroutine.
func parallelRows(rows, threads, rowFlops int, f func(r0, r1 int)) {
	workers := max(1, min(threads, rows/64, rows*rowFlops/minWorkerFlops))
	parallelFixed(workers, func(t int) { f(rows*t/workers, rows*(t+1)/workers) })
}

// parallelFixed runs f(0..workers-1) concurrently and waits for all.
func parallelFixed(workers int, f func(t int)) {
	var wg sync.WaitGroup
	for t := 0; t < workers-1; t++ {
		wg.Go(func() { f(t) })
	}
	f(workers - 1)
	wg.Wait()
}

// single runs a GEMM on the calling goroutine: the callers parallelise
// over blocks of rows themselves.
var single = gemm.Options{Threads: 1}

// Scratch buffers, pooled per element type (*[]float32 and *[]float64).
var scratch32, scratch64 sync.Pool

// getScratch returns a pooled buffer of at least n elements.
func getScratch[T Float](n int) *[]T {
	pool := &scratch64
	if sizeOf[T]() == 4 {
		pool = &scratch32
	}
	buf, _ := pool.Get().(*[]T)
	if buf == nil {
		buf = new([]T)
	}
	if len(*buf) < n {
		*buf = make([]T, n)
	}
	return buf
}

// putScratch returns a buffer from getScratch to its pool.
func putScratch[T Float](buf *[]T) {
	if sizeOf[T]() == 4 {
		scratch32.Put(buf)
	} else {
		scratch64.Put(buf)
	}
}

// Packed weights, pooled per element type (*gemm.PackedB[float32] and
// *gemm.PackedB[float64]); each keeps its buffer between calls.
var packed32, packed64 sync.Pool

func getPacked[T Float]() *gemm.PackedB[T] {
	pool := &packed64
	if sizeOf[T]() == 4 {
		pool = &packed32
	}
	if pb, ok := pool.Get().(*gemm.PackedB[T]); ok {
		return pb
	}
	return new(gemm.PackedB[T])
}

func putPacked[T Float](pb *gemm.PackedB[T]) {
	if sizeOf[T]() == 4 {
		packed32.Put(pb)
	} else {
		packed64.Put(pb)
	}
}
