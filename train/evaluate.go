package train

import (
	"io"
	"math"
	"sync/atomic"

	"dlf/autodiff"
	"dlf/data"
	"dlf/dlf"
	"dlf/tensor/device"
	"dlf/train/fault"
)

// EvalResult is the test metric of a model on a dataset.
type EvalResult struct {
	// Bits is the mean over images and dequantisation draws of the per-image bits/dim, the number
	// the reference reports.
	Bits float64
	// Bound is the K-draw bound −log2((1/K)·Σ_k p(x + u_k))/D averaged over images (Ho et al. 2019,
	// Flow++, §3.1's importance-weighted estimate with the uniform proposal): never above Bits,
	// equal to it for K = 1, and closer to the discrete model's true bits/dim as K grows.
	Bound float64
	// L2 is the L2 term of the loss (0 without l2_factor).
	L2 float64
	// Images is how many images were evaluated (fewer than the set when stop cut it short).
	Images int
	// Draws is K, the dequantisation draws per image.
	Draws int
}

// Evaluate computes the test metrics of m on ds with draws dequantisation noise draws per image,
// from the Philox stream seed (starting at offset 0, so repeated evaluations see the same noise).
// It stops early, returning what it has, when stop (may be nil) is set.
func Evaluate(dev *device.Device, m *dlf.Model, ds *data.Dataset, batch int, seed uint64, draws int, stop *atomic.Bool) (EvalResult, error) {
	res := EvalResult{Draws: draws}
	loader, err := data.NewLoader(ds, data.LoaderConfig{BatchSize: batch, Epochs: 1})
	if err != nil {
		return res, err
	}
	defer loader.Close()
	cfg := m.Config()
	d := float64(cfg.Dims())
	var offset uint64
	var sumBits, sumBound float64
	for stop == nil || !stop.Load() {
		b, err := loader.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			return res, err
		}
		// objs[k][i] is the objective (log-likelihood in nats) of image i under draw k.
		objs := make([][]float64, draws)
		err = dev.Do(func() error {
			var err error
			offset, err = evalBatch(m, b, seed, offset, objs, &res.L2)
			return err
		})
		if err != nil {
			return res, err
		}
		fault.Point(fault.TestBatch)
		for i := 0; i < b.N; i++ {
			mx := math.Inf(-1)
			for k := range objs {
				sumBits += -objs[k][i] / (d * math.Ln2)
				mx = max(mx, objs[k][i])
			}
			s := 0.0
			for k := range objs {
				s += math.Exp(objs[k][i] - mx)
			}
			lme := mx + math.Log(s/float64(draws))
			sumBound += -lme / (d * math.Ln2)
		}
		res.Images += b.N
	}
	if res.Images > 0 {
		res.Bits = sumBits / float64(res.Images*draws)
		res.Bound = sumBound / float64(res.Images)
	}
	return res, nil
}

// evalBatch runs the forward passes of one batch, one per draw, from noise offset; it returns the
// next offset.
func evalBatch(m *dlf.Model, b *data.Batch, seed, offset uint64, objs [][]float64, l2 *float64) (uint64, error) {
	for k := range objs {
		x, cond, off, err := batchInput(m, b.Images, b.N, b.Labels, seed, offset)
		if err != nil {
			return offset, err
		}
		offset = off
		r, err := m.Forward(autodiff.NoGrad(), x, cond)
		release(x, cond)
		if err != nil {
			return offset, err
		}
		objs[k] = r.Objective.Value.Float64s()
		if r.L2 != nil {
			*l2 = r.L2.Value.Item()
		}
		r.Release()
	}
	return offset, m.Backend().Err()
}
