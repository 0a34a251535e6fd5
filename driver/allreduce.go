package main

// bench --allreduce: the ring all-reduce of tensor/collective timed as nccl-tests times
// all_reduce_perf, so figures compare with published NCCL numbers.

import (
	"fmt"
	"io"
	"math/rand/v2"
	"sort"
	"sync"
	"text/tabwriter"
	"time"

	"dlf/tensor/collective"
	"dlf/tensor/cuda/cu"

	"github.com/urfave/cli/v2"
)

// allreduceFlags are bench's flags for --allreduce.
func allreduceFlags() []cli.Flag {
	return []cli.Flag{
		&cli.BoolFlag{Name: "allreduce", Usage: "benchmark the ring all-reduce instead of a model: algorithm and bus bandwidth per message size"},
		&cli.IntFlag{Name: "num_gpus", Value: 2, Usage: "ranks of the --allreduce ring (goroutines on the CPU; devices, or virtual ranks on device 0, on CUDA)"},
		&cli.Int64Flag{Name: "min_bytes", Value: 4 << 10, Usage: "smallest --allreduce message in bytes"},
		&cli.Int64Flag{Name: "max_bytes", Value: 256 << 20, Usage: "largest --allreduce message in bytes (sizes double from --min_bytes)"},
		&cli.StringFlag{Name: "transport", Value: "auto", Usage: "--allreduce links on CUDA: auto (peer copies where peer access works, else pinned host memory) or host (always through pinned host memory)"},
	}
}

// allreduceRow is one message size.
type allreduceRow struct {
	Bytes  int64   `json:"bytes"`
	Elems  int     `json:"elems"`
	UsMed  float64 `json:"time_us_median"`
	UsMin  float64 `json:"time_us_min"`
	AlgBW  float64 `json:"algbw_gbs"`
	BusBW  float64 `json:"busbw_gbs"`
	Floor  float64 `json:"busbw_floor_gbs,omitempty"`
	Frac   float64 `json:"floor_fraction,omitempty"`
	Verify string  `json:"check"`
}

// allreduceResult is the JSON output of bench --allreduce.
type allreduceResult struct {
	Impl      string         `json:"impl"`
	Device    string         `json:"device"`
	Transport string         `json:"transport"`
	Ranks     int            `json:"ranks"`
	Virtual   bool           `json:"virtual_ranks"`
	Op        string         `json:"op"`
	DType     string         `json:"dtype"`
	Iters     int            `json:"iters"`
	Warmup    int            `json:"warmup"`
	MemGBS    float64        `json:"memory_gbs,omitempty"`
	Note      string         `json:"note"`
	Rows      []allreduceRow `json:"sizes"`
}

// busFactor is nccl-tests' bus-bandwidth factor for all-reduce, 2(N−1)/N: the fraction of the
// buffer each rank must send (and receive) in an optimal algorithm, so busbw = algbw·2(N−1)/N is
// comparable with the link's speed whatever N is (nccl-tests, doc/PERFORMANCE.md).
func busFactor(n int) float64 { return 2 * float64(n-1) / float64(n) }

// hostRingTrafficFactor is the memory traffic of one HostRing (or single-device DeviceRing) all-reduce of S bytes, in units of S,
// summed over the N ranks that share the machine's memory: per rank, N−1 reduce-scatter steps of
// S/N bytes each copy a slice into the receiver's staging buffer (read + write: 2) and reduce one
// (read own, read staged, write own: 3), and N−1 all-gather steps copy in (2) and out (2): 9(N−1)/N·S
// per rank, 9(N−1)·S in all.
func hostRingTrafficFactor(n int) float64 { return 9 * float64(n-1) }

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
	case transport != "auto" && transport != "host":
		return fmt.Errorf("--transport %q: want auto or host", transport)
	case transport == "host" && kind != "cuda":
		return fmt.Errorf("--transport host applies to --device cuda (the CPU ring has no links to stage)")
	}
	var sizes []int64
	for b := lo; b <= hi; b *= 2 {
		sizes = append(sizes, b)
	}
	var res *allreduceResult
	var err error
	if kind == "cuda" {
		res, err = benchDeviceRing(n, sizes, iters, warmup, c.Float64("peak_gbs"), transport == "host")
	} else {
		res, err = benchHostRing(n, sizes, iters, warmup, c.Float64("peak_gbs"))
	}
	if err != nil {
		return err
	}
	return emitReport(c, res, func() { printAllReduce(c.App.Writer, res) })
}

