package autodiff

import "slices"

// Arenas. A layer's forward creates intermediates — a convolution's output, an activation, a
// partial sum — that nothing needs once the layer has returned its result (the tape keeps its own
// references to whatever backward reads). Instead of a Release after every op, a layer opens an
// arena with Mark and closes it with ReleaseSince, keeping its results: every Var the tape's ops
// created in between is released then. Kept Vars pass to the enclosing arena, so nested layers
// compose. Releasing a Var early by hand stays allowed (Release is idempotent).

// Mark opens an arena on t and returns its mark: from now until the matching ReleaseSince, the
// Vars t's ops create (and those Adopt hands it) belong to the arena.
func (t *Tape) Mark() int {
	if t == nil {
		panic("autodiff: Mark on a nil tape (use NoGrad() for a tape that records nothing)")
	}
	t.arenas++
	return len(t.arena)
}

// Adopt puts Vars created outside t's ops (constants made with NewVar, say) into the innermost open
// arena, to be released with it. Without an open arena it does nothing.
func (t *Tape) Adopt(vs ...*Var) {
	if t.arenas > 0 {
		t.arena = append(t.arena, vs...)
	}
}

// ReleaseSince closes the arena opened at mark: it releases every Var created since, except keep
// (nil entries allowed), which move to the enclosing arena.
func (t *Tape) ReleaseSince(mark int, keep ...*Var) {
	if t.arenas == 0 || mark > len(t.arena) {
		panic("autodiff: ReleaseSince without a matching Mark")
	}
	owned := t.arena[mark:]
	for _, v := range owned {
		// keep holds a layer's few results: a linear scan beats a map.
		if !slices.Contains(keep, v) {
			v.Release()
		}
	}
	clear(owned)
	t.arena = t.arena[:mark]
	t.arenas--
	if t.arenas > 0 {
		for _, v := range keep {
			if v != nil {
				t.arena = append(t.arena, v)
			}
		}
	}
}

// track adds the outputs of an op to the open arena (a nil tape, which ops accept as "record
// nothing", has none).
func (t *Tape) track(vs []*Var) {
	if t != nil && t.arenas > 0 {
		t.arena = append(t.arena, vs...)
	}
}
