package bench

// The ring all-reduce of tensor/collective timed as nccl-tests times all_reduce_perf, so figures
// compare with published NCCL numbers.

import (
	"fmt"
	"io"
	"math/rand/v2"
	"sort"
	"sync"
	"text/tabwriter"
	"time"

	"dlf/tensor"
	"dlf/tensor/collective"
	"dlf/tensor/cuda"
)

// AllReduceRow is one message size of an all-reduce benchmark.
type AllReduceRow struct {
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

// AllReduceResult is an all-reduce benchmark: the setting and one row per message size (the JSON
// of bench --allreduce).
type AllReduceResult struct {
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
	Rows      []AllReduceRow `json:"sizes"`
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

// HostRing times collective.HostRing[float32] with one goroutine per rank on messages of the given
// sizes in bytes; a call is timed from the launch of the N goroutines to the return of the last.
// peakGBS (> 0) replaces the measured memory bandwidth in the floor.
func HostRing(n int, sizes []int64, iters, warmup int, peakGBS float64) (*AllReduceResult, error) {
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
	res := &AllReduceResult{
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

func newAllreduceRow(b int64, elems, n int, med, best float64, check string) AllReduceRow {
	alg := float64(b) / med / 1e9
	return AllReduceRow{Bytes: b, Elems: elems, UsMed: med * 1e6, UsMin: best * 1e6, AlgBW: alg, BusBW: alg * busFactor(n), Verify: check}
}

// DeviceRing times collective.DeviceRing on CUDA: on n GPUs when the machine has them, else n
// virtual ranks (own streams and buffers) on GPU 0, whose "links" are device-to-device
// copies through the one GPU's memory. hostStaged sends every link through pinned host memory.
func DeviceRing(n int, sizes []int64, iters, warmup int, peakGBS float64, hostStaged bool) (*AllReduceResult, error) {
	count, err := cuda.DeviceCount()
	if err != nil {
		return nil, fmt.Errorf("--device cuda: %v", err)
	}
	virtual := count < n
	// One backend per GPU (loading the kernels once each); virtual ranks share GPU 0's, and the
	// ring gives each rank its own stream and staging buffers.
	opened := map[int]*cuda.Backend{}
	defer func() {
		for _, b := range opened {
			_ = b.Close()
		}
	}()
	bes := make([]*cuda.Backend, n)
	for r := range n {
		ord := r
		if virtual {
			ord = 0
		}
		if opened[ord] == nil {
			b, err := cuda.New(ord)
			if err != nil {
				return nil, fmt.Errorf("--device cuda: opening device %d: %v", ord, err)
			}
			opened[ord] = b
		}
		bes[r] = opened[ord]
	}
	ring, err := collective.NewBackendRing(bes, collective.Options{HostStaged: hostStaged})
	if err != nil {
		return nil, err
	}
	defer ring.Close()
	res := &AllReduceResult{
		Impl: "dlf", Device: bes[0].Device().String(), Transport: "DeviceRing", Ranks: n, Virtual: virtual,
		Op: "avg", DType: "float32", Iters: iters, Warmup: warmup,
		Note: deviceRingNote(ring, n, count, virtual, hostStaged),
	}
	if hostStaged {
		res.Transport = "DeviceRing, every link staged through pinned host memory (--transport host)"
	}
	if c, err := bes[0].Clocks(); err == nil {
		res.MemGBS = GPUFloors(c).GBS
	}
	if peakGBS > 0 {
		res.MemGBS = peakGBS
	}
	r := rand.New(rand.NewPCG(rand.Uint64(), 13))
	for _, b := range sizes {
		row, err := timeDeviceRing(ring, bes, r, b, iters, warmup)
		if err != nil {
			return nil, err
		}
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

// deviceRingNote says what the ring's links are.
func deviceRingNote(ring *collective.DeviceRing, n, count int, virtual, hostStaged bool) string {
	switch {
	case hostStaged:
		ndev := n
		if virtual {
			ndev = 1
		}
		return fmt.Sprintf("%d ranks on %d device(s); each slice goes device → pinned host → device", n, ndev)
	case virtual:
		return fmt.Sprintf("only %d CUDA device(s) found: %d virtual ranks on device 0 (own streams and buffers; links are device-to-device copies), so busbw measures the one GPU's memory, not a GPU interconnect", count, n)
	}
	for r := range n {
		if ring.HostStaged(r) {
			return fmt.Sprintf("%d devices; some links staged through pinned host memory (no peer access)", n)
		}
	}
	return fmt.Sprintf("%d devices, peer copies", n)
}

// timeDeviceRing times the all-reduce of one message size, checking the first result against the
// float64 mean.
func timeDeviceRing(ring *collective.DeviceRing, bes []*cuda.Backend, r *rand.Rand, b int64, iters, warmup int) (AllReduceRow, error) {
	n, elems := len(bes), int(b/4)
	host := make([][]float32, n)
	for k := range host {
		host[k] = make([]float32, elems)
	}
	want := fillRanks(r, host)
	ts := make([]*tensor.Tensor, n)
	defer func() {
		for _, t := range ts {
			if t != nil {
				t.Release()
			}
		}
	}()
	for k, be := range bes {
		if err := be.Device().Do(func() error {
			ts[k] = tensor.FromFloat32(be, host[k], elems)
			return be.Err()
		}); err != nil {
			return AllReduceRow{}, fmt.Errorf("rank %d: %d-byte buffer: %w", k, b, err)
		}
	}
	first := true
	var check string
	call := func() error {
		if err := ring.AllReduceTensors(ts, collective.Avg); err != nil {
			return err
		}
		if first {
			first = false
			for k, be := range bes {
				_ = be.Device().Do(func() error { host[k] = ts[k].Float32s(); return nil })
			}
			check = checkMean(host, want)
		}
		return nil
	}
	med, best, err := timeCalls(iters, warmup, call)
	if err != nil {
		return AllReduceRow{}, fmt.Errorf("all-reduce of %d bytes: %w", b, err)
	}
	return newAllreduceRow(b, elems, n, med, best, check), nil
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

// PrintAllReduce writes an all-reduce benchmark as a table, nccl-tests style.
func PrintAllReduce(w io.Writer, r *AllReduceResult) {
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
