package train

import (
	"math"
	"sync/atomic"
	"testing"

	"dlf/autodiff"
	"dlf/dlf"
	"dlf/tensor"
	"dlf/tensor/device"
)

// evalModel builds the tiny job's model on the CPU with its data-dependent init done, so that the
// objectives are those of a trained-looking model rather than of the identity.
func evalModel(t *testing.T) (*device.Device, *dlf.Model, Job) {
	t.Helper()
	job := tinyJob(t, t.TempDir(), 32, 0)
	dev, err := device.Open("cpu")
	if err != nil {
		t.Fatal(err)
	}
	m, err := dlf.New(job.Config, dev.Backend, tensor.Float32)
	if err != nil {
		t.Fatal(err)
	}
	return dev, m, job
}

// naiveBits recomputes Evaluate's figures from the model's per-image objectives: the mean of
// −objective/(D ln 2) over images and draws, and the K-draw bound with its log-mean-exp taken
// relative to the first draw (Evaluate uses the maximum). The noise is the same Philox stream,
// drawn batch by batch as Evaluate draws it.
func naiveBits(t *testing.T, m *dlf.Model, job Job, batch int, seed uint64, draws int) (bits, bound float64) {
	t.Helper()
	ds, d := job.Test, float64(job.Config.Dims())
	var offset uint64
	for lo := 0; lo < ds.N; lo += batch {
		n := min(batch, ds.N-lo)
		objs := make([][]float64, draws)
		for k := range draws {
			x, off, err := m.Preprocess(ds.Images[lo*ds.ImageSize():(lo+n)*ds.ImageSize()], n, false, seed, offset)
			if err != nil {
				t.Fatal(err)
			}
			offset = off
			r, err := m.Forward(autodiff.NoGrad(), x, nil)
			if err != nil {
				t.Fatal(err)
			}
			objs[k] = r.Objective.Value.Float64s()
			r.Release()
			x.Release()
		}
		for i := range n {
			s := 0.0
			for k := range draws {
				bits += -objs[k][i] / (d * math.Ln2)
				s += math.Exp(objs[k][i] - objs[0][i])
			}
			bound += -(objs[0][i] + math.Log(s/float64(draws))) / (d * math.Ln2)
		}
	}
	return bits / float64(ds.N*draws), bound / float64(ds.N)
}

// TestEvaluate checks Evaluate's mean bits/dim and K-draw bound against a plain recomputation, the
// bound's relation to the mean (equal for K = 1, below it for K > 1), and that a stop cuts it short.
func TestEvaluate(t *testing.T) {
	dev, m, job := evalModel(t)
	const seed = 99
	for _, draws := range []int{1, 3} {
		ev, err := Evaluate(dev, m, job.Test, 5, seed, draws, nil)
		if err != nil {
			t.Fatal(err)
		}
		bits, bound := naiveBits(t, m, job, 5, seed, draws)
		if ev.Images != job.Test.N || ev.Draws != draws {
			t.Fatalf("K=%d: %d images, %d draws", draws, ev.Images, ev.Draws)
		}
		if math.Abs(ev.Bits-bits) > 1e-9*bits || math.Abs(ev.Bound-bound) > 1e-9*bound {
			t.Errorf("K=%d: bits %.10g bound %.10g; recomputed %.10g %.10g", draws, ev.Bits, ev.Bound, bits, bound)
		}
		if draws == 1 && math.Abs(ev.Bound-ev.Bits) > 1e-12*ev.Bits {
			t.Errorf("K=1: bound %v differs from the mean %v", ev.Bound, ev.Bits)
		}
		if draws > 1 && !(ev.Bound < ev.Bits) {
			t.Errorf("K=%d: bound %v is not below the mean %v", draws, ev.Bound, ev.Bits)
		}
	}
	var stop atomic.Bool
	stop.Store(true)
	if ev, err := Evaluate(dev, m, job.Test, 5, seed, 1, &stop); err != nil || ev.Images != 0 {
		t.Errorf("a stopped evaluation: %+v, %v", ev, err)
	}
}
