package cuda

import (
	"math"
	"math/rand/v2"
	"strings"
	"testing"

	"dlf/tensor"
	"dlf/tensor/cuda/cu"
)

// graphWork is a small step-shaped computation with temporaries that are allocated and freed in
// the middle (so the capture exercises the allocator's graph pool) and scratch-using reductions:
// y = tanh(x·w) + Σ tanh(x·w)², its log-determinant-style scalar from InvLogDet, and a memset.
func graphWork(be *Backend, x, w *tensor.Tensor) (y, ld *tensor.Tensor) {
	n, c := x.Shape()[0], w.Shape()[1]
	h := tensor.New(be, tensor.Float32, n, c)
	tensor.Gemm(false, false, 1, x, w, 0, h)
	tensor.UnaryT(tensor.Tanh, h, h, 0, 0)
	s := tensor.New(be, tensor.Float32, 1)
	tensor.Reduce(tensor.SumSq, tensor.AxisAll, s, h)
	y = tensor.New(be, tensor.Float32, n, c)
	tensor.AddT(y, h, s)
	h.Release()
	s.Release()
	inv := tensor.New(be, tensor.Float32, c, c)
	ld = tensor.Zeros(be, tensor.Float32, 1)
	tensor.InvLogDet(inv, ld, w, 3)
	inv.Release()
	return y, ld
}

// TestGPUGraphCaptureReplay captures graphWork after one eager run, then replays it on fresh
// inputs uploaded into the static input tensors: every replay's outputs equal an eager run's on the
// same inputs bit for bit; a replay is one cuGraphLaunch and no kernel launch; and while the graph
// lives, eager work is never handed a block the graph names.
func TestGPUGraphCaptureReplay(t *testing.T) {
	be := newTestBackend(t)
	if !cu.GraphsSupported() {
		t.Skip("the driver has no graph API")
	}
	const n, c = 37, 12
	r := rand.New(rand.NewPCG(rand.Uint64(), 4))
	draw := func(k int) []float32 {
		v := make([]float32, k)
		for i := range v {
			v[i] = float32(r.NormFloat64())
		}
		return v
	}
	eye := func() []float32 {
		v := draw(c * c)
		for i := range c {
			v[i*c+i] += 4 // well conditioned
		}
		return v
	}
	x := tensor.FromFloat32(be, draw(n*c), n, c)
	w := tensor.FromFloat32(be, eye(), c, c)
	y0, ld0 := graphWork(be, x, w) // warm-up: the allocator now caches every block
	y0.Release()
	ld0.Release()
	var y, ld *tensor.Tensor
	g, err := be.Capture(func() error {
		y, ld = graphWork(be, x, w)
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	defer g.Close()
	if g.Launches == 0 {
		t.Fatal("the capture recorded no launches")
	}
	for round := range 3 {
		xv, wv := draw(n*c), eye()
		x.Upload(xv)
		w.Upload(wv)
		// Bystanders: eager tensors of every size the graph uses, alive across the replay. A block
		// the graph names handed to one of them would be overwritten by the replay.
		var bystanders []*tensor.Tensor
		var patterns [][]float32
		for _, k := range []int{n * c, n * c, c * c, 1, 2 * c * c, 64, 1024} {
			v := draw(k)
			bystanders = append(bystanders, tensor.FromFloat32(be, v, k))
			patterns = append(patterns, v)
		}
		before := ReadCounters()
		g.Replay()
		d := ReadCounters().Sub(before)
		if d.GraphLaunches != 1 || d.Launches != 0 {
			t.Errorf("round %d: a replay made %d graph launches and %d kernel launches, want 1 and 0", round, d.GraphLaunches, d.Launches)
		}
		gotY, gotLD := y.Float32s(), ld.Float32s()
		for i, bt := range bystanders {
			got := bt.Float32s()
			for j := range got {
				if math.Float32bits(got[j]) != math.Float32bits(patterns[i][j]) {
					t.Fatalf("round %d: the replay overwrote an eager tensor of %d elements: it was given memory the graph names", round, len(got))
				}
			}
			bt.Release()
		}
		// The same inputs, eagerly, in fresh tensors.
		xe := tensor.FromFloat32(be, xv, n, c)
		we := tensor.FromFloat32(be, wv, c, c)
		ye, lde := graphWork(be, xe, we)
		wantY, wantLD := ye.Float32s(), lde.Float32s()
		for i := range wantY {
			if math.Float32bits(gotY[i]) != math.Float32bits(wantY[i]) {
				t.Fatalf("round %d: y[%d] replayed %v, eager %v", round, i, gotY[i], wantY[i])
			}
		}
		if math.Float32bits(gotLD[0]) != math.Float32bits(wantLD[0]) {
			t.Fatalf("round %d: logdet replayed %v, eager %v", round, gotLD[0], wantLD[0])
		}
		for _, tt := range []*tensor.Tensor{xe, we, ye, lde} {
			tt.Release()
		}
	}
	if err := be.Err(); err != nil {
		t.Fatal(err)
	}
}

// TestGPUGraphCaptureRefusesHostWork: a capture whose work reads a value back, or needs memory the
// allocator has not cached, fails with an error that says so, and the backend goes on working.
func TestGPUGraphCaptureRefusesHostWork(t *testing.T) {
	be := newTestBackend(t)
	if !cu.GraphsSupported() {
		t.Skip("the driver has no graph API")
	}
	x := tensor.FromFloat32(be, []float32{1, 2, 3}, 3)
	for _, c := range []struct {
		name string
		fn   func() error
		want string
	}{
		{"a read back", func() error { _ = x.Float32s(); return nil }, "capture failed"},
		{"an uncached allocation", func() error { tensor.Zeros(be, tensor.Float32, 1<<22).Release(); return nil }, "during a graph capture"},
	} {
		g, err := be.Capture(c.fn)
		if err == nil {
			g.Close()
			t.Errorf("%s inside a capture: no error", c.name)
			continue
		}
		if !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s inside a capture: %v, want it to contain %q", c.name, err, c.want)
		}
		if err := be.Err(); err != nil {
			t.Fatalf("after the failed capture (%s) the backend is failed: %v", c.name, err)
		}
		if got := x.Float32s(); got[2] != 3 {
			t.Fatalf("after the failed capture (%s) the backend reads %v", c.name, got)
		}
	}
}
