package train

// One CUDA graph replay per step (issue 13, Options.CUDAGraph). The whole update — forward, backward,
// the optimizer step and the EMA update — is captured once into a CUDA graph
// (cuda.Backend.Capture) and replayed every step with one driver call: the host no longer pays Go,
// the tape and a launch per op. What changes from step to step stays outside the graph: the batch
// (preprocessed with its dequantisation noise straight into the graph's static input), the
// bias-corrected learning rate (optim.Optimizer.Advance, uploaded into a one-element tensor that the
// captured optimizer kernels read: OptimParams.LRTensor), the moving average's warm-up rate
// (optim.EMA.Advance, read by the captured EMA.ApplyFrom) and the copy of the loss into the
// deferred-metrics buffer.
//
// The first step of a session runs eagerly, so that the caching allocator holds every block the
// capture needs (a capture may not allocate from the driver); the capture then happens at the next
// step and that step replays it at once. A capture that fails — an op reading a value back, a
// block not cached yet, a driver without graphs — leaves the backend as it was: the step runs
// eagerly, and after three failures the run says why once and stays eager. Steps that must read
// their loss at once (a replay after a non-finite loss) run eagerly too.

import (
	"fmt"

	"dlf/autodiff"
	"dlf/data"
	"dlf/tensor"
	"dlf/tensor/cuda"
	"dlf/train/fault"
)

// graphAttempts is how many captures may fail (typically for blocks the allocator did not hold
// yet) before the run stays eager.
const graphAttempts = 3

// stepGraph is the captured step and its outputs.
type stepGraph struct {
	g        *cuda.Graph
	loss, l2 *tensor.Tensor // views that keep the captured outputs alive
}

// graphInputs are the tensors a captured step reads, written before each replay. They outlive a
// failed capture: the eager step that follows then runs with them allocated, so the allocator
// caches one more block of their size for the next attempt.
type graphInputs struct {
	x, cond *tensor.Tensor
	lr      *tensor.Tensor // the step's bias-corrected learning rate
}

func (sg *stepGraph) release() {
	if sg.g != nil {
		_ = sg.g.Close()
	}
	release(sg.loss, sg.l2)
}

func (in *graphInputs) release() { release(in.x, in.cond, in.lr) }

// graphs reports whether this step should run as a graph replay.
func (r *Run) graphs() bool {
	return r.o.CUDAGraph && r.ddp == nil && r.defers() && !r.strict() && r.graphFailures < graphAttempts && r.eagerSteps > 0
}

// graphStep is Run.step as a graph replay: preprocess the batch eagerly into the static input,
// replay (capturing first if needed), record the loss, and update.
func (r *Run) graphStep(b *data.Batch, lr float64) (stepResult, bool, error) {
	var res stepResult
	var next uint64
	ran := false
	err := r.dev.Do(func() error {
		if r.sg == nil {
			x, cond, off, err := batchInput(r.m, b.Images, b.N, b.Labels, r.cfg.Seed, r.st.NoiseOffset)
			if err != nil {
				return err
			}
			defer release(x, cond)
			if r.sg, err = r.capture(x, cond); err != nil {
				r.opt.ZeroGrad()
				r.graphFailures++
				if r.graphFailures == graphAttempts {
					r.say("cuda graph: %v; training runs eagerly\n", err)
				}
				return nil // this step runs eagerly
			}
			tensor.Copy(r.graphIn.x, x)
			if cond != nil {
				tensor.Copy(r.graphIn.cond, cond)
			}
			next = off
		} else {
			if b.N != r.graphIn.x.Shape()[0] {
				return nil // a batch of another size (no drop-last) runs eagerly
			}
			// Replays preprocess straight into the graph's static input: no batch tensor, no copy.
			off, err := r.m.PreprocessInto(r.graphIn.x, b.Images, b.N, false, r.cfg.Seed, r.st.NoiseOffset)
			if err != nil {
				return err
			}
			if r.graphIn.cond != nil {
				cond, err := Condition(r.m, b.Labels)
				if err != nil {
					return err
				}
				tensor.Copy(r.graphIn.cond, cond)
				cond.Release()
			}
			next = off
		}
		sg, in := r.sg, r.graphIn
		in.lr.Upload([]float64{r.opt.Advance(lr)})
		if r.ema != nil {
			r.ema.Advance() // its warm-up rate, read by the captured ApplyFrom
		}
		fault.Point(fault.Step)
		sg.g.Replay()
		if res.deferred = r.record(sg.loss, sg.l2); !res.deferred {
			return fmt.Errorf("internal error: a graph step could not defer its loss")
		}
		ran = true
		return r.dev.Backend.Err()
	})
	if err != nil {
		return res, ran, fmt.Errorf("step %d: %w", r.st.Step+1, err)
	}
	if ran {
		r.st.NoiseOffset = next
	}
	return res, ran, nil
}

// capture records the step on the graph's inputs (static copies of this step's).
func (r *Run) capture(x, cond *tensor.Tensor) (*stepGraph, error) {
	if r.graphIn == nil {
		r.graphIn = &graphInputs{x: tensor.Clone(x), lr: tensor.Zeros(x.Backend(), x.DType(), 1)}
		if cond != nil {
			r.graphIn.cond = tensor.Clone(cond)
		}
	}
	in := r.graphIn
	sg := &stepGraph{}
	r.opt.ZeroGrad()
	g, err := r.dev.GPU.Capture(func() error {
		tp := autodiff.NewTape()
		out, err := r.m.Forward(tp, in.x, in.cond)
		if err != nil {
			tp.Release()
			return err
		}
		sg.loss = out.Loss.Value.Reshape(out.Loss.Value.Shape()...)
		if out.L2 != nil {
			sg.l2 = out.L2.Value.Reshape(out.L2.Value.Shape()...)
		}
		err = tp.Backward(out.Loss)
		out.Release()
		r.opt.ApplyFrom(in.lr)
		r.opt.ZeroGrad()
		if r.ema != nil {
			r.ema.ApplyFrom()
		}
		return err
	})
	if err != nil {
		release(sg.loss, sg.l2)
		return nil, err
	}
	sg.g = g
	// The graph keeps its own blocks; what the eager warm-up step left cached goes back to the
	// driver, so the step's memory is not held twice (a failure is recorded on the backend and
	// surfaces at the next op).
	_ = r.dev.GPU.EmptyCache()
	return sg, nil
}
