package cu_test

import (
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"strings"
	"sync"
	"testing"
	"unsafe"

	"dlf/tensor/cuda/cu"
	"dlf/tensor/cuda/cu/gputest"
)

// probePTX stores each of its parameters, declared at mixed widths, into
// out[0..40): u32 at 0, u64 at 8, f32 at 16, f64 at 24, u32 at 32. A launch
// whose kernelParams point at values of the wrong size shifts or garbles
// them. Checked with ptxas -arch=sm_80 and sm_90.
const probePTX = `.version 7.0
.target sm_80
.address_size 64

.visible .entry probe(
	.param .u64 probe_out,
	.param .u32 probe_a,
	.param .u64 probe_b,
	.param .f32 probe_c,
	.param .f64 probe_e,
	.param .u32 probe_f
)
{
	.reg .b32 %r<3>;
	.reg .b64 %rd<4>;
	.reg .f32 %f<2>;
	.reg .f64 %fd<2>;

	ld.param.u64 %rd1, [probe_out];
	cvta.to.global.u64 %rd2, %rd1;
	ld.param.u32 %r1, [probe_a];
	ld.param.u64 %rd3, [probe_b];
	ld.param.f32 %f1, [probe_c];
	ld.param.f64 %fd1, [probe_e];
	ld.param.u32 %r2, [probe_f];
	st.global.u32 [%rd2], %r1;
	st.global.u64 [%rd2+8], %rd3;
	st.global.f32 [%rd2+16], %f1;
	st.global.f64 [%rd2+24], %fd1;
	st.global.u32 [%rd2+32], %r2;
	ret;
}
`

func TestGPUDeviceInfo(t *testing.T) {
	dev := gputest.Device(t)
	major, _ := dev.ComputeCapability()
	if dev.Name() == "" || major < 8 || dev.SMCount() <= 0 || dev.TotalMem() <= 0 {
		t.Fatalf("implausible device info: %v", dev)
	}
	t.Logf("%v", dev)
	warp, err := dev.Attribute(cu.AttrWarpSize)
	if err != nil || warp != 32 {
		t.Fatalf("warp size %d, %v", warp, err)
	}
	if v, err := cu.DriverVersion(); err != nil || v < 11080 {
		t.Fatalf("driver version %d, %v", v, err)
	}
	// Every job sees the device's primary context, from any goroutine.
	var wg sync.WaitGroup
	for g := 0; g < 4; g++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < 50; i++ {
				err := dev.Do(func() error {
					c, err := cu.CtxGetCurrent()
					if err == nil && c != dev.Context() {
						t.Errorf("current context %#x, want %#x", c, dev.Context())
					}
					return err
				})
				if err != nil {
					t.Error(err)
					return
				}
			}
		}()
	}
	wg.Wait()
}

func randFloat32s(r *rand.Rand, n int) []float32 {
	s := make([]float32, n)
	for i := range s {
		s[i] = float32(r.NormFloat64())
	}
	return s
}

