package main

import (
	"dlf/train/fault"
	"encoding/json"
	"fmt"
	"io"
	"math"
	"sync/atomic"
	"time"

	"dlf/autodiff"
	"dlf/autodiff/optim"
	"dlf/data"
	"dlf/dlf"
	"dlf/tensor"

	"github.com/urfave/cli/v2"
)

// evalResult is the test metric of a model on a dataset.
type evalResult struct {
	// bits is the mean over images and dequantisation draws of the per-image bits/dim, the number
	// the reference reports.
	bits float64
	// bound is the K-draw bound −log2((1/K)·Σ_k p(x + u_k))/D averaged over images (Ho et al. 2019,
	// Flow++, §3.1's importance-weighted estimate with the uniform proposal): never above bits,
	// equal to it for K = 1, and closer to the discrete model's true bits/dim as K grows.
	bound float64
	// l2 is the L2 term of the loss (0 without l2_factor).
	l2 float64
	// images is how many images were evaluated (fewer than the set when stop interrupted it).
	images int
	draws  int
}

// evaluate computes the test metrics of m on ds with draws dequantisation noise draws per image,
// from the Philox stream seed (starting at offset 0, so repeated evaluations see the same noise).
// It stops early, returning what it has, when stop is set.
func evaluate(dev *device, m *dlf.Model, ds *data.Dataset, batch int, seed uint64, draws int, stop *atomic.Bool) (evalResult, error) {
	res := evalResult{draws: draws}
	loader, err := data.NewLoader(ds, data.LoaderConfig{BatchSize: batch, Epochs: 1})
	if err != nil {
		return res, err
	}
	defer loader.Close()
	cfg := m.Config()
	d := float64(cfg.Dims())
	var offset uint64
	var sumBits, sumBound float64
	for {
		if stop != nil && stop.Load() {
			break
		}
		b, err := loader.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			return res, err
		}
		// objs[k][i] is the objective (log-likelihood in nats) of image i under draw k.
		objs := make([][]float64, draws)
		err = dev.do(func() error {
			cond, err := condition(m, b.Labels)
			if err != nil {
				return err
			}
			defer release(cond)
			for k := range objs {
				x, off, err := m.Preprocess(b.Images, b.N, false, seed, offset)
				if err != nil {
					return err
				}
				offset = off
				r, err := m.Forward(autodiff.NoGrad(), x, cond)
				x.Release()
				if err != nil {
					return err
				}
				objs[k] = r.Objective.Value.Float64s()
				if r.L2 != nil {
					res.l2 = r.L2.Value.Item()
				}
				r.Release()
			}
			return dev.be.Err()
		})
		if err != nil {
			return res, err
		}
		fault.Point(fault.TestBatch)
		for i := 0; i < b.N; i++ {
			mx := math.Inf(-1)
			for k := range objs {
				sumBits += -objs[k][i] / (d * math.Ln2)
				mx = max(mx, objs[k][i])
			}
			s := 0.0
			for k := range objs {
				s += math.Exp(objs[k][i] - mx)
			}
			lme := mx + math.Log(s/float64(draws))
			sumBound += -lme / (d * math.Ln2)
		}
		res.images += b.N
	}
	if res.images > 0 {
		res.bits = sumBits / float64(res.images*draws)
		res.bound = sumBound / float64(res.images)
	}
	return res, nil
}

// loadedModel is a model restored from a checkpoint for eval, sample and interpolate.
type loadedModel struct {
	dev  *device
	m    *dlf.Model
	info checkpointInfo
}

// checkpointFlags are the flags of the commands that read a trained model.
func checkpointFlags() []cli.Flag {
	return []cli.Flag{
		&cli.StringFlag{Name: "checkpoint", Usage: "a .safetensors checkpoint, or a training --results_dir (then --which picks the file)"},
		&cli.StringFlag{Name: "which", Value: "best", Usage: "with a results directory: best (lowest test bits/dim) or last"},
		&cli.BoolFlag{Name: "ema", Usage: "use the parameters' moving average instead of the trained values"},
		deviceFlag,
	}
}

// checkpointArgs holds the validated checkpoint flags.
type checkpointArgs struct {
	path, kind string
	ema        bool
	info       checkpointInfo
}

// parseCheckpointArgs validates the checkpoint flags and reads the checkpoint's configuration,
// without building anything.
func parseCheckpointArgs(c *cli.Context) (checkpointArgs, error) {
	var a checkpointArgs
	var err error
	if a.path, err = resolveCheckpoint(c.String("checkpoint"), c.String("which")); err != nil {
		return a, err
	}
	if a.kind, err = resolveDevice(c.String("device")); err != nil {
		return a, err
	}
	a.ema = c.Bool("ema")
	if a.info, err = readCheckpointInfo(a.path); err != nil {
		return a, err
	}
	return a, nil
}