// timeCalls runs warmup untimed and iters timed calls of one all-reduce and returns the median and
// minimum in seconds.
func timeCalls(iters, warmup int, call func() error) (med, best float64, err error) {
	for range warmup {
		if err := call(); err != nil {
			return 0, 0, err
		}
	}
	ts := make([]float64, iters)
	for i := range ts {
		start := time.Now()
		if err := call(); err != nil {
			return 0, 0, err
		}
		ts[i] = time.Since(start).Seconds()
	}
	sort.Float64s(ts)
	return ts[len(ts)/2], ts[0], nil
}

// fillRanks gives every rank fresh random data in [−1, 1) and returns the float64 mean per element,
// the reference the result is checked against.
func fillRanks(r *rand.Rand, bufs [][]float32) []float64 {
	want := make([]float64, len(bufs[0]))
	for _, b := range bufs {
		for i := range b {
			b[i] = float32(2*r.Float64() - 1)
			want[i] += float64(b[i])
		}
	}
	for i := range want {
		want[i] /= float64(len(bufs))
	}
	return want
}

// checkMean compares every rank's buffer after one Avg all-reduce with the float64 mean: float32
// rounding of N−1 additions and one scale bounds the error by about N·2⁻²⁴ of the summed
// magnitudes (each |x| < 1, so N), and all ranks must agree bit for bit.
func checkMean(got [][]float32, want []float64) string {
	n := len(got)
	tol := float64(n) * float64(n) * 0x1p-24
	for i, w := range want {
		d := float64(got[0][i]) - w
		if d < -tol || d > tol {
			return fmt.Sprintf("FAIL: element %d is %g, want %g", i, got[0][i], w)
		}
		for r := 1; r < n; r++ {
			if got[r][i] != got[0][i] {
				return fmt.Sprintf("FAIL: ranks 0 and %d differ at element %d", r, i)
			}
		}
	}
	return "ok"
}

// benchHostRing times HostRing[float32] with one goroutine per rank; a call is timed from the
// launch of the N goroutines to the return of the last.
// peakGBS (> 0, from --peak_gbs) replaces the measured memory bandwidth.
func benchHostRing(n int, sizes []int64, iters, warmup int, peakGBS float64) (*allreduceResult, error) {
	ring, err := collective.NewHostRing[float32](n, collective.Options{})
	if err != nil {
		return nil, err
	}
	// 2×256 MiB: beyond the last-level cache (up to 256 MiB+ on some EPYCs), as the large
	// messages are; a 64 MiB copy measured up to 81 GB/s here, partly cache.
	mem := peakGBS
	if mem <= 0 {
		mem = copyBandwidth(64<<20, n)
	}
	res := &allreduceResult{
		Impl: "dlf", Device: "cpu", Transport: "HostRing (goroutine ranks, staging-buffer queues)",
		Ranks: n, Op: "avg", DType: "float32", Iters: iters, Warmup: warmup, MemGBS: mem,
		Note: fmt.Sprintf("%d goroutine ranks in one process share the memory bus; floor busbw = memory GB/s × 2(N−1)/N ÷ 9(N−1) (9(N−1)·S bytes of traffic per call)", n),
	}
	r := rand.New(rand.NewPCG(rand.Uint64(), 11))
	for _, b := range sizes {
		elems := int(b / 4)
		bufs := make([][]float32, n)
		for k := range bufs {
			bufs[k] = make([]float32, elems)
		}
		want := fillRanks(r, bufs)
		// The first call is checked against the float64 mean; later calls average equal buffers,
		// which costs the same.
		first := true
		var check string
		call := func() error {
			errs := make([]error, n)
			var wg sync.WaitGroup
			for k := range n {
				wg.Go(func() { errs[k] = ring.AllReduce(k, bufs[k], collective.Avg) })
			}
			wg.Wait()
			for _, e := range errs {
				if e != nil {
					return e
				}
			}
			if first {
				check, first = checkMean(bufs, want), false
			}
			return nil
		}
		med, best, err := timeCalls(iters, warmup, call)
		if err != nil {
			return nil, fmt.Errorf("all-reduce of %d bytes: %w", b, err)
		}
		row := newAllreduceRow(b, elems, n, med, best, check)
		row.Floor = mem * busFactor(n) / hostRingTrafficFactor(n)
		if row.Floor > 0 {
			row.Frac = row.BusBW / row.Floor
		}
		res.Rows = append(res.Rows, row)
	}
	return res, nil
}

