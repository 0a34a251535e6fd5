package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"text/tabwriter"
	"time"

	"dlf/autodiff"
	"dlf/autodiff/optim"
	"dlf/dlf"
	"dlf/tensor"

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

// benchRow is one line of the per-layer table.
type benchRow struct {
	Layer string `json:"layer"`
	Pass  string `json:"pass"`
	// Instances is how many layers of the group there are (e.g. the 32 steps of a level).
	Instances int     `json:"instances"`
	Ops       int     `json:"ops"`
	Ms        float64 `json:"ms"`
	GFLOP     float64 `json:"gflop"`
	GB        float64 `json:"gb"`
	GFLOPS    float64 `json:"gflops"`
	GBS       float64 `json:"gbs"`
	Floor     float64 `json:"floor_fraction"`
}

// benchResult is the JSON output of bench.
type benchResult struct {
	Impl    string         `json:"impl"`
	Preset  string         `json:"preset"`
	Config  dlf.Config     `json:"config"`
	Device  string         `json:"device"`
	Batch   int            `json:"batch"`
	Params  int            `json:"params"`
	Iters   int            `json:"iters"`
	Floors  machineFloors  `json:"floors"`
	Layers  []benchRow     `json:"layers"`
	Step    benchStep      `json:"step"`
	Torch   map[string]any `json:"torch,omitempty"`
	Ratio   float64        `json:"torch_over_dlf_time,omitempty"`
	Warning string         `json:"warning,omitempty"`
}

// benchStep is the whole fwd+bwd step, timed without per-op synchronisation.
type benchStep struct {
	MsMedian     float64   `json:"fwd_bwd_ms_median"`
	MsMin        float64   `json:"fwd_bwd_ms_min"`
	Ms           []float64 `json:"fwd_bwd_ms"`
	ImagesPerSec float64   `json:"images_per_s"`
	GFLOP        float64   `json:"gflop"`
	GB           float64   `json:"gb"`
	GFLOPS       float64   `json:"gflops"`
	Floor        float64   `json:"floor_fraction"`
	UpdateMs     float64   `json:"optimizer_ms"`
	Loss         float64   `json:"loss_bits_per_dim"`
}

