package bench

import (
	"bufio"
	"fmt"
	"os"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"time"

	"dlf/tensor/cuda"
	"dlf/tensor/device"

	"golang.org/x/sys/cpu"
)

// Floors are the rates a roofline floor divides by: the time of an op can be no less than
// max(FLOPs / GFLOPS, bytes / GBS) (DESIGN.md, "Performance method").
type Floors struct {
	GFLOPS float64 `json:"peak_gflops"`
	GBS    float64 `json:"peak_gbs"`
	// Source says where the figures come from.
	Source string `json:"source"`
}

// Fraction is floor time / measured time: 1 means the op ran at the machine's limit.
func (f Floors) Fraction(flops, bytes, seconds float64) float64 {
	if seconds <= 0 || f.GFLOPS <= 0 || f.GBS <= 0 {
		return 0
	}
	floor := max(flops/(f.GFLOPS*1e9), bytes/(f.GBS*1e9))
	return floor / seconds
}

// fp32LanesPerSM is the number of FP32 fused multiply-adds an SM issues per clock, by compute
// capability (CUDA C++ Programming Guide, "Arithmetic Instructions", throughput of 32-bit
// floating-point add, multiply, multiply-add).
func fp32LanesPerSM(major, minor int) int {
	switch {
	case major < 7:
		return 128
	case major == 7, major == 8 && minor == 0:
		return 64
	default: // 8.6, 8.7, 8.9, 9.0 and later
		return 128
	}
}

// GPUFloors computes the FP32 (non-tensor-core) peak from the SM count and clock, and the memory
// bandwidth from the memory clock and bus width (double data rate: 2 transfers per clock).
func GPUFloors(c cuda.Clocks) Floors {
	lanes := fp32LanesPerSM(c.Major, c.Minor)
	return Floors{
		GFLOPS: 2 * float64(lanes) * float64(c.SMs) * float64(c.ClockKHz) * 1e3 / 1e9,
		GBS:    2 * float64(c.MemClockKHz) * 1e3 * float64(c.BusBits) / 8 / 1e9,
		Source: fmt.Sprintf("%s: FP32 peak = 2 × %d lanes × %d SMs × %.0f MHz; bandwidth = 2 × %.0f MHz × %d-bit bus (from the driver's attributes; no tensor cores)",
			c.Name, lanes, c.SMs, float64(c.ClockKHz)/1e3, float64(c.MemClockKHz)/1e3, c.BusBits),
	}
}

// tf32FlopsPerSMClock is the dense TF32 tensor-core rate of one SM, in FLOP per clock, by compute
// capability, derived from NVIDIA's published peaks [memory: A100 whitepaper, 156 TFLOPS dense TF32
// on 108 SMs at 1410 MHz → 1024; H100 whitepaper, 494.7 TFLOPS dense TF32 (SXM5) on 132 SMs at
// 1830 MHz → 2048; A10 datasheet, 62.5 TFLOPS on 72 SMs at 1695 MHz → 512]. 0: no TF32 tensor
// cores (before sm_80). These are the instruction's peaks: the mma.sync kernels of mma.cuh issue
// m16n8k8 at a rate that on Hopper is below wgmma's, so their fraction of this floor on an H100 is
// expected to be lower than on an A100 (a prediction until a GPU measures it).
func tf32FlopsPerSMClock(major, minor int) int {
	switch {
	case major < 8:
		return 0
	case major == 8 && minor == 0:
		return 1024
	case major == 8:
		return 512
	default:
		return 2048
	}
}

// GPUTF32Floors is GPUFloors with the dense TF32 tensor-core peak in place of the FP32 one (0
// GFLOPS before sm_80).
func GPUTF32Floors(c cuda.Clocks) Floors {
	f := GPUFloors(c)
	r := tf32FlopsPerSMClock(c.Major, c.Minor)
	f.GFLOPS = float64(r) * float64(c.SMs) * float64(c.ClockKHz) * 1e3 / 1e9
	f.Source = fmt.Sprintf("%s: TF32 peak = %d FLOP/clock/SM (sm_%d%d) × %d SMs × %.0f MHz; bandwidth as GPUFloors",
		c.Name, r, c.Major, c.Minor, c.SMs, float64(c.ClockKHz)/1e3)
	return f
}

