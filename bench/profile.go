package bench

import (
	"sort"
	"time"

	"dlf/dlf"
	"dlf/tensor/probe"
)

// opTiming accumulates the profile of one (layer group, pass).
type opTiming struct {
	layers map[string]bool
	ops    int
	sec    float64
	flops  float64
	bytes  float64
}

// layerProfile is the per-(group, pass) profile in the order the rows first ran.
type layerProfile struct {
	groups map[[2]string]*opTiming
	order  [][2]string
}

// add records one op of a layer in a pass.
func (p *layerProfile) add(layer, group, pass string, sec float64, r *probe.Record) {
	key := [2]string{group, pass}
	g := p.groups[key]
	if g == nil {
		g = &opTiming{layers: map[string]bool{}}
		p.groups[key] = g
		p.order = append(p.order, key)
	}
	g.layers[layer] = true
	g.ops++
	g.sec += sec
	g.flops += r.Flops
	g.bytes += r.Bytes
}

// timeOp runs one op and returns its time: device time between events on a GPU, wall time on the
// CPU, whose ops are synchronous.
func (mb *modelBench) timeOp(run func()) (float64, bool) {
	if mb.dev.GPU != nil {
		d, err := mb.dev.GPU.Time(run)
		return d.Seconds(), err == nil
	}
	start := time.Now()
	run()
	return time.Since(start).Seconds(), true
}

// profile runs iters steps (forward, backward, optimizer update) with every op timed on its own and
// attributed to its layer.
func (mb *modelBench) profile(iters int) (*layerProfile, error) {
	p := &layerProfile{groups: map[[2]string]*opTiming{}}
	var lt *dlf.LayerTracker
	mb.pb.SetHook(func(r *probe.Record, run func()) {
		layer, _ := lt.Observe(r.Inputs)
		sec, ok := mb.timeOp(run)
		if !ok || r.Op == "download" || r.Op == "upload" {
			return // a failed timing, or the loss read-back: not a layer's work
		}
		group := LayerGroup(layer)
		if mb.phase == "update" {
			group = "optimizer"
		}
		p.add(layer, group, mb.phase, sec, r)
	})
	defer mb.pb.SetHook(nil)
	for range iters {
		lt = dlf.NewLayerTracker(mb.m, "input")
		if _, err := mb.fwdBwd(); err != nil {
			return nil, err
		}
		mb.phase = "update"
		lt = dlf.NewLayerTracker(mb.m, "optimizer")
		if err := mb.dev.Do(func() error { mb.opt.Step(1e-9); return mb.pb.Sync() }); err != nil {
			return nil, err
		}
		mb.opt.ZeroGrad()
	}
	return p, mb.pb.Err()
}

// summarise turns the profile into table rows (forward layers in model order, then backward in the
// order they ran, then the update) and the step's totals.
func (p *layerProfile) summarise(res *Result, floors Floors, iters int) {
	var step opTiming
	n := float64(iters)
	for _, k := range p.order {
		g := p.groups[k]
		g.sec, g.flops, g.bytes = g.sec/n, g.flops/n, g.bytes/n
		row := Row{Layer: k[0], Pass: k[1], Instances: len(g.layers), Ops: g.ops / iters, Ms: g.sec * 1e3,
			GFLOP: g.flops / 1e9, GB: g.bytes / 1e9, Floor: floors.Fraction(g.flops, g.bytes, g.sec)}
		if g.sec > 0 {
			row.GFLOPS, row.GBS = g.flops/g.sec/1e9, g.bytes/g.sec/1e9
		}
		res.Layers = append(res.Layers, row)
		if k[1] == "update" {
			res.Step.UpdateMs += g.sec * 1e3
			continue
		}
		step.flops += g.flops
		step.bytes += g.bytes
	}
	rank := map[string]int{"fwd": 0, "bwd": 1, "update": 2}
	sort.SliceStable(res.Layers, func(i, j int) bool { return rank[res.Layers[i].Pass] < rank[res.Layers[j].Pass] })
	res.Step.GFLOP, res.Step.GB = step.flops/1e9, step.bytes/1e9
	sec := res.Step.MsMedian / 1e3
	res.Step.GFLOPS = step.flops / sec / 1e9
	res.Step.Floor = floors.Fraction(step.flops, step.bytes, sec)
}