// load builds the checkpoint's model on its device.
func (a checkpointArgs) load() (*loadedModel, error) {
	dev, err := openDevice(a.kind)
	if err != nil {
		return nil, err
	}
	lm := &loadedModel{dev: dev}
	err = dev.do(func() error {
		m, err := dlf.New(a.info.cfg, dev.be, tensor.Float32)
		if err != nil {
			return configError(err)
		}
		var ema *optim.EMA
		if a.ema {
			if a.info.cfg.PolyakDecay == 0 {
				return fmt.Errorf("--ema: the checkpoint %s was trained without a moving average (polyak_decay 0)", a.path)
			}
			if ema, err = optim.NewEMA(a.info.cfg.PolyakDecay, m.OptimParams()); err != nil {
				return err
			}
		}
		if lm.info, err = loadCheckpoint(a.path, m, nil, ema); err != nil {
			return err
		}
		if ema != nil {
			ema.Swap()
		}
		lm.m = m
		return nil
	})
	if err != nil {
		dev.close()
		return nil, err
	}
	return lm, nil
}

func evalCommand() *cli.Command {
	return &cli.Command{
		Name:  "eval",
		Usage: "test bits/dim of a checkpoint on a dataset split",
		Flags: append(append(checkpointFlags(), problemFlags()...),
			&cli.StringFlag{Name: "split", Value: "test", Usage: "train or test"},
			&cli.IntFlag{Name: "dequant_samples", Value: 1, Usage: "dequantisation noise draws per image (K > 1 also reports the tighter K-draw bound)"},
			&cli.IntFlag{Name: "batch_size", Usage: "images per forward pass (default: the checkpoint's training batch)"},
			&cli.IntFlag{Name: "subset", Usage: "evaluate the first N images only (0: all)"},
			&cli.Uint64Flag{Name: "seed", Usage: "seed of the dequantisation noise (default: the one training used for its test set)"},
			&cli.BoolFlag{Name: "json", Usage: "print the result as JSON"},
		),
		Action: runEval,
	}
}

func runEval(c *cli.Context) error {
	if c.NArg() > 0 {
		return fmt.Errorf("eval takes no arguments, got %q", c.Args().First())
	}
	a, err := parseCheckpointArgs(c)
	if err != nil {
		return err
	}
	cfg := a.info.cfg
	spec, err := parseDataSpec(c, cfg.Problem)
	if err != nil {
		return err
	}
	spec.fitTo(cfg)
	split := c.String("split")
	if split != "train" && split != "test" {
		return fmt.Errorf("--split %q: want train or test", split)
	}
	k := c.Int("dequant_samples")
	if k < 1 {
		return fmt.Errorf("--dequant_samples %d: want at least 1", k)
	}
	batch := cfg.BatchSize
	if c.IsSet("batch_size") {
		if batch = c.Int("batch_size"); batch < 1 {
			return fmt.Errorf("--batch_size %d: want at least 1", batch)
		}
	}
	if c.Int("subset") < 0 {
		return fmt.Errorf("--subset %d is negative", c.Int("subset"))
	}
	seed := cfg.Seed ^ testSeedSalt
	if c.IsSet("seed") {
		seed = c.Uint64("seed")
	}
	ds, err := spec.open(split)
	if err != nil {
		return err
	}
	if err := checkDatasetFits(&cfg, ds, split); err != nil {
		return fmt.Errorf("checkpoint %s does not fit the data: %v", a.path, err)
	}
	if ds, err = subset(ds, c.Int("subset"), "--subset"); err != nil {
		return err
	}
	lm, err := a.load()
	if err != nil {
		return err
	}
	defer lm.dev.close()
	start := time.Now()
	ev, err := evaluate(lm.dev, lm.m, ds, batch, seed, k, nil)
	if err != nil {
		return err
	}
	secs := time.Since(start).Seconds()
	if c.Bool("json") {
		b, _ := json.Marshal(map[string]any{
			"checkpoint": a.path, "step": lm.info.state.Step, "problem": cfg.Problem, "split": split, "images": ev.images,
			"dequant_samples": k, "bits_per_dim": ev.bits, "bits_per_dim_bound": ev.bound, "l2_loss": ev.l2,
			"device": lm.dev.desc, "seconds": secs,
		})
		fmt.Fprintln(c.App.Writer, string(b))
		return nil
	}
	fmt.Fprintf(c.App.Writer, "checkpoint %s (step %d): %s %s, %d images, %d dequantisation sample(s) per image, %s [%.1fs]\n",
		a.path, lm.info.state.Step, cfg.Problem, split, ev.images, k, lm.dev.desc, secs)
	fmt.Fprintf(c.App.Writer, "bits/dim %.4f\n", ev.bits)
	if k > 1 {
		fmt.Fprintf(c.App.Writer, "bits/dim %.4f (%d-sample bound)\n", ev.bound, k)
	}
	return nil
}
