package main

import (
	"encoding/json"
	"fmt"
	"os"
	"time"

	"dlf/bench"
	"dlf/dlf"
	"dlf/tensor/collective/launch"
	"dlf/tensor/collective/mpi"
	"dlf/tensor/collective/nccl"
	"dlf/tensor/cuda"
	"dlf/tensor/device"

	"github.com/urfave/cli/v2"
)

func benchCommand() *cli.Command {
	flags := []cli.Flag{
		&cli.StringFlag{Name: "preset", Value: "mnist", Usage: "preset to benchmark: " + joinNames(dlf.PresetNames())},
		deviceFlag,
		&cli.IntFlag{Name: "iters", Value: 5, Usage: "timed iterations of the whole step"},
		&cli.IntFlag{Name: "warmup", Value: 2, Usage: "untimed iterations first"},
		&cli.IntFlag{Name: "profile_iters", Value: 2, Usage: "iterations timed op by op for the per-layer table"},
		&cli.BoolFlag{Name: "json", Usage: "print JSON instead of the table"},
		&cli.StringFlag{Name: "json-out", Usage: "also write the JSON result to this file"},
		&cli.BoolFlag{Name: "compare", Usage: "also run reference/dlf_torch.py --bench on the same configuration and print the ratio"},
		&cli.StringFlag{Name: "python", Usage: "Python with torch for --compare (default: the first of /opt/torch/.venv/bin/python3, /usr/bin/python3, python3 that imports torch)"},
		&cli.StringFlag{Name: "reference", Usage: "path of dlf_torch.py (default: reference/dlf_torch.py here or next to the binary's parent)"},
		&cli.Float64Flag{Name: "peak_gflops", Usage: "override the FP32 peak used for floor fractions"},
		&cli.Float64Flag{Name: "peak_gbs", Usage: "override the memory bandwidth used for floor fractions"},
	}
	flags = append(flags, allreduceFlags()...)
	flags = append(flags,
		&cli.BoolFlag{Name: "host", Usage: "count the host side of whole training steps on CUDA for each of --presets: kernel launches, host-blocking calls, allocations, hand-offs to the device worker, tensor downloads and wall time per step (on the CUDA emulator with DLF_EMU_SKIP_KERNELS=1 the wall time is the host's own)"},
		&cli.StringFlag{Name: "presets", Value: "mnist,cifar10,imagenet64", Usage: "the presets of --host, comma-separated"},
		&cli.IntFlag{Name: "steps", Value: 8, Usage: "training steps of --host (the first is not counted: it fills the allocator)"},
		&cli.IntFlag{Name: "print_every", Value: 4, Usage: "--host: steps between print points (steps.csv rows)"},
		&cli.BoolFlag{Name: "cuda_graph", Value: true, Usage: "--host: replay each step's forward and backward as a CUDA graph (as train does by default)"},
	)
	for _, f := range configFlags() {
		flags = append(flags, f.flag)
	}
	return &cli.Command{
		Name:  "bench",
		Usage: "per-layer forward/backward time, GFLOP/s, GB/s and fraction of the machine's floor for a preset",
		Description: "Times forward + backward of the bits/dim loss (the whole step, as the PyTorch twin times it), then " +
			"runs a profiled pass that times every backend op and attributes it to its layer. Without --batch_size " +
			"the batch is the preset's on a GPU and 16 on the CPU. With --allreduce it times the ring all-reduce " +
			"instead (tensor/collective) for --num_gpus ranks and reports algbw = bytes/time and busbw = " +
			"algbw·2(N−1)/N as nccl-tests defines them.",
		Flags:  flags,
		Action: runBench,
	}
}