func runBench(c *cli.Context) error {
	if c.NArg() > 0 {
		return fmt.Errorf("bench takes no arguments, got %q", c.Args().First())
	}
	if c.Bool("allreduce") {
		kind, err := resolveDevice(c.String("device"))
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
	kind, err := resolveDevice(c.String("device"))
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
		if ref, err = findReference(c.String("reference")); err != nil {
			return err
		}
		if py, err = findTorchPython(c.String("python")); err != nil {
			return err
		}
	}
	dev, err := openDevice(kind)
	if err != nil {
		return err
	}
	defer dev.close()
	var floors machineFloors
	if dev.gpu != nil {
		if floors, err = gpuFloors(dev.gpu.Device()); err != nil {
			return fmt.Errorf("reading the GPU's clocks: %v (give --peak_gflops and --peak_gbs)", err)
		}
	} else {
		floors = cpuFloors(runtimeThreads(dev))
	}
	if c.IsSet("peak_gflops") {
		floors.GFLOPS, floors.Source = c.Float64("peak_gflops"), "given by --peak_gflops/--peak_gbs"
	}
	if c.IsSet("peak_gbs") {
		floors.GBS, floors.Source = c.Float64("peak_gbs"), "given by --peak_gflops/--peak_gbs"
	}
	res, err := benchModel(dev, cfg, floors, iters, warmup, piters)
	if err != nil {
		return err
	}
	res.Preset = preset
	if c.Bool("compare") {
		if err := compareTorch(c, res, py, ref, kind, iters, warmup); err != nil {
			return err
		}
	}
	return emitReport(c, res, func() { printBench(c.App.Writer, res) })
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

func runtimeThreads(dev *device) int {
	if b, ok := dev.be.(interface{ Threads() int }); ok {
		return b.Threads()
	}
	return 1
}

// opTiming accumulates the profile of one (layer group, pass).
type opTiming struct {
	layers map[string]bool
	ops    int
	sec    float64
	flops  float64
	bytes  float64
}

// layerGroup names the table row of a layer: the steps of a level are summed ("L0 dlt").
var stepLayer = regexp.MustCompile(`^level(\d+)\.step\d+\.(\w+)$`)

func layerGroup(layer string) string {
	if m := stepLayer.FindStringSubmatch(layer); m != nil {
		return "L" + m[1] + " " + m[2]
	}
	if strings.HasPrefix(layer, "level") && strings.HasSuffix(layer, ".split") {
		return "L" + strings.TrimSuffix(strings.TrimPrefix(layer, "level"), ".split") + " split prior"
	}
	if layer == "top" {
		return "top prior"
	}
	return layer
}

// benchModel builds cfg's model on a probe over dev, times whole steps, then profiles op by op.
func benchModel(dev *device, cfg dlf.Config, floors machineFloors, iters, warmup, piters int) (*benchResult, error) {
	var hook func(r *opRecord, run func())
	pb := newProbe(dev.be, func(r *opRecord, run func()) {
		if hook == nil {
			run()
			return
		}
		hook(r, run)
	})
	res := &benchResult{Impl: "dlf", Config: cfg, Device: dev.desc, Batch: cfg.BatchSize, Iters: iters, Floors: floors}
	var m *dlf.Model
	var x, cond *tensor.Tensor
	err := dev.do(func() error {
		var err error
		if m, err = dlf.New(cfg, pb, tensor.Float32); err != nil {
			return configError(err)
		}
		rng := rand.New(rand.NewPCG(uint64(cfg.Seed), 1))
		imgs := make([]uint8, cfg.BatchSize*cfg.Dims())
		for i := range imgs {
			imgs[i] = uint8(rng.IntN(256))
		}
		if x, _, err = m.Preprocess(imgs, cfg.BatchSize, false, cfg.Seed, 0); err != nil {
			return err
		}
		if cfg.Conditioning {
			labels := make([]int32, cfg.BatchSize)
			for i := range labels {
				labels[i] = int32(rng.IntN(cfg.NumClasses))
			}
			if cond, err = m.OneHot(labels); err != nil {
				return err
			}
		}
		return m.DataInit(x, cond)
	})
	if err != nil {
		return nil, err
	}
	defer release(x, cond)
	res.Params = m.NumParams()
	opt, err := optim.New(cfg.OptimConfig(1000), m.OptimParams())
	if err != nil {
		return nil, err
	}

	// One step: forward and backward of the loss; phase tells the profiler which pass it is in.
	phase := ""
	fwdBwd := func() (float64, error) {
		var loss float64
		err := dev.do(func() error {
			tp := autodiff.NewTape()
			phase = "fwd"
			r, err := m.Forward(tp, x, cond)
			if err != nil {
				tp.Release()
				return err
			}
			loss = r.Loss.Value.Item()
			phase = "bwd"
			if err := tp.Backward(r.Loss); err != nil {
				r.Release()
				return err
			}
			r.Release()
			return pb.Sync()
		})
		return loss, err
	}
	for i := 0; i < warmup; i++ {
		if _, err := fwdBwd(); err != nil {
			return nil, err
		}
		opt.ZeroGrad()
	}
	for i := 0; i < iters; i++ {
		start := time.Now()
		loss, err := fwdBwd()
		if err != nil {
			return nil, err
		}
		res.Step.Ms = append(res.Step.Ms, float64(time.Since(start).Microseconds())/1e3)
		res.Step.Loss = loss
		opt.ZeroGrad()
	}
	sorted := append([]float64(nil), res.Step.Ms...)
	sort.Float64s(sorted)
	res.Step.MsMedian, res.Step.MsMin = sorted[len(sorted)/2], sorted[0]
	res.Step.ImagesPerSec = float64(cfg.BatchSize) / (res.Step.MsMedian / 1e3)

	// The profiled passes: every op timed on its own (device time between events on a GPU, wall
	// time on the CPU, whose ops are synchronous) and attributed to its layer.
	groups := map[[2]string]*opTiming{}
	var order [][2]string
	lt := newLayerTracker(m, "input")
	hook = func(r *opRecord, run func()) {
		layer, _ := lt.observe(r)
		var sec float64
		if dev.gpu != nil {
			d, err := dev.gpu.Time(run)
			if err != nil {
				return
			}
			sec = d.Seconds()
		} else {
			start := time.Now()
			run()
			sec = time.Since(start).Seconds()
		}
		if r.Op == "download" || r.Op == "upload" {
			return // the loss read-back, not a layer's work
		}
		group := layerGroup(layer)
		if phase == "update" {
			group = "optimizer"
		}
		key := [2]string{group, phase}
		g := groups[key]
		if g == nil {
			g = &opTiming{layers: map[string]bool{}}
			groups[key] = g
			order = append(order, key)
		}
		g.layers[layer] = true
		g.ops++
		g.sec += sec
		g.flops += r.Flops
		g.bytes += r.Bytes
	}
	for i := 0; i < piters; i++ {
		lt.current = "input"
		if _, err := fwdBwd(); err != nil {
			return nil, err
		}
		phase = "update"
		lt.current = "optimizer"
		if err := dev.do(func() error { opt.Step(1e-9); return pb.Sync() }); err != nil {
			return nil, err
		}
		opt.ZeroGrad()
	}
	hook = nil
	if err := pb.Err(); err != nil {
		return nil, err
	}
	// Rows: forward layers in model order, then backward in the order they ran, then the update.
	var step opTiming
	for _, k := range order {
		g := groups[k]
		g.sec, g.flops, g.bytes = g.sec/float64(piters), g.flops/float64(piters), g.bytes/float64(piters)
		ops := g.ops / piters
		row := benchRow{Layer: k[0], Pass: k[1], Instances: len(g.layers), Ops: ops, Ms: g.sec * 1e3,
			GFLOP: g.flops / 1e9, GB: g.bytes / 1e9}
		if g.sec > 0 {
			row.GFLOPS, row.GBS = g.flops/g.sec/1e9, g.bytes/g.sec/1e9
		}
		row.Floor = floors.floorFraction(g.flops, g.bytes, g.sec)
		res.Layers = append(res.Layers, row)
		if k[1] == "update" {
			res.Step.UpdateMs += g.sec * 1e3
			continue
		}
		step.flops += g.flops
		step.bytes += g.bytes
	}
	sort.SliceStable(res.Layers, func(i, j int) bool { return passRank(res.Layers[i].Pass) < passRank(res.Layers[j].Pass) })
	res.Step.GFLOP, res.Step.GB = step.flops/1e9, step.bytes/1e9
	sec := res.Step.MsMedian / 1e3
	res.Step.GFLOPS = step.flops / sec / 1e9
	res.Step.Floor = floors.floorFraction(step.flops, step.bytes, sec)
	return res, nil
}

func passRank(p string) int {
	return map[string]int{"fwd": 0, "bwd": 1, "update": 2}[p]
}

// printBench writes the table.
func printBench(w io.Writer, r *benchResult) {
	fmt.Fprintf(w, "bench: preset %s, batch %d, %s parameters, on %s\n", r.Preset, r.Batch, commas(r.Params), r.Device)
	fmt.Fprintf(w, "floors: %.0f GFLOP/s, %.0f GB/s (%s)\n\n", r.Floors.GFLOPS, r.Floors.GBS, r.Floors.Source)
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "layer\tpass\tlayers\tops\tms\tGFLOP\tGFLOP/s\tGB\tGB/s\tfloor\t")
	var fwd, bwd float64
	for _, row := range r.Layers {
		fmt.Fprintf(tw, "%s\t%s\t%d\t%d\t%.3f\t%.3f\t%.1f\t%.4f\t%.1f\t%.1f%%\t\n", row.Layer, row.Pass, row.Instances, row.Ops, row.Ms, row.GFLOP, row.GFLOPS, row.GB, row.GBS, 100*row.Floor)
		switch row.Pass {
		case "fwd":
			fwd += row.Ms
		case "bwd":
			bwd += row.Ms
		}
	}
	tw.Flush()
	s := r.Step
	fmt.Fprintf(w, "\nsum of profiled ops: forward %.2f ms, backward %.2f ms, optimizer %.2f ms (each op synchronised)\n", fwd, bwd, s.UpdateMs)
	fmt.Fprintf(w, "whole step (forward + backward, %d iterations): median %.2f ms, min %.2f ms, %.1f images/s, %.1f GFLOP/s, %.1f%% of the floor (%.3f GFLOP, %.3f GB); loss %.4f bits/dim\n",
		r.Iters, s.MsMedian, s.MsMin, s.ImagesPerSec, s.GFLOPS, 100*s.Floor, s.GFLOP, s.GB, s.Loss)
	if r.Torch != nil {
		fmt.Fprintf(w, "PyTorch %v on %v: median %.2f ms (%.1f images/s); time PyTorch / dlf = %.2f (above 1: dlf is faster)\n",
			r.Torch["torch"], r.Torch["device"], num(r.Torch["fwd_bwd_ms_median"]), num(r.Torch["images_per_s"]), r.Ratio)
	}
	if r.Warning != "" {
		fmt.Fprintf(w, "note: %s\n", r.Warning)
	}
}

