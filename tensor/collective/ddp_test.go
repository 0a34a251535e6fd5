package collective_test

import (
	"math"
	"math/rand/v2"
	"sync"
	"testing"

	"dlf/autodiff"
	"dlf/autodiff/optim"
	"dlf/dlf"
	"dlf/tensor"
	"dlf/tensor/collective"
	"dlf/tensor/cpu"
)

// replica is one rank's model, optimizer and gradient reducer.
type replica struct {
	m      *dlf.Model
	opt    *optim.Optimizer
	red    *collective.Reducer[float64]
	params []optim.Param
	index  map[*autodiff.Var]int
}

// tinyConfig is a small DLF model (no data-dependent init, so batches split across ranks see the
// same initial parameters) on 8×8 grey images.
func tinyConfig() dlf.Config {
	cfg, _ := dlf.Preset("mnist")
	cfg.ImageH, cfg.ImageW, cfg.ImageC = 8, 8, 1
	cfg.Levels, cfg.Depth, cfg.Width = 2, 2, 8
	cfg.Optimizer, cfg.InitialLR, cfg.LR, cfg.DecayRate = dlf.OptimAdam, 1e-3, 1e-3, 1
	cfg.Init = dlf.InitIdentity
	return cfg
}

func newReplica(t *testing.T, cfg dlf.Config, ring *collective.HostRing[float64], rank int) *replica {
	t.Helper()
	m, err := dlf.New(cfg, cpu.New(cpu.WithThreads(1)), tensor.Float64)
	if err != nil {
		t.Fatal(err)
	}
	params := m.OptimParams()
	opt, err := optim.New(cfg.OptimConfig(100), params)
	if err != nil {
		t.Fatal(err)
	}
	rep := &replica{m: m, opt: opt, params: params, index: map[*autodiff.Var]int{}}
	sizes := make([]int, len(params))
	for i, p := range params {
		sizes[i] = p.Var.Value.Numel()
		rep.index[p.Var] = i
	}
	if ring != nil {
		// Small buckets, so that a step runs several all-reduces overlapping the backward pass.
		if rep.red, err = collective.NewReducer(ring, rank, sizes, 200); err != nil {
			t.Fatal(err)
		}
	}
	return rep
}

// step runs forward, backward (handing each final gradient to the reducer) and the optimizer on
// x, the rank's preprocessed batch.
func (rep *replica) step(t *testing.T, x *tensor.Tensor, lr float64) float64 {
	tp := autodiff.NewTape()
	res, err := rep.m.Forward(tp, x, nil)
	if err != nil {
		t.Error(err)
		return 0
	}
	var hookErr error
	if rep.red != nil {
		tp.OnGradReady(func(v *autodiff.Var) {
			if i, ok := rep.index[v]; ok && hookErr == nil {
				hookErr = rep.red.Ready(i, v.Grad)
			}
		})
	}
	if err := tp.Backward(res.Loss); err != nil {
		t.Error(err)
	}
	if hookErr != nil {
		t.Error(hookErr)
	}
	loss := res.Loss.Value.Item()
	res.Release()
	if rep.red != nil {
		grads := make([]*tensor.Tensor, len(rep.params))
		for i, p := range rep.params {
			if p.Var.Grad == nil {
				p.Var.Grad = tensor.Zeros(p.Var.Value.Backend(), p.Var.Value.DType(), p.Var.Value.Shape()...)
			}
			grads[i] = p.Var.Grad
		}
		if err := rep.red.Wait(grads); err != nil {
			t.Error(err)
		}
	}
	rep.opt.Step(lr)
	rep.opt.ZeroGrad()
	return loss
}

// batch returns n random images preprocessed by m (float64), downloaded.
func batch(t *testing.T, m *dlf.Model, r *rand.Rand, n int, offset uint64) []float64 {
	cfg := m.Config()
	imgs := make([]uint8, n*cfg.Dims())
	for i := range imgs {
		imgs[i] = uint8(r.IntN(256))
	}
	x, _, err := m.Preprocess(imgs, n, false, 7, offset)
	if err != nil {
		t.Fatal(err)
	}
	defer x.Release()
	return x.Float64s()
}

func upload(m *dlf.Model, v []float64, n int) *tensor.Tensor {
	c := m.Config()
	x := tensor.New(m.Backend(), tensor.Float64, n, c.ImageH, c.ImageW, c.ImageC)
	x.Upload(v)
	return x
}

// runRanks runs fn(rank) on one goroutine per rank and waits.
func runRanks(n int, fn func(r int)) {
	var wg sync.WaitGroup
	for r := range n {
		wg.Go(func() { fn(r) })
	}
	wg.Wait()
}

