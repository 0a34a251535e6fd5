package train

import (
	"testing"

	"dlf/dlf"
	"dlf/tensor/cuda/cu/gputest"
)

// TestGPUStepAccounting counts the host side of a training step of a small DLF (full invertible
// 1×1 convolutions) and of a small Glow (LU form, recomputing backward) on CUDA, and holds the counts
// where they are, so that a host round trip cannot creep into the step unnoticed: a step between
// print points makes no host-blocking call at all — its loss waits on the device for the next flush
// (deferred.go), the invertible 1×1 convolutions' log-determinants, W⁻ᵀ and the recomputing
// backward's inverses stay on the device (tensor.InvLogDet), Glow's actnorm flags are read once —
// and a print point makes one, the flush's download of the buffered losses. No step allocates or
// frees device memory (the caching allocator serves it); a step is one hand-off to the device
// worker, a print point two (the flush).
func TestGPUStepAccounting(t *testing.T) {
	gputest.Device(t)
	for _, c := range []struct {
		preset, invconv string
	}{
		{"mnist", dlf.InvConvFull},
		{"glow-mnist", dlf.InvConvLU},
	} {
		cfg, err := dlf.Preset(c.preset)
		if err != nil {
			t.Fatal(err)
		}
		cfg.Depth, cfg.Width, cfg.BatchSize, cfg.InvConv = 1, 8, 4, c.invconv
		const printEvery = 3
		acc, err := Account(cfg, 7, printEvery)
		if err != nil {
			t.Fatal(err)
		}
		layers := cfg.Levels * cfg.Depth
		for _, s := range acc.Steps {
			k := s.Counters
			var want uint64 // host-blocking calls and downloads
			if s.Step%printEvery == 0 {
				want = 1 // the flush
			}
			if k.Blocking() != want || k.Reads != want || k.Allocs != 0 || k.Frees != 0 || k.Hops != 1+want {
				t.Errorf("%s step %d: %d host-blocking calls, %d downloads, %d allocations, %d frees, %d hand-offs; want %d, %d, 0, 0, %d",
					c.preset, s.Step, k.Blocking(), k.Reads, k.Allocs, k.Frees, k.Hops, want, want, 1+want)
			}
			if k.Launches == 0 {
				t.Errorf("%s step %d: no kernel launches counted", c.preset, s.Step)
			}
		}
		t.Logf("%s (%s invconv, %d layers): %d launches per step, no host-blocking call between print points", c.preset, c.invconv, layers, acc.Steps[0].Counters.Launches)
	}
}
