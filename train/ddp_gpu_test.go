package train

import (
	"math"
	"path/filepath"
	"testing"

	"dlf/tensor/cuda/cu/gputest"
)

// TestGPUTrainDataParallelVirtual trains the tiny Glow with two virtual CUDA ranks on GPU 0
// (gradients averaged by DeviceReducer on the device, overlapping backward) and the same run with
// two CPU ranks (HostRing): the CUDA replicas must end bit-identical, and every step's loss must
// agree with the CPU run's to 1e-4 relative.
func TestGPUTrainDataParallelVirtual(t *testing.T) {
	gputest.Device(t)
	losses := map[string][]float64{}
	var gpuSnap []map[string][]uint32
	for _, dev := range []string{"cpu", "cuda"} {
		res := filepath.Join(t.TempDir(), dev)
		job := ddpJob(t, res, 4)
		job.Train = firstN(t, job.Train, 64)
		job.Device, job.VirtualGPUs, job.SampleEvery = dev, dev == "cuda", 0
		snap := trainReplicas(t, job)
		if dev == "cuda" {
			gpuSnap = snap
		}
		losses[dev] = csvColumn(t, filepath.Join(res, "steps.csv"), "loss")
	}
	sameReplicas(t, "CUDA replicas", gpuSnap)
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
