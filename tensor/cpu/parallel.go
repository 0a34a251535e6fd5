package cpu

import "sync"

// minWork is the least work, in element-visits of a cheap elementwise loop (0.3–0.5 ns each on the
// dev machine), that is worth a goroutine of its own. Starting a goroutine and joining it measured
// 2–6 µs there (BenchmarkForkJoin, on a loaded machine; about 1 µs when idle); 65536 visits take
// 20–30 µs, so the fork overhead stays near 10% in the worst case, and the flows' activations
// (64×14×14×4 = 50176 elements, 64×7×7×8 = 25088) run inline on the calling goroutine with no
// synchronisation. Ops whose per-element work is heavier (exp, tanh, Philox) pass a larger cost.
const minWork = 1 << 16

// parallel calls body on disjoint ranges [lo, hi) that cover [0, n), using up to b.threads goroutines
// (the caller's among them) but no more than the work justifies: each goroutine gets at least minWork
// units (b.grain; tests lower it to force the parallel paths on small tensors), where one item
// costs cost units. Ranges are contiguous and near-equal. Callers that reduce
// must not let their results depend on how [0, n) was cut; they reduce over fixed blocks instead
// (see flatBlocks and exampleBlocks).
func (b *Backend) parallel(n, cost int, body func(lo, hi int)) {
	if n <= 0 {
		return
	}
	t := b.threads
	if w := n * cost / b.grain; w < t {
		t = w
	}
	t = min(t, n)
	if t <= 1 {
		body(0, n)
		return
	}
	var wg sync.WaitGroup
	for i := 1; i < t; i++ {
		lo, hi := n*i/t, n*(i+1)/t
		wg.Go(func() { body(lo, hi) })
	}
	body(0, n/t)
	wg.Wait()
}

// Fixed partitions for reductions. A reduction is computed as one partial sum per block, in float64,
// followed by a sequential combine of the blocks in index order. The blocks depend only on the
// tensor's shape, never on the number of goroutines, so results are bitwise identical for every
// WithThreads setting; goroutines merely take different subsets of the blocks.
const (
	// blockElems is the target number of elements per block: large enough that per-block
	// bookkeeping (a partial row of C sums) is negligible, small enough for load balance.
	blockElems = 8192
	// maxFlatBlocks caps the blocks of a flat partition so per-channel partials (blocks × C
	// float64) stay small even for wide hidden layers.
	maxFlatBlocks = 64
)

// blocks is a fixed partition of rows (each of c elements) into contiguous row blocks. Example
// partitions keep every block inside one example so that per-example sums can be formed from the
// block partials.
type blocks struct {
	rowsPerEx int // rows per example (all rows for a flat partition)
	perEx     int // blocks per example
	r         int // rows per block (the last block of an example may be shorter)
	count     int // total blocks
}

// flatBlocks partitions rows rows of c elements into at most maxFlatBlocks blocks of about
// b.block (blockElems except in tests) elements.
func (b *Backend) flatBlocks(rows, c int) blocks {
	nb := min(max(rows*c/b.block, 1), maxFlatBlocks, max(rows, 1))
	r := max((rows+nb-1)/nb, 1)
	nb = (rows + r - 1) / r
	return blocks{rowsPerEx: rows, perEx: nb, r: r, count: nb}
}

// exampleBlocks partitions n examples of p rows of c elements into blocks that never straddle two
// examples.
func (b *Backend) exampleBlocks(n, p, c int) blocks {
	per := min(max(p*c/b.block, 1), max(p, 1))
	r := max((p+per-1)/per, 1)
	per = max((p+r-1)/r, 1)
	return blocks{rowsPerEx: p, perEx: per, r: r, count: n * per}
}

// block returns the example of block i and its global row range [r0, r1).
func (bk blocks) block(i int) (ex, r0, r1 int) {
	ex, j := i/bk.perEx, i%bk.perEx
	base := ex * bk.rowsPerEx
	return ex, base + j*bk.r, base + min(bk.rowsPerEx, (j+1)*bk.r)
}
