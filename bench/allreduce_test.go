package bench

import (
	"errors"
	"math"
	"sync"
	"testing"

	"dlf/tensor/collective/nccl"
	"dlf/tensor/collective/nccl/nccltest"
	"dlf/tensor/cuda/cu/gputest"
	"dlf/tensor/device"
)

// checkRows checks an all-reduce benchmark's arithmetic against nccl-tests' definitions
// (algbw = bytes/time, busbw = algbw·2(N−1)/N), the doubling sizes, and every size's result check.
func checkRows(t *testing.T, res *AllReduceResult, n int, lo int64, sizes int) {
	t.Helper()
	if res.Ranks != n || len(res.Rows) != sizes {
		t.Fatalf("%d ranks, %d sizes; want %d and %d", res.Ranks, len(res.Rows), n, sizes)
	}
	for i, r := range res.Rows {
		if want := lo << i; r.Bytes != want || r.Elems != int(want/4) {
			t.Errorf("row %d: %d bytes, %d elems; want %d bytes", i, r.Bytes, r.Elems, want)
		}
		if r.Verify != "ok" {
			t.Errorf("%d bytes: %s", r.Bytes, r.Verify)
		}
		alg := float64(r.Bytes) / (r.UsMed * 1e-6) / 1e9
		if math.Abs(r.AlgBW-alg) > 1e-9*alg || !(r.AlgBW > 0) {
			t.Errorf("%d bytes: algbw %g, bytes/time gives %g", r.Bytes, r.AlgBW, alg)
		}
		if bus := alg * 2 * float64(n-1) / float64(n); math.Abs(r.BusBW-bus) > 1e-9*bus {
			t.Errorf("%d bytes: busbw %g, want algbw·2(N−1)/N = %g", r.Bytes, r.BusBW, bus)
		}
	}
}

// TestHostRingBench times the CPU ring for 3 ranks on 4 sizes.
func TestHostRingBench(t *testing.T) {
	res, err := HostRing(3, []int64{4096, 8192, 16384, 32768}, 2, 1, 10)
	if err != nil {
		t.Fatal(err)
	}
	checkRows(t, res, 3, 4096, 4)
	if f := res.Rows[0].Floor; math.Abs(f-10*busFactor(3)/hostRingTrafficFactor(3)) > 1e-12 {
		t.Errorf("floor %g with --peak_gbs 10", f)
	}
}

// TestGPUDeviceRingBench times the device ring over CUDA backends (virtual ranks on GPU 0 when the
// machine has one GPU), both transports, with every result checked against the float64 mean.
func TestGPUDeviceRingBench(t *testing.T) {
	gputest.Device(t)
	for _, staged := range []bool{false, true} {
		res, err := DeviceRing(2, []int64{4096, 8192, 16384}, 2, 1, 0, staged)
		if err != nil {
			t.Fatal(err)
		}
		checkRows(t, res, 2, 4096, 3)
	}
}

// TestGPUNCCLBench times NCCL with two ranks of one process (each on its own worker of GPU 0; the
// NCCL emulator allows two ranks on one GPU, the real NCCL does not) and checks every result.
func TestGPUNCCLBench(t *testing.T) {
	gputest.Device(t)
	lib := nccltest.Library(t)
	if !nccltest.Emulated(lib) {
		t.Skip("two ranks on one GPU need the NCCL emulator")
	}
	id, err := lib.UniqueID()
	if err != nil {
		t.Fatal(err)
	}
	res := make([]*AllReduceResult, 2)
	errs := make([]error, 2)
	var wg sync.WaitGroup
	for r := range 2 {
		wg.Go(func() {
			dev, err := device.OpenRank("cuda", 0, 2, true)
			if err != nil {
				errs[r] = err
				return
			}
			defer dev.Close()
			g, err := nccl.Join(lib, id, 2, r, dev.GPU)
			if err != nil {
				errs[r] = err
				return
			}
			defer g.Close()
			res[r], errs[r] = NCCL(g, dev.GPU, "two ranks in one process", []int64{4096, 8192, 16384}, 2, 1)
		})
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		t.Fatal(err)
	}
	checkRows(t, res[0], 2, 4096, 3)
}
