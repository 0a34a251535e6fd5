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
type EMA struct {
	decay   float64
	params  []Param
	avg     []*tensor.Tensor
	swapped bool
}

// NewEMA starts an average of params at their current values.
func NewEMA(decay float64, params []Param) (*EMA, error) {
	if !(decay >= 0 && decay < 1) {
		return nil, fmt.Errorf("optim: EMA decay %v must lie in [0, 1)", decay)
	}
	e := &EMA{decay: decay, params: append([]Param(nil), params...)}
	for _, p := range params {
		e.avg = append(e.avg, tensor.Clone(p.Var.Value))
	}
	return e, nil
}

// Decay returns the decay rate d.
func (e *EMA) Decay() float64 { return e.decay }

// Update folds the current parameter values into the averages. It panics while the averages are
// swapped in, since it would then average the averages.
func (e *EMA) Update() {
	if e.swapped {
		panic("optim: EMA.Update while the averages are swapped in")
	}
	for i, p := range e.params {
		tensor.UnaryT(tensor.Scale, e.avg[i], e.avg[i], e.decay, 0)
		tensor.Axpy(1-e.decay, p.Var.Value, e.avg[i])
	}
}

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
	Decay float64 `json:"decay"`
}

// State returns the decay as JSON and the averages as tensors named "ema.<param>" (the averages
// whether or not they are swapped in). The tensors are live state: write them out before the next
// Update.
func (e *EMA) State() (string, []Named) {
	b, _ := json.Marshal(emaState{Decay: e.decay})
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
	_, ts := e.State()
	for _, n := range ts {
		if err := load(n.Name, n.Tensor); err != nil {
			return err
		}
	}
	return nil
}
