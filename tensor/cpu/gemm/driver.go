package gemm

import (
	"sync"
)

// workspace holds one goroutine's packed panels and edge-tile buffer.
type workspace[T float] struct {
	a, b, tile []T
}

// Pools of *workspace[float32] and *workspace[float64]; a workspace only
// grows, so steady-state calls reuse their buffers without allocating.
var pool32, pool64 sync.Pool

// getWorkspace returns a workspace big enough for kern on an m×n×k problem.
func getWorkspace[T float](kern *kernel[T], m, n, k int) *workspace[T] {
	var zero T
	pool := &pool64
	if _, ok := any(zero).(float32); ok {
		pool = &pool32
	}
	ws, _ := pool.Get().(*workspace[T])
	if ws == nil {
		ws = new(workspace[T])
	}
	kb := min(kern.kc, k)
	needA := roundUp(min(kern.mc, m), kern.mr) * kb
	needB := roundUp(min(kern.nc, n), kern.nr) * kb
	if len(ws.a) < needA {
		ws.a = make([]T, needA)
	}
	if len(ws.b) < needB {
		ws.b = make([]T, needB)
	}
	if len(ws.tile) < kern.mr*kern.nr {
		ws.tile = make([]T, kern.mr*kern.nr)
	}
	return ws
}

// putWorkspace returns ws to its pool.
func putWorkspace[T float](ws *workspace[T]) {
	var zero T
	if _, ok := any(zero).(float32); ok {
		pool32.Put(ws)
	} else {
		pool64.Put(ws)
	}
}

func roundUp(x, m int) int { return (x + m - 1) / m * m }

func ceilDiv(x, m int) int { return (x + m - 1) / m }

// directMaxPanels is the widest product, in B panels of nr columns, for
// which A is read in place rather than packed. Packing A (a transposing
// scatter) costs about as much as one pass of the micro-kernel over it, so
// it only pays when many B panels reuse the packed block; the kernel's
// strided broadcasts read an unpacked A from L1/L2 nearly as fast as a
// packed one. Measured on the Zen 4 development machine (BenchmarkSgemm
// model shapes, GFLOP per CPU-second, one core busy): in place beat packed
// at n = 128 (85 vs 56) and n = 512 (90 vs 82).
const directMaxPanels = 16

// directA reports whether the kernel should read A in place for a block nb
// columns wide. A row-major A whose row stride is a multiple of 4 KiB is
// always packed: its mr rows would map to the same L1 sets.
func directA(transA bool, lda, size, nb, nr int) bool {
	if nb > directMaxPanels*nr {
		return false
	}
	return transA || (lda*size)%4096 != 0
}

// serial runs the blocked GEMM on the calling goroutine (see doc.go for the
// loop nest). alpha ≠ 0 and k ≥ 1; arguments are already validated. B is
// packed from (transB, b, ldb) unless pb, already packed for kern, is given.
func serial[T float](kern *kernel[T], ws *workspace[T], transA, transB bool, m, n, k int, alpha T, a []T, lda int, b []T, ldb int, pb *PackedB[T], beta T, c []T, ldc int) {
	mr, nr := kern.mr, kern.nr
	size := sizeOf[T]()
	for jc := 0; jc < n; jc += kern.nc {
		nb := min(kern.nc, n-jc)
		direct := directA(transA, lda, size, nb, nr)
		for pc := 0; pc < k; pc += kern.kc {
			kb := min(kern.kc, k-pc)
			var bpack []T
			if pb != nil {
				bpack = pb.block(jc, pc)
			} else {
				packB(transB, b, ldb, pc, jc, kb, nb, nr, ws.b)
				bpack = ws.b
			}
			// Later k blocks accumulate onto what the first one wrote.
			bet := beta
			if pc > 0 {
				bet = 1
			}
			for ic := 0; ic < m; ic += kern.mc {
				mb := min(kern.mc, m-ic)
				full := mb // rows handled by whole panels read in place
				if direct {
					full = mb / mr * mr
					if full < mb {
						// The ragged last panel is packed (zero-padded)
						// so the kernel never reads past A.
						packA(transA, a, lda, ic+full, pc, mb-full, kb, mr, ws.a)
					}
				} else {
					packA(transA, a, lda, ic, pc, mb, kb, mr, ws.a)
				}
				for jr := 0; jr < nb; jr += nr {
					bp := bpack[jr*kb : (jr+nr)*kb]
					nn := min(nr, nb-jr)
					for ir := 0; ir < mb; ir += mr {
						mm := min(mr, mb-ir)
						ap, rs, ps := ws.a[ir*kb:], 1, mr
						switch {
						case direct && ir < full && transA:
							ap, rs, ps = a[pc*lda+ic+ir:], 1, lda
						case direct && ir < full:
							ap, rs, ps = a[(ic+ir)*lda+pc:], lda, 1
						case direct:
							ap = ws.a
						}
						off := (ic+ir)*ldc + jc + jr
						if mm == mr && nn == nr {
							kern.micro(kb, ap, rs, ps, bp, c[off:], ldc, alpha, bet)
							continue
						}
						kern.micro(kb, ap, rs, ps, bp, ws.tile, nr, 1, 0)
						mergeTile(ws.tile, nr, c[off:], ldc, mm, nn, alpha, bet)
					}
				}
			}
		}
	}
}

func sizeOf[T float]() int {
	var zero T
	if _, ok := any(zero).(float32); ok {
		return 4
	}
	return 8
}