func newAllreduceRow(b int64, elems, n int, med, best float64, check string) allreduceRow {
	alg := float64(b) / med / 1e9
	return allreduceRow{Bytes: b, Elems: elems, UsMed: med * 1e6, UsMin: best * 1e6, AlgBW: alg, BusBW: alg * busFactor(n), Verify: check}
}

// benchDeviceRing times DeviceRing on CUDA: on n devices when the machine has them, else n virtual
// ranks (own streams and buffers) on device 0, whose "links" are device-to-device copies through
// the one GPU's memory.
func benchDeviceRing(n int, sizes []int64, iters, warmup int, peakGBS float64, hostStaged bool) (*allreduceResult, error) {
	count, err := cu.DeviceCount()
	if err != nil {
		return nil, fmt.Errorf("--device cuda: %v", err)
	}
	virtual := count < n
	var opened []*cu.Device
	defer func() {
		for _, d := range opened {
			_ = d.Close()
		}
	}()
	devs := make([]*cu.Device, n)
	for r := range devs {
		ord := r
		if virtual {
			ord = 0
		}
		if virtual && r > 0 {
			devs[r] = devs[0]
			continue
		}
		d, err := cu.Open(ord)
		if err != nil {
			return nil, fmt.Errorf("--device cuda: opening device %d: %v", ord, err)
		}
		opened = append(opened, d)
		devs[r] = d
	}
	ring, err := collective.NewDeviceRing(devs, collective.Options{HostStaged: hostStaged})
	if err != nil {
		return nil, err
	}
	defer ring.Close()
	res := &allreduceResult{
		Impl: "dlf", Device: devs[0].String(), Transport: "DeviceRing", Ranks: n, Virtual: virtual,
		Op: "avg", DType: "float32", Iters: iters, Warmup: warmup,
	}
	switch {
	case hostStaged:
		res.Transport = "DeviceRing, every link staged through pinned host memory (--transport host)"
		ndev := n
		if virtual {
			ndev = 1
		}
		res.Note = fmt.Sprintf("%d ranks on %d device(s); each slice goes device → pinned host → device", n, ndev)
	case virtual:
		res.Note = fmt.Sprintf("only %d CUDA device(s) found: %d virtual ranks on device 0 (own streams and buffers; links are device-to-device copies), so busbw measures the one GPU's memory, not a GPU interconnect", count, n)
	default:
		staged := false
		for r := range n {
			staged = staged || ring.HostStaged(r)
		}
		res.Note = fmt.Sprintf("%d devices, peer copies", n)
		if staged {
			res.Note = fmt.Sprintf("%d devices; some links staged through pinned host memory (no peer access)", n)
		}
	}
	if f, err := gpuFloors(devs[0]); err == nil {
		res.MemGBS = f.GBS
	}
	if peakGBS > 0 {
		res.MemGBS = peakGBS
	}
	r := rand.New(rand.NewPCG(rand.Uint64(), 13))
	for _, b := range sizes {
		elems := int(b / 4)
		host := make([][]float32, n)
		for k := range host {
			host[k] = make([]float32, elems)
		}
		want := fillRanks(r, host)
		ptrs := make([]cu.DevicePtr, n)
		free := func() {
			for k, p := range ptrs {
				if p != 0 {
					_ = devs[k].Do(func() error { return cu.MemFree(p) })
				}
			}
		}
		for k := range ptrs {
			if err := devs[k].Do(func() error {
				p, err := cu.MemAlloc(b)
				if err != nil {
					return err
				}
				ptrs[k] = p
				return cu.MemcpyHtoD(p, host[k])
			}); err != nil {
				free()
				return nil, fmt.Errorf("rank %d: %d-byte buffer: %w", k, b, err)
			}
		}
		first := true
		var check string
		call := func() error {
			if err := ring.AllReduce(ptrs, elems, collective.Avg); err != nil {
				return err
			}
			if first {
				first = false
				for k, p := range ptrs {
					if err := devs[k].Do(func() error { return cu.MemcpyDtoH(host[k], p) }); err != nil {
						return err
					}
				}
				check = checkMean(host, want)
			}
			return nil
		}
		med, best, err := timeCalls(iters, warmup, call)
		free()
		if err != nil {
			return nil, fmt.Errorf("all-reduce of %d bytes: %w", b, err)
		}
		row := newAllreduceRow(b, elems, n, med, best, check)
		if virtual && res.MemGBS > 0 {
			// Virtual ranks move the same 9(N−1)·S bytes as HostRing (copy into staging, reduce
			// kernel, copy in and out), all through the one GPU's memory.
			row.Floor = res.MemGBS * busFactor(n) / hostRingTrafficFactor(n)
			row.Frac = row.BusBW / row.Floor
		}
		res.Rows = append(res.Rows, row)
	}
	return res, nil
}