func runBench(c *cli.Context) error {
	if c.NArg() > 0 {
		return fmt.Errorf("bench takes no arguments, got %q", c.Args().First())
	}
	if c.Bool("host") {
		return runHostBench(c)
	}
	if c.Bool("allreduce") {
		kind, err := device.Resolve(c.String("device"))
		if err != nil {
			return err
		}
		return runAllReduceBench(c, kind)
	}
	preset := c.String("preset")
	cfg, err := dlf.Preset(preset)
	if err != nil {
		return fmt.Errorf("--preset: %v", trimPkg(err))
	}
	kind, err := device.Resolve(c.String("device"))
	if err != nil {
		return err
	}
	if kind == "cpu" {
		cfg.BatchSize = 16
	}
	for _, f := range configFlags() {
		if c.IsSet(f.name()) {
			f.apply(c, &cfg)
		}
	}
	if err := configError(cfg.Validate()); err != nil {
		return err
	}
	iters, warmup, piters := c.Int("iters"), c.Int("warmup"), c.Int("profile_iters")
	if iters < 1 || warmup < 0 || piters < 1 {
		return fmt.Errorf("--iters %d, --warmup %d, --profile_iters %d: want iters ≥ 1, warmup ≥ 0, profile_iters ≥ 1", iters, warmup, piters)
	}
	var py, ref string
	if c.Bool("compare") {
		if ref, err = bench.FindReference(c.String("reference")); err != nil {
			return err
		}
		if py, err = bench.FindTorchPython(c.String("python")); err != nil {
			return err
		}
	}
	dev, err := device.Open(kind)
	if err != nil {
		return err
	}
	defer dev.Close()
	floors, err := bench.DeviceFloors(dev)
	if err != nil {
		return fmt.Errorf("reading the GPU's clocks: %v (give --peak_gflops and --peak_gbs)", err)
	}
	if c.IsSet("peak_gflops") {
		floors.GFLOPS, floors.Source = c.Float64("peak_gflops"), "given by --peak_gflops/--peak_gbs"
	}
	if c.IsSet("peak_gbs") {
		floors.GBS, floors.Source = c.Float64("peak_gbs"), "given by --peak_gflops/--peak_gbs"
	}
	res, err := bench.Model(dev, cfg, floors, bench.Settings{Iters: iters, Warmup: warmup, ProfileIters: piters})
	if err != nil {
		return configError(err)
	}
	res.Preset = preset
	if c.Bool("compare") {
		threads := 0 // a GPU: torch's default
		if t, ok := dev.Backend.(interface{ Threads() int }); ok {
			threads = t.Threads()
		}
		if err := bench.CompareTorch(res, py, ref, kind, iters, warmup, threads); err != nil {
			return err
		}
	}
	return emitReport(c, res, func() { bench.PrintModel(c.App.Writer, res) })
}

// emitReport writes a bench report as JSON to --json-out when set, then prints it as JSON (--json)
// or as the human table.
func emitReport(c *cli.Context, res any, table func()) error {
	js, err := json.MarshalIndent(res, "", "  ")
	if err != nil {
		return fmt.Errorf("bench: encode report: %v", err)
	}
	if p := c.String("json-out"); p != "" {
		if err := os.WriteFile(p, append(js, '\n'), 0o644); err != nil {
			return fmt.Errorf("--json-out: %v", err)
		}
	}
	if c.Bool("json") {
		fmt.Fprintln(c.App.Writer, string(js))
		return nil
	}
	table()
	return nil
}

// allreduceFlags are bench's flags for --allreduce.
func allreduceFlags() []cli.Flag {
	return []cli.Flag{
		&cli.BoolFlag{Name: "allreduce", Usage: "benchmark the ring all-reduce instead of a model: algorithm and bus bandwidth per message size"},
		&cli.IntFlag{Name: "num_gpus", Value: 2, Usage: "ranks of the --allreduce ring (goroutines on the CPU; devices, or virtual ranks on device 0, on CUDA)"},
		&cli.Int64Flag{Name: "min_bytes", Value: 4 << 10, Usage: "smallest --allreduce message in bytes"},
		&cli.Int64Flag{Name: "max_bytes", Value: 256 << 20, Usage: "largest --allreduce message in bytes (sizes double from --min_bytes)"},
		&cli.StringFlag{Name: "transport", Value: "auto", Usage: "--allreduce links on CUDA: auto (peer copies where peer access works, else pinned host memory) or host (always through pinned host memory); mpi: Open MPI's MPI_Allreduce between the processes of `mpirun -np N driver bench --allreduce --transport mpi`; nccl: NCCL between GPU processes (under mpirun or torchrun, or one process alone)"},
	}
}