// mergeTile writes the mm×nn corner of an edge tile t (row stride ldt) into
// C: c = alpha·t + beta·c, not reading c when beta == 0.
func mergeTile[T float](t []T, ldt int, c []T, ldc, mm, nn int, alpha, beta T) {
	for i := 0; i < mm; i++ {
		src := t[i*ldt : i*ldt+nn]
		dst := c[i*ldc : i*ldc+nn]
		if beta == 0 {
			for j, v := range src {
				dst[j] = alpha * v
			}
			continue
		}
		for j, v := range src {
			dst[j] = alpha*v + beta*dst[j]
		}
	}
}

// scale sets the m×n matrix C to beta·C; with beta == 0 it writes zeros
// without reading C (so NaN in C does not survive).
func scale[T float](m, n int, beta T, c []T, ldc int) {
	if beta == 1 {
		return
	}
	for i := 0; i < m; i++ {
		row := c[i*ldc : i*ldc+n]
		if beta == 0 {
			clear(row)
			continue
		}
		for j := range row {
			row[j] *= beta
		}
	}
}

// minParallelFlops is the smallest problem (2·m·n·k) split across
// goroutines: below about a million flops (≈10 µs on one core) the cost of
// waking goroutines and packing a second copy of the shared panel outweighs
// the gain.
const minParallelFlops = 1 << 20

// gemm runs one GEMM with up to threads goroutines.
func gemm[T float](threads int, kern *kernel[T], transA, transB bool, m, n, k int, alpha T, a []T, lda int, b []T, ldb int, beta T, c []T, ldc int) {
	if m == 0 || n == 0 {
		return
	}
	if alpha == 0 || k == 0 {
		scale(m, n, beta, c, ldc)
		return
	}
	mt, nt := ceilDiv(m, kern.mr), ceilDiv(n, kern.nr)
	if 2*m*n*k < minParallelFlops {
		threads = 1
	}
	threads = min(threads, mt*nt)
	if threads <= 1 {
		ws := getWorkspace(kern, m, n, k)
		serial(kern, ws, transA, transB, m, n, k, alpha, a, lda, b, ldb, nil, beta, c, ldc)
		putWorkspace(ws)
		return
	}
	tm, tn := split(threads, mt, nt, k, kern)
	var wg sync.WaitGroup
	for ti := 0; ti < tm; ti++ {
		r0, r1 := min(m, part(mt, tm, ti)*kern.mr), min(m, part(mt, tm, ti+1)*kern.mr)
		for tj := 0; tj < tn; tj++ {
			c0, c1 := min(n, part(nt, tn, tj)*kern.nr), min(n, part(nt, tn, tj+1)*kern.nr)
			if r0 >= r1 || c0 >= c1 {
				continue
			}
			var aSub, bSub []T
			if transA {
				aSub = a[r0:]
			} else {
				aSub = a[r0*lda:]
			}
			if transB {
				bSub = b[c0*ldb:]
			} else {
				bSub = b[c0:]
			}
			cSub := c[r0*ldc+c0:]
			mm, nn := r1-r0, c1-c0
			wg.Go(func() {
				ws := getWorkspace(kern, mm, nn, k)
				serial(kern, ws, transA, transB, mm, nn, k, alpha, aSub, lda, bSub, ldb, nil, beta, cSub, ldc)
				putWorkspace(ws)
			})
		}
	}
	wg.Wait()
}

// part returns the first tile of part i when t tiles are split into p
// near-equal contiguous parts.
func part(t, p, i int) int { return t * i / p }

// split chooses a tm×tn grid of goroutines (tm·tn = threads) over the mt×nt
// micro-tiles of C that minimises the largest goroutine's estimated time:
// its multiply-adds plus the packing of its own A rows and B columns
// (weighted as a few multiply-adds per element because packing is
// memory-bound and each goroutine packs its own copy).
func split[T float](threads, mt, nt, k int, kern *kernel[T]) (tm, tn int) {
	best := -1.0
	for d := 1; d <= threads; d++ {
		if threads%d != 0 {
			continue
		}
		e := threads / d
		rows := float64(ceilDiv(mt, d) * kern.mr)
		cols := float64(ceilDiv(nt, e) * kern.nr)
		nPanels := float64(ceilDiv(int(cols), kern.nc)) // A is re-packed per B panel
		cost := rows*cols*float64(k) + 4*float64(k)*(cols+rows*nPanels)
		if best < 0 || cost < best {
			best, tm, tn = cost, d, e
		}
	}
	return tm, tn
}

// gemmBatched runs batch GEMMs; with at least as many problems as
// goroutines each goroutine takes a contiguous run of whole problems.
func gemmBatched[T float](threads int, kern *kernel[T], transA, transB bool, batch, m, n, k int, alpha T, a []T, strideA, lda int, b []T, strideB, ldb int, beta T, c []T, strideC, ldc int) {
	if batch == 0 || m == 0 || n == 0 {
		return
	}
	if threads <= 1 || batch < threads || 2*m*n*k*batch < minParallelFlops {
		for i := 0; i < batch; i++ {
			gemm(threads, kern, transA, transB, m, n, k, alpha, from(a, i*strideA), lda, from(b, i*strideB), ldb, beta, c[i*strideC:], ldc)
		}
		return
	}
	var wg sync.WaitGroup
	for t := 0; t < threads; t++ {
		i0, i1 := part(batch, threads, t), part(batch, threads, t+1)
		wg.Go(func() {
			for i := i0; i < i1; i++ {
				gemm(1, kern, transA, transB, m, n, k, alpha, from(a, i*strideA), lda, from(b, i*strideB), ldb, beta, c[i*strideC:], ldc)
			}
		})
	}
	wg.Wait()
}

// from returns s[off:], or nil when off is past the end; an operand with no
// elements (k == 0) may be an empty slice with a non-zero stride.
func from[T float](s []T, off int) []T {
	if off > len(s) {
		return nil
	}
	return s[off:]
}
