package cuda

import (
	"testing"

	"dlf/tensor/backendtest"
	"dlf/tensor/cuda/cu/gputest"
)

// newTestBackend returns a backend on the shared test device (skipping without a GPU, failing with
// REQUIRE_GPU=1) that poisons new buffers with NaN, closed when the test ends.
func newTestBackend(t testing.TB, opts ...Option) *Backend {
	t.Helper()
	dev := gputest.Device(t)
	be, err := NewOnDevice(dev, append([]Option{WithPoison(true)}, opts...)...)
	if err != nil {
		t.Fatalf("cuda backend on %v: %v", dev, err)
	}
	t.Cleanup(func() {
		if err := be.Close(); err != nil {
			t.Errorf("Close: %v", err)
		}
	})
	return be
}

// TestConformance runs the backend-conformance suite (every op against naive float64 references,
// NaN-poisoned outputs, round trips) on the GPU.
func TestConformance(t *testing.T) {
	be := newTestBackend(t)
	backendtest.Run(t, be)
	if err := be.Sync(); err != nil {
		t.Fatal(err)
	}
}
