package collective

import (
	"fmt"
	"sync"
)

// Float is the element type of a host ring.
type Float interface {
	float32 | float64
}

// Options tune a ring.
type Options struct {
	// SliceElems is the pipelining granule in elements (0: DefaultSliceElems).
	SliceElems int
	// Depth is how many slices may be in flight on one link, i.e. the number of staging buffers
	// each receiver owns (0: 4). Two already overlap sending and reducing; more absorb jitter.
	Depth int
	// HostStaged makes every link of a DeviceRing go through pinned host memory, even where peer
	// copies work: it exercises and measures the fallback transport on one device. HostRing
	// ignores it.
	HostStaged bool
}

func (o Options) depth() int {
	if o.Depth < 1 {
		return 4
	}
	return o.Depth
}

// HostRing is a ring of ranks that are goroutines of this process, each with its own buffer: the
// CPU transport. A link from rank r−1 to rank r is a queue of at most Depth staging buffers owned by
// rank r: the sender copies a slice into a free one and queues it, the receiver reduces (or copies)
// it into its own buffer and hands it back. Buffers are never shared between ranks, so the code above
// the transport sees the same isolation as on separate devices.
type HostRing[T Float] struct {
	ranks int
	opt   Options
	links []hostLink[T] // links[r] carries slices from rank r−1 to rank r

	// Call agreement: every rank's k-th AllReduce must have the same length and op.
	mu      sync.Mutex
	cond    *sync.Cond
	gen     []int // per rank: calls started
	arrived int
	want    callDesc
	bad     error
	round   int
}

type hostLink[T Float] struct {
	data chan []T
	free chan []T
}

type callDesc struct {
	n  int
	op Op
}

// NewHostRing returns a ring of ranks ≥ 1 goroutine ranks.
func NewHostRing[T Float](ranks int, opt Options) (*HostRing[T], error) {
	if ranks < 1 {
		return nil, fmt.Errorf("collective: a ring needs at least 1 rank, got %d", ranks)
	}
	g := &HostRing[T]{ranks: ranks, opt: opt, links: make([]hostLink[T], ranks), gen: make([]int, ranks)}
	g.cond = sync.NewCond(&g.mu)
	d := opt.depth()
	for r := range g.links {
		g.links[r] = hostLink[T]{data: make(chan []T, d), free: make(chan []T, d)}
		for range d {
			g.links[r].free <- nil // grown to the slice size on first use
		}
	}
	return g, nil
}

// Ranks returns the number of ranks.
func (g *HostRing[T]) Ranks() int { return g.ranks }

// agree is a barrier at the start of every call: it returns an error on every rank when the ranks
// passed different lengths or ops, instead of letting mismatched schedules deadlock.
func (g *HostRing[T]) agree(rank int, d callDesc) error {
	g.mu.Lock()
	defer g.mu.Unlock()
	round := g.round
	if g.arrived == 0 {
		g.want, g.bad = d, nil
	} else if d != g.want && g.bad == nil {
		g.bad = fmt.Errorf("collective: all-reduce call %d: rank %d passed %d elements (%v), another rank %d elements (%v)",
			g.gen[rank], rank, d.n, d.op, g.want.n, g.want.op)
	}
	g.gen[rank]++
	g.arrived++
	if g.arrived == g.ranks {
		g.arrived = 0
		g.round++
		g.cond.Broadcast()
	} else {
		for g.round == round {
			g.cond.Wait()
		}
	}
	return g.bad
}

// AllReduce is rank's part of one collective call: each of the N ranks calls it from its own
// goroutine with its own buffer of the same length and the same op (and all ranks make their calls
// in the same order); it returns when this rank's buf holds the result. A rank outside [0, N), or
// ranks disagreeing on length or op, is an error.
func (g *HostRing[T]) AllReduce(rank int, buf []T, op Op) error {
	if rank < 0 || rank >= g.ranks {
		return fmt.Errorf("collective: rank %d outside a ring of %d", rank, g.ranks)
	}
	if op != Sum && op != Avg {
		return fmt.Errorf("collective: unknown reduction %v", op)
	}
	if err := g.agree(rank, callDesc{len(buf), op}); err != nil {
		return err
	}
	if g.ranks == 1 {
		return nil
	}
	p := newPlan(len(buf), g.ranks, g.opt.SliceElems)
	out, in := &g.links[(rank+1)%g.ranks], &g.links[rank]
	scale := T(1)
	if op == Avg {
		scale = T(1 / float64(g.ranks))
	}
	for _, st := range steps(rank, g.ranks) {
		for k := 0; k < p.slices; k++ {
			// Send first: every rank does, so the ring never waits on itself (a link holds Depth ≥ 1).
			src := p.slice(st.send, k)
			msg := <-out.free
			if cap(msg) < p.maxSlice() {
				msg = make([]T, p.maxSlice())
			}
			msg = msg[:src.len()]
			copy(msg, buf[src.lo:src.hi])
			out.data <- msg

			dst := p.slice(st.recv, k)
			got := <-in.data
			own := buf[dst.lo:dst.hi]
			switch {
			case st.kind == copyStep:
				copy(own, got)
			case st.last && scale != 1:
				for i, v := range got {
					own[i] = (own[i] + v) * scale
				}
			default:
				for i, v := range got {
					own[i] += v
				}
			}
			in.free <- got
		}
	}
	return nil
}
