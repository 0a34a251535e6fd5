package main

import (
	"fmt"

	"dlf/tensor"
	"dlf/tensor/cpu"
	"dlf/tensor/cuda"
	"dlf/tensor/cuda/cu"

	"github.com/urfave/cli/v2"
)

// deviceFlag selects the backend; "auto" takes the GPU when the driver finds one.
var deviceFlag = &cli.StringFlag{Name: "device", Value: "auto", Usage: "auto, cpu or cuda (auto: cuda when a GPU and the NVIDIA driver are present, else cpu)"}

// device is an opened backend plus the way to run a sequence of ops on it.
type device struct {
	be  tensor.Backend
	gpu *cuda.Backend // nil on the CPU
	// desc describes the device for the start-up line, e.g. "cpu (2 threads, AVX-512)".
	desc string
}

// do runs fn as one unit of device work. On CUDA every driver call must run on the device's
// locked worker thread, and each hand-over to that thread costs tens of µs (docs/perf.md), so a
// whole training step runs inside one Device.Do and the backend's own Do calls nest inline.
func (d *device) do(fn func() error) error {
	if d.gpu != nil {
		return d.gpu.Device().Do(fn)
	}
	return fn()
}

// close releases the device.
func (d *device) close() error {
	if d.gpu != nil {
		return d.gpu.Close()
	}
	return nil
}

// resolveDevice checks the --device value and, for "auto", decides between cuda and cpu without
// opening anything heavy (no kernel JIT), so that flags are validated before any work starts.
func resolveDevice(name string) (string, error) {
	switch name {
	case "cpu":
		return name, nil
	case "cuda":
		// Fail before any work when no GPU can be used; the backend's own message says why.
		if err := cu.Init(); err != nil {
			return "", fmt.Errorf("--device cuda: %v; use --device cpu or auto", err)
		}
		if n, err := cu.DeviceCount(); err != nil || n == 0 {
			return "", fmt.Errorf("--device cuda: the CUDA driver finds no device (%v); use --device cpu or auto", err)
		}
		return name, nil
	case "auto", "":
		if cu.Init() != nil {
			return "cpu", nil
		}
		if n, err := cu.DeviceCount(); err != nil || n == 0 {
			return "cpu", nil
		}
		return "cuda", nil
	}
	return "", fmt.Errorf("--device %q: want auto, cpu or cuda", name)
}

// openDevice opens a resolved device kind ("cpu" or "cuda"). A requested GPU that cannot be used
// is an error; auto has already fallen back to the CPU when no GPU is present.
func openDevice(kind string) (*device, error) {
	if kind == "cuda" {
		b, err := cuda.New(0)
		if err != nil {
			return nil, fmt.Errorf("--device cuda: %w", err)
		}
		return &device{be: b, gpu: b, desc: b.Device().String()}, nil
	}
	b := cpu.New()
	return &device{be: b, desc: fmt.Sprintf("cpu (%d threads, GEMM kernel %s)", b.Threads(), gemmKernelName())}, nil
}
