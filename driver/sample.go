package main

import (
	"fmt"
	"math"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"dlf/data"
	"dlf/dlf"
	"dlf/tensor"
	"dlf/tensor/device"
	"dlf/train"

	"github.com/urfave/cli/v2"
)

// gridCols is the number of columns of an n-image grid: as square as possible.
func gridCols(n int) int { return int(math.Ceil(math.Sqrt(float64(n)))) }

// sampleLabels returns the class of each grid cell for a class-conditional model: row r shows
// class r mod classes, so each row of a 10×10 MNIST grid is one digit.
func sampleLabels(n, cols, classes int, fixed int) []int32 {
	out := make([]int32, n)
	for i := range out {
		if fixed >= 0 {
			out[i] = int32(fixed)
		} else {
			out[i] = int32((i / cols) % classes)
		}
	}
	return out
}

// samplePixels draws n images at temperature temp (applied as mode says; "" is the model's
// temperature_mode) from the Philox stream seed (offset 0) and returns them as NHWC uint8 pixels.
func samplePixels(dev *device.Device, m *dlf.Model, n int, temp float64, mode string, seed uint64, class int) ([]uint8, error) {
	cfg := m.Config()
	var pix []uint8
	err := dev.Do(func() error {
		var cond *tensor.Tensor
		if cfg.Conditioning {
			var err error
			if cond, err = m.OneHot(sampleLabels(n, gridCols(n), cfg.NumClasses, class)); err != nil {
				return err
			}
			defer cond.Release()
		}
		x, _, err := m.Sample(n, temp, mode, cond, seed, 0)
		if err != nil {
			return err
		}
		pix = m.Postprocess(x)
		x.Release()
		return dev.Backend.Err()
	})
	return pix, err
}

// writeSampleGrid writes a grid of n samples at temperature temp to path (PNG).
func writeSampleGrid(dev *device.Device, m *dlf.Model, n int, temp float64, seed uint64, path string) error {
	pix, err := samplePixels(dev, m, n, temp, "", seed, -1)
	if err != nil {
		return fmt.Errorf("sampling at temperature %g: %w", temp, err)
	}
	cfg := m.Config()
	img, err := gridImage(pix, n, cfg.ImageH, cfg.ImageW, cfg.ImageC, gridCols(n))
	if err != nil {
		return err
	}
	return writePNG(path, img)
}

func fmtTemps(ts []float64) string {
	s := make([]string, len(ts))
	for i, t := range ts {
		s[i] = strconv.FormatFloat(t, 'g', -1, 64)
	}
	return strings.Join(s, ", ")
}

func sampleCommand() *cli.Command {
	return &cli.Command{
		Name:  "sample",
		Usage: "draw samples from a checkpoint into PNG grids, one per temperature",
		Flags: append(checkpointFlags(),
			&cli.IntFlag{Name: "n", Value: 64, Usage: "samples per grid"},
			&cli.StringFlag{Name: "temperatures", Value: "0.7", Usage: "comma-separated sampling temperatures"},
			&cli.StringFlag{Name: "out", Value: "samples.png", Usage: "output PNG; with several temperatures, _T<t> is added before .png"},
			&cli.Uint64Flag{Name: "seed", Value: 1, Usage: "seed of the latent noise"},
			&cli.IntFlag{Name: "class", Value: -1, Usage: "class of every sample for a class-conditional model (-1: row r shows class r)"},
			&cli.StringFlag{Name: "temperature_mode", Usage: "top: scale only the top latent (DLF); all: every level (Glow) (default: the checkpoint's)"},
		),
		Action: runSample,
	}
}

