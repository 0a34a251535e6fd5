package train

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math"
	"path/filepath"
	"time"

	"dlf/autodiff"
	"dlf/data"
	"dlf/dlf"
	"dlf/tensor"
	"dlf/train/fault"
)

// Result is how a call of Run.Train ended.
type Result struct {
	// Reason says why training stopped, e.g. "--max_steps 100 reached" or "interrupted".
	Reason string
	// Step is the last step done; Checkpoint the file saved there.
	Step       int
	Checkpoint string
	// BestTest is the lowest test bits/dim so far, at BestStep (−1: none yet).
	BestTest float64
	BestStep int
}

// Train trains until the epochs or a budget (MaxSteps, MaxTime) run out, or ctx is cancelled, and
// saves a checkpoint where it stops. Cancelling ctx stops after the current step (or cuts a test
// evaluation short); the epoch end it interrupts is redone when the run is resumed. A non-finite
// loss is handled as Options.NaNPolicy says.
func (r *Run) Train(ctx context.Context) (Result, error) {
	r.ctx = ctx
	defer func() { r.ctx = nil }()
	// The flag lets a test evaluation in progress see the cancellation too.
	stopWatch := context.AfterFunc(ctx, func() { r.stop.Store(true) })
	defer stopWatch()
	r.stop.Store(ctx.Err() != nil)
	for {
		res, err := r.loop()
		r.def.steps, r.def.slots = r.def.steps[:0], 0
		var rp *replayError
		if errors.As(err, &rp) {
			if err := r.replay(rp); err != nil {
				return Result{Step: r.st.Step}, err
			}
			continue
		}
		var nf *nonFiniteError
		if !errors.As(err, &nf) {
			return res, err
		}
		if err := r.recover(nf); err != nil {
			return Result{Step: r.st.Step}, err
		}
	}
}

// stopped reports whether Train's context is cancelled (checked directly, so that a cancel that
// happens before a check is always seen by it).
func (r *Run) stopped() bool {
	if r.ctx != nil && r.ctx.Err() != nil {
		r.stop.Store(true)
	}
	return r.stop.Load()
}

// halted reports whether the loop must stop before the next step: this process was stopped, or,
// with one process per rank, some rank was (agreed after the last step, so all stop together).
func (r *Run) halted() bool {
	if r.procs != nil {
		return r.ddp.agreedStop
	}
	return r.stopped()
}

// say prints a report line, after the progress display has ended its own.
func (r *Run) say(format string, args ...any) {
	if r.hooks.Break != nil {
		r.hooks.Break()
	}
	fmt.Fprintf(r.hooks.Log, format, args...)
}

// recover handles a non-finite loss as NaNPolicy says: stop naming the last good checkpoint, or
// restore it with half the learning rate.
func (r *Run) recover(nf *nonFiniteError) error {
	last, lerr := ListCheckpoints(r.o.Results)
	if lerr != nil || len(last) == 0 {
		return fmt.Errorf("%v; and no checkpoint to restore: %v", nf, lerr)
	}
	if r.o.NaNPolicy == "stop" {
		info, _ := ReadCheckpointInfo(last[0])
		return fmt.Errorf("training stopped at %v; the last good checkpoint is %s (step %d): rerun to resume from it, with --nan_policy lower_lr or a lower --initial_lr", nf, last[0], info.State.Step)
	}
	r.say("diverged at %v\n", nf)
	scale := r.st.LRScale
	var info CheckpointInfo
	err := r.dev.Do(func() error {
		var err error
		info, err = LoadCheckpoint(last[0], r.m, r.opt, r.ema)
		if bad := nonFiniteParam(r.m); err == nil && bad != "" {
			err = fmt.Errorf("its parameter %s is not finite", bad)
		}
		return err
	})
	if err == nil && r.ddp != nil {
		err = r.ddp.loadReplicas(last[0])
	}
	if err != nil {
		return fmt.Errorf("%v; restoring %s failed: %v", nf, last[0], err)
	}
	secs := r.seconds()
	r.st = info.State
	r.st.LRScale = min(scale, info.State.LRScale) / 2
	r.secondsBase, r.sessionStart = secs, time.Now()
	if r.st.LRScale < 1.0/1024 {
		return fmt.Errorf("training stopped at %v; the learning rate was already lowered 10 times; the last good checkpoint is %s", nf, last[0])
	}
	r.say("restored %s (step %d); continuing with the learning rate × %g\n", last[0], r.st.Step, r.st.LRScale)
	// Drop log rows of the abandoned steps.
	if r.lead() {
		if err := r.openLogs(); err != nil {
			return err
		}
	}
	return r.save()
}

