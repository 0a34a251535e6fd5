package train

// Deferred step metrics (issue 13). On a GPU, reading a step's loss makes the host wait for the
// whole step, so it cannot queue the next one while the device works. A step on a CUDA device
// therefore copies its loss and L2 term into a slot of a small device buffer and goes on; the host
// downloads the buffer — one synchronisation — only at flush points: steps.csv print points
// (--print_per_steps), evaluations, epoch ends, checkpoints, the end of the run, a full buffer,
// and at most every Options.RefreshEvery for the progress display. At a flush the steps are
// processed in order exactly as a step that read its loss at once would have been (epoch sums,
// Hooks.Step, steps.csv rows), so logs and checkpoints are the same bits.
//
// What a deferred step cannot do is refuse its own update when its loss is not finite. So a
// non-finite loss found at a flush makes the run restore its newest checkpoint (every checkpoint
// is taken after a flush, so it predates the bad step) and replay from there with a check after
// every step up to the bad one: the replay is bit-exact (the data order and noise are
// deterministic), reaches the same non-finite loss before its update, names the layer, and
// NaNPolicy applies as before. The replayed steps also check their gradients before updating, so
// an update that poisoned the parameters at a finite loss (it shows as a NaN loss one step later)
// is stopped at its own step, with the backward op named. The CPU backend reads losses at no cost,
// so its steps check at once.
//
// Data-parallel ranks in one process (devices, or virtual ranks on one device) defer the same way:
// each rank queues its loss into a slot of its own buffer, and a flush reads every rank's buffer and
// averages the slots as a step that read its ranks' losses would have (slotResult). Their gradient
// averaging (collective.DeviceReducer) never synchronises the host either, so such a step costs the
// host no round trip. Ranks in several processes still agree on their losses every step through the
// process group, which is also what lets them stop and checkpoint together.

import (
	"fmt"
	"math"
	"time"

	"dlf/tensor"
)

// deferCap bounds the steps a flush covers (the device buffer's slots).
const deferCap = 256

// pendingStep is a step whose metrics are not processed yet: what the host knew at the time, and
// the result when the step read it itself (CPU steps, data-parallel steps, replayed steps).
type pendingStep struct {
	step, epoch, epochStep, images int
	lr, ips, wait, seconds         float64
	known                          bool
	res                            stepResult
}

// deferred holds the device buffer of losses and the steps waiting for a flush.
type deferred struct {
	own   lossSlots // one device's slots (data-parallel ranks keep theirs in rank.slots)
	steps []pendingStep
	slots int // deferred steps among steps (the next free slot)
	last  time.Time
}

// defers reports whether this run defers its steps' metrics: CUDA devices in one process — one
// device, or data-parallel ranks in this process (each rank keeps its own slots; a flush reads them
// all). Ranks in several processes agree on their losses every step through the process group.
func (r *Run) defers() bool {
	return r.dev.GPU != nil && (r.ddp == nil || r.ddp.procs == nil)
}

// deferNext reports whether the next step may leave its metrics on the device.
func (r *Run) deferNext() bool { return r.defers() && !r.strict() && r.def.slots < deferCap }

// lossSlots is one device's buffer of deferred losses: slot k holds step k's loss and L2 term.
type lossSlots struct {
	buf  *tensor.Tensor // [1, 2·deferCap]
	zero *tensor.Tensor // [1, 1] zero, the L2 of a model without the term
}

// put queues the copies of a loss and L2 term (nil: none) into slot k; call inside the device's Do.
func (s *lossSlots) put(be tensor.Backend, k int, loss, l2 *tensor.Tensor) {
	if s.buf == nil {
		s.buf = tensor.Zeros(be, tensor.Float32, 1, 2*deferCap)
		s.zero = tensor.Zeros(be, tensor.Float32, 1, 1)
	}
	lv := loss.Reshape(1, 1)
	tensor.CopyChannels(s.buf, 2*k, lv, 0, 1)
	lv.Release()
	if l2 != nil {
		v := l2.Reshape(1, 1)
		tensor.CopyChannels(s.buf, 2*k+1, v, 0, 1)
		v.Release()
	} else {
		tensor.CopyChannels(s.buf, 2*k+1, s.zero, 0, 1)
	}
}

// release frees the buffers (inside the device's Do).
func (s *lossSlots) release() {
	release(s.buf, s.zero)
	s.buf, s.zero = nil, nil
}

// record queues the copies of a step's loss and L2 term (nil: none) into the next slot; call
// inside the device's Do. It returns false when the step must read its loss itself (strict, or the
// buffer is full).
func (r *Run) record(loss, l2 *tensor.Tensor) bool {
	if r.ddp != nil || !r.deferNext() {
		return false
	}
	r.def.own.put(r.dev.Backend, r.def.slots, loss, l2)
	r.takeSlot()
	return true
}

// takeSlot marks the next slot used, once every device of the step has queued its copies into it.
func (r *Run) takeSlot() {
	if r.def.last.IsZero() {
		r.def.last = time.Now()
	}
	r.def.slots++
}

// strict reports whether the next step must read its loss at once (a replay up to a bad step).
func (r *Run) strict() bool { return r.st.Step+1 <= r.strictThrough }

