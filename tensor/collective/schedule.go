package collective

import "fmt"

// Op is the reduction applied by AllReduce.
type Op uint8

// The reductions.
const (
	// Sum leaves the element-wise sum over ranks in every buffer.
	Sum Op = iota + 1
	// Avg leaves the mean: the owner of each chunk scales its sum by 1/N before the all-gather, so
	// every rank receives the same rounded value.
	Avg
)

// String returns the op's name.
func (o Op) String() string {
	switch o {
	case Sum:
		return "sum"
	case Avg:
		return "avg"
	}
	return fmt.Sprintf("Op(%d)", uint8(o))
}

// DefaultSliceElems is the pipelining granule: 64 Ki elements (256 KiB of float32). Large enough
// that a per-slice cost (a channel hand-off on the CPU, a copy launch and a kernel launch of a few
// µs on a GPU) is small next to moving the slice (≈ 6 µs at 40 GB/s), small enough that a 4 MiB
// bucket on 4 ranks still has several slices in flight.
const DefaultSliceElems = 64 << 10

// span is a half-open element range [lo, hi).
type span struct{ lo, hi int }

func (s span) len() int { return s.hi - s.lo }

// plan is the data split of one all-reduce: n elements over ranks chunks of slices slices each.
type plan struct {
	n, ranks, slices int
}

// newPlan splits n elements over ranks, with slices of at most sliceElems elements.
func newPlan(n, ranks, sliceElems int) plan {
	if sliceElems < 1 {
		sliceElems = DefaultSliceElems
	}
	maxChunk := (n + ranks - 1) / ranks
	slices := max(1, (maxChunk+sliceElems-1)/sliceElems)
	return plan{n: n, ranks: ranks, slices: slices}
}

// split returns part i of [lo, hi) cut into parts near-equal pieces (the first (hi−lo) mod parts
// pieces one element longer).
func split(lo, hi, parts, i int) span {
	n := hi - lo
	q, r := n/parts, n%parts
	a := lo + i*q + min(i, r)
	b := a + q
	if i < r {
		b++
	}
	return span{a, b}
}

// chunk returns chunk c (taken mod ranks, so callers may pass r−s).
func (p plan) chunk(c int) span {
	c = ((c % p.ranks) + p.ranks) % p.ranks
	return split(0, p.n, p.ranks, c)
}

// slice returns slice k of chunk c.
func (p plan) slice(c, k int) span {
	ch := p.chunk(c)
	return split(ch.lo, ch.hi, p.slices, k)
}

// maxSlice is the longest slice, the size of a staging buffer.
func (p plan) maxSlice() int {
	return (p.chunk(0).len() + p.slices - 1) / p.slices
}

// stepKind says what a rank does with a received slice.
type stepKind uint8

const (
	reduceStep stepKind = iota + 1 // add it into the own buffer (reduce-scatter)
	copyStep                       // overwrite the own buffer with it (all-gather)
)

// ringStep is one step of one rank: send chunk send to the next rank, receive chunk recv from the
// previous one and reduce or copy it. scale is applied to the reduced value (1/N on the last
// reduce-scatter step of an Avg, else 1).
type ringStep struct {
	kind       stepKind
	send, recv int
	last       bool // the last reduce-scatter step: the received chunk becomes final here
}

// steps returns rank r's 2(N−1) ring steps (see the package comment for the chunk indices).
func steps(r, ranks int) []ringStep {
	var out []ringStep
	for s := 0; s < ranks-1; s++ {
		out = append(out, ringStep{kind: reduceStep, send: r - s, recv: r - s - 1, last: s == ranks-2})
	}
	for s := 0; s < ranks-1; s++ {
		out = append(out, ringStep{kind: copyStep, send: r + 1 - s, recv: r - s})
	}
	return out
}
