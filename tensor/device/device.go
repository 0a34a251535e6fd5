// Package device opens a compute backend by name — the pure-Go CPU backend or a CUDA GPU — and runs
// units of work on it. It is what the training engine, the benchmarks and the CLI share, so that
// "--device auto|cpu|cuda" means the same everywhere and no caller touches the driver bindings.
package device

import (
	"fmt"
	"runtime"

	"dlf/tensor"
	"dlf/tensor/cpu"
	"dlf/tensor/cpu/gemm"
	"dlf/tensor/cuda"
)

// Device is an opened backend plus the way to run a sequence of ops on it.
type Device struct {
	// Backend runs the ops.
	Backend tensor.Backend
	// GPU is the CUDA backend (the same object as Backend), nil on the CPU.
	GPU *cuda.Backend
	// Desc describes the device for a start-up line, e.g. "cpu (2 threads, GEMM kernel AVX-512)".
	Desc string
}

// Do runs fn as one unit of device work. On CUDA every driver call must run on the device's locked
// worker thread, and each hand-over to that thread costs tens of µs (docs/perf.md), so a whole
// training step runs inside one Do and the backend's own Do calls nest inline.
func (d *Device) Do(fn func() error) error {
	if d.GPU != nil {
		return d.GPU.Device().Do(fn)
	}
	return fn()
}

// Close releases the device.
func (d *Device) Close() error {
	if d.GPU != nil {
		return d.GPU.Close()
	}
	return nil
}

// Resolve checks a device name ("auto", "cpu" or "cuda") and, for "auto", decides between cuda and
// cpu without opening anything heavy (no kernel JIT), so that a caller can validate its settings
// before any work starts. Errors name the value as the CLI's --device flag.
func Resolve(name string) (string, error) {
	switch name {
	case "cpu":
		return name, nil
	case "cuda":
		// Fail before any work when no GPU can be used; the driver's own message says why.
		n, err := cuda.DeviceCount()
		if err != nil {
			return "", fmt.Errorf("--device cuda: %v; use --device cpu or auto", err)
		}
		if n == 0 {
			return "", fmt.Errorf("--device cuda: the CUDA driver finds no device; use --device cpu or auto")
		}
		return name, nil
	case "auto", "":
		if n, err := cuda.DeviceCount(); err == nil && n > 0 {
			return "cuda", nil
		}
		return "cpu", nil
	}
	return "", fmt.Errorf("--device %q: want auto, cpu or cuda", name)
}

// Open opens a resolved device kind ("cpu" or "cuda", GPU 0). A requested GPU that cannot be used is
// an error; Resolve("auto") has already fallen back to the CPU when no GPU is present.
func Open(kind string) (*Device, error) {
	if kind == "cuda" {
		return openGPU(0, "--device cuda")
	}
	b := cpu.New()
	return &Device{Backend: b, Desc: fmt.Sprintf("cpu (%s, GEMM kernel %s)", threads(b.Threads()), gemm.KernelFamily())}, nil
}

// OpenRank opens rank r's backend of a data-parallel world of n ranks. On the CPU every rank gets
// GOMAXPROCS/n threads, the same count on every rank, so every reduction runs in the same order. On
// CUDA rank r is GPU r, or GPU 0 when virtual (its own worker, stream and memory, sharing the GPU's
// primary context).
func OpenRank(kind string, r, n int, virtual bool) (*Device, error) {
	if kind == "cuda" {
		ord := r
		if virtual {
			ord = 0
		}
		return openGPU(ord, fmt.Sprintf("--device cuda, rank %d", r))
	}
	b := cpu.New(cpu.WithThreads(max(1, runtime.GOMAXPROCS(0)/n)))
	return &Device{Backend: b, Desc: fmt.Sprintf("cpu (%d ranks × %s, GEMM kernel %s)", n, threads(b.Threads()), gemm.KernelFamily())}, nil
}

// threads is "1 thread" or "N threads".
func threads(n int) string {
	if n == 1 {
		return "1 thread"
	}
	return fmt.Sprintf("%d threads", n)
}

func openGPU(ordinal int, what string) (*Device, error) {
	b, err := cuda.New(ordinal)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", what, err)
	}
	return &Device{Backend: b, GPU: b, Desc: b.Device().String()}, nil
}

// CheckWorld refuses a data-parallel world the device kind cannot serve, before any work starts.
// Errors name the CLI's --num_gpus and --virtual_gpus flags.
func CheckWorld(kind string, n int, virtual bool) error {
	if n < 1 {
		return fmt.Errorf("--num_gpus %d: want at least 1", n)
	}
	if virtual && kind != "cuda" {
		return fmt.Errorf("--virtual_gpus needs --device cuda (CPU ranks are goroutines already)")
	}
	if kind != "cuda" || n == 1 || virtual {
		return nil
	}
	count, err := cuda.DeviceCount()
	if err != nil {
		return fmt.Errorf("--num_gpus %d: cannot count CUDA devices: %v", n, err)
	}
	if count < n {
		return fmt.Errorf("--num_gpus %d: this machine has %d CUDA GPU(s); use --num_gpus %d or fewer, or --device cpu for %d CPU replicas", n, count, count, n)
	}
	return nil
}
