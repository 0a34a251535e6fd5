package cuda

import (
	"errors"
	"strings"
	"testing"

	"dlf/tensor/backendtest"
	"dlf/tensor/cuda/cu"
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

// TestNewWithoutGPU checks, on machines without a usable GPU, that New says so and keeps the
// cause matchable with errors.Is.
func TestNewWithoutGPU(t *testing.T) {
	err := cu.Init()
	if err == nil {
		t.Skip("a CUDA device is present")
	}
	be, nerr := New(0)
	if nerr == nil {
		_ = be.Close()
		t.Fatal("New(0) succeeded although cu.Init failed")
	}
	if !errors.Is(nerr, cu.ErrNoLibrary) && !errors.Is(nerr, cu.ErrNoDevice) && !errors.Is(nerr, err) {
		t.Fatalf("New(0) = %v; want the driver's error (%v) wrapped", nerr, err)
	}
	if !strings.Contains(nerr.Error(), "GPU 0") {
		t.Fatalf("New(0) error %q does not name the device", nerr)
	}
}
