package main

import (
	"fmt"
	"image/color"
	"math"
	"os"
	"path/filepath"
	"strconv"

	"dlf/train"

	"gonum.org/v1/plot"
	"gonum.org/v1/plot/plotter"
	"gonum.org/v1/plot/vg"
	"gonum.org/v1/plot/vg/draw"
)

// writeLossPlot draws bits/dim against training step from a run's CSV logs into path (PNG): the
// per-interval training loss of steps.csv as a thin line, the epoch means of train.csv and the test
// evaluations of test.csv as marked lines. It is redrawn from the files each epoch, so a resumed run
// plots its whole history.
func writeLossPlot(results, path, title string) error {
	series := []struct {
		file, label string
		col         color.Color
		points      bool
	}{
		{"steps.csv", "train (every print interval)", color.RGBA{160, 160, 160, 255}, false},
		{"train.csv", "train (epoch mean)", color.RGBA{31, 119, 180, 255}, true},
		{"test.csv", "test", color.RGBA{214, 39, 40, 255}, true},
	}
	p := plot.New()
	p.Title.Text = title
	p.X.Label.Text = "step"
	p.Y.Label.Text = "bits/dim"
	p.Add(plotter.NewGrid())
	p.Legend.Top = true
	any := false
	lo, hi := 0.0, 0.0
	for _, s := range series {
		cols, err := train.ReadCSVColumns(filepath.Join(results, s.file), "step", "bits_x")
		if err != nil {
			return err
		}
		if len(cols[0]) == 0 {
			continue
		}
		var xy plotter.XYs
		for i := range cols[0] {
			y := cols[1][i]
			if math.IsNaN(y) || math.IsInf(y, 0) {
				continue // a diverged evaluation; the CSV keeps it, the plot cannot
			}
			xy = append(xy, plotter.XY{X: cols[0][i], Y: y})
			if !any || y < lo {
				lo = y
			}
			if !any || y > hi {
				hi = y
			}
			any = true
		}
		if len(xy) == 0 {
			continue
		}
		l, err := plotter.NewLine(xy)
		if err != nil {
			return fmt.Errorf("loss plot: %s: %v", s.file, err)
		}
		l.Color = s.col
		l.Width = vg.Points(1)
		p.Add(l)
		p.Legend.Add(s.label, l)
		if s.points {
			sc, err := plotter.NewScatter(xy)
			if err != nil {
				return fmt.Errorf("loss plot: %s: %v", s.file, err)
			}
			sc.GlyphStyle.Color = s.col
			sc.GlyphStyle.Shape = draw.CircleGlyph{}
			sc.GlyphStyle.Radius = vg.Points(2.5)
			p.Add(sc)
		}
	}
	if !any {
		return nil
	}
	// Glow's first steps start near 8 bits/dim; a log axis keeps the later, slower decline readable.
	if lo > 0 && hi/lo > 3 {
		p.Y.Scale = plot.LogScale{}
		p.Y.Tick.Marker = logTicks{}
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return err
	}
	tmp := path + ".tmp.png"
	if err := p.Save(16*vg.Centimeter, 10*vg.Centimeter, tmp); err != nil {
		return fmt.Errorf("loss plot %s: %v", path, err)
	}
	return os.Rename(tmp, path)
}

// logTicks labels a log axis at 1, 2, 3 and 5 times each power of ten (finer over a narrow range),
// since bits/dim rarely spans more than a decade or two and plot.LogTicks labels only the powers.
type logTicks struct{}

// Ticks implements plot.Ticker.
func (logTicks) Ticks(lo, hi float64) []plot.Tick {
	mantissas := []float64{1, 2, 3, 5}
	if hi/lo < 20 {
		mantissas = []float64{1, 1.5, 2, 3, 4, 5, 6, 7, 8}
	}
	var ts []plot.Tick
	for p := math.Floor(math.Log10(lo)); p <= math.Ceil(math.Log10(hi)); p++ {
		for _, m := range mantissas {
			v := m * math.Pow(10, p)
			if v >= lo && v <= hi {
				ts = append(ts, plot.Tick{Value: v, Label: strconv.FormatFloat(v, 'g', -1, 64)})
			}
		}
	}
	return ts
}
