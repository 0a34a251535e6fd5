package collective

import (
	"fmt"
	"sync"
)

// Group is a process group: the ranks of one job, and the small host-side collectives that keep
// them in step — every rank's loss, agreed decisions, rank 0's parameters at start. Gradients do
// not go through it (Reducer and DeviceReducer move them, bucket by bucket, while backward runs).
// Three implementations: LocalGroup (ranks are goroutines of this process), mpi.Comm (one process
// per rank under mpirun or srun) and nccl.Group (one GPU process per rank, bootstrapped over MPI or
// the TCP rendezvous). Every rank must call the same collectives in the same order with buffers of
// the same length.
type Group interface {
	// Rank is this member's rank, Size the number of ranks.
	Rank() int
	Size() int
	// Barrier returns once every rank has entered it.
	Barrier() error
	// AllReduceFloat64 replaces buf on every rank by the element-wise sum (Sum) or mean (Avg, the
	// sum scaled by 1/Size afterwards) over the ranks; every rank ends with the same bits.
	AllReduceFloat64(buf []float64, op Op) error
	// BroadcastFloat32 and BroadcastBytes copy root's buf into every rank's buf.
	BroadcastFloat32(buf []float32, root int) error
	BroadcastBytes(buf []byte, root int) error
	// Abort ends the job's collectives from any goroutine, also while another is blocked in one
	// (a watchdog's way out of a hung collective): the blocked call fails or the process ends, as
	// the implementation can.
	Abort(reason error)
}

// LocalGroup returns the members of an in-process group of n ranks, one per goroutine: member r is
// rank r. Reductions add the ranks' buffers in rank order, so every member gets the same bits.
func LocalGroup(n int) ([]Group, error) {
	if n < 1 {
		return nil, fmt.Errorf("collective: local group of %d ranks", n)
	}
	s := &localState{n: n, bufs: make([]any, n)}
	s.cond = sync.NewCond(&s.mu)
	out := make([]Group, n)
	for r := range out {
		out[r] = &localMember{s: s, r: r}
	}
	return out, nil
}

// localState is what the members share: one collective at a time, each in two phases separated by
// barriers (deposit the buffers, then read them).
type localState struct {
	mu      sync.Mutex
	cond    *sync.Cond
	n       int
	arrived int
	gen     uint64
	bufs    []any
	aborted error
}

type localMember struct {
	s *localState
	r int
}

func (m *localMember) Rank() int { return m.r }
func (m *localMember) Size() int { return m.s.n }

// barrier waits until every member has arrived; it fails once the group is aborted.
func (s *localState) barrier() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.aborted != nil {
		return s.aborted
	}
	gen := s.gen
	s.arrived++
	if s.arrived == s.n {
		s.arrived = 0
		s.gen++
		s.cond.Broadcast()
		return nil
	}
	for s.gen == gen && s.aborted == nil {
		s.cond.Wait()
	}
	return s.aborted
}

func (m *localMember) Barrier() error { return m.s.barrier() }

// exchange deposits buf as this rank's contribution, waits for every rank's, runs read on all of
// them (in rank order) and waits again, so the buffers stay valid while read runs.
func (m *localMember) exchange(buf any, read func(all []any)) error {
	m.s.mu.Lock()
	m.s.bufs[m.r] = buf
	m.s.mu.Unlock()
	if err := m.s.barrier(); err != nil {
		return err
	}
	read(m.s.bufs)
	return m.s.barrier()
}

func (m *localMember) AllReduceFloat64(buf []float64, op Op) error {
	if op != Sum && op != Avg {
		return fmt.Errorf("collective: all-reduce op %v: want Sum or Avg", op)
	}
	out := make([]float64, len(buf))
	err := m.exchange(buf, func(all []any) {
		for r, b := range all {
			v := b.([]float64)
			for i := range out {
				if i < len(v) {
					if r == 0 {
						out[i] = v[i]
					} else {
						out[i] += v[i]
					}
				}
			}
		}
	})
	if err != nil {
		return err
	}
	copy(buf, out)
	if op == Avg && m.s.n > 1 {
		for i := range buf {
			buf[i] *= 1 / float64(m.s.n)
		}
	}
	return nil
}

func (m *localMember) BroadcastFloat32(buf []float32, root int) error {
	if root < 0 || root >= m.s.n {
		return fmt.Errorf("collective: broadcast from rank %d of %d", root, m.s.n)
	}
	return m.exchange(buf, func(all []any) {
		if m.r != root {
			copy(buf, all[root].([]float32))
		}
	})
}

func (m *localMember) BroadcastBytes(buf []byte, root int) error {
	if root < 0 || root >= m.s.n {
		return fmt.Errorf("collective: broadcast from rank %d of %d", root, m.s.n)
	}
	return m.exchange(buf, func(all []any) {
		if m.r != root {
			copy(buf, all[root].([]byte))
		}
	})
}

func (m *localMember) Abort(reason error) {
	m.s.mu.Lock()
	defer m.s.mu.Unlock()
	if m.s.aborted == nil {
		if reason == nil {
			reason = fmt.Errorf("collective: group aborted")
		}
		m.s.aborted = reason
	}
	m.s.cond.Broadcast()
}