func num(v any) float64 {
	f, _ := v.(float64)
	return f
}

// findReference locates dlf_torch.py.
func findReference(flag string) (string, error) {
	if flag != "" {
		if _, err := os.Stat(flag); err != nil {
			return "", fmt.Errorf("--reference %s does not exist", flag)
		}
		return flag, nil
	}
	cands := []string{filepath.Join("reference", "dlf_torch.py")}
	if exe, err := os.Executable(); err == nil {
		cands = append(cands, filepath.Join(filepath.Dir(filepath.Dir(exe)), "reference", "dlf_torch.py"),
			filepath.Join(filepath.Dir(filepath.Dir(filepath.Dir(exe))), "reference", "dlf_torch.py"))
	}
	for _, p := range cands {
		if _, err := os.Stat(p); err == nil {
			return p, nil
		}
	}
	return "", fmt.Errorf("--compare: reference/dlf_torch.py not found here or next to the binary; give --reference")
}

// findTorchPython returns a Python interpreter that can import torch.
func findTorchPython(flag string) (string, error) {
	cands := []string{"/opt/torch/.venv/bin/python3", "/usr/bin/python3", "python3"}
	if flag != "" {
		cands = []string{flag}
	}
	for _, p := range cands {
		path, err := exec.LookPath(p)
		if err != nil {
			continue
		}
		ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
		err = exec.CommandContext(ctx, path, "-c", "import torch").Run()
		cancel()
		if err == nil {
			return path, nil
		}
	}
	return "", fmt.Errorf("--compare: no Python with torch found (tried %s); give --python", strings.Join(cands, ", "))
}

