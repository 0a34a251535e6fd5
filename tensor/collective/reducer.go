package collective

import (
	"fmt"
	"sync"

	"dlf/tensor"
)

// DefaultBucketElems is the gradient bucket size: 4 Mi elements (16 MiB of float32), large enough
// that an all-reduce runs near link bandwidth (the latency of the 2(N−1) steps is amortised) and
// small enough that the first bucket is ready early in the backward pass.
const DefaultBucketElems = 4 << 20

// Transport is what a Reducer needs from a process group: one rank's in-place all-reduce of a host
// buffer, which every rank calls in the same order. HostRing (goroutine ranks in one process) is
// one; tensor/collective/mpi's Ring (one process per rank, under mpirun) is another.
type Transport[T Float] interface {
	// Ranks is the number of ranks.
	Ranks() int
	// AllReduce reduces buf across the ranks in place, on behalf of rank.
	AllReduce(rank int, buf []T, op Op) error
}

// Reducer averages one rank's parameter gradients across the ranks of a Transport while the
// backward pass runs. Parameters are grouped into buckets in reverse order (the order in which
// backward produces their gradients); Ready copies a final gradient into its bucket, and a worker
// goroutine all-reduces the buckets in a fixed order (bucket 0 first) as each fills, so every rank
// issues the same sequence of collective calls whatever the timing. Wait then writes the averages
// back. A Reducer serves one step at a time; it is reused across steps.
type Reducer[T Float] struct {
	ring  Transport[T]
	rank  int
	sizes []int
	loc   []bucketLoc // per parameter
	bkts  []*bucket[T]

	mu      sync.Mutex
	started bool
	got     []bool
	done    chan error
}

type bucketLoc struct{ bucket, off int }

type bucket[T Float] struct {
	buf     []T
	members []int // parameter indices
	missing int
	ready   chan struct{}
}

// NewReducer prepares rank's reducer for parameters of the given element counts (in registration
// order), with buckets of about bucketElems elements (0: DefaultBucketElems; a parameter larger
// than that gets a bucket of its own).
func NewReducer[T Float](ring Transport[T], rank int, sizes []int, bucketElems int) (*Reducer[T], error) {
	if rank < 0 || rank >= ring.Ranks() {
		return nil, fmt.Errorf("collective: reducer for rank %d of a ring of %d", rank, ring.Ranks())
	}
	if bucketElems < 1 {
		bucketElems = DefaultBucketElems
	}
	r := &Reducer[T]{ring: ring, rank: rank, sizes: append([]int(nil), sizes...), loc: make([]bucketLoc, len(sizes))}
	var cur *bucket[T]
	for i := len(sizes) - 1; i >= 0; i-- {
		if sizes[i] < 0 {
			return nil, fmt.Errorf("collective: parameter %d has %d elements", i, sizes[i])
		}
		if cur == nil || (len(cur.buf) > 0 && len(cur.buf)+sizes[i] > bucketElems) {
			cur = &bucket[T]{}
			r.bkts = append(r.bkts, cur)
		}
		r.loc[i] = bucketLoc{len(r.bkts) - 1, len(cur.buf)}
		cur.buf = append(cur.buf, make([]T, sizes[i])...)
		cur.members = append(cur.members, i)
	}
	return r, nil
}

// Buckets returns the number of buckets.
func (r *Reducer[T]) Buckets() int { return len(r.bkts) }

// start begins a step: every bucket waits for all its members again.
func (r *Reducer[T]) start() {
	if r.started {
		return
	}
	r.started = true
	r.got = make([]bool, len(r.sizes))
	for _, b := range r.bkts {
		b.missing = len(b.members)
		b.ready = make(chan struct{})
	}
	r.done = make(chan error, 1)
	go func() {
		for _, b := range r.bkts {
			<-b.ready
			if err := r.ring.AllReduce(r.rank, b.buf, Avg); err != nil {
				r.done <- err
				return
			}
		}
		r.done <- nil
	}()
}

