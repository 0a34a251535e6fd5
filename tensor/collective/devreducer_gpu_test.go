package collective_test

import (
	"math"
	"math/rand/v2"
	"testing"

	"dlf/autodiff"
	"dlf/autodiff/optim"
	"dlf/dlf"
	"dlf/tensor"
	"dlf/tensor/collective"
	"dlf/tensor/cuda"
	"dlf/tensor/cuda/cu/gputest"
)

// gradReducer is what a rank's training step needs of either reducer.
type gradReducer interface {
	Ready(i int, g *tensor.Tensor) error
	Wait(grads []*tensor.Tensor) error
}

// gpuReplica is one float32 rank on a CUDA backend.
type gpuReplica struct {
	m      *dlf.Model
	opt    *optim.Optimizer
	params []optim.Param
	index  map[*autodiff.Var]int
}

func newGPUReplica(t *testing.T, cfg dlf.Config, be *cuda.Backend) *gpuReplica {
	t.Helper()
	m, err := dlf.New(cfg, be, tensor.Float32)
	if err != nil {
		t.Fatal(err)
	}
	params := m.OptimParams()
	opt, err := optim.New(cfg.OptimConfig(100), params)
	if err != nil {
		t.Fatal(err)
	}
	rep := &gpuReplica{m: m, opt: opt, params: params, index: map[*autodiff.Var]int{}}
	for i, p := range params {
		rep.index[p.Var] = i
	}
	return rep
}

func (rep *gpuReplica) sizes() []int {
	s := make([]int, len(rep.params))
	for i, p := range rep.params {
		s[i] = p.Var.Value.Numel()
	}
	return s
}

// step runs forward and backward on the rank's images, hands every final gradient to red (keeping a
// host copy of the rank's own gradients in raw), waits for the averages (outside any Device().Do, as
// DeviceReducer requires), keeps a host copy of them in avg and takes the optimizer step.
func (rep *gpuReplica) step(t *testing.T, red gradReducer, imgs []uint8, n int, offset uint64, raw, avg [][]float32) {
	x, _, err := rep.m.Preprocess(imgs, n, false, 7, offset)
	if err != nil {
		t.Error(err)
		return
	}
	defer x.Release()
	tp := autodiff.NewTape()
	res, err := rep.m.Forward(tp, x, nil)
	if err != nil {
		t.Error(err)
		return
	}
	var hookErr error
	tp.OnGradReady(func(v *autodiff.Var) {
		if i, ok := rep.index[v]; ok && hookErr == nil {
			if v.Grad != nil {
				raw[i] = v.Grad.Float32s()
			}
			hookErr = red.Ready(i, v.Grad)
		}
	})
	if err := tp.Backward(res.Loss); err != nil {
		t.Error(err)
	}
	if hookErr != nil {
		t.Error(hookErr)
	}
	res.Release()
	grads := make([]*tensor.Tensor, len(rep.params))
	for i, p := range rep.params {
		if p.Var.Grad == nil {
			p.Var.Grad = tensor.Zeros(p.Var.Value.Backend(), p.Var.Value.DType(), p.Var.Value.Shape()...)
		}
		if raw[i] == nil {
			raw[i] = make([]float32, p.Var.Value.Numel())
		}
		grads[i] = p.Var.Grad
	}
	if err := red.Wait(grads); err != nil {
		t.Error(err)
		return
	}
	for i, g := range grads {
		avg[i] = g.Float32s()
	}
	rep.opt.Step(1e-3)
	rep.opt.ZeroGrad()
	if err := rep.m.Backend().Err(); err != nil {
		t.Error(err)
	}
}