// compareTorch runs the PyTorch twin on the same configuration and batch.
func compareTorch(c *cli.Context, res *benchResult, py, ref, kind string, iters, warmup int) error {
	tmp, err := os.CreateTemp("", "dlf-bench-*.json")
	if err != nil {
		return err
	}
	defer os.Remove(tmp.Name())
	if _, err := tmp.WriteString(res.Config.JSON()); err != nil {
		return err
	}
	tmp.Close()
	args := []string{ref, "--bench", "--config", tmp.Name(), "--batch", fmt.Sprint(res.Batch), "--device", kind,
		"--iters", fmt.Sprint(iters), "--warmup", fmt.Sprint(warmup), "--dtype", "float32"}
	var stdout, stderr bytes.Buffer
	cmd := exec.Command(py, args...)
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		return fmt.Errorf("--compare: %s %s failed: %v: %s", py, strings.Join(args, " "), err, strings.TrimSpace(stderr.String()+stdout.String()))
	}
	lines := strings.Split(strings.TrimSpace(stdout.String()), "\n")
	var t map[string]any
	if err := json.Unmarshal([]byte(lines[len(lines)-1]), &t); err != nil {
		return fmt.Errorf("--compare: the twin printed %q, not JSON", lines[len(lines)-1])
	}
	if e, ok := t["error"]; ok {
		return fmt.Errorf("--compare: the twin says: %v", e)
	}
	res.Torch = t
	if ms := num(t["fwd_bwd_ms_median"]); ms > 0 {
		res.Ratio = ms / res.Step.MsMedian
	}
	if res.Config.Recompute {
		res.Warning = "--recompute is on here; the twin keeps activations, so the ratio compares different work"
	}
	return nil
}
