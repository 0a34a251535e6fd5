package dlf

import (
	"sync"
	"testing"

	"dlf/autodiff"
	"dlf/tensor"
	"dlf/tensor/cpu"
)

// countingBackend wraps a backend and tracks the bytes of live buffers and their peak.
type countingBackend struct {
	tensor.Backend
	mu         sync.Mutex
	live, peak int
}

func (c *countingBackend) Alloc(dt tensor.DType, n int) tensor.Buffer {
	b := c.Backend.Alloc(dt, n)
	if b != nil {
		c.mu.Lock()
		c.live += b.Bytes()
		c.peak = max(c.peak, c.live)
		c.mu.Unlock()
	}
	return b
}

func (c *countingBackend) Free(b tensor.Buffer) {
	c.mu.Lock()
	c.live -= b.Bytes()
	c.mu.Unlock()
	c.Backend.Free(b)
}

// resetPeak starts a new peak measurement from the current live bytes.
func (c *countingBackend) resetPeak() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.peak = c.live
	return c.live
}

// stepPeak returns the peak bytes above the resident ones (parameters, the batch) of one training
// step: forward, backward, release.
func stepPeak(t *testing.T, cfg Config, n int) int {
	t.Helper()
	cb := &countingBackend{Backend: cpu.New()}
	m, err := New(cfg, cb, tensor.Float32)
	if err != nil {
		t.Fatal(err)
	}
	x := randTensor(cb, tensor.Float32, testRand(t, 31), 0.3, n, cfg.ImageH, cfg.ImageW, cfg.ImageC)
	trainStep(t, m, x) // the first step also allocates the gradients, which then stay resident
	base := cb.resetPeak()
	trainStep(t, m, x)
	return cb.peak - base
}

// trainStep runs forward and backward of the loss on x and releases the pass.
func trainStep(t *testing.T, m *Model, x *tensor.Tensor) {
	t.Helper()
	tp := autodiff.NewTape()
	res, err := m.Forward(tp, x, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := tp.Backward(res.Loss); err != nil {
		t.Fatal(err)
	}
	res.Release()
}

// TestRecomputeMemory measures the activation memory of one training step (peak live bytes above
// parameters, gradients and batch) at two depths, storing activations and recomputing them by
// inversion. Storing grows linearly with depth; recomputing keeps one step's activations plus each
// level's output, so it stays flat.
func TestRecomputeMemory(t *testing.T) {
	cfg, _ := Preset("mnist")
	cfg.Width = 32
	const n = 8
	peaks := map[[2]int]int{}
	for _, depth := range []int{4, 16} {
		for _, rec := range []int{0, 1} {
			c := cfg
			c.Depth, c.Recompute = depth, rec == 1
			peaks[[2]int{depth, rec}] = stepPeak(t, c, n)
		}
	}
	mib := func(b int) float64 { return float64(b) / (1 << 20) }
	t.Logf("activation peak, depth 4:  store %.2f MiB, recompute %.2f MiB", mib(peaks[[2]int{4, 0}]), mib(peaks[[2]int{4, 1}]))
	t.Logf("activation peak, depth 16: store %.2f MiB, recompute %.2f MiB", mib(peaks[[2]int{16, 0}]), mib(peaks[[2]int{16, 1}]))
	store4, store16 := peaks[[2]int{4, 0}], peaks[[2]int{16, 0}]
	rec4, rec16 := peaks[[2]int{4, 1}], peaks[[2]int{16, 1}]
	if float64(store16) < 3*float64(store4) {
		t.Errorf("storing activations: depth 16 peak %d bytes is not ~4× depth 4's %d; is the measurement broken?", store16, store4)
	}
	if float64(rec16) > 1.25*float64(rec4) {
		t.Errorf("recompute: depth 16 peak %d bytes grows from depth 4's %d", rec16, rec4)
	}
	if float64(rec16) > 0.25*float64(store16) {
		t.Errorf("recompute at depth 16 uses %d bytes, more than a quarter of storing's %d", rec16, store16)
	}
}

// TestPassMemory logs the peak live bytes of one training step, an Encode and a Sample of 8 images
// (DLF and Glow, with and without recompute; docs/perf.md compares them across changes), and checks
// that none of them leaks: the live bytes after all three are no more than before (buffers that the
// garbage collector finalises may make them fewer).
func TestPassMemory(t *testing.T) {
	for _, preset := range []string{"mnist", "glow-mnist"} {
		for _, rec := range []bool{false, true} {
			cfg, _ := Preset(preset)
			cfg.Width, cfg.Depth, cfg.Recompute = 32, 4, rec
			cb := &countingBackend{Backend: cpu.New()}
			m, err := New(cfg, cb, tensor.Float32)
			if err != nil {
				t.Fatal(err)
			}
			x := randTensor(cb, tensor.Float32, testRand(t, 31), 0.3, 8, cfg.ImageH, cfg.ImageW, cfg.ImageC)
			if err := m.DataInit(x, nil); err != nil {
				t.Fatal(err)
			}
			trainStep(t, m, x) // allocates the gradients, which stay resident
			live := cb.resetPeak()
			trainStep(t, m, x)
			trainPeak := cb.peak - live
			cb.resetPeak()
			enc, err := m.Encode(x, nil)
			if err != nil {
				t.Fatal(err)
			}
			encPeak := cb.peak - live
			enc.Release()
			cb.resetPeak()
			y, _, err := m.Sample(8, 0.7, "", nil, 1, 0)
			if err != nil {
				t.Fatal(err)
			}
			samplePeak := cb.peak - live
			y.Release()
			t.Logf("%s recompute=%v: peak bytes above resident: train step %d, encode %d, sample %d", preset, rec, trainPeak, encPeak, samplePeak)
			if cb.live > live {
				t.Errorf("%s recompute=%v: %d bytes live after the passes, %d before: a pass leaks", preset, rec, cb.live, live)
			}
		}
	}
}