// TestGPUDeviceReducerMatchesHostReducer runs data-parallel steps of a small DLF model with two
// virtual ranks (two CUDA backends on device 0, separate streams) twice from the same parameters
// and data: once with the host path (Reducer over HostRing, gradients staged through the host) and
// once with DeviceReducer (packing, ring and unpacking on the devices). The averaged gradients must
// match the float64 mean of the ranks' gradients, and every parameter after each step must be
// bit-identical between the paths and between the ranks.
func TestGPUDeviceReducerMatchesHostReducer(t *testing.T) {
	dev := gputest.Device(t)
	const N, B, steps = 2, 2, 2
	// Small buckets and slices, so a step has several buckets and each ring reuses its staging slots.
	const bucketElems = 300
	opt := collective.Options{SliceElems: 50, Depth: 2}
	r := rand.New(rand.NewPCG(rand.Uint64(), 3))
	cfg := tinyConfig()
	bes := make([]*cuda.Backend, N)
	for k := range bes {
		be, err := cuda.NewOnDevice(dev)
		if err != nil {
			t.Fatal(err)
		}
		defer be.Close()
		bes[k] = be
	}
	hostReps, devReps := make([]*gpuReplica, N), make([]*gpuReplica, N)
	for k := range N {
		hostReps[k] = newGPUReplica(t, cfg, bes[k])
		devReps[k] = newGPUReplica(t, cfg, bes[k])
	}
	// Random parameters, the same on every replica, so no gradient is trivially zero.
	for _, p := range hostReps[0].params {
		v := p.Var.Value.Float32s()
		for i := range v {
			v[i] += float32(0.05 * r.NormFloat64())
		}
		for k := range N {
			hostReps[k].m.Param(p.Name).Var.Value.Upload(v)
			devReps[k].m.Param(p.Name).Var.Value.Upload(v)
		}
	}
	sizes := hostReps[0].sizes()
	ring, err := collective.NewHostRing[float32](N, opt)
	if err != nil {
		t.Fatal(err)
	}
	hostRed := make([]gradReducer, N)
	for k := range N {
		red, err := collective.NewReducer(ring, k, sizes, bucketElems)
		if err != nil {
			t.Fatal(err)
		}
		hostRed[k] = red
	}
	dr, err := collective.NewDeviceReducer(bes, sizes, bucketElems, opt)
	if err != nil {
		t.Fatal(err)
	}
	defer func() {
		if err := dr.Close(); err != nil {
			t.Error(err)
		}
	}()
	if dr.Buckets() < 2 {
		t.Fatalf("only %d bucket(s): the test needs several", dr.Buckets())
	}
	devRed := make([]gradReducer, N)
	for k := range N {
		devRed[k] = dr.Rank(k)
	}
	newGrads := func() [][][]float32 {
		g := make([][][]float32, N)
		for k := range g {
			g[k] = make([][]float32, len(sizes))
		}
		return g
	}
	d := cfg.Dims()
	for s := range steps {
		imgs := make([]uint8, N*B*d)
		for i := range imgs {
			imgs[i] = uint8(r.IntN(256))
		}
		offset := uint64(s * 1000)
		hostRaw, hostAvg, devRaw, devAvg := newGrads(), newGrads(), newGrads(), newGrads()
		runRanks(N, func(k int) {
			hostReps[k].step(t, hostRed[k], imgs[k*B*d:(k+1)*B*d], B, offset, hostRaw[k], hostAvg[k])
		})
		runRanks(N, func(k int) {
			devReps[k].step(t, devRed[k], imgs[k*B*d:(k+1)*B*d], B, offset, devRaw[k], devAvg[k])
		})
		if t.Failed() {
			t.FailNow()
		}
		// The averages against the float64 mean of the ranks' own gradients (one rounding of the
		// sum and one of the scaling: a few float32 ulps of the magnitude).
		nonzero := false
		for i, n := range sizes {
			for j := range n {
				sum, mag := 0.0, 0.0
				for k := range N {
					g := float64(devRaw[k][i][j])
					sum += g
					mag += math.Abs(g)
				}
				want := sum / N
				for k := range N {
					got := float64(devAvg[k][i][j])
					if math.Abs(got-want) > 4*0x1p-24*mag/N {
						t.Fatalf("step %d rank %d parameter %d[%d]: averaged gradient %g, float64 mean %g", s, k, i, j, got, want)
					}
				}
				nonzero = nonzero || want != 0
			}
		}
		if !nonzero {
			t.Fatalf("step %d: every averaged gradient is zero; the comparison proves nothing", s)
		}
		for k := range N {
			for i := range sizes {
				for j := range sizes[i] {
					if math.Float32bits(devAvg[k][i][j]) != math.Float32bits(hostAvg[k][i][j]) {
						t.Fatalf("step %d rank %d parameter %d[%d]: device average %g, host average %g", s, k, i, j, devAvg[k][i][j], hostAvg[k][i][j])
					}
				}
			}
		}
		for k := range N {
			for _, p := range hostReps[k].params {
				want := p.Var.Value.Float32s()
				got := devReps[k].m.Param(p.Name).Var.Value.Float32s()
				ref := devReps[0].m.Param(p.Name).Var.Value.Float32s()
				for j := range want {
					if math.Float32bits(got[j]) != math.Float32bits(want[j]) {
						t.Fatalf("step %d rank %d %s[%d]: device path %g, host path %g", s, k, p.Name, j, got[j], want[j])
					}
					if math.Float32bits(got[j]) != math.Float32bits(ref[j]) {
						t.Fatalf("step %d rank %d %s[%d] = %g drifted from rank 0's %g", s, k, p.Name, j, got[j], ref[j])
					}
				}
			}
		}
	}
}
