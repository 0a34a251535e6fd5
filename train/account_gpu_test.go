package train

import (
	"testing"

	"dlf/dlf"
	"dlf/tensor/cuda/cu/gputest"
)

// TestGPUStepAccounting counts the host side of a training step of a small DLF (full invertible
// 1×1 convolutions) and of a small Glow (LU form, recomputing backward) on CUDA, and holds the counts
// where they are, so that a host round trip cannot creep into the step unnoticed: every step
// downloads its loss; the full form downloads W for its float64 log-determinant and inverse, and a
// recomputing backward downloads W to invert each step: one host-blocking call per layer each. No
// step allocates or frees device memory (the caching allocator serves it), and each is one hand-off
// to the device worker.
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
		acc, err := Account(cfg, 5, 2)
		if err != nil {
			t.Fatal(err)
		}
		layers := uint64(cfg.Levels * cfg.Depth)
		var perLayer uint64
		if cfg.InvConv == dlf.InvConvFull {
			perLayer++ // the forward's log-determinant
		}
		if cfg.Recompute {
			perLayer++ // the backward's inverse
		}
		want := 1 + perLayer*layers
		for _, s := range acc.Steps {
			k := s.Counters
			if k.Blocking() != want || k.Reads != want || k.Allocs != 0 || k.Frees != 0 || k.Hops != 1 {
				t.Errorf("%s step %d: %d host-blocking calls, %d downloads, %d allocations, %d frees, %d hand-offs; want %d, %d, 0, 0, 1",
					c.preset, s.Step, k.Blocking(), k.Reads, k.Allocs, k.Frees, k.Hops, want, want)
			}
			if k.Launches == 0 {
				t.Errorf("%s step %d: no kernel launches counted", c.preset, s.Step)
			}
		}
		t.Logf("%s (%s invconv, %d layers): %d launches, %d host-blocking calls per step", c.preset, c.invconv, layers, acc.Steps[0].Counters.Launches, want)
	}
}