func TestGPUMemoryRoundTrip(t *testing.T) {
	dev := gputest.Device(t)
	r := rand.New(rand.NewPCG(1, 2))
	const n = 1<<20 + 3
	src := randFloat32s(r, n)
	err := dev.Do(func() error {
		free, total, err := cu.MemGetInfo()
		if err != nil || free <= 0 || total < free {
			return fmt.Errorf("MemGetInfo %d/%d, %v", free, total, err)
		}
		a, err := cu.MemAlloc(4 * n)
		if err != nil {
			return err
		}
		defer cu.MemFree(a)
		b, err := cu.MemAlloc(4 * n)
		if err != nil {
			return err
		}
		defer cu.MemFree(b)
		if err := cu.MemcpyHtoD(a, src); err != nil {
			return err
		}
		if err := cu.MemcpyDtoD(b, a, 4*n); err != nil {
			return err
		}
		got := make([]float32, n)
		if err := cu.MemcpyDtoH(got, b); err != nil {
			return err
		}
		for i := range got {
			if got[i] != src[i] {
				return fmt.Errorf("element %d: %v, want %v", i, got[i], src[i])
			}
		}
		// Async path through pinned memory and a stream, plus memset.
		s, err := cu.StreamCreate()
		if err != nil {
			return err
		}
		defer cu.StreamDestroy(s)
		pinned, err := cu.MemAllocHost(4 * n)
		if err != nil {
			return err
		}
		defer cu.MemFreeHost(pinned)
		pf, err := cu.View[float32](pinned)
		if err != nil {
			return err
		}
		v := float32(r.NormFloat64())
		if err := cu.MemsetD32Async(b, math.Float32bits(v), n, s); err != nil {
			return err
		}
		if err := cu.MemcpyDtoHAsync(pf, b, s); err != nil {
			return err
		}
		if err := cu.StreamSynchronize(s); err != nil {
			return err
		}
		for i := range pf {
			if pf[i] != v {
				return fmt.Errorf("memset element %d: %v, want %v", i, pf[i], v)
			}
		}
		copy(pf, src)
		if err := cu.MemcpyHtoDAsync(b, pf, s); err != nil {
			return err
		}
		if err := cu.MemsetD8Async(a, 0x7f, 4*n, s); err != nil {
			return err
		}
		if err := cu.MemcpyDtoDAsync(a, b, 4*n, s); err != nil {
			return err
		}
		if err := cu.MemcpyDtoHAsync(got, a, s); err != nil {
			return err
		}
		if err := cu.StreamSynchronize(s); err != nil {
			return err
		}
		for i := range got {
			if got[i] != src[i] {
				return fmt.Errorf("async element %d: %v, want %v", i, got[i], src[i])
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}

func TestGPUOutOfMemoryError(t *testing.T) {
	dev := gputest.Device(t)
	err := dev.Do(func() error {
		p, err := cu.MemAlloc(1 << 50) // 1 PiB
		if err == nil {
			cu.MemFree(p)
		}
		return err
	})
	if !errors.Is(err, cu.ErrorOutOfMemory) || !strings.Contains(err.Error(), "cuMemAlloc_v2(1125899906842624 bytes)") {
		t.Fatalf("1 PiB allocation: %v", err)
	}
}

func TestGPULaunchMarshalling(t *testing.T) {
	dev := gputest.Device(t)
	r := rand.New(rand.NewPCG(3, 4))
	err := dev.Do(func() error {
		m, err := cu.ModuleLoadDataEx([]byte(probePTX))
		if err != nil {
			return err
		}
		defer cu.ModuleUnload(m)
		f, err := cu.ModuleGetFunction(m, "probe")
		if err != nil {
			return err
		}
		if regs, err := cu.FuncGetAttribute(f, cu.FuncAttrNumRegs); err != nil || regs <= 0 {
			t.Errorf("num regs %d, %v", regs, err)
		}
		if n, err := cu.OccupancyMaxActiveBlocksPerMultiprocessor(f, 128, 0); err != nil || n <= 0 {
			t.Errorf("occupancy %d, %v", n, err)
		}
		if _, bs, err := cu.OccupancyMaxPotentialBlockSize(f, 0, 0); err != nil || bs <= 0 {
			t.Errorf("potential block size %d, %v", bs, err)
		}
		out, err := cu.MemAlloc(40)
		if err != nil {
			return err
		}
		defer cu.MemFree(out)
		a, b, c, e, g := r.Uint32(), r.Uint64(), float32(r.NormFloat64()), r.NormFloat64(), r.Uint32()
		ptr := out
		params := []unsafe.Pointer{unsafe.Pointer(&ptr), unsafe.Pointer(&a), unsafe.Pointer(&b),
			unsafe.Pointer(&c), unsafe.Pointer(&e), unsafe.Pointer(&g)}
		if err := cu.LaunchKernel(f, cu.D1(1), cu.D1(1), 0, 0, params); err != nil {
			return err
		}
		var res [40]byte
		if err := cu.MemcpyDtoH(res[:], out); err != nil {
			return err
		}
		le := binary.LittleEndian
		ga := le.Uint32(res[0:])
		gb := le.Uint64(res[8:])
		gc := math.Float32frombits(le.Uint32(res[16:]))
		ge := math.Float64frombits(le.Uint64(res[24:]))
		gg := le.Uint32(res[32:])
		if ga != a || gb != b || gc != c || ge != e || gg != g {
			return fmt.Errorf("kernel saw (%d %d %v %v %d), launched with (%d %d %v %v %d)", ga, gb, gc, ge, gg, a, b, c, e, g)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}

func TestGPUModuleJITErrorLog(t *testing.T) {
	dev := gputest.Device(t)
	bad := strings.Replace(probePTX, "st.global.u32 [%rd2+32]", "st.global.u33 [%rd2+32]", 1)
	err := dev.Do(func() error {
		m, err := cu.ModuleLoadDataEx([]byte(bad))
		if err == nil {
			cu.ModuleUnload(m)
		}
		return err
	})
	var ce *cu.CallError
	if !errors.As(err, &ce) || ce.Result != cu.ErrorInvalidPTX {
		t.Fatalf("loading broken PTX: %v, want CUDA_ERROR_INVALID_PTX", err)
	}
	if !strings.Contains(err.Error(), "JIT error log") || !strings.Contains(err.Error(), "u33") {
		t.Fatalf("error lacks the JIT log naming the bad modifier: %v", err)
	}
	t.Logf("%v", err)
}

func TestGPUStreamsEventsPools(t *testing.T) {
	dev := gputest.Device(t)
	err := dev.Do(func() error {
		s, err := cu.StreamCreate()
		if err != nil {
			return err
		}
		defer cu.StreamDestroy(s)
		start, err := cu.EventCreate(cu.EventDefault)
		if err != nil {
			return err
		}
		defer cu.EventDestroy(start)
		end, err := cu.EventCreate(cu.EventDefault)
		if err != nil {
			return err
		}
		defer cu.EventDestroy(end)
		pool, err := cu.DeviceGetDefaultMemPool(dev.Handle())
		if err != nil {
			return err
		}
		if err := cu.MemPoolSetReleaseThreshold(pool, math.MaxUint64); err != nil {
			return err
		}
		if err := cu.EventRecord(start, s); err != nil {
			return err
		}
		p, err := cu.MemAllocAsync(64<<20, s)
		if err != nil {
			return err
		}
		if err := cu.MemsetD32Async(p, 0x3f800000, 16<<20, s); err != nil {
			return err
		}
		if err := cu.MemFreeAsync(p, s); err != nil {
			return err
		}
		if err := cu.EventRecord(end, s); err != nil {
			return err
		}
		s2, err := cu.StreamCreate()
		if err != nil {
			return err
		}
		defer cu.StreamDestroy(s2)
		if err := cu.StreamWaitEvent(s2, end); err != nil {
			return err
		}
		if err := cu.StreamSynchronize(s2); err != nil {
			return err
		}
		if err := cu.EventSynchronize(end); err != nil {
			return err
		}
		if done, err := cu.EventQuery(end); err != nil || !done {
			t.Errorf("event query after sync: %v, %v", done, err)
		}
		if done, err := cu.StreamQuery(s); err != nil || !done {
			t.Errorf("stream query after sync: %v, %v", done, err)
		}
		ms, err := cu.EventElapsedTime(start, end)
		if err != nil || ms < 0 {
			t.Errorf("elapsed %v ms, %v", ms, err)
		}
		if err := cu.MemPoolTrimTo(pool, 0); err != nil {
			return err
		}
		// Peer paths on a single device: whether a device counts as its
		// own peer is the driver's business (log it); a peer copy within
		// one context is a device-to-device copy and must work.
		ok, err := cu.DeviceCanAccessPeer(dev.Handle(), dev.Handle())
		t.Logf("DeviceCanAccessPeer(self) = %v, %v", ok, err)
		a, err := cu.MemAlloc(1024)
		if err != nil {
			return err
		}
		defer cu.MemFree(a)
		b, err := cu.MemAlloc(1024)
		if err != nil {
			return err
		}
		defer cu.MemFree(b)
		want := make([]uint8, 1024)
		for i := range want {
			want[i] = uint8(i*7 + 3)
		}
		if err := cu.MemcpyHtoD(a, want); err != nil {
			return err
		}
		if err := cu.MemcpyPeerAsync(b, dev.Context(), a, dev.Context(), 1024, s); err != nil {
			return err
		}
		got := make([]uint8, 1024)
		if err := cu.MemcpyDtoHAsync(got, b, s); err != nil {
			return err
		}
		if err := cu.StreamSynchronize(s); err != nil {
			return err
		}
		for i := range got {
			if got[i] != want[i] {
				return fmt.Errorf("peer copy byte %d: %d, want %d", i, got[i], want[i])
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}

// TestGPUOpenCloseTwice opens a second Device on the shared device's
// ordinal and closes it twice: the primary context is reference-counted, so
// the shared device must keep working (a double release would destroy it).
func TestGPUOpenCloseTwice(t *testing.T) {
	shared := gputest.Device(t)
	dev, err := cu.Open(shared.Ordinal())
	if err != nil {
		t.Fatal(err)
	}
	if dev.Context() != shared.Context() {
		t.Errorf("second Open got context %#x, shared has %#x", dev.Context(), shared.Context())
	}
	if err := dev.Do(func() error { _, _, err := cu.MemGetInfo(); return err }); err != nil {
		t.Fatal(err)
	}
	if err := dev.Close(); err != nil {
		t.Fatal(err)
	}
	if err := dev.Close(); err != nil {
		t.Fatal(err)
	}
	if err := dev.Do(func() error { return nil }); !errors.Is(err, cu.ErrClosed) {
		t.Fatalf("Do after Close = %v, want ErrClosed", err)
	}
	err = shared.Do(func() error {
		p, err := cu.MemAlloc(1 << 20)
		if err != nil {
			return err
		}
		return cu.MemFree(p)
	})
	if err != nil {
		t.Fatalf("shared device broken after closing a second handle: %v", err)
	}
}

// TestGPUWorkerWhileDeviceBusy checks what a collective's proxy thread relies on: a cu.Worker that
// makes the device's primary context current can allocate, copy and synchronise its own stream
// while the device's own worker is busy in a Do that does not return until the Worker is done.
func TestGPUWorkerWhileDeviceBusy(t *testing.T) {
	dev := gputest.Device(t)
	w, err := cu.NewWorker()
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	// A fresh Worker has no current context.
	if err := w.Do(func() error {
		ctx, err := cu.CtxGetCurrent()
		if err == nil && ctx != 0 {
			return fmt.Errorf("fresh worker has context %#x current", ctx)
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	want := make([]float32, 1000)
	for i := range want {
		want[i] = rand.Float32()
	}
	got := make([]float32, len(want))
	done := make(chan error, 1)
	err = dev.Do(func() error {
		// The device worker is held for the whole of the Worker's job.
		go func() {
			done <- w.Do(func() error {
				if err := cu.CtxSetCurrent(dev.Context()); err != nil {
					return err
				}
				s, err := cu.StreamCreate()
				if err != nil {
					return err
				}
				defer cu.StreamDestroy(s)
				p, err := cu.MemAlloc(int64(len(want)) * 4)
				if err != nil {
					return err
				}
				defer cu.MemFree(p)
				if err := cu.MemcpyHtoD(p, want); err != nil {
					return err
				}
				if err := cu.MemsetD32Async(p, math.Float32bits(2.5), 10, s); err != nil {
					return err
				}
				if err := cu.StreamSynchronize(s); err != nil {
					return err
				}
				return cu.MemcpyDtoH(got, p)
			})
		}()
		return <-done
	})
	if err != nil {
		t.Fatal(err)
	}
	for i := range got {
		w := want[i]
		if i < 10 {
			w = 2.5
		}
		if got[i] != w {
			t.Fatalf("element %d: %g, want %g", i, got[i], w)
		}
	}
}
