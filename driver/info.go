package main

import (
	"fmt"
	"io"
	"runtime"
	"sort"
	"strings"
	"text/tabwriter"
	"time"

	"dlf/kernels"
	"dlf/tensor/cuda"

	"github.com/urfave/cli/v2"
	"golang.org/x/sys/cpu"

	"dlf/bench"
	"dlf/tensor/cpu/gemm"
)

func infoCommand() *cli.Command {
	return &cli.Command{
		Name:  "info",
		Usage: "print the CPU features the CPU backend uses, the CUDA driver and devices, and the kernels (JIT status, registers, spills)",
		Flags: []cli.Flag{
			&cli.BoolFlag{Name: "kernels", Usage: "list every kernel with its registers, spill bytes and shared memory (needs a GPU)"},
		},
		Action: func(c *cli.Context) error {
			return writeInfo(c.App.Writer, c.Bool("kernels"))
		},
	}
}

// writeInfo reports what this process can use. A missing driver or device is information here, not
// an error: the CPU backend still works.
func writeInfo(w io.Writer, listKernels bool) error {
	vendor, model, mhz := bench.CPUInfo()
	fmt.Fprintf(w, "go:      %s %s/%s, %d CPUs (GOMAXPROCS %d)\n", runtime.Version(), runtime.GOOS, runtime.GOARCH, runtime.NumCPU(), runtime.GOMAXPROCS(0))
	if model != "" {
		fmt.Fprintf(w, "cpu:     %s (%s, %.0f MHz)\n", model, vendor, mhz)
	}
	fmt.Fprintf(w, "cpu:     AVX2 %v, FMA %v, AVX-512F %v, AVX-512VL %v; GEMM micro-kernel: %s\n",
		cpu.X86.HasAVX2, cpu.X86.HasFMA, cpu.X86.HasAVX512F, cpu.X86.HasAVX512VL, gemm.KernelFamily())

	mods := map[string]int{}
	for _, k := range kernels.Table {
		mods[k.Module]++
	}
	var ml []string
	for _, m := range sortedKeys(mods) {
		ml = append(ml, fmt.Sprintf("%s (%d)", m, mods[m]))
	}
	fmt.Fprintf(w, "kernels: %d embedded as PTX for compute_80 in %d modules: %s\n", len(kernels.Table), len(mods), strings.Join(ml, ", "))

	drv, err := cuda.Driver()
	if err != nil {
		fmt.Fprintf(w, "cuda:    unavailable: %v\n", err)
		fmt.Fprintf(w, "kernels: not loaded (no GPU): the CPU backend runs every op\n")
		return nil
	}
	n := len(drv.Devices)
	fmt.Fprintf(w, "cuda:    driver %s, CUDA %d.%d, %d device(s)\n", drv.Library, drv.Version/1000, drv.Version%1000/10, n)
	for _, d := range drv.Devices {
		if d.Err != nil && d.Desc == "" {
			fmt.Fprintf(w, "  device %d: %v\n", d.Ordinal, d.Err)
			continue
		}
		fmt.Fprintf(w, "  device %d: %s\n", d.Ordinal, d.Desc)
		if d.Err == nil {
			f := bench.GPUFloors(d.Clocks)
			fmt.Fprintf(w, "            FP32 peak %.1f TFLOP/s, memory %.0f GB/s\n", f.GFLOPS/1e3, f.GBS)
		}
	}
	if n == 0 {
		return nil
	}
	// Loading the kernels makes the driver JIT-compile the PTX for this GPU: report how it went.
	start := time.Now()
	b, err := cuda.New(0)
	if err != nil {
		fmt.Fprintf(w, "kernels: JIT for device 0 FAILED: %v\n", err)
		return nil
	}
	defer b.Close()
	stats, err := b.KernelInfo()
	if err != nil {
		return err
	}
	spills := 0
	for _, s := range stats {
		if s.LocalBytes > 0 {
			spills++
		}
	}
	fmt.Fprintf(w, "kernels: %d loaded on device 0, JIT-compiled in %.2fs; %d use local memory (spills or stack)\n", len(stats), time.Since(start).Seconds(), spills)
	if listKernels {
		sort.Slice(stats, func(i, j int) bool { return stats[i].Module+stats[i].Name < stats[j].Module+stats[j].Name })
		tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
		fmt.Fprintln(tw, "  module\tkernel\tregisters\tlocal B\tshared B\tmax threads")
		for _, s := range stats {
			fmt.Fprintf(tw, "  %s\t%s\t%d\t%d\t%d\t%d\n", s.Module, s.Name, s.Registers, s.LocalBytes, s.SharedBytes, s.MaxThreads)
		}
		tw.Flush()
	}
	return nil
}