// runAllReduceBench is bench --allreduce.
func runAllReduceBench(c *cli.Context, kind string) error {
	n := c.Int("num_gpus")
	lo, hi := c.Int64("min_bytes"), c.Int64("max_bytes")
	iters, warmup := c.Int("iters"), c.Int("warmup")
	switch {
	case n < 2:
		return fmt.Errorf("--num_gpus %d: an all-reduce needs at least 2 ranks", n)
	case lo < 4 || hi < lo:
		return fmt.Errorf("--min_bytes %d, --max_bytes %d: want 4 ≤ min_bytes ≤ max_bytes", lo, hi)
	case iters < 1 || warmup < 0:
		return fmt.Errorf("--iters %d, --warmup %d: want iters ≥ 1, warmup ≥ 0", iters, warmup)
	}
	transport := c.String("transport")
	switch {
	case transport != "auto" && transport != "host" && transport != "mpi" && transport != "nccl":
		return fmt.Errorf("--transport %q: want auto, host, mpi or nccl", transport)
	case transport == "host" && kind != "cuda":
		return fmt.Errorf("--transport host applies to --device cuda (the CPU ring has no links to stage)")
	}
	var sizes []int64
	for b := lo; b <= hi; b *= 2 {
		sizes = append(sizes, b)
	}
	switch transport {
	case "mpi":
		return mpiAllReduceBench(c, sizes, iters, warmup)
	case "nccl":
		return ncclAllReduceBench(c, sizes, iters, warmup)
	}
	var res *bench.AllReduceResult
	var err error
	if kind == "cuda" {
		res, err = bench.DeviceRing(n, sizes, iters, warmup, c.Float64("peak_gbs"), transport == "host")
	} else {
		res, err = bench.HostRing(n, sizes, iters, warmup, c.Float64("peak_gbs"))
	}
	if err != nil {
		return err
	}
	return emitReport(c, res, func() { bench.PrintAllReduce(c.App.Writer, res) })
}

// mpiAllReduceBench is bench --allreduce --transport mpi, run by every process of mpirun; rank 0
// prints the report.
func mpiAllReduceBench(c *cli.Context, sizes []int64, iters, warmup int) error {
	comm, err := mpi.Init()
	if err != nil {
		return fmt.Errorf("--transport mpi: %v", err)
	}
	defer comm.Finalize()
	if comm.Size() < 2 {
		return fmt.Errorf("--transport mpi: this is a world of %d process; run it under mpirun -np 2 (or more)", comm.Size())
	}
	if c.IsSet("num_gpus") && c.Int("num_gpus") != comm.Size() {
		return fmt.Errorf("--num_gpus %d: mpirun started %d processes; drop --num_gpus or match -np", c.Int("num_gpus"), comm.Size())
	}
	res, err := bench.MPI(comm, sizes, iters, warmup, c.Float64("peak_gbs"))
	if err != nil || comm.Rank() != 0 {
		return err
	}
	return emitReport(c, res, func() { bench.PrintAllReduce(c.App.Writer, res) })
}

// ncclAllReduceBench is bench --allreduce --transport nccl, run by every process of the job (mpirun,
// torchrun, srun, or one process alone: a world of one); rank 0 prints the report.
func ncclAllReduceBench(c *cli.Context, sizes []int64, iters, warmup int) error {
	w, err := launch.Join("nccl", "--transport nccl", 5*time.Minute)
	if err != nil {
		return err
	}
	defer w.Close()
	if c.IsSet("num_gpus") && c.Int("num_gpus") != w.Size {
		return fmt.Errorf("--num_gpus %d: the launcher started %d processes; drop --num_gpus or match the process count", c.Int("num_gpus"), w.Size)
	}
	count, err := cuda.DeviceCount()
	if err != nil {
		return fmt.Errorf("--transport nccl: %w", err)
	}
	ord, err := w.GPU(count)
	if err != nil {
		return err
	}
	dev, err := device.OpenRank("cuda", ord, w.LocalSize, false)
	if err != nil {
		return err
	}
	defer dev.Close()
	g, err := nccl.Join(w.NCCL, w.ID, w.Size, w.Rank, dev.GPU)
	if err != nil {
		return fmt.Errorf("--transport nccl: rank %d: %w", w.Rank, err)
	}
	defer g.Close()
	res, err := bench.NCCL(g, dev.GPU, w.How, sizes, iters, warmup)
	if err != nil || w.Rank != 0 {
		return err
	}
	return emitReport(c, res, func() { bench.PrintAllReduce(c.App.Writer, res) })
}
