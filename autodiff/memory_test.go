package autodiff

import (
	"runtime/debug"
	"sync"
	"testing"

	"dlf/tensor"
	"dlf/tensor/cpu"
)

// countingBackend delegates everything to the CPU backend and tracks live and peak bytes of the
// tensors allocated through it: a stand-in for device memory that a test can read exactly.
type countingBackend struct {
	*cpu.Backend
	mu         sync.Mutex
	sizes      map[tensor.Buffer]int64
	live, peak int64
}

func newCounting() *countingBackend {
	return &countingBackend{Backend: cpu.New(cpu.WithPoison(true)), sizes: map[tensor.Buffer]int64{}}
}

// Alloc records the logical size of the buffer (elements × dtype size, not the pool's size class).
func (c *countingBackend) Alloc(dt tensor.DType, n int) tensor.Buffer {
	b := c.Backend.Alloc(dt, n)
	if b != nil {
		c.mu.Lock()
		c.sizes[b] = int64(n * dt.Size())
		c.live += c.sizes[b]
		c.peak = max(c.peak, c.live)
		c.mu.Unlock()
	}
	return b
}

// Free forgets the buffer; it may run on the garbage collector's cleanup goroutine.
func (c *countingBackend) Free(b tensor.Buffer) {
	c.mu.Lock()
	c.live -= c.sizes[b]
	delete(c.sizes, b)
	c.mu.Unlock()
	c.Backend.Free(b)
}

// resetPeak starts a new peak measurement at the current live size and returns it.
func (c *countingBackend) resetPeak() int64 {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.peak = c.live
	return c.live
}

func (c *countingBackend) stats() (live, peak int64) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.live, c.peak
}

// chainResult is what one chain run measured.
type chainResult struct {
	afterForward, backwardPeak, afterBackward, params int64
}

// runChain builds an L-layer chain on a counting backend, releasing every intermediate as soon as
// the next layer has consumed it (as the model does), then runs Backward and measures memory.
func runChain(t *testing.T, L int, shape []int, layer func(tp *Tape, x *Var, p []*Var) *Var, paramShapes [][]int) chainResult {
	t.Helper()
	// With the collector off, a tensor the tape forgot to release stays counted instead of being
	// reclaimed by its cleanup behind the test's back.
	defer debug.SetGCPercent(debug.SetGCPercent(-1))
	be := newCounting()
	r, _ := newRand(t)
	var params [][]*Var
	for range L {
		var ps []*Var
		for _, s := range paramShapes {
			ps = append(ps, NewParam(randTensor(be, tensor.Float64, r, signed, s...)))
		}
		params = append(params, ps)
	}
	x := NewVar(randTensor(be, tensor.Float64, r, signed, shape...))
	paramBytes, _ := be.stats()
	paramBytes -= int64(x.Value.Numel() * 8)

	tp := NewTape()
	h := x
	for l := range L {
		next := layer(tp, h, params[l])
		if h != x {
			h.Release()
		}
		h = next
	}
	sq := tp.Square(h)
	h.Release()
	loss := tp.Mean(sq, tensor.AxisAll)
	sq.Release()
	var res chainResult
	res.params = paramBytes
	res.afterForward, _ = be.stats()
	be.resetPeak()
	if err := tp.Backward(loss); err != nil {
		t.Fatal(err)
	}
	loss.Release()
	x.Release()
	res.afterBackward, res.backwardPeak = be.stats()
	// Everything left is parameters and their gradients: nothing leaked from the tape.
	if res.afterBackward != 2*paramBytes {
		t.Errorf("after backward %d bytes live, want parameters + gradients = %d", res.afterBackward, 2*paramBytes)
	}
	for _, ps := range params {
		for _, p := range ps {
			if p.Grad == nil {
				t.Fatal("a parameter got no gradient")
			}
		}
	}
	return res
}

