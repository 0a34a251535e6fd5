package train

import (
	"context"
	"fmt"
	"math"
	"path/filepath"
	"testing"

	"dlf/dlf"
	"dlf/tensor/cuda/cu/gputest"
)

// TestGPUTF32TracksFP32 trains the same small DLF model for 20 steps three ways — CUDA with FP32
// convolutions, CUDA with TF32 (tensor cores; the emulator's mma.sync model here), and the CPU's
// TF32 mode — on the same data order, and compares the training losses step by step:
//
//   - CUDA TF32 against CUDA FP32: the TF32 rounding of the convolution operands (a relative 2⁻¹¹
//     per operand) changes every step's gradients a little, and 20 optimizer steps carry that
//     forward; the loss must stay within 1% of the FP32 run's at every step (measured on the
//     emulator: see the log line, recorded in docs/perf.md);
//   - CPU TF32 against CUDA TF32: both multiply identical TF32 operands and differ only in float32
//     summation order, as the FP32 backends do, so they must agree as closely as CPU and CUDA FP32
//     runs do (within 1e-3 relative of the loss over 20 steps; the per-op bound is the conformance
//     suite's γ_(K+2)).
func TestGPUTF32TracksFP32(t *testing.T) {
	gputest.Device(t)
	run := func(device, prec string) []float64 {
		res := filepath.Join(t.TempDir(), device+"-"+prec)
		job := tinyJob(t, res, 320, 20)
		job.Config.Depth, job.Config.Width = 2, 32
		job.Config.Precision = prec
		job.Device = device
		job.LogEvery, job.ValidEvery, job.SampleEvery = 1, 0, 0
		var loss []float64 // full precision (steps.csv keeps 7 digits)
		r, err := New(job, Hooks{Step: func(s StepStats) { loss = append(loss, s.Loss) }})
		if err != nil {
			t.Fatal(err)
		}
		defer r.Close()
		if _, err := r.Train(context.Background()); err != nil {
			t.Fatal(err)
		}
		if len(loss) != 20 {
			t.Fatalf("%s %s: %d steps logged, want 20", device, prec, len(loss))
		}
		return loss
	}
	fp32, tf32, cpuTF32 := run("cuda", dlf.PrecisionFP32), run("cuda", dlf.PrecisionTF32), run("cpu", dlf.PrecisionTF32)
	worst := func(a, b []float64) (float64, int) {
		w, at := 0.0, 0
		for i := range a {
			if d := math.Abs(a[i]-b[i]) / math.Abs(b[i]); d > w || math.IsNaN(d) {
				w, at = d, i
			}
		}
		return w, at
	}
	dTF, atTF := worst(tf32, fp32)
	dCPU, atCPU := worst(cpuTF32, tf32)
	t.Logf("loss at step 1/10/20: cuda fp32 %s, cuda tf32 %s, cpu tf32 %s", pick(fp32), pick(tf32), pick(cpuTF32))
	t.Logf("cuda tf32 vs fp32: worst relative loss difference %.3g (step %d); cpu tf32 vs cuda tf32: %.3g (step %d)",
		dTF, atTF+1, dCPU, atCPU+1)
	if dTF > 1e-2 || math.IsNaN(dTF) {
		t.Errorf("TF32 training does not track FP32: relative loss difference %.3g at step %d", dTF, atTF+1)
	}
	if dCPU > 1e-3 || math.IsNaN(dCPU) {
		t.Errorf("CPU TF32 and CUDA TF32 disagree: relative loss difference %.3g at step %d", dCPU, atCPU+1)
	}
	if dTF == 0 {
		t.Errorf("TF32 and FP32 runs are identical: the precision did not reach the kernels")
	}
}

func pick(l []float64) string { return fmt.Sprintf("%.9g/%.9g/%.9g", l[0], l[9], l[19]) }
