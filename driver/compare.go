package main

import (
	"encoding/json"
	"fmt"
	"image/color"
	"io"
	"math"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"dlf/train"

	"github.com/urfave/cli/v2"
	"gonum.org/v1/plot"
	"gonum.org/v1/plot/plotter"
	"gonum.org/v1/plot/vg"
	"gonum.org/v1/plot/vg/draw"
)

// compareRun is one run's test curve: bits/dim at each evaluation with the optimizer step, the
// images seen by then (step × batch size, from the run's config.json) and the training seconds.
type compareRun struct {
	label               string
	steps, images, secs []float64
	bits                []float64
	batch               int
}

// readCompareRun reads a results directory's config.json and test.csv.
func readCompareRun(arg string) (compareRun, error) {
	dir, label, ok := strings.Cut(arg, "=")
	if !ok {
		label = filepath.Base(filepath.Clean(dir))
	}
	r := compareRun{label: label}
	b, err := os.ReadFile(filepath.Join(dir, "config.json"))
	if err != nil {
		return r, fmt.Errorf("%s: %v (not a results directory of driver train?)", dir, err)
	}
	var cfg struct {
		Batch int `json:"batch_size"`
	}
	if err := json.Unmarshal(b, &cfg); err != nil || cfg.Batch < 1 {
		return r, fmt.Errorf("%s: config.json has no valid batch_size (%v)", dir, err)
	}
	r.batch = cfg.Batch
	cols, err := train.ReadCSVColumns(filepath.Join(dir, "test.csv"), "step", "bits_x", "seconds")
	if err != nil {
		return r, err
	}
	if len(cols[0]) == 0 {
		return r, fmt.Errorf("%s: test.csv has no evaluations yet", dir)
	}
	for i := range cols[0] {
		if math.IsNaN(cols[1][i]) || math.IsInf(cols[1][i], 0) {
			continue
		}
		r.steps = append(r.steps, cols[0][i])
		r.images = append(r.images, cols[0][i]*float64(cfg.Batch))
		r.bits = append(r.bits, cols[1][i])
		r.secs = append(r.secs, cols[2][i])
	}
	return r, nil
}

// reach returns the images and seconds at the first evaluation at or below bits/dim target
// (ok false when the run never got there).
func (r compareRun) reach(target float64) (images, secs float64, ok bool) {
	for i, b := range r.bits {
		if b <= target {
			return r.images[i], r.secs[i], true
		}
	}
	return 0, 0, false
}

func compareCommand() *cli.Command {
	return &cli.Command{
		Name:      "compare",
		Usage:     "plot several runs' test bits/dim against images seen and training time, and tabulate what each needs to reach given bits/dim",
		ArgsUsage: "RESULTS_DIR[=LABEL] ...",
		Description: "Reads each run's config.json and test.csv (driver train's --results_dir). Writes --out_prefix-images.png " +
			"(test bits/dim against images seen: step × batch size) and --out_prefix-seconds.png (against training seconds), and " +
			"prints a markdown table: for each --reach target, the images and seconds each run needed to first evaluate at or below it, " +
			"and their ratio to the first run's. Runs must have evaluated the same test set for the comparison to mean anything.",
		Flags: []cli.Flag{
			&cli.StringFlag{Name: "out_prefix", Value: "compare", Usage: "path prefix of the two PNG plots"},
			&cli.StringFlag{Name: "reach", Value: "3,2.5,2,1.5", Usage: "bits/dim targets of the table, comma-separated"},
			&cli.StringFlag{Name: "title", Usage: "plot title"},
		},
		Action: func(c *cli.Context) error {
			if c.NArg() == 0 {
				return fmt.Errorf("compare needs at least one results directory")
			}
			var runs []compareRun
			for _, a := range c.Args().Slice() {
				r, err := readCompareRun(a)
				if err != nil {
					return err
				}
				runs = append(runs, r)
			}
			var targets []float64
			for _, s := range strings.Split(c.String("reach"), ",") {
				v, err := strconv.ParseFloat(strings.TrimSpace(s), 64)
				if err != nil || !(v > 0) {
					return fmt.Errorf("--reach: %q is not a positive number", s)
				}
				targets = append(targets, v)
			}
			prefix := c.String("out_prefix")
			for _, x := range []string{"images", "seconds"} {
				if err := writeComparePlot(runs, x, prefix+"-"+x+".png", c.String("title")); err != nil {
					return err
				}
			}
			writeReachTable(c.App.Writer, runs, targets)
			fmt.Fprintf(c.App.Writer, "\nplots: %s-images.png, %s-seconds.png\n", prefix, prefix)
			return nil
		},
	}
}

