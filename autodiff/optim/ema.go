package optim

import (
	"encoding/json"
	"fmt"

	"dlf/tensor"
)

// EMA keeps a Polyak (exponential moving) average of parameters: after each optimizer step, Update
// sets avg ← d·avg + (1−d)·w, the same recurrence as TensorFlow's ExponentialMovingAverage that the
// reference builds (with d = 0.999 it never swaps it in; dlf-spec §3.1). Unlike the reference, the
// average is usable: Swap exchanges the parameters' values with the averages (a pointer swap, no
// copy), so evaluation and sampling run on the averaged weights, and a second Swap restores the
// trained ones.
//
// With warm-up (NewEMAWarmup) the t-th update uses d_t = min(d, (1+t)/(10+t)), TensorFlow's
// ExponentialMovingAverage rule when given num_updates, so an average started at the initial
// weights forgets them within the first ~10/(1−d) steps instead of holding d^t of them (0.999²⁵⁰ =
// 78% after 250 steps). The changing rate lives in a one-element device tensor that Advance writes
// and ApplyFrom reads, so a captured step (a CUDA graph) can replay the update.
type EMA struct {
	decay   float64
	params  []Param
	avg     []*tensor.Tensor
	swapped bool

	warmup  bool
	updates int              // updates applied (counted by Advance)
	rate    *tensor.Tensor   // [1]: 1 − d_t of the pending update (warm-up only)
	written float64          // the value rate holds (−1: not written yet)
	diff    []*tensor.Tensor // per-parameter scratch of ApplyFrom (warm-up only)
}

// NewEMA starts an average of params at their current values, with a constant decay.
func NewEMA(decay float64, params []Param) (*EMA, error) { return newEMA(decay, params, false) }

// NewEMAWarmup is NewEMA with the decay warm-up described at EMA.
func NewEMAWarmup(decay float64, params []Param) (*EMA, error) { return newEMA(decay, params, true) }

func newEMA(decay float64, params []Param, warmup bool) (*EMA, error) {
	if !(decay >= 0 && decay < 1) {
		return nil, fmt.Errorf("optim: EMA decay %v must lie in [0, 1)", decay)
	}
	e := &EMA{decay: decay, params: append([]Param(nil), params...), warmup: warmup, written: -1}
	if warmup && len(params) > 0 {
		w := params[0].Var.Value
		e.rate = tensor.Zeros(w.Backend(), w.DType(), 1)
		for _, p := range params {
			e.diff = append(e.diff, tensor.New(p.Var.Value.Backend(), p.Var.Value.DType(), p.Var.Value.Shape()...))
		}
	}
	for _, p := range params {
		e.avg = append(e.avg, tensor.Clone(p.Var.Value))
	}
	return e, nil
}

// Decay returns the decay rate d.
func (e *EMA) Decay() float64 { return e.decay }

// Update folds the current parameter values into the averages: Advance, then ApplyFrom. It panics
// while the averages are swapped in, since it would then average the averages.
func (e *EMA) Update() {
	e.Advance()
	e.ApplyFrom()
}

// DecayAt returns the decay of the t-th update (t ≥ 1): d, or min(d, (1+t)/(10+t)) with warm-up.
func (e *EMA) DecayAt(t int) float64 {
	if !e.warmup {
		return e.decay
	}
	return min(e.decay, float64(1+t)/float64(10+t))
}

// Advance counts the next update and, with warm-up, writes its rate 1 − d_t into the device tensor
// that ApplyFrom reads. A captured ApplyFrom (a CUDA graph) is replayed every step with Advance run
// before each replay, outside the graph, as Optimizer.Advance is. Once the warm-up has reached the
// constant decay (t ≈ 10/(1−d)) the rate stops changing and nothing more is uploaded.
func (e *EMA) Advance() {
	e.updates++
	if e.warmup && e.rate != nil {
		if r := 1 - e.DecayAt(e.updates); r != e.written {
			e.rate.Upload([]float64{r})
			e.written = r
		}
	}
}

// ApplyFrom queues the update of every average: avg ← d·avg + (1−d)·w with the constant decay, or,
// with warm-up, avg ← avg + r·(w − avg) with r = 1 − d_t read from the rate tensor when it runs.
func (e *EMA) ApplyFrom() {
	if e.swapped {
		panic("optim: EMA.Update while the averages are swapped in")
	}
	for i, p := range e.params {
		if !e.warmup {
			tensor.UnaryT(tensor.Scale, e.avg[i], e.avg[i], e.decay, 0)
			tensor.Axpy(1-e.decay, p.Var.Value, e.avg[i])
			continue
		}
		tensor.SubT(e.diff[i], p.Var.Value, e.avg[i])
		tensor.MulT(e.diff[i], e.diff[i], e.rate)
		tensor.AddT(e.avg[i], e.avg[i], e.diff[i])
	}
}

// Updates returns how many updates have been applied (Advance calls).
func (e *EMA) Updates() int { return e.updates }

// Swap exchanges every parameter's value with its average. Call it before evaluating or sampling
// with the averaged weights and again afterwards.
func (e *EMA) Swap() {
	for i, p := range e.params {
		p.Var.Value, e.avg[i] = e.avg[i], p.Var.Value
	}
	e.swapped = !e.swapped
}

// Swapped reports whether the averages are currently in the parameters.
func (e *EMA) Swapped() bool { return e.swapped }

type emaState struct {
	Decay   float64 `json:"decay"`
	Warmup  bool    `json:"warmup,omitempty"`
	Updates int     `json:"updates"`
}

// State returns the decay as JSON and the averages as tensors named "ema.<param>" (the averages
// whether or not they are swapped in). The tensors are live state: write them out before the next
// Update.
func (e *EMA) State() (string, []Named) {
	b, _ := json.Marshal(emaState{Decay: e.decay, Warmup: e.warmup, Updates: e.updates})
	ts := make([]Named, len(e.params))
	for i, p := range e.params {
		t := e.avg[i]
		if e.swapped {
			t = p.Var.Value
		}
		ts[i] = Named{"ema." + p.Name, t}
	}
	return string(b), ts
}

// Restore loads the averages written by State through load (see Optimizer.Restore). The decay comes
// from NewEMA; meta is checked to be well formed.
func (e *EMA) Restore(meta string, load func(name string, dst *tensor.Tensor) error) error {
	var s emaState
	if err := json.Unmarshal([]byte(meta), &s); err != nil {
		return fmt.Errorf("optim: EMA state %q: %w", meta, err)
	}
	if s.Updates < 0 {
		return fmt.Errorf("optim: EMA state has negative update count %d", s.Updates)
	}
	_, ts := e.State()
	for _, n := range ts {
		if err := load(n.Name, n.Tensor); err != nil {
			return err
		}
	}
	// The count sets the warm-up's next rate; checkpoints written before it existed have none,
	// which only matters with warm-up (it then restarts, a shorter average).
	e.updates = s.Updates
	return nil
}