// budgetReached returns why training should stop now, or "".
func (r *Run) budgetReached() string {
	if r.o.MaxSteps > 0 && r.st.Step >= r.o.MaxSteps {
		return fmt.Sprintf("--max_steps %d reached", r.o.MaxSteps)
	}
	if r.o.MaxTime > 0 && r.procs == nil && time.Since(r.sessionStart) >= r.o.MaxTime {
		return fmt.Sprintf("--max_time %v reached", r.o.MaxTime)
	}
	return ""
}

// finish saves a checkpoint and says how the run ended.
func (r *Run) finish(why string) (Result, error) {
	if err := r.flush(); err != nil {
		return Result{}, err
	}
	if r.st.Step != r.lastSavedStep || r.st.PendingEpochEnd >= 0 {
		if err := r.save(); err != nil {
			return Result{}, err
		}
	}
	res := Result{Reason: why, Step: r.st.Step, Checkpoint: StepPath(r.o.Results, r.st.Step), BestTest: r.st.BestTest, BestStep: r.st.BestStep}
	r.say("%s at step %d (epoch %d, batch %d of %d); checkpoint %s\n", why, r.st.Step, r.st.Pos.Epoch, r.st.Pos.Index, r.perEpoch, res.Checkpoint)
	if r.st.BestStep >= 0 {
		fmt.Fprintf(r.hooks.Log, "best test bits/dim %.4f at step %d (%s)\n", r.st.BestTest, r.st.BestStep, BestPath(r.o.Results))
	}
	return res, nil
}

// batches is the source of training batches: one loader, or one per rank in lockstep.
type batches struct {
	r      *Run
	loader *data.Loader
}

// openBatches starts the loaders at the state's data position.
func (r *Run) openBatches() (*batches, error) {
	if r.ddp != nil {
		if err := r.ddp.openLoaders(r); err != nil {
			return nil, err
		}
		return &batches{r: r, loader: r.ddp.ranks[0].loader}, nil
	}
	l, err := data.NewLoader(r.train, data.LoaderConfig{
		BatchSize: r.cfg.BatchSize, Shuffle: true, Seed: r.cfg.Seed, Epochs: r.o.NumEpoch,
		DropLast: true, Workers: r.o.Workers, Start: r.st.Pos,
	})
	if err != nil {
		return nil, err
	}
	return &batches{r: r, loader: l}, nil
}

func (b *batches) close() {
	if b.r.ddp == nil {
		b.loader.Close()
		return
	}
	for _, rk := range b.r.ddp.ranks {
		rk.closeLoader()
	}
}

// stepOn trains on rank 0's batch b (and the other ranks' next batches); it returns the metrics and
// the number of images the step consumed.
func (r *Run) stepOn(src *batches, b *data.Batch, lr float64) (stepResult, int, error) {
	if r.ddp == nil {
		res, err := r.step(b, lr)
		return res, b.N, err
	}
	bs, err := r.ddp.nextBatches(b)
	if err != nil {
		return stepResult{}, 0, err
	}
	res, err := r.stepDDP(bs, lr)
	return res, b.N * len(bs), err
}

// epochClock measures an epoch's throughput.
type epochClock struct {
	epoch  int
	images int
	start  time.Time
}

