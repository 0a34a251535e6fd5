// Package gputest gives tests a CUDA device, or skips them when the machine
// has none. Tests stay compiled everywhere (no build tags); setting the
// environment variable REQUIRE_GPU=1 turns the skip into a failure, which is
// how the GPU machine's run proves the GPU tests really ran.
package gputest

import (
	"os"
	"sync"
	"testing"

	"dlf/tensor/cuda/cu"
)

// RequireEnv names the environment variable that makes a missing GPU fatal.
const RequireEnv = "REQUIRE_GPU"

var (
	once sync.Once
	dev  *cu.Device
	err  error
)

// Device returns device 0, opened once per process and never closed (the
// process exit releases it). Without a usable GPU it calls
// t.Skipf("no GPU: <reason>"), or t.Fatalf when REQUIRE_GPU=1.
func Device(t testing.TB) *cu.Device {
	t.Helper()
	once.Do(func() { dev, err = cu.Open(0) })
	if err != nil {
		if os.Getenv(RequireEnv) == "1" {
			t.Fatalf("GPU required (%s=1) but unavailable: %v", RequireEnv, err)
		}
		t.Skipf("no GPU: %v", err)
	}
	return dev
}
