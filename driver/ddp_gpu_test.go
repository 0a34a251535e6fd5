package main

import (
	"math"
	"path/filepath"
	"testing"

	"dlf/tensor/cuda/cu/gputest"
)

// TestGPUTrainDataParallelVirtual trains a tiny Glow with --num_gpus 2 --virtual_gpus (two CUDA
// replicas on GPU 0, gradients averaged by DeviceReducer on the device, overlapping backward) and
// the same run on the CPU (goroutine replicas, HostRing): the CUDA replicas must end bit-identical,
// and every step's loss must agree with the CPU run's to 1e-4 relative.
func TestGPUTrainDataParallelVirtual(t *testing.T) {
	gputest.Device(t)
	dataDir := mnist(t)
	snaps := captureReplicas(t)
	losses := map[string][]float64{}
	for _, dev := range []string{"cpu", "cuda"} {
		res := filepath.Join(t.TempDir(), dev)
		args := tinyTrain(dataDir, res, "--preset", "glow-mnist", "--train_subset", "64", "--test_subset", "16",
			"--batch_size", "8", "--num_gpus", "2", "--max_steps", "4", "--sample_per_epochs", "0", "--device", dev)
		if dev == "cuda" {
			args = append(args, "--virtual_gpus")
		}
		mustRun(t, args...)
		head, rows := readCSV(t, filepath.Join(res, "steps.csv"))
		losses[dev] = column(t, head, rows, "loss")
	}
	got := *snaps
	if len(got) != 2 || len(got[1]) != 2 {
		t.Fatalf("finish hook saw %d runs; want 2 runs of 2 replicas", len(got))
	}
	for name, ref := range got[1][0] {
		for i, v := range got[1][1][name] {
			if v != ref[i] {
				t.Fatalf("CUDA replicas differ at %s[%d]: rank 0 %g, rank 1 %g", name, i, math.Float32frombits(ref[i]), math.Float32frombits(v))
			}
		}
	}
	cpuL, gpuL := losses["cpu"], losses["cuda"]
	if len(cpuL) != 4 || len(gpuL) != 4 {
		t.Fatalf("steps.csv rows: cpu %d, cuda %d; want 4 each", len(cpuL), len(gpuL))
	}
	for s := range cpuL {
		if d := math.Abs(gpuL[s]-cpuL[s]) / math.Abs(cpuL[s]); d > 1e-4 {
			t.Errorf("step %d: CUDA loss %.7g, CPU loss %.7g (relative difference %.2g > 1e-4)", s+1, gpuL[s], cpuL[s], d)
		} else {
			t.Logf("step %d: CUDA loss %.7g, CPU loss %.7g (relative difference %.2g)", s+1, gpuL[s], cpuL[s], d)
		}
	}
}
