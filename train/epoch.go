package train

import (
	"errors"
	"fmt"
	"time"
)

// testRow evaluates the test set and appends a row to test.csv, saving best.safetensors on a new
// best; it reports false when a stop cut the evaluation short (no row is written then).
func (r *Run) testRow(epoch int) (bool, error) {
	if !r.lead() {
		return true, nil // rank 0 evaluates for the job
	}
	if r.hooks.Break != nil {
		r.hooks.Break()
	}
	start := time.Now()
	stop := &r.stop
	if r.procs != nil {
		// One process per rank: a stop is agreed at the next step, so the evaluation runs whole
		// (the other ranks go on to the epoch end's checkpoint, a collective).
		stop = nil
	} else {
		r.stopped() // sets the flag Evaluate reads when the context is already cancelled
	}
	restore := r.swapAverage()
	ev, err := Evaluate(r.dev, r.m, r.test, r.cfg.BatchSize, r.cfg.Seed^TestSeedSalt, 1, stop)
	restore()
	if err != nil {
		return false, err
	}
	if ev.Images < r.test.N {
		return false, nil
	}
	if err := r.testLog.write(epoch, r.st.Step, ev.Bits+ev.L2, ev.Bits, 0.0, ev.L2, r.seconds()); err != nil {
		return false, err
	}
	mark := ""
	if r.st.BestStep < 0 || ev.Bits < r.st.BestTest {
		r.st.BestTest, r.st.BestStep = ev.Bits, r.st.Step
		var serr error
		derr := r.dev.Do(func() error {
			serr = saveCheckpoint(BestPath(r.o.Results), r.m, r.opt, r.ema, r.st, bestPhases)
			return nil
		})
		if err := errors.Join(serr, derr); err != nil {
			return false, err
		}
		mark = " (best so far)"
	}
	fmt.Fprintf(r.hooks.Log, "test:    epoch %d, step %d: %.4f bits/dim on %d images%s [%.1fs]\n", epoch, r.st.Step, ev.Bits, ev.Images, mark, time.Since(start).Seconds())
	return true, nil
}

// swapAverage puts the parameters' moving average in place of the weights when the config asks
// evaluation and sampling to use it (Config.EvalAverage), and returns the function that puts the
// weights back; both only exchange tensors, so nothing queued on the device is affected.
func (r *Run) swapAverage() (restore func()) {
	if !r.cfg.EvalAverage || r.ema == nil {
		return func() {}
	}
	r.ema.Swap()
	return r.ema.Swap
}

// epochEnd does the end-of-epoch work: the test evaluation, then Hooks.Samples. A stop can cut it
// short, in which case the state keeps PendingEpochEnd and a resumed run redoes it.
func (r *Run) epochEnd(epoch int) error {
	if (epoch+1)%r.o.TestEvery == 0 {
		ok, err := r.testRow(epoch)
		if err != nil || !ok {
			return err
		}
	}
	if r.procs == nil && r.stopped() {
		return nil
	}
	if r.hooks.Samples != nil && r.o.SampleEvery > 0 && (epoch+1)%r.o.SampleEvery == 0 {
		restore := r.swapAverage()
		err := r.hooks.Samples(r, epoch)
		restore()
		if err != nil {
			return err
		}
	}
	r.st.PendingEpochEnd = -1
	return r.save()
}
