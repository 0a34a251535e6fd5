package main

import (
	"fmt"
	"strings"
	"text/tabwriter"
	"time"

	"dlf/dlf"
	"dlf/train"

	"github.com/urfave/cli/v2"
)

// runHostBench is bench --host: the step accounting of every preset of --presets (train.Account).
func runHostBench(c *cli.Context) error {
	steps, every := c.Int("steps"), c.Int("print_every")
	if steps < 2 || every < 1 {
		return fmt.Errorf("--steps %d, --print_every %d: want steps ≥ 2, print_every ≥ 1", steps, every)
	}
	var accs []*train.Accounting
	var names []string
	for _, name := range strings.Split(c.String("presets"), ",") {
		name = strings.TrimSpace(name)
		cfg, err := dlf.Preset(name)
		if err != nil {
			return fmt.Errorf("--presets: %v", trimPkg(err))
		}
		for _, f := range configFlags() {
			if c.IsSet(f.name()) {
				f.apply(c, &cfg)
			}
		}
		if err := configError(cfg.Validate()); err != nil {
			return err
		}
		acc, err := train.Account(cfg, steps, every, c.Bool("cuda_graph"))
		if err != nil {
			return fmt.Errorf("--host, preset %s: %w", name, err)
		}
		accs, names = append(accs, acc), append(names, name)
	}
	w := tabwriter.NewWriter(c.App.Writer, 2, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintf(c.App.Writer, "host side of a training step on CUDA, %d steps after the first; per step between print points (every %d steps) and at them\n", steps-1, every)
	fmt.Fprintln(w, "preset\tbatch\tlaunches\tgraph launches\thost-blocking\tdownloads\tasync copies\tallocs+frees\tworker hand-offs\twall µs (median)\thost µs outside cuGraphLaunch\tat print points: blocking\tdownloads\t")
	for i, a := range accs {
		between := a.Between()
		if len(between) == 0 {
			between = a.Steps
		}
		b := between[len(between)-1].Counters
		var pb, pr string
		for _, s := range a.Steps {
			if s.Step%a.PrintEvery == 0 {
				pb, pr = fmt.Sprint(s.Counters.Blocking()), fmt.Sprint(s.Counters.Reads)
			}
		}
		wall := float64(train.MedianWall(between)) / float64(time.Microsecond)
		host := float64(train.MedianHost(between)) / float64(time.Microsecond)
		fmt.Fprintf(w, "%s\t%d\t%d\t%d\t%d\t%d\t%d\t%d\t%d\t%.0f\t%.0f\t%s\t%s\t\n", names[i], a.Config.BatchSize, b.Launches, b.GraphLaunches, b.Blocking(), b.Reads,
			b.AsyncCopies, b.Allocs+b.Frees, b.Hops, wall, host, pb, pr)
	}
	return w.Flush()
}
