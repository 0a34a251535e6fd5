package train

import (
	"testing"

	"dlf/dlf"
	"dlf/tensor/cuda/cu/gputest"
)

// TestGPUStepAccounting counts the host side of a training step, eager and replayed as a CUDA
// graph, of a small DLF (full invertible 1×1 convolutions) and of a small Glow (LU form, recomputing
// backward) on CUDA, and holds the counts where they are, so that a host round trip cannot creep
// into the step unnoticed: a step between
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
		var eagerLaunches uint64
		for _, graph := range []bool{false, true} {
			acc, err := Account(cfg, 9, printEvery, graph)
			if err != nil {
				t.Fatal(err)
			}
			for _, s := range acc.Steps {
				k := s.Counters
				if graph && s.Step < 5 {
					continue // the eager warm-up, the capture, the allocator's adjustment
				}
				var want uint64 // host-blocking calls and downloads
				if s.Step%printEvery == 0 {
					want = 1 // the flush
				}
				var graphs uint64
				if graph {
					graphs = 1
				}
				if k.Blocking() != want || k.Reads != want || k.Allocs != 0 || k.Frees != 0 || k.Hops != 1+want || k.GraphLaunches != graphs {
					t.Errorf("%s (graph %v) step %d: %d host-blocking calls, %d downloads, %d allocations, %d frees, %d hand-offs, %d graph launches; want %d, %d, 0, 0, %d, %d",
						c.preset, graph, s.Step, k.Blocking(), k.Reads, k.Allocs, k.Frees, k.Hops, k.GraphLaunches, want, want, 1+want, graphs)
				}
			}
			last := acc.Steps[len(acc.Steps)-1].Counters.Launches
			if !graph {
				eagerLaunches = last
			} else if last > 8 {
				// Besides the graph: the batch's unpacking and dequantisation (5 kernels), the loss record (2).
				t.Errorf("%s: a replayed step launches %d kernels besides the graph (an eager one %d), want at most 8", c.preset, last, eagerLaunches)
			}
			t.Logf("%s (%s invconv, %d layers, graph %v): %d launches per step, no host-blocking call between print points", c.preset, c.invconv, cfg.Levels*cfg.Depth, graph, last)
		}
	}
}