// TestPeakMemory measures the backward pass of an L-layer chain of invertible layers on a counting
// backend, for L = 4 and 16. A layer that stores its input keeps all L activations until backward;
// one that recomputes its input from its output keeps one, and its backward holds a few at a time,
// so its peak does not depend on L.
func TestPeakMemory(t *testing.T) {
	shape := []int{8, 16, 16, 8}
	act := int64(tensor.Shape(shape).Numel() * 8) // bytes of one float64 activation
	cases := []struct {
		name   string
		layer  func(tp *Tape, x *Var, p []*Var) *Var
		params [][]int
	}{
		{"storing", func(tp *Tape, x *Var, p []*Var) *Var { return scaleShift(tp, x, p[0], p[1], false) }, [][]int{{8}, {8}}},
		{"recomputing", func(tp *Tape, x *Var, p []*Var) *Var { return scaleShift(tp, x, p[0], p[1], true) }, [][]int{{8}, {8}}},
		{"reversible-coupling", func(tp *Tape, x *Var, p []*Var) *Var {
			out := tp.Reversible("coupling", x, p, coupling, couplingInverse)
			out[1].Release()
			return out[0]
		}, [][]int{{3, 3, 5, 8}, {8}, {1}, {1}}},
	}
	// extra is the peak above parameters and their gradients, in activations.
	extra := func(r chainResult) float64 { return float64(r.backwardPeak-2*r.params) / float64(act) }
	for _, c := range cases {
		r4 := runChain(t, 4, shape, c.layer, c.params)
		r16 := runChain(t, 16, shape, c.layer, c.params)
		for _, r := range []struct {
			L int
			chainResult
		}{{4, r4}, {16, r16}} {
			t.Logf("%-20s L=%2d: live after forward %8d B (%4.1f activations of %d B), backward peak %8d B (%4.1f activations above parameters+gradients of %d B)",
				c.name, r.L, r.afterForward, float64(r.afterForward-r.params)/float64(act), act, r.backwardPeak, extra(r.chainResult), 2*r.params)
		}
		growth := extra(r16) - extra(r4)
		if c.name == "storing" {
			if growth < 11.5 {
				t.Errorf("storing chain: peak grew by %.1f activations from L=4 to 16, expected about 12", growth)
			}
			continue
		}
		if growth > 0.01 {
			t.Errorf("%s chain: peak grew by %.2f activations from L=4 to 16, want none", c.name, growth)
		}
		if held := float64(r16.afterForward-r16.params) / float64(act); held > 2.01 {
			t.Errorf("%s chain holds %.1f activations after forward, want 2 (input and output)", c.name, held)
		}
	}
}

// TestTapeReleaseFreesEverything records a forward pass with custom, reversible and fused ops and
// drops it without Backward: Tape.Release must free every saved tensor and kept value.
func TestTapeReleaseFreesEverything(t *testing.T) {
	defer debug.SetGCPercent(debug.SetGCPercent(-1))
	be := newCounting()
	r, _ := newRand(t)
	var ps []*Var
	for _, s := range [][]int{{3, 3, 5, 8}, {8}, {1}, {1}, {8}, {8}} {
		ps = append(ps, NewParam(randTensor(be, tensor.Float64, r, signed, s...)))
	}
	x := NewVar(randTensor(be, tensor.Float64, r, signed, 2, 4, 4, 8))
	base, _ := be.stats()
	tp := NewTape()
	a := tp.Reversible("coupling", x, ps[:4], coupling, couplingInverse)
	b := scaleShift(tp, a[0], ps[4], ps[5], true)
	a[0].Release()
	y, ld := tp.ActNorm(b, ps[5], ps[4], 2)
	b.Release()
	sy := tp.Sum(y, tensor.AxisExample)
	lds := tp.Add(ld, a[1])
	obj := tp.Add(sy, lds)
	loss := tp.Sum(obj, tensor.AxisAll)
	for _, v := range []*Var{y, ld, a[1], sy, lds, obj, loss} {
		v.Release()
	}
	tp.Release()
	if live, _ := be.stats(); live != base {
		t.Fatalf("%d bytes still live after Tape.Release, want %d", live, base)
	}
}