func runSample(c *cli.Context) error {
	if c.NArg() > 0 {
		return fmt.Errorf("sample takes no arguments, got %q", c.Args().First())
	}
	a, err := parseCheckpointArgs(c)
	if err != nil {
		return err
	}
	n := c.Int("n")
	if n < 1 {
		return fmt.Errorf("--n %d: want at least 1 sample", n)
	}
	temps, err := parseTemperatures(c.String("temperatures"))
	if err != nil {
		return err
	}
	out := c.String("out")
	if !strings.HasSuffix(strings.ToLower(out), ".png") {
		return fmt.Errorf("--out %s: want a .png file name", out)
	}
	class := c.Int("class")
	if class < -1 || (class >= 0 && (!a.info.Config.Conditioning || class >= a.info.Config.NumClasses)) {
		if !a.info.Config.Conditioning {
			return fmt.Errorf("--class %d: the checkpoint's model is not class-conditional", class)
		}
		return fmt.Errorf("--class %d: want -1 or 0..%d", class, a.info.Config.NumClasses-1)
	}
	mode := c.String("temperature_mode")
	if mode != "" && mode != dlf.TemperatureTop && mode != dlf.TemperatureAll {
		return fmt.Errorf("--temperature_mode %q: want %s or %s", mode, dlf.TemperatureTop, dlf.TemperatureAll)
	}
	lm, err := a.load()
	if err != nil {
		return err
	}
	defer lm.dev.Close()
	cfg := lm.m.Config()
	for _, temp := range temps {
		path := out
		if len(temps) > 1 {
			path = strings.TrimSuffix(out, filepath.Ext(out)) + fmt.Sprintf("_T%g", temp) + filepath.Ext(out)
		}
		pix, err := samplePixels(lm.dev, lm.m, n, temp, mode, c.Uint64("seed"), class)
		if err != nil {
			return fmt.Errorf("sampling at temperature %g: %w", temp, err)
		}
		img, err := gridImage(pix, n, cfg.ImageH, cfg.ImageW, cfg.ImageC, gridCols(n))
		if err != nil {
			return err
		}
		if err := writePNG(path, img); err != nil {
			return err
		}
		fmt.Fprintf(c.App.Writer, "%s: %d samples at temperature %g (%d×%d grid of %d×%d×%d images)\n",
			path, n, temp, gridCols(n), (n+gridCols(n)-1)/gridCols(n), cfg.ImageH, cfg.ImageW, cfg.ImageC)
	}
	return nil
}

func interpolateCommand() *cli.Command {
	return &cli.Command{
		Name:  "interpolate",
		Usage: "encode two images, walk the straight line between their latents, decode: a PNG strip",
		Description: "Each end is an image file (PNG/JPEG, resized to the model's size) given as --a/--b, or a dataset " +
			"image given as --a_index/--b_index of --split. The strip shows image a, the decoded points of the path " +
			"(t = 0 … 1 in --steps steps, in the normalised multi-level latent space), then image b.",
		Flags: append(append(checkpointFlags(), problemFlags()...),
			&cli.StringFlag{Name: "a", Usage: "first image file"},
			&cli.StringFlag{Name: "b", Usage: "second image file"},
			&cli.IntFlag{Name: "a_index", Value: -1, Usage: "first image as an index into --split of the dataset"},
			&cli.IntFlag{Name: "b_index", Value: -1, Usage: "second image as an index into --split of the dataset"},
			&cli.StringFlag{Name: "split", Value: "test", Usage: "dataset split of the indices: train or test"},
			&cli.IntFlag{Name: "steps", Value: 8, Usage: "points on the path, ends included"},
			&cli.IntFlag{Name: "class", Value: -1, Usage: "class label for a class-conditional model (default: the dataset label of image a)"},
			&cli.StringFlag{Name: "out", Value: "interpolation.png", Usage: "output PNG"},
		),
		Action: runInterpolate,
	}
}

// endpoint is one end of an interpolation.
type endpoint struct {
	pix   []uint8
	label int32 // −1: unknown
	desc  string
}