// loop is the training loop from the current state.
func (r *Run) loop() (Result, error) {
	if e := r.st.PendingEpochEnd; e >= 0 {
		if err := r.epochEnd(e); err != nil {
			return Result{}, err
		}
	}
	src, err := r.openBatches()
	if err != nil {
		return Result{}, err
	}
	defer src.close()
	clock := epochClock{epoch: -1}
	for {
		if r.halted() {
			return r.finish("interrupted")
		}
		if why := r.budgetReached(); why != "" {
			return r.finish(why)
		}
		b, err := src.loader.Next()
		if err == io.EOF {
			return r.finish(fmt.Sprintf("finished %d epochs", r.o.NumEpoch))
		}
		if err != nil {
			return Result{}, err
		}
		if b.Pos.Epoch != clock.epoch {
			clock = epochClock{epoch: b.Pos.Epoch, start: time.Now()}
			if r.hooks.EpochStart != nil {
				r.hooks.EpochStart(clock.epoch, r.perEpoch, b.Pos.Index)
			}
			src.loader.ResetStats()
		}
		lr := r.sched.LR(r.st.Step) * r.st.LRScale
		res, images, err := r.stepOn(src, b, lr)
		if err != nil {
			return Result{}, err
		}
		r.st.Step++
		r.st.Pos = b.Next
		clock.images += images
		if err := r.afterStep(b, res, images, lr, &clock, src.loader.Stats().WaitFraction()); err != nil {
			return Result{}, err
		}
		if r.hooks.StepEnd != nil {
			r.hooks.StepEnd(r.st.Step)
		}
	}
}

// afterStep queues the step's report (deferred.go: processed at once, or at the next flush), and
// does the evaluations and checkpoints that fall due, each after a flush.
func (r *Run) afterStep(b *data.Batch, res stepResult, images int, lr float64, clock *epochClock, wait float64) error {
	epoch := clock.epoch
	ips := float64(clock.images) / time.Since(clock.start).Seconds()
	r.def.steps = append(r.def.steps, pendingStep{step: r.st.Step, epoch: epoch, epochStep: b.Pos.Index + 1, images: images,
		lr: lr, ips: ips, wait: wait, seconds: r.seconds(), known: !res.deferred, res: res})
	valid := r.o.ValidEvery > 0 && r.st.Step%r.o.ValidEvery == 0 && !b.EpochEnd
	due := time.Since(r.lastSave) >= r.o.CheckpointEvery
	if r.procs != nil {
		due = r.ddp.agreedSave
	}
	printPoint := r.st.Step%r.o.LogEvery == 0 || r.st.Step == 1
	if r.flushDue(printPoint || valid || b.EpochEnd || due) {
		if err := r.flush(); err != nil {
			return err
		}
	}
	if valid {
		if _, err := r.testRow(epoch); err != nil {
			return err
		}
	}
	if !b.EpochEnd {
		if due {
			return r.save()
		}
		return nil
	}
	loss, bits, l2 := r.st.Sums.mean()
	if err := r.trainLog.write(epoch, r.st.Step, loss, bits, 0.0, l2, r.seconds()); err != nil {
		return err
	}
	r.st.Sums = EpochSums{}
	r.st.PendingEpochEnd = epoch
	if err := r.save(); err != nil {
		return err
	}
	fault.Point(fault.BeforeTest)
	return r.epochEnd(epoch)
}

// stepResult is one step's metrics.
type stepResult struct {
	loss, bits, l2 float64
	// deferred says the metrics are in the device buffer, read at the next flush (deferred.go).
	deferred bool
}

