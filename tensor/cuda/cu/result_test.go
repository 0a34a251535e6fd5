package cu

import (
	"errors"
	"fmt"
	"strings"
	"testing"
)

func TestStaticResultTable(t *testing.T) {
	for r, txt := range staticResults {
		if !strings.HasPrefix(txt.name, "CUDA_") || txt.text == "" {
			t.Errorf("static entry %d = %+v is malformed", r, txt)
		}
	}
	// The named constants and the table agree on every code.
	for _, c := range []struct {
		r    Result
		name string
	}{
		{ErrorOutOfMemory, "CUDA_ERROR_OUT_OF_MEMORY"},
		{ErrorNoDevice, "CUDA_ERROR_NO_DEVICE"},
		{ErrorInvalidPTX, "CUDA_ERROR_INVALID_PTX"},
		{ErrorIllegalAddress, "CUDA_ERROR_ILLEGAL_ADDRESS"},
		{ErrorPeerAccessAlreadyEnable, "CUDA_ERROR_PEER_ACCESS_ALREADY_ENABLED"},
		{ErrorLaunchFailed, "CUDA_ERROR_LAUNCH_FAILED"},
	} {
		if got := staticResults[c.r].name; got != c.name {
			t.Errorf("static name of %d = %q, want %q", c.r, got, c.name)
		}
	}
}

// TestDriverNamesAgree checks the fallback table against the real driver's
// cuGetErrorName/cuGetErrorString, which work without a device.
func TestDriverNamesAgree(t *testing.T) {
	d := realDriver(t)
	for r, want := range staticResults {
		got, ok := d.driverText(r)
		if !ok {
			t.Errorf("driver does not know code %d (%s)", r, want.name)
			continue
		}
		if got != want {
			t.Errorf("code %d: driver says %+v, static table %+v", r, got, want)
		}
	}
	if _, ok := d.driverText(Result(123456)); ok {
		t.Errorf("driver named an invalid code")
	}
}

func TestResultError(t *testing.T) {
	if got, want := ErrorOutOfMemory.Error(), "CUDA_ERROR_OUT_OF_MEMORY: out of memory"; got != want {
		t.Errorf("Error() = %q, want %q", got, want)
	}
	if got := Result(123456).Error(); !strings.Contains(got, "123456") {
		t.Errorf("unknown code prints %q", got)
	}
	err := newCallError(ErrorOutOfMemory, "cuMemAlloc_v2", fmt.Sprintf("%d bytes", 1<<20))
	if got, want := err.Error(), "cuMemAlloc_v2(1048576 bytes): CUDA_ERROR_OUT_OF_MEMORY: out of memory"; got != want {
		t.Errorf("CallError = %q, want %q", got, want)
	}
	wrapped := fmt.Errorf("tensor: upload: %w", err)
	if !errors.Is(wrapped, ErrorOutOfMemory) || errors.Is(wrapped, ErrorInvalidValue) {
		t.Errorf("errors.Is does not see the Result through wrapping")
	}
	if r, ok := ResultOf(wrapped); !ok || r != ErrorOutOfMemory {
		t.Errorf("ResultOf = %v, %v", r, ok)
	}
	if IsSticky(wrapped) {
		t.Errorf("out of memory reported sticky")
	}
}

func TestSticky(t *testing.T) {
	sticky := map[Result]bool{700: true, 702: true, 710: true, 714: true, 715: true, 716: true, 717: true, 718: true, 719: true, 911: true}
	for r := Result(0); r < 1000; r++ {
		if r.Sticky() != sticky[r] {
			t.Errorf("Result(%d).Sticky() = %v", r, r.Sticky())
		}
	}
	err := fmt.Errorf("step: %w", newCallError(ErrorIllegalAddress, "cuStreamSynchronize", "0x0"))
	if !IsSticky(err) {
		t.Fatal("IsSticky missed a wrapped 700")
	}
	if msg := err.Error(); !strings.Contains(msg, "CUDA_ERROR_ILLEGAL_ADDRESS") || !strings.Contains(msg, "fatal") {
		t.Errorf("sticky error message %q lacks the name or the fatal note", msg)
	}
	if IsSticky(errors.New("plain")) || IsSticky(nil) {
		t.Error("IsSticky true for a non-CUDA error")
	}
}