// Ready hands over parameter i's final gradient for this step (nil means zero): it is copied into
// the parameter's bucket, so the caller keeps g. The bucket's all-reduce starts when its last member
// arrives. Each parameter may be handed over once per step.
func (r *Reducer[T]) Ready(i int, g *tensor.Tensor) error {
	if i < 0 || i >= len(r.sizes) {
		return fmt.Errorf("collective: gradient of parameter %d of %d", i, len(r.sizes))
	}
	if g != nil && g.Numel() != r.sizes[i] {
		return fmt.Errorf("collective: gradient of parameter %d has %d elements, want %d", i, g.Numel(), r.sizes[i])
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	r.start()
	if r.got[i] {
		return fmt.Errorf("collective: gradient of parameter %d handed over twice in one step", i)
	}
	r.got[i] = true
	l := r.loc[i]
	b := r.bkts[l.bucket]
	dst := b.buf[l.off : l.off+r.sizes[i]]
	if g == nil {
		clear(dst)
	} else {
		g.Download(any(dst))
	}
	if b.missing--; b.missing == 0 {
		close(b.ready)
	}
	return nil
}

// Wait finishes the step: parameters not handed over count as zero gradients (the same on every
// rank, since all run the same graph), every bucket is reduced, and grads[i] (non-nil, one per
// parameter, Numel as given to NewReducer) receives the average of parameter i's gradient over the
// ranks.
func (r *Reducer[T]) Wait(grads []*tensor.Tensor) error {
	if len(grads) != len(r.sizes) {
		return fmt.Errorf("collective: Wait with %d gradients for %d parameters", len(grads), len(r.sizes))
	}
	for i := range r.sizes {
		r.mu.Lock()
		r.start()
		missing := !r.got[i]
		r.mu.Unlock()
		if missing {
			if err := r.Ready(i, nil); err != nil {
				return err
			}
		}
	}
	err := <-r.done
	r.mu.Lock()
	r.started = false
	r.mu.Unlock()
	if err != nil {
		return err
	}
	for i, g := range grads {
		if g == nil || g.Numel() != r.sizes[i] {
			return fmt.Errorf("collective: Wait: gradient tensor %d is missing or has the wrong size", i)
		}
		l := r.loc[i]
		g.Upload(any(r.bkts[l.bucket].buf[l.off : l.off+r.sizes[i]]))
	}
	return nil
}

// Layout is the bucketing every reducer uses, so that they all reduce the same spans and produce
// the same averages: parameters in reverse registration order (the order backward produces their
// gradients), consecutive ones sharing a bucket of up to bucketElems elements, a larger parameter
// in a bucket of its own.
type Layout struct {
	Sizes   []int   // per parameter: elements
	Bucket  []int   // per parameter: its bucket
	Offset  []int   // per parameter: its first element in the bucket
	Members [][]int // per bucket: parameter indices
	Lens    []int   // per bucket: elements
}

// NewLayout buckets parameters of the given element counts (registration order), bucketElems per
// bucket (0: DefaultBucketElems).
func NewLayout(sizes []int, bucketElems int) (Layout, error) {
	if bucketElems < 1 {
		bucketElems = DefaultBucketElems
	}
	l := Layout{Sizes: append([]int(nil), sizes...), Bucket: make([]int, len(sizes)), Offset: make([]int, len(sizes))}
	cur := -1
	for i := len(sizes) - 1; i >= 0; i-- {
		if sizes[i] < 0 {
			return Layout{}, fmt.Errorf("collective: parameter %d has %d elements", i, sizes[i])
		}
		if cur < 0 || (l.Lens[cur] > 0 && l.Lens[cur]+sizes[i] > bucketElems) {
			l.Members, l.Lens = append(l.Members, nil), append(l.Lens, 0)
			cur = len(l.Lens) - 1
		}
		l.Bucket[i], l.Offset[i] = cur, l.Lens[cur]
		l.Lens[cur] += sizes[i]
		l.Members[cur] = append(l.Members[cur], i)
	}
	return l, nil
}
