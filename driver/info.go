package main

import (
	"fmt"
	"io"
	"runtime"

	"dlf/tensor/cuda/cu"

	"github.com/urfave/cli/v2"
	"golang.org/x/sys/cpu"
)

func infoCommand() *cli.Command {
	return &cli.Command{
		Name:  "info",
		Usage: "print the CUDA driver and devices found, and the CPU features the CPU backend uses",
		Action: func(c *cli.Context) error {
			return writeInfo(c.App.Writer)
		},
	}
}

// writeInfo reports what this process can use. A missing driver or device is information here, not
// an error: the CPU backend still works.
func writeInfo(w io.Writer) error {
	fmt.Fprintf(w, "go:      %s %s/%s, %d CPUs (GOMAXPROCS %d)\n", runtime.Version(), runtime.GOOS, runtime.GOARCH, runtime.NumCPU(), runtime.GOMAXPROCS(0))
	fmt.Fprintf(w, "cpu:     AVX2 %v, FMA %v, AVX-512F %v\n", cpu.X86.HasAVX2, cpu.X86.HasFMA, cpu.X86.HasAVX512F)
	if err := cu.Init(); err != nil {
		fmt.Fprintf(w, "cuda:    unavailable: %v\n", err)
		return nil
	}
	v, err := cu.DriverVersion()
	if err != nil {
		return err
	}
	n, err := cu.DeviceCount()
	if err != nil {
		return err
	}
	fmt.Fprintf(w, "cuda:    driver %s, CUDA %d.%d, %d device(s)\n", cu.Loaded(), v/1000, v%1000/10, n)
	for i := 0; i < n; i++ {
		d, err := cu.Open(i)
		if err != nil {
			fmt.Fprintf(w, "  device %d: %v\n", i, err)
			continue
		}
		fmt.Fprintf(w, "  device %d: %s\n", i, d)
		d.Close()
	}
	return nil
}
