package gemm

import (
	"fmt"
	"sync"
)

// Float is the element type accepted by the generic entry points.
type Float interface{ float32 | float64 }

// PackedB holds a k×n right-hand operand op(B) already packed into the
// micro-kernel's panel layout, so that many products with the same B (a
// convolution's weight applied to many blocks of rows) pack it once. The
// zero value is empty; Pack fills it, reusing its buffer. A packed operand
// is read-only while in use and may be shared by concurrent GemmPacked
// calls.
type PackedB[T Float] struct {
	kern *kernel[T]
	k, n int
	data []T
}

// K returns the number of rows of the packed op(B).
func (pb *PackedB[T]) K() int { return pb.k }

// N returns the number of columns of the packed op(B).
func (pb *PackedB[T]) N() int { return pb.n }

// RowTile returns the number of rows of C the packed operand's micro-kernel
// computes at once. Callers that split A into blocks of rows should use
// multiples of it: a block ending inside a tile costs a padded, partly
// wasted tile.
func (pb *PackedB[T]) RowTile() int { return pb.kern.mr }

// Pack packs op(B) (k×n; with transB, B is stored n×k) with row stride ldb
// for the kernel that o selects. It panics, naming the sizes, if b is too
// short.
func (pb *PackedB[T]) Pack(o Options, transB bool, k, n int, b []T, ldb int) {
	rows, cols := k, n
	if transB {
		rows, cols = n, k
	}
	if k < 0 || n < 0 {
		panic(fmt.Sprintf("gemm: PackedB.Pack: negative size k=%d n=%d", k, n))
	}
	checkMatrix("PackedB.Pack", "b", "ldb", 1, rows, cols, len(b), 0, ldb)
	pb.packWith(pickKernel[T](o.kernel, n), transB, k, n, b, ldb)
}

// packWith packs for a given kernel (tests pass kernels with shrunken
// blocking).
func (pb *PackedB[T]) packWith(kern *kernel[T], transB bool, k, n int, b []T, ldb int) {
	pb.kern, pb.k, pb.n = kern, k, n
	need := roundUp(n, kern.nr) * k
	if cap(pb.data) < need {
		pb.data = make([]T, need)
	}
	pb.data = pb.data[:need]
	for jc := 0; jc < n; jc += kern.nc {
		nb := min(kern.nc, n-jc)
		for pc := 0; pc < k; pc += kern.kc {
			kb := min(kern.kc, k-pc)
			packB(transB, b, ldb, pc, jc, kb, nb, kern.nr, pb.block(jc, pc))
		}
	}
}

// block returns the packed kb×nb block that starts at row pc, column jc:
// blocks are stored jc-major, each jc block holding its pc blocks in turn,
// so the block starts after jc·k elements of earlier column blocks and
// roundUp(nb, nr)·pc elements of earlier depth blocks.
func (pb *PackedB[T]) block(jc, pc int) []T {
	nb := min(pb.kern.nc, pb.n-jc)
	return pb.data[jc*pb.k+roundUp(nb, pb.kern.nr)*pc:]
}

// GemmPacked computes C = alpha·op(A)·B + beta·C where B was packed by
// pb.Pack (with the options the packing used; o supplies only the thread
// count). A is m×k after op, C is m×n, with (k, n) those of pb. Conventions
// are those of Sgemm; rows of C are split across goroutines.
func GemmPacked[T Float](o Options, transA bool, m int, alpha T, a []T, lda int, pb *PackedB[T], beta T, c []T, ldc int) {
	if pb.kern == nil {
		panic("gemm: GemmPacked: PackedB was never packed")
	}
	k, n := pb.k, pb.n
	check("GemmPacked", transA, false, 1, m, n, k, len(a), 0, lda, max(1, k)*n, 0, max(1, n), len(c), 0, ldc)
	if m == 0 || n == 0 {
		return
	}
	if alpha == 0 || k == 0 {
		scale(m, n, beta, c, ldc)
		return
	}
	kern := pb.kern
	mt := ceilDiv(m, kern.mr)
	threads := min(o.threads(), mt)
	if 2*m*n*k < minParallelFlops {
		threads = 1
	}
	if threads <= 1 {
		packedRows(transA, 0, m, alpha, a, lda, pb, beta, c, ldc)
		return
	}
	var wg sync.WaitGroup
	for t := 0; t < threads; t++ {
		r0, r1 := min(m, part(mt, threads, t)*kern.mr), min(m, part(mt, threads, t+1)*kern.mr)
		if r0 < r1 {
			wg.Go(func() { packedRows(transA, r0, r1, alpha, a, lda, pb, beta, c, ldc) })
		}
	}
	wg.Wait()
}

// packedRows computes rows [r0, r1) of a GemmPacked product on the calling
// goroutine.
func packedRows[T Float](transA bool, r0, r1 int, alpha T, a []T, lda int, pb *PackedB[T], beta T, c []T, ldc int) {
	var aSub []T
	if transA {
		aSub = a[r0:]
	} else {
		aSub = a[r0*lda:]
	}
	ws := getWorkspace(pb.kern, r1-r0, pb.n, pb.k)
	serial(pb.kern, ws, transA, false, r1-r0, pb.n, pb.k, alpha, aSub, lda, nil, 0, pb, beta, c[r0*ldc:], ldc)
	putWorkspace(ws)
}
