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
// NaNPolicy applies as before. The CPU backend reads losses at no cost, so its steps check at once.

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
	buf   *tensor.Tensor // [1, 2·deferCap]: loss, L2 per slot
	zero  *tensor.Tensor // [1, 1] zero, the L2 of a model without the term
	steps []pendingStep
	slots int // deferred steps among steps (the next free slot)
	last  time.Time
}

// defers reports whether this run defers its steps' metrics: one process with one CUDA device
// (data-parallel steps already agree on their losses every step).
func (r *Run) defers() bool { return r.ddp == nil && r.dev.GPU != nil }

// ensureDeferred allocates the device buffer (inside the device's Do).
func (r *Run) ensureDeferred() {
	if r.def.buf == nil {
		be := r.dev.Backend
		r.def.buf = tensor.Zeros(be, tensor.Float32, 1, 2*deferCap)
		r.def.zero = tensor.Zeros(be, tensor.Float32, 1, 1)
		r.def.last = time.Now()
	}
}

// record queues the copies of a step's loss and L2 term (nil: none) into the next slot; call
// inside the device's Do. It returns false when the step must read its loss itself (strict, or the
// buffer is full).
func (r *Run) record(loss, l2 *tensor.Tensor) bool {
	if !r.defers() || r.strict() || r.def.slots >= deferCap {
		return false
	}
	r.ensureDeferred()
	k := r.def.slots
	lv := loss.Reshape(1, 1)
	tensor.CopyChannels(r.def.buf, 2*k, lv, 0, 1)
	lv.Release()
	if l2 != nil {
		v := l2.Reshape(1, 1)
		tensor.CopyChannels(r.def.buf, 2*k+1, v, 0, 1)
		v.Release()
	} else {
		tensor.CopyChannels(r.def.buf, 2*k+1, r.def.zero, 0, 1)
	}
	r.def.slots++
	return true
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
		if err := r.dev.Do(func() error {
			vals = r.def.buf.Float32s()
			return r.dev.Backend.Err()
		}); err != nil {
			return err
		}
	}
	steps := r.def.steps
	r.def.steps, r.def.slots, r.def.last = r.def.steps[:0], 0, time.Now()
	slot := 0
	for _, ps := range steps {
		res := ps.res
		if !ps.known {
			res = stepResult{loss: float64(vals[2*slot]), l2: float64(vals[2*slot+1])}
			res.bits = res.loss - res.l2
			slot++
			if math.IsNaN(res.loss) || math.IsInf(res.loss, 0) {
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
	r.st = info.State
	r.secondsBase, r.sessionStart = secs, time.Now()
	r.strictThrough = e.step
	r.say("step %d: the loss is %v; replaying from %s (step %d), checking every step, to find where it came from\n", e.step, e.loss, last[0], r.st.Step)
	if r.lead() {
		return r.openLogs()
	}
	return nil
}