// writeReachTable prints, per target, each run's images and seconds to first reach it and the
// ratios to the first run.
func writeReachTable(w io.Writer, runs []compareRun, targets []float64) {
	fmt.Fprintln(w, "| run | best test bits/dim | "+joinTargets(targets)+" |")
	fmt.Fprintln(w, "|---|---:|"+strings.Repeat("---|", len(targets)))
	for _, r := range runs {
		best := math.Inf(1)
		for _, b := range r.bits {
			best = min(best, b)
		}
		row := fmt.Sprintf("| %s | %.4f |", r.label, best)
		for _, t := range targets {
			im, s, ok := r.reach(t)
			if !ok {
				row += " not reached |"
				continue
			}
			cell := fmt.Sprintf(" %.0fk images, %.0f s", im/1e3, s)
			if im0, s0, ok0 := runs[0].reach(t); ok0 && r.label != runs[0].label {
				cell += fmt.Sprintf(" (×%.2f, ×%.2f)", im/im0, s/s0)
			}
			row += cell + " |"
		}
		fmt.Fprintln(w, row)
	}
}

func joinTargets(ts []float64) string {
	parts := make([]string, len(ts))
	for i, t := range ts {
		parts[i] = fmt.Sprintf("to %g bits/dim: images, seconds (ratio to the first run)", t)
	}
	return strings.Join(parts, " | ")
}

// writeComparePlot draws every run's test curve against x ("images" or "seconds").
func writeComparePlot(runs []compareRun, x, path, title string) error {
	p := plot.New()
	p.Title.Text = title
	p.X.Label.Text = map[string]string{"images": "images seen", "seconds": "training seconds"}[x]
	p.Y.Label.Text = "test bits/dim"
	p.Add(plotter.NewGrid())
	p.Legend.Top = true
	palette := []color.Color{
		color.RGBA{31, 119, 180, 255}, color.RGBA{214, 39, 40, 255}, color.RGBA{44, 160, 44, 255},
		color.RGBA{148, 103, 189, 255}, color.RGBA{255, 127, 14, 255}, color.RGBA{140, 86, 75, 255},
		color.RGBA{127, 127, 127, 255}, color.RGBA{23, 190, 207, 255},
	}
	lo, hi := math.Inf(1), math.Inf(-1)
	for i, r := range runs {
		xs := r.images
		if x == "seconds" {
			xs = r.secs
		}
		var xy plotter.XYs
		for j := range xs {
			xy = append(xy, plotter.XY{X: xs[j], Y: r.bits[j]})
			lo, hi = min(lo, r.bits[j]), max(hi, r.bits[j])
		}
		l, sc, err := plotter.NewLinePoints(xy)
		if err != nil {
			return fmt.Errorf("compare plot: %s: %v", r.label, err)
		}
		col := palette[i%len(palette)]
		l.Color, l.Width = col, vg.Points(1.2)
		sc.GlyphStyle.Color, sc.GlyphStyle.Shape, sc.GlyphStyle.Radius = col, draw.CircleGlyph{}, vg.Points(2)
		p.Add(l, sc)
		p.Legend.Add(r.label, l, sc)
	}
	if lo > 0 && hi/lo > 3 {
		p.Y.Scale = plot.LogScale{}
		p.Y.Tick.Marker = logTicks{}
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil && filepath.Dir(path) != "." {
		return err
	}
	return p.Save(18*vg.Centimeter, 11*vg.Centimeter, path)
}