// DeviceFloors returns the floors of a device: the GPU's from its clocks, the CPU's for its threads.
func DeviceFloors(dev *device.Device) (Floors, error) {
	if dev.GPU == nil {
		threads := 1
		if b, ok := dev.Backend.(interface{ Threads() int }); ok {
			threads = b.Threads()
		}
		return CPUFloors(threads), nil
	}
	c, err := dev.GPU.Clocks()
	if err != nil {
		return Floors{}, err
	}
	f := GPUFloors(c)
	if f.GFLOPS <= 0 || f.GBS <= 0 {
		return f, fmt.Errorf("the driver reports a zero clock or bus width")
	}
	return f, nil
}

// CPUInfo reads the vendor, model name and clock of the first CPU from /proc/cpuinfo.
func CPUInfo() (vendor, model string, mhz float64) {
	f, err := os.Open("/proc/cpuinfo")
	if err != nil {
		return "", "", 0
	}
	defer f.Close()
	s := bufio.NewScanner(f)
	for s.Scan() {
		k, v, ok := strings.Cut(s.Text(), ":")
		if !ok {
			continue
		}
		k, v = strings.TrimSpace(k), strings.TrimSpace(v)
		switch k {
		case "vendor_id":
			if vendor == "" {
				vendor = v
			}
		case "model name":
			if model == "" {
				model = v
			}
		case "cpu MHz":
			if mhz == 0 {
				mhz, _ = strconv.ParseFloat(v, 64)
			}
		}
	}
	return vendor, model, mhz
}

// cpuFlopsPerCycle is the FP32 FLOPs one core can retire per cycle: two FMA pipes × SIMD lanes × 2.
// Intel server cores with AVX-512 have two 512-bit FMA units (64); AMD's Zen 4 executes AVX-512 on
// 256-bit pipes, like AVX2 cores (32).
func cpuFlopsPerCycle(vendor string) int {
	switch {
	case cpu.X86.HasAVX512F && vendor == "GenuineIntel":
		return 64
	case cpu.X86.HasFMA:
		return 32
	case cpu.X86.HasAVX:
		return 16
	}
	return 8
}

// CPUFloors estimates the CPU's FP32 peak from its clock and SIMD width for the backend's threads,
// and measures the memory bandwidth with a parallel copy of buffers far larger than the caches.
func CPUFloors(threads int) Floors {
	vendor, model, mhz := CPUInfo()
	fpc := cpuFlopsPerCycle(vendor)
	if mhz == 0 {
		mhz = 2000
	}
	f := Floors{GFLOPS: float64(threads) * float64(fpc) * mhz / 1e3}
	f.GBS = measureCopyBandwidth(threads)
	f.Source = fmt.Sprintf("%s: FP32 peak = %d threads × %d FLOP/cycle × %.0f MHz (nominal); bandwidth measured by a %d-thread copy of 2×64 MiB",
		strings.TrimSpace(model), threads, fpc, mhz, threads)
	return f
}

// measureCopyBandwidth returns the best of three parallel copies of a 64 MiB buffer, counting the
// bytes read and written.
func measureCopyBandwidth(threads int) float64 { return copyBandwidth(16<<20, threads) }

// copyBandwidth is measureCopyBandwidth for a buffer of n float32s.
func copyBandwidth(n, threads int) float64 {
	src, dst := make([]float32, n), make([]float32, n)
	for i := range src {
		src[i] = float32(i)
	}
	threads = max(1, min(threads, runtime.NumCPU()))
	best := 0.0
	for r := 0; r < 3; r++ {
		start := time.Now()
		var wg sync.WaitGroup
		chunk := (n + threads - 1) / threads
		for t := 0; t < threads; t++ {
			lo, hi := t*chunk, min((t+1)*chunk, n)
			wg.Add(1)
			go func() {
				defer wg.Done()
				copy(dst[lo:hi], src[lo:hi])
			}()
		}
		wg.Wait()
		if gbs := 2 * 4 * float64(n) / time.Since(start).Seconds() / 1e9; gbs > best {
			best = gbs
		}
	}
	return best
}