// flushDue reports whether the steps so far must be processed now.
func (r *Run) flushDue(printPoint bool) bool {
	if len(r.def.steps) == 0 {
		return false
	}
	if printPoint || r.def.slots == 0 || r.def.slots >= deferCap {
		return true
	}
	return r.o.RefreshEvery > 0 && time.Since(r.def.last) >= r.o.RefreshEvery
}

// flush processes the pending steps in order: their metrics (one download of the device buffer if
// any step deferred), the epoch sums, Hooks.Step and the steps.csv rows. A non-finite loss stops it
// with a *replayError naming that step; the steps after it are dropped with it.
func (r *Run) flush() error {
	if len(r.def.steps) == 0 {
		return nil
	}
	var vals []float32
	if r.def.slots > 0 {
		var err error
		if vals, err = r.deferredValues(); err != nil {
			return err
		}
	}
	steps := r.def.steps
	r.def.steps, r.def.slots, r.def.last = r.def.steps[:0], 0, time.Now()
	slot := 0
	for _, ps := range steps {
		res := ps.res
		if !ps.known {
			var bad bool
			res, bad = slotResult(vals, slot)
			slot++
			if bad {
				return &replayError{step: ps.step, loss: res.loss}
			}
		}
		r.st.Sums.add(res.loss, res.bits, res.l2, ps.images)
		if r.hooks.Step != nil {
			r.hooks.Step(StepStats{Step: ps.step, Epoch: ps.epoch, EpochStep: ps.epochStep, Loss: res.loss, BitsPerDim: res.bits,
				ImagesPerSec: ps.ips, DataWait: ps.wait, LR: ps.lr})
		}
		if ps.step%r.o.LogEvery == 0 || ps.step == 1 {
			if err := r.stepsLog.write(ps.epoch, ps.step, res.loss, res.bits, res.l2, ps.lr, ps.ips, ps.wait, ps.seconds); err != nil {
				return err
			}
		}
	}
	return nil
}

// deferredValues downloads the slots: one device's, or every data-parallel rank's in rank order
// (rank r's slot k at r·2·deferCap + 2k).
func (r *Run) deferredValues() ([]float32, error) {
	if r.ddp == nil {
		var vals []float32
		err := r.dev.Do(func() error {
			vals = r.def.own.buf.Float32s()
			return r.dev.Backend.Err()
		})
		return vals, err
	}
	d := r.ddp
	vals := make([]float32, 2*deferCap*d.world)
	err := d.each(func(rk *rank) error {
		copy(vals[2*deferCap*rk.r:], rk.slots.buf.Float32s())
		return rk.dev.Backend.Err()
	})
	return vals, err
}

// slotResult is the step metrics of slot k: its loss and L2 term, or for data-parallel ranks
// (len(vals) a multiple of the slots of one device) their mean over the ranks, computed as
// stepDDP computes it. bad reports a non-finite loss on any rank; res.loss is then the first such
// rank's, as the strict step reports it.
func slotResult(vals []float32, k int) (res stepResult, bad bool) {
	world := len(vals) / (2 * deferCap)
	for r := 0; r < world; r++ {
		l := stepResult{loss: float64(vals[r*2*deferCap+2*k]), l2: float64(vals[r*2*deferCap+2*k+1])}
		l.bits = l.loss - l.l2
		if math.IsNaN(l.loss) || math.IsInf(l.loss, 0) {
			return l, true
		}
		// With one device world = 1 and the divisions are exact: res is l.
		res.loss += l.loss / float64(world)
		res.bits += l.bits / float64(world)
		res.l2 += l.l2 / float64(world)
	}
	return res, false
}

// replayError is a non-finite loss found at a flush, after later steps may have updated the model
// with it.
type replayError struct {
	step int
	loss float64
}

func (e *replayError) Error() string {
	return fmt.Sprintf("step %d: the loss is %v (found at a flush; the run replays from its newest checkpoint)", e.step, e.loss)
}

// replay restores the newest checkpoint and arranges for the steps up to the bad one to read their
// losses at once, so that the bad step is caught before its update, as a non-deferred step is.
func (r *Run) replay(e *replayError) error {
	last, err := ListCheckpoints(r.o.Results)
	if err != nil || len(last) == 0 {
		return fmt.Errorf("%v; and no checkpoint to replay from: %v", e, err)
	}
	var info CheckpointInfo
	err = r.dev.Do(func() error {
		var err error
		info, err = LoadCheckpoint(last[0], r.m, r.opt, r.ema)
		return err
	})
	if err != nil {
		return fmt.Errorf("%v; restoring %s failed: %v", e, last[0], err)
	}
	secs := r.seconds()
	if r.ddp != nil {
		if err := r.ddp.loadReplicas(last[0]); err != nil {
			return fmt.Errorf("%v; restoring %s failed: %v", e, last[0], err)
		}
	}
	r.st = info.State
	r.secondsBase, r.sessionStart = secs, time.Now()
	r.strictThrough = e.step
	r.say("step %d: the loss is %v; replaying from %s (step %d), checking every step, to find where it came from\n", e.step, e.loss, last[0], r.st.Step)
	if r.lead() {
		return r.openLogs()
	}
	return nil
}