// maxRelDiff returns max |a−b| / max(|b|, 1e-3) over two parameter sets.
func maxRelDiff(a, b *dlf.Model) (float64, string) {
	worst, where := 0.0, ""
	for _, p := range b.OptimParams() {
		va := a.Param(p.Name).Var.Value.Float64s()
		vb := p.Var.Value.Float64s()
		for i := range vb {
			d := math.Abs(va[i]-vb[i]) / math.Max(math.Abs(vb[i]), 1e-3)
			if !(d <= worst) {
				worst, where = d, p.Name
			}
		}
	}
	return worst, where
}

// TestDataParallelStepMatchesBigBatch: one step with N ranks of batch B, gradients averaged by the
// ring, gives the parameters of one step of one model on the N·B batch (the loss is a batch mean,
// so the mean of the N rank gradients is the big batch's gradient).
func TestDataParallelStepMatchesBigBatch(t *testing.T) {
	r := rand.New(rand.NewPCG(rand.Uint64(), 1))
	const B = 3
	cfg := tinyConfig()
	for _, N := range []int{2, 3, 4} {
		ring, err := collective.NewHostRing[float64](N, collective.Options{SliceElems: 64})
		if err != nil {
			t.Fatal(err)
		}
		ref := newReplica(t, cfg, nil, 0)
		reps := make([]*replica, N)
		for k := range reps {
			reps[k] = newReplica(t, cfg, ring, k)
			if d, name := maxRelDiff(reps[k].m, ref.m); d != 0 {
				t.Fatalf("rank %d starts with different parameters (%s): the init RNG must agree", k, name)
			}
		}
		// Random parameters, the same on every replica, so no gradient is trivially zero.
		for _, p := range ref.m.OptimParams() {
			v := p.Var.Value.Float64s()
			for i := range v {
				v[i] += 0.05 * r.NormFloat64()
			}
			p.Var.Value.Upload(v)
			for _, rep := range reps {
				rep.m.Param(p.Name).Var.Value.Upload(v)
			}
		}
		d := cfg.Dims()
		all := batch(t, ref.m, r, N*B, uint64(r.IntN(1000)))
		x := upload(ref.m, all, N*B)
		ref.step(t, x, 1e-3)
		x.Release()
		runRanks(N, func(k int) {
			xk := upload(reps[k].m, all[k*B*d:(k+1)*B*d], B)
			reps[k].step(t, xk, 1e-3)
			xk.Release()
		})
		for k, rep := range reps {
			if diff, name := maxRelDiff(rep.m, ref.m); !(diff <= 1e-6) {
				t.Errorf("N=%d rank %d: parameter %s differs from the big-batch step by %.3g relative", N, k, name, diff)
			}
		}
		// The step must have moved the parameters, or the comparison proves nothing.
		fresh := newReplica(t, cfg, nil, 0)
		if moved, _ := maxRelDiff(fresh.m, ref.m); moved < 1e-4 {
			t.Fatalf("the step changed the parameters by only %g", moved)
		}
	}
}

// TestDataParallelLockstep: 20 steps on 3 ranks with different data per rank keep every replica
// bit-identical (each averaged gradient is computed once by its owner and copied).
func TestDataParallelLockstep(t *testing.T) {
	r := rand.New(rand.NewPCG(rand.Uint64(), 2))
	const N, B, steps = 3, 2, 20
	cfg := tinyConfig()
	ring, err := collective.NewHostRing[float64](N, collective.Options{SliceElems: 100})
	if err != nil {
		t.Fatal(err)
	}
	reps := make([]*replica, N)
	for k := range reps {
		reps[k] = newReplica(t, cfg, ring, k)
	}
	d := cfg.Dims()
	first := make([]float64, N)
	var last [N]float64
	for s := range steps {
		all := batch(t, reps[0].m, r, N*B, uint64(s*1000))
		runRanks(N, func(k int) {
			xk := upload(reps[k].m, all[k*B*d:(k+1)*B*d], B)
			last[k] = reps[k].step(t, xk, 1e-3)
			xk.Release()
		})
		if s == 0 {
			copy(first, last[:])
		}
		for k := 1; k < N; k++ {
			if diff, name := maxRelDiff(reps[k].m, reps[0].m); diff != 0 {
				t.Fatalf("step %d: rank %d parameter %s drifted from rank 0 by %g", s, k, name, diff)
			}
		}
	}
	if last[0] == first[0] {
		t.Fatal("the losses did not change: nothing was trained")
	}
	t.Logf("rank losses at step 0 %v, at step %d %v", first, steps-1, last)
}
