package autodiff

// Gradient-ready notification, for data-parallel training: a rank can start all-reducing a group
// of parameter gradients while the backward pass is still producing the others (the overlap that
// gradient bucketing is for). The tape knows when a leaf's gradient is final: after the last
// recorded op that reads the leaf (the first one the reverse walk meets last) has run its backward.

// OnGradReady registers fn to be called during Backward, once for every leaf Var that requires a
// gradient and is an input of a recorded op (or is itself a Backward output), as soon as that
// leaf's Grad is final for this pass. fn runs on the goroutine calling Backward, before the walk
// continues, and must not modify the tape. v.Grad may be nil when no gradient reached the leaf
// (every op returned nil for it): that means zero. Leaves fire in the order their gradients become
// final, which is the same on every run of the same graph. Passing nil removes the callback.
func (t *Tape) OnGradReady(fn func(v *Var)) {
	if t == nil || t.noGrad {
		panic("autodiff: OnGradReady on a tape that does not record")
	}
	t.gradReady = fn
}

// readyIndex maps a node index to the leaves whose gradient is final once that node has run; index
// -1 holds leaves that are Backward outputs and inputs of no recorded op.
type readyIndex map[int][]*Var

// leafReadyIndex finds, for every leaf input of a recorded op, the lowest node index that reads it.
// It costs one pass over the tape and is skipped when no callback is set.
func (t *Tape) leafReadyIndex(outs []*Var) readyIndex {
	if t.gradReady == nil {
		return nil
	}
	last := make(map[*Var]int)
	for k, n := range t.nodes {
		for _, in := range n.inputs {
			if in == nil || !in.requiresGrad || (in.producer != nil && in.tape == t) {
				continue
			}
			if _, seen := last[in]; !seen {
				last[in] = k
			}
		}
	}
	for _, o := range outs {
		if o.producer == nil || o.tape != t {
			if _, seen := last[o]; !seen {
				last[o] = -1
			}
		}
	}
	idx := make(readyIndex)
	// Deterministic order within one node: the order of the node's inputs.
	for k, n := range t.nodes {
		for _, in := range n.inputs {
			if at, ok := last[in]; ok && in != nil && at == k {
				if !contains(idx[k], in) {
					idx[k] = append(idx[k], in)
				}
			}
		}
	}
	for _, o := range outs {
		if last[o] == -1 && !contains(idx[-1], o) {
			idx[-1] = append(idx[-1], o)
		}
	}
	return idx
}

// fire calls fn for the leaves that became final at node k.
func (r readyIndex) fire(fn func(*Var), k int) {
	if r == nil || fn == nil {
		return
	}
	for _, v := range r[k] {
		fn(v)
	}
}

func contains(vs []*Var, v *Var) bool {
	for _, w := range vs {
		if w == v {
			return true
		}
	}
	return false
}
