package main

import (
	"encoding/json"
	"fmt"
	"time"

	"dlf/autodiff/optim"
	"dlf/dlf"
	"dlf/tensor"
	"dlf/tensor/device"
	"dlf/train"

	"github.com/urfave/cli/v2"
)

// loadedModel is a model restored from a checkpoint for eval, sample and interpolate.
type loadedModel struct {
	dev  *device.Device
	m    *dlf.Model
	info train.CheckpointInfo
}

// checkpointFlags are the flags of the commands that read a trained model.
func checkpointFlags() []cli.Flag {
	return []cli.Flag{
		&cli.StringFlag{Name: "checkpoint", Usage: "a .safetensors checkpoint, or a training --results_dir (then --which picks the file)"},
		&cli.StringFlag{Name: "which", Value: "best", Usage: "with a results directory: best (lowest test bits/dim) or last"},
		&cli.BoolFlag{Name: "ema", Usage: "use the parameters' moving average instead of the trained values (default: what the run evaluated with, its eval_average)"},
		deviceFlag,
	}
}

// checkpointArgs holds the validated checkpoint flags.
type checkpointArgs struct {
	path, kind string
	ema        bool
	info       train.CheckpointInfo
}

// parseCheckpointArgs validates the checkpoint flags and reads the checkpoint's configuration,
// without building anything.
func parseCheckpointArgs(c *cli.Context) (checkpointArgs, error) {
	var a checkpointArgs
	var err error
	if a.path, err = train.ResolveCheckpoint(c.String("checkpoint"), c.String("which")); err != nil {
		return a, err
	}
	if a.kind, err = device.Resolve(c.String("device")); err != nil {
		return a, err
	}
	if a.info, err = train.ReadCheckpointInfo(a.path); err != nil {
		return a, err
	}
	// Unset, --ema follows the run: a run that evaluated and sampled with its moving average
	// (Config.EvalAverage, the fast recipe) is evaluated and sampled the same way here, so the
	// figures match its test.csv.
	a.ema = c.Bool("ema")
	if !c.IsSet("ema") {
		a.ema = a.info.Config.EvalAverage && a.info.Config.PolyakDecay > 0
	}
	return a, nil
}

// load builds the checkpoint's model on its device.
func (a checkpointArgs) load() (*loadedModel, error) {
	dev, err := device.Open(a.kind)
	if err != nil {
		return nil, err
	}
	lm := &loadedModel{dev: dev}
	err = dev.Do(func() error {
		m, err := dlf.New(a.info.Config, dev.Backend, tensor.Float32)
		if err != nil {
			return configError(err)
		}
		var ema *optim.EMA
		if a.ema {
			if a.info.Config.PolyakDecay == 0 {
				return fmt.Errorf("--ema: the checkpoint %s was trained without a moving average (polyak_decay 0)", a.path)
			}
			if ema, err = optim.NewEMA(a.info.Config.PolyakDecay, m.OptimParams()); err != nil {
				return err
			}
		}
		if lm.info, err = train.LoadCheckpoint(a.path, m, nil, ema); err != nil {
			return err
		}
		if ema != nil {
			ema.Swap()
		}
		lm.m = m
		return nil
	})
	if err != nil {
		dev.Close()
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
	cfg := a.info.Config
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
	seed := cfg.Seed ^ train.TestSeedSalt
	if c.IsSet("seed") {
		seed = c.Uint64("seed")
	}
	ds, err := spec.open(split)
	if err != nil {
		return err
	}
	if err := train.CheckDataset(cfg, ds, split); err != nil {
		return fmt.Errorf("checkpoint %s does not fit the data: %v", a.path, err)
	}
	if ds, err = subset(ds, c.Int("subset"), "--subset"); err != nil {
		return err
	}
	lm, err := a.load()
	if err != nil {
		return err
	}
	defer lm.dev.Close()
	start := time.Now()
	ev, err := train.Evaluate(lm.dev, lm.m, ds, batch, seed, k, nil)
	if err != nil {
		return err
	}
	secs := time.Since(start).Seconds()
	if c.Bool("json") {
		b, _ := json.Marshal(map[string]any{
			"checkpoint": a.path, "step": lm.info.State.Step, "problem": cfg.Problem, "split": split, "images": ev.Images,
			"dequant_samples": k, "bits_per_dim": ev.Bits, "bits_per_dim_bound": ev.Bound, "l2_loss": ev.L2,
			"device": lm.dev.Desc, "seconds": secs,
		})
		fmt.Fprintln(c.App.Writer, string(b))
		return nil
	}
	fmt.Fprintf(c.App.Writer, "checkpoint %s (step %d): %s %s, %d images, %d dequantisation sample(s) per image, %s [%.1fs]\n",
		a.path, lm.info.State.Step, cfg.Problem, split, ev.Images, k, lm.dev.Desc, secs)
	fmt.Fprintf(c.App.Writer, "bits/dim %.4f\n", ev.Bits)
	if k > 1 {
		fmt.Fprintf(c.App.Writer, "bits/dim %.4f (%d-sample bound)\n", ev.Bound, k)
	}
	return nil
}