// humanBytes prints a message size as nccl-tests' tables are read: 4K, 1M, 256M.
func humanBytes(b int64) string {
	switch {
	case b >= 1<<30 && b%(1<<30) == 0:
		return fmt.Sprintf("%dG", b>>30)
	case b >= 1<<20 && b%(1<<20) == 0:
		return fmt.Sprintf("%dM", b>>20)
	case b >= 1<<10 && b%(1<<10) == 0:
		return fmt.Sprintf("%dK", b>>10)
	}
	return fmt.Sprintf("%dB", b)
}

func printAllReduce(w io.Writer, r *allreduceResult) {
	fmt.Fprintf(w, "all-reduce (%s, %s) on %s: %d ranks, %s; median of %d after %d warm-up\n",
		r.Op, r.DType, r.Device, r.Ranks, r.Transport, r.Iters, r.Warmup)
	fmt.Fprintln(w, r.Note)
	if r.MemGBS > 0 {
		fmt.Fprintf(w, "memory bandwidth: %.1f GB/s\n", r.MemGBS)
	}
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "size\telems\ttime µs (med)\ttime µs (min)\talgbw GB/s\tbusbw GB/s\tfloor busbw\tof floor\tcheck\t")
	for _, x := range r.Rows {
		floor, frac := "", ""
		if x.Floor > 0 {
			floor, frac = fmt.Sprintf("%.2f", x.Floor), fmt.Sprintf("%.2f", x.Frac)
		}
		fmt.Fprintf(tw, "%s\t%d\t%.1f\t%.1f\t%.3f\t%.3f\t%s\t%s\t%s\t\n", humanBytes(x.Bytes), x.Elems, x.UsMed, x.UsMin, x.AlgBW, x.BusBW, floor, frac, x.Verify)
	}
	tw.Flush()
}
