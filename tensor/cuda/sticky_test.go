package cuda

import (
	"errors"
	"os"
	"os/exec"
	"strings"
	"testing"

	"dlf/tensor"
	"dlf/tensor/cuda/cu"
	"dlf/tensor/cuda/cu/gputest"
)

// stickyChildEnv marks the child process of TestStickyError.
const stickyChildEnv = "DLF_CUDA_STICKY_CHILD"

// TestStickyError provokes CUDA_ERROR_ILLEGAL_ADDRESS (a kernel writing through a wild pointer) and
// checks that it is reported as fatal, with its name, and that the backend stops. A sticky error
// poisons the whole process's context, so it runs in a child process: the other GPU tests of this
// binary keep a healthy device.
func TestStickyError(t *testing.T) {
	if os.Getenv(stickyChildEnv) == "1" {
		stickyChild(t)
		return
	}
	gputest.Device(t) // skip (or fail with REQUIRE_GPU=1) like every GPU test
	cmd := exec.Command(os.Args[0], "-test.run=^TestStickyError$", "-test.v", "-test.count=1")
	cmd.Env = append(os.Environ(), stickyChildEnv+"=1")
	out, err := cmd.CombinedOutput()
	if err != nil || !strings.Contains(string(out), "sticky-error-ok") {
		t.Fatalf("child process: %v\n%s", err, out)
	}
}

func stickyChild(t *testing.T) {
	be, err := NewOnDevice(gputest.Device(t))
	if err != nil {
		t.Fatal(err)
	}
	// Close after the fault may only report the fault again; it must return, not hang.
	defer func() { _ = be.Close() }()
	x := tensor.FromFloat32(be, []float32{1, 2, 3, 4}, 4)
	if err := be.Sync(); err != nil {
		t.Fatalf("healthy backend: %v", err)
	}
	// A fill through an address no allocation covers: the kernel faults on the device.
	const wild = cu.DevicePtr(0x10)
	be.run("wild write", func() error {
		return be.k.FillF32(be.stream, grid1D(1<<20), block1D, 0, wild, 1<<20, 1)
	})
	err = be.Sync()
	if err == nil {
		t.Fatal("Sync after a kernel wrote through a wild pointer returned nil")
	}
	if !IsFatal(err) || !errors.Is(err, cu.ErrorIllegalAddress) {
		t.Fatalf("error %v: want a fatal CUDA_ERROR_ILLEGAL_ADDRESS", err)
	}
	for _, want := range []string{"CUDA_ERROR_ILLEGAL_ADDRESS", "FATAL", be.Name()} {
		if !strings.Contains(err.Error(), want) {
			t.Fatalf("error %q does not mention %q", err, want)
		}
	}
	tensor.Fill(x, 5) // a no-op now
	if got := be.Err(); got != err {
		t.Fatalf("Err after the fault = %v, want the first error %v", got, err)
	}
	t.Log("sticky-error-ok")
}
