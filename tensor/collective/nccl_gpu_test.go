package collective_test

import (
	"math"
	"math/rand/v2"
	"testing"

	"dlf/tensor/collective"
	"dlf/tensor/collective/nccl"
	"dlf/tensor/collective/nccl/nccltest"
	"dlf/tensor/cuda"
	"dlf/tensor/cuda/cu"
	"dlf/tensor/cuda/cu/gputest"
)

// TestGPUNCCLReducerMatchesDeviceReducer trains two ranks of the tiny model for two steps twice from
// the same parameters and batches: once with the in-process device ring (DeviceReducer), once with
// NCCL (one communicator, a rank per device worker, as one process per rank would have). With two
// ranks both give (a + b)·½ with the same two roundings, so every averaged gradient and every
// parameter after the optimizer steps must be bit-identical. Several buckets per step (small bucket
// size), so the in-order issue of buckets is exercised.
func TestGPUNCCLReducerMatchesDeviceReducer(t *testing.T) {
	gputest.Device(t)
	lib := nccltest.Library(t)
	nccltest.NeedGPUs(t, lib, 2)
	const N, B, steps, bucketElems = 2, 2, 2, 300
	r := rand.New(rand.NewPCG(rand.Uint64(), 9))
	cfg := tinyConfig()
	devs := make([]*cu.Device, N)
	bes := make([]*cuda.Backend, N)
	for k := range N {
		d, err := cu.Open(0)
		if err != nil {
			t.Fatal(err)
		}
		defer d.Close()
		be, err := cuda.NewOnDevice(d)
		if err != nil {
			t.Fatal(err)
		}
		defer be.Close()
		devs[k], bes[k] = d, be
	}
	ringReps, ncclReps := make([]*gpuReplica, N), make([]*gpuReplica, N)
	for k := range N {
		ringReps[k] = newGPUReplica(t, cfg, bes[k])
		ncclReps[k] = newGPUReplica(t, cfg, bes[k])
	}
	for _, p := range ringReps[0].params {
		v := p.Var.Value.Float32s()
		for i := range v {
			v[i] += float32(0.05 * r.NormFloat64())
		}
		for k := range N {
			ringReps[k].m.Param(p.Name).Var.Value.Upload(v)
			ncclReps[k].m.Param(p.Name).Var.Value.Upload(v)
		}
	}
	sizes := ringReps[0].sizes()
	dr, err := collective.NewDeviceReducer(bes, sizes, bucketElems, collective.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer dr.Close()
	id, err := lib.UniqueID()
	if err != nil {
		t.Fatal(err)
	}
	reds := make([]*nccl.Reducer, N)
	runRanks(N, func(k int) {
		var c *nccl.Comm
		if err := devs[k].Do(func() error { var err error; c, err = lib.InitRank(id, N, k); return err }); err != nil {
			t.Error(err)
			return
		}
		g, err := nccl.NewGroup(c, devs[k])
		if err != nil {
			t.Error(err)
			return
		}
		t.Cleanup(func() { _ = g.Close() })
		if reds[k], err = nccl.NewReducer(g, bes[k], sizes, bucketElems); err != nil {
			t.Error(err)
			return
		}
		t.Cleanup(func() { _ = reds[k].Close() })
	})
	if t.Failed() {
		t.FailNow()
	}
	if reds[0].Buckets() < 2 {
		t.Fatalf("only %d bucket(s): the test needs several", reds[0].Buckets())
	}
	d := cfg.Dims()
	grads := func() [][][]float32 {
		g := make([][][]float32, N)
		for k := range g {
			g[k] = make([][]float32, len(sizes))
		}
		return g
	}
	for s := range steps {
		imgs := make([]uint8, N*B*d)
		for i := range imgs {
			imgs[i] = uint8(r.IntN(256))
		}
		offset := uint64(s * 1000)
		ringRaw, ringAvg, ncclRaw, ncclAvg := grads(), grads(), grads(), grads()
		runRanks(N, func(k int) {
			ringReps[k].step(t, dr.Rank(k), imgs[k*B*d:(k+1)*B*d], B, offset, ringRaw[k], ringAvg[k])
		})
		runRanks(N, func(k int) {
			ncclReps[k].step(t, reds[k], imgs[k*B*d:(k+1)*B*d], B, offset, ncclRaw[k], ncclAvg[k])
		})
		if t.Failed() {
			t.FailNow()
		}
		nonzero := false
		for k := range N {
			for i := range sizes {
				for j := range sizes[i] {
					if math.Float32bits(ncclAvg[k][i][j]) != math.Float32bits(ringAvg[k][i][j]) {
						t.Fatalf("step %d rank %d parameter %d[%d]: NCCL average %g, device ring %g", s, k, i, j, ncclAvg[k][i][j], ringAvg[k][i][j])
					}
					nonzero = nonzero || ncclAvg[k][i][j] != 0
				}
			}
			for _, p := range ringReps[k].params {
				want := p.Var.Value.Float32s()
				got := ncclReps[k].m.Param(p.Name).Var.Value.Float32s()
				for j := range want {
					if math.Float32bits(got[j]) != math.Float32bits(want[j]) {
						t.Fatalf("step %d rank %d %s[%d]: NCCL path %g, device ring %g", s, k, p.Name, j, got[j], want[j])
					}
				}
			}
		}
		if !nonzero {
			t.Fatalf("step %d: every averaged gradient is zero; the comparison proves nothing", s)
		}
	}
}
