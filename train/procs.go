package train

// One process per rank (Options.Dist "mpi" or "nccl"; group.go joins the job). Each process holds
// one rank; what the in-process ranks share by memory — rank 0's initial parameters, the check that
// the replicas are identical, every rank's loss — goes through the process group, and so do the decisions one process would take alone: a
// stop (a signal, a cancelled context, --max_time) and a time-based checkpoint are agreed after
// every step, so every rank takes the same branch and the collectives stay matched.

import (
	"fmt"
	"math"
	"time"

	"dlf/tensor/collective"
)

// local returns this process's rank r, or nil when rank r runs elsewhere.
func (d *ddp) local(r int) *rank {
	for _, rk := range d.ranks {
		if rk.r == r {
			return rk
		}
	}
	return nil
}

// gatherLosses returns every rank's loss of the step in rank order. Across processes it also
// agrees on stopping and checkpointing: one all-reduce of every rank's three metrics (zeros from
// the others, so the sums are exact) and of the two flags.
func (d *ddp) gatherLosses(t *Run) ([]stepResult, error) {
	out := make([]stepResult, d.world)
	if d.procs == nil {
		for _, rk := range d.ranks {
			out[rk.r] = rk.loss
		}
		return out, nil
	}
	rk := d.ranks[0]
	v := make([]float64, 3*d.world+2)
	v[3*rk.r], v[3*rk.r+1], v[3*rk.r+2] = rk.loss.loss, rk.loss.bits, rk.loss.l2
	if t.stopped() || (t.o.MaxTime > 0 && time.Since(t.sessionStart) >= t.o.MaxTime) {
		v[3*d.world] = 1
	}
	if time.Since(t.lastSave) >= t.o.CheckpointEvery {
		v[3*d.world+1] = 1
	}
	if err := d.procs.group.AllReduceFloat64(v, collective.Sum); err != nil {
		return nil, err
	}
	for r := range out {
		out[r] = stepResult{loss: v[3*r], bits: v[3*r+1], l2: v[3*r+2]}
	}
	d.agreedStop, d.agreedSave = v[3*d.world] > 0, v[3*d.world+1] > 0
	return out, nil
}

// broadcastProcesses copies rank 0's parameters and buffers to every process.
func (d *ddp) broadcastProcesses() error {
	defer d.procs.dog.guard("the start-up broadcast of rank 0's parameters")()
	rk := d.ranks[0]
	return rk.dev.Do(func() error {
		for _, p := range rk.m.Params() {
			v := p.Var.Value.Float32s()
			if err := d.procs.group.BroadcastFloat32(v, 0); err != nil {
				return err
			}
			if rk.r != 0 {
				p.Var.Value.Upload(v)
			}
		}
		return rk.dev.Backend.Err()
	})
}

// identicalProcesses checks every process's parameters against rank 0's, bit for bit; every rank
// learns how many differ, so all return the same verdict.
func (d *ddp) identicalProcesses() error {
	defer d.procs.dog.guard("the check that every rank holds rank 0's parameters")()
	rk := d.ranks[0]
	var first string
	err := rk.dev.Do(func() error {
		for _, p := range rk.m.Params() {
			v := p.Var.Value.Float32s()
			ref := append([]float32(nil), v...)
			if err := d.procs.group.BroadcastFloat32(ref, 0); err != nil {
				return err
			}
			for j := range v {
				if first == "" && math.Float32bits(v[j]) != math.Float32bits(ref[j]) {
					first = fmt.Sprintf("rank %d parameter %s[%d] is %g, rank 0 has %g", rk.r, p.Name, j, v[j], ref[j])
				}
			}
		}
		return nil
	})
	if err != nil {
		return err
	}
	bad := []float64{0}
	if first != "" {
		bad[0] = 1
	}
	if err := d.procs.group.AllReduceFloat64(bad, collective.Sum); err != nil {
		return err
	}
	switch {
	case first != "":
		return fmt.Errorf("%s", first)
	case bad[0] > 0:
		return fmt.Errorf("%g other rank(s) hold parameters that differ from rank 0's", bad[0])
	}
	return nil
}