// step trains on one batch: preprocess with the next dequantisation noise, forward, backward,
// optimizer and EMA update, all as one unit of device work. A non-finite loss leaves the model
// untouched and returns a *nonFiniteError naming the layer.
func (r *Run) step(b *data.Batch, lr float64) (stepResult, error) {
	if r.graphs() {
		if res, ran, err := r.graphStep(b, lr); err != nil || ran {
			return res, err
		}
	}
	var res stepResult
	var next uint64
	bad, badGrads := false, false
	err := r.dev.Do(func() error {
		x, cond, off, err := batchInput(r.m, b.Images, b.N, b.Labels, r.cfg.Seed, r.st.NoiseOffset)
		if err != nil {
			return err
		}
		defer release(x, cond)
		tp := autodiff.NewTape()
		out, err := r.m.Forward(tp, x, cond)
		if err != nil {
			tp.Release()
			return err
		}
		var l2 *tensor.Tensor
		if out.L2 != nil {
			l2 = out.L2.Value
		}
		if res.deferred = r.record(out.Loss.Value, l2); !res.deferred {
			res.loss = out.Loss.Value.Item()
			if out.L2 != nil {
				res.l2 = out.L2.Value.Item()
			}
			res.bits = res.loss - res.l2
		}
		if !res.deferred && (math.IsNaN(res.loss) || math.IsInf(res.loss, 0)) {
			tp.Release()
			out.Release()
			bad = true
			return nil
		}
		err = tp.Backward(out.Loss)
		out.Release()
		if err != nil {
			return err
		}
		// A step that reads its loss also checks its gradients before the update: a finite loss
		// can still have non-finite gradients (an overflow in the backward pass), and an update
		// with them would poison the parameters without saying where it came from.
		if !res.deferred && !gradsFinite(r.opt.Params()) {
			r.opt.ZeroGrad()
			badGrads = true
			return nil
		}
		fault.Point(fault.Step)
		r.opt.Step(lr)
		r.opt.ZeroGrad()
		if r.ema != nil {
			r.ema.Update()
		}
		next = off
		return r.dev.Backend.Err()
	})
	if err != nil {
		return res, fmt.Errorf("step %d: %w", r.st.Step+1, err)
	}
	if bad {
		var where string
		_ = r.dev.Do(func() error {
			where = locateNonFinite(r.m, r.dev.Backend, b.Images, b.N, b.Labels, r.cfg.Seed, r.st.NoiseOffset)
			return nil
		})
		return res, &nonFiniteError{step: r.st.Step + 1, loss: res.loss, where: where}
	}
	if badGrads {
		var where string
		_ = r.dev.Do(func() error {
			where = locateNonFiniteGrad(r.m, r.dev.Backend, b.Images, b.N, b.Labels, r.cfg.Seed, r.st.NoiseOffset)
			return nil
		})
		return res, &nonFiniteError{step: r.st.Step + 1, loss: res.loss, grads: true, where: where + recomputeHint(r.cfg)}
	}
	r.st.NoiseOffset = next
	r.eagerSteps++
	return res, nil
}

// save writes the rolling checkpoint of the current step and prunes old ones. It refuses to save
// parameters that are not finite (an update diverged without the loss showing it yet), so that the
// checkpoint a non-finite loss falls back to is always a good one.
func (r *Run) save() error {
	r.st.Seconds = r.seconds()
	if r.ddp != nil {
		// The checkpoint stands for every rank only if they are still in lockstep.
		if err := r.ddp.identical(); err != nil {
			return fmt.Errorf("step %d: data-parallel replicas diverged: %v", r.st.Step, err)
		}
	}
	var err error
	bad := ""
	path := StepPath(r.o.Results, r.st.Step)
	derr := r.dev.Do(func() error {
		if bad = nonFiniteParam(r.m); bad == "" && r.lead() {
			err = saveCheckpoint(path, r.m, r.opt, r.ema, r.st, rollingPhases)
		}
		return nil
	})
	if bad != "" {
		return &nonFiniteError{step: r.st.Step, where: fmt.Sprintf("the update made parameter %s (layer %s) non-finite", bad, dlf.LayerOf(bad))}
	}
	if err = errors.Join(err, derr); err != nil {
		return err
	}
	r.lastSave, r.lastSavedStep = time.Now(), r.st.Step
	if !r.lead() {
		return nil
	}
	r.ckpts.add(path)
	return r.ckpts.prune(r.o.KeepCheckpoints)
}

// seconds is the training wall time of all sessions.
func (r *Run) seconds() float64 {
	if r.sessionStart.IsZero() {
		return r.st.Seconds
	}
	return r.secondsBase + time.Since(r.sessionStart).Seconds()
}

// openLogs opens the CSV logs, dropping the rows past the state's step: a resumed run writes them
// again, and a new run (step 0) starts its logs afresh. With an epoch end pending, that epoch's test
// row (written at the same step, after the checkpoint) is dropped too, since the epoch end is redone.
func (r *Run) openLogs() error {
	r.closeLogs()
	keepTest := r.st.Step
	if r.st.PendingEpochEnd >= 0 {
		keepTest--
	}
	var err error
	if r.stepsLog, err = openCSV(filepath.Join(r.o.Results, "steps.csv"), stepColumns, r.st.Step); err != nil {
		return err
	}
	if r.trainLog, err = openCSV(filepath.Join(r.o.Results, "train.csv"), metricColumns, r.st.Step); err != nil {
		return err
	}
	r.testLog, err = openCSV(filepath.Join(r.o.Results, "test.csv"), metricColumns, keepTest)
	return err
}

// closeLogs closes whichever CSV logs are open.
func (r *Run) closeLogs() {
	for _, l := range []**csvLog{&r.stepsLog, &r.trainLog, &r.testLog} {
		(*l).close()
		*l = nil
	}
}
