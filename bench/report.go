package bench

import (
	"fmt"
	"io"
	"text/tabwriter"

	"dlf/dlf"
)

// PrintModel writes a model benchmark as a table.
func PrintModel(w io.Writer, r *Result) {
	fmt.Fprintf(w, "bench: preset %s, batch %d, %s parameters, on %s\n", r.Preset, r.Batch, dlf.FormatCount(r.Params), r.Device)
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
		for _, pol := range []string{"passive", "active"} {
			if t, ok := r.TorchPolicies[pol]; ok {
				fmt.Fprintf(w, "  OMP_WAIT_POLICY=%s: median %.2f ms (%.1f images/s, %v threads); time PyTorch / dlf = %.2f\n",
					pol, num(t["fwd_bwd_ms_median"]), num(t["images_per_s"]), t["threads"], num(t["fwd_bwd_ms_median"])/r.Step.MsMedian)
			}
		}
	}
	if r.Warning != "" {
		fmt.Fprintf(w, "note: %s\n", r.Warning)
	}
}

func num(v any) float64 {
	f, _ := v.(float64)
	return f
}
