// Package nccltest gives tests NCCL, or skips them where it cannot be loaded, as gputest does for a
// GPU: REQUIRE_NCCL=1 (make emu-test sets it, with DLF_LIBNCCL pointing at the NCCL emulator) turns
// the skip into a failure.
package nccltest

import (
	"os"
	"strings"
	"testing"

	"dlf/tensor/collective/nccl"
	"dlf/tensor/cuda"
)

// RequireEnv names the environment variable that makes a missing NCCL fatal.
const RequireEnv = "REQUIRE_NCCL"

// Library returns the loaded NCCL ($DLF_LIBNCCL or libnccl.so.2), or skips the test.
func Library(t testing.TB) *nccl.Library {
	t.Helper()
	l, err := nccl.Load()
	if err != nil {
		if os.Getenv(RequireEnv) == "1" {
			t.Fatalf("NCCL required (%s=1): %v", RequireEnv, err)
		}
		t.Skipf("no NCCL: %v", err)
	}
	return l
}

// Emulated reports whether l is the NCCL emulator (scripts/ncclemu), which allows what the real
// NCCL refuses or cannot show, such as two ranks on one GPU.
func Emulated(l *nccl.Library) bool { return strings.Contains(l.Path(), "nccl_emu") }

// NeedGPUs skips a test of n ranks of one communicator on a machine with fewer than n GPUs when l
// is the real NCCL, which refuses two ranks on one GPU (the emulator allows it).
func NeedGPUs(t testing.TB, l *nccl.Library, n int) {
	t.Helper()
	if Emulated(l) {
		return
	}
	if count, err := cuda.DeviceCount(); err == nil && count < n {
		t.Skipf("%d NCCL ranks need %d GPUs with the real NCCL; this machine has %d", n, n, count)
	}
}