func runInterpolate(c *cli.Context) error {
	if c.NArg() > 0 {
		return fmt.Errorf("interpolate takes no arguments, got %q", c.Args().First())
	}
	a, err := parseCheckpointArgs(c)
	if err != nil {
		return err
	}
	cfg := a.info.Config
	steps := c.Int("steps")
	if steps < 2 {
		return fmt.Errorf("--steps %d: want at least 2 (the two ends)", steps)
	}
	out := c.String("out")
	if !strings.HasSuffix(strings.ToLower(out), ".png") {
		return fmt.Errorf("--out %s: want a .png file name", out)
	}
	var ds *data.Dataset
	needData := c.String("a") == "" || c.String("b") == ""
	if needData {
		spec, err := parseDataSpec(c, cfg.Problem)
		if err != nil {
			return err
		}
		spec.fitTo(cfg)
		split := c.String("split")
		if split != "train" && split != "test" {
			return fmt.Errorf("--split %q: want train or test", split)
		}
		if ds, err = spec.open(split); err != nil {
			return err
		}
		if err := train.CheckDataset(cfg, ds, split); err != nil {
			return fmt.Errorf("checkpoint %s does not fit the data: %v", a.path, err)
		}
	}
	ends := make([]endpoint, 2)
	for i, side := range []string{"a", "b"} {
		if ends[i], err = loadEndpoint(c, side, cfg, ds); err != nil {
			return err
		}
	}
	var cond []int32
	if cfg.Conditioning {
		label := int32(c.Int("class"))
		if label < 0 {
			label = ends[0].label
		}
		if label < 0 || int(label) >= cfg.NumClasses {
			return fmt.Errorf("--class: the model is class-conditional and image a has no dataset label; give --class 0..%d", cfg.NumClasses-1)
		}
		cond = []int32{label}
	} else if c.Int("class") >= 0 {
		return fmt.Errorf("--class %d: the checkpoint's model is not class-conditional", c.Int("class"))
	}

	lm, err := a.load()
	if err != nil {
		return err
	}
	defer lm.dev.Close()
	m := lm.m
	ts := make([]float64, steps)
	for i := range ts {
		ts[i] = float64(i) / float64(steps-1)
	}
	d := cfg.Dims()
	strip := make([]uint8, 0, (steps+2)*d)
	strip = append(strip, ends[0].pix...)
	err = lm.dev.Do(func() error {
		// The ends are dequantised with the same fixed noise, so the path is deterministic.
		xa, _, err := m.Preprocess(ends[0].pix, 1, false, cfg.Seed^train.SampleSeedSalt, 0)
		if err != nil {
			return err
		}
		defer xa.Release()
		xb, _, err := m.Preprocess(ends[1].pix, 1, false, cfg.Seed^train.SampleSeedSalt, 0)
		if err != nil {
			return err
		}
		defer xb.Release()
		var ct *tensor.Tensor
		if cond != nil {
			if ct, err = m.OneHot(cond); err != nil {
				return err
			}
			defer ct.Release()
		}
		xs, err := m.Interpolate(xa, xb, ct, ts)
		if err != nil {
			return err
		}
		for _, x := range xs {
			strip = append(strip, m.Postprocess(x)...)
			x.Release()
		}
		return lm.dev.Backend.Err()
	})
	if err != nil {
		return err
	}
	strip = append(strip, ends[1].pix...)
	img, err := gridImage(strip, steps+2, cfg.ImageH, cfg.ImageW, cfg.ImageC, steps+2)
	if err != nil {
		return err
	}
	if err := writePNG(out, img); err != nil {
		return err
	}
	fmt.Fprintf(c.App.Writer, "%s: %s, %d decoded points, %s (a strip of %d %d×%d×%d images)\n",
		out, ends[0].desc, steps, ends[1].desc, steps+2, cfg.ImageH, cfg.ImageW, cfg.ImageC)
	return nil
}

// loadEndpoint reads one end of an interpolation from a file or the dataset.
func loadEndpoint(c *cli.Context, side string, cfg dlf.Config, ds *data.Dataset) (endpoint, error) {
	file, idx := c.String(side), c.Int(side+"_index")
	switch {
	case file != "" && idx >= 0:
		return endpoint{}, fmt.Errorf("--%s and --%s_index both given: choose one", side, side)
	case file != "":
		if cfg.ImageH != cfg.ImageW {
			return endpoint{}, fmt.Errorf("--%s: image files can only be fitted to square models, this one is %d×%d", side, cfg.ImageH, cfg.ImageW)
		}
		b, err := os.ReadFile(file)
		if err != nil {
			return endpoint{}, fmt.Errorf("--%s: %v", side, err)
		}
		mode := data.ModeRGB
		if cfg.ImageC == 1 {
			mode = data.ModeGray
		}
		pix, h, w, err := data.DecodeImage(b, file, data.FolderOptions{Size: cfg.ImageH, CenterCrop: true, Mode: mode})
		if err != nil {
			return endpoint{}, fmt.Errorf("--%s: %v", side, trimPkg(err))
		}
		if h != cfg.ImageH || w != cfg.ImageW || len(pix) != cfg.Dims() {
			return endpoint{}, fmt.Errorf("--%s %s decodes to %d×%d, want %d×%d", side, file, h, w, cfg.ImageH, cfg.ImageW)
		}
		return endpoint{pix: pix, label: -1, desc: file}, nil
	case idx >= 0:
		if idx >= ds.N {
			return endpoint{}, fmt.Errorf("--%s_index %d is out of range: the split has %d images", side, idx, ds.N)
		}
		e := endpoint{pix: append([]uint8(nil), ds.Image(idx)...), label: -1, desc: fmt.Sprintf("image %d of %s", idx, ds.Source)}
		if ds.Labels != nil {
			e.label = ds.Labels[idx]
		}
		return e, nil
	}
	return endpoint{}, fmt.Errorf("interpolate needs --%s FILE or --%s_index N", side, side)
}
