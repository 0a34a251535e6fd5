package main

import (
	"fmt"
	"math"
	"strings"

	"dlf/autodiff"
	"dlf/dlf"
	"dlf/tensor"
)

// layerOf maps a parameter name to the layer it belongs to: "level0.step3.dlt.part1.conv1.weight"
// → "level0.step3.dlt", "level1.split.conv.weight" → "level1.split", "top.conv.bias" → "top".
func layerOf(param string) string {
	parts := strings.Split(param, ".")
	switch {
	case len(parts) >= 3 && strings.HasPrefix(parts[0], "level") && strings.HasPrefix(parts[1], "step"):
		return strings.Join(parts[:3], ".")
	case len(parts) >= 2 && strings.HasPrefix(parts[0], "level"):
		return parts[0] + "." + parts[1]
	}
	return parts[0]
}

// layerTracker attributes backend ops to model layers. The model has no per-layer hooks, but
// nearly every op that does real work in a layer reads one of that layer's parameters (a conv or
// 1x1-conv weight, an actnorm scale, the DLT's α and β), in the forward and the backward pass
// alike. So an op that reads a parameter belongs to that parameter's layer, and an op that reads
// none (a channel copy, a ReLU, a gradient accumulation) to the layer of the last one that did.
// The few parameter-free ops at a layer's boundary may be counted with its neighbour.
type layerTracker struct {
	byBuffer map[tensor.Buffer]string
	current  string
}

// newLayerTracker indexes m's parameters by their storage; start names the layer of ops before
// the first parameter is read (e.g. "preprocess").
func newLayerTracker(m *dlf.Model, start string) *layerTracker {
	lt := &layerTracker{byBuffer: map[tensor.Buffer]string{}, current: start}
	for _, p := range m.Params() {
		if b := p.Var.Value.Buffer(); b != nil {
			lt.byBuffer[b] = p.Name
		}
	}
	return lt
}

// observe updates the current layer from the op's inputs and returns it, with the parameter that
// identified it ("" when none did).
func (lt *layerTracker) observe(r *opRecord) (layer, param string) {
	for _, t := range r.Inputs {
		if t == nil {
			continue
		}
		if name, ok := lt.byBuffer[t.Buffer()]; ok {
			lt.current = layerOf(name)
			return lt.current, name
		}
	}
	return lt.current, ""
}

// allFinite reports whether every element of t is finite, and the index of the first that is not.
func allFinite(t *tensor.Tensor) (bool, int) {
	for i, v := range t.Float64s() {
		if math.IsNaN(v) || math.IsInf(v, 0) {
			return false, i
		}
	}
	return true, -1
}

// locateNonFinite explains a non-finite loss. It first looks for a parameter that is not finite
// (a previous update went wrong); otherwise it copies the model onto a probing backend, re-runs the
// forward pass on the same images and noise, checks every op's outputs, and names the first op and
// layer that produced a NaN or infinity.
func locateNonFinite(m *dlf.Model, be tensor.Backend, images []uint8, n int, labels []int32, seed, offset uint64) string {
	for _, p := range m.Params() {
		if ok, i := allFinite(p.Var.Value); !ok {
			return fmt.Sprintf("parameter %s (layer %s) holds a non-finite value at element %d, so an earlier update diverged", p.Name, layerOf(p.Name), i)
		}
	}
	var found string
	var lt *layerTracker
	checking := false
	pb := newProbe(be, func(r *opRecord, run func()) {
		if checking || found != "" || lt == nil {
			run()
			return
		}
		layer, _ := lt.observe(r)
		run()
		checking = true
		defer func() { checking = false }()
		for _, o := range r.Outputs {
			if o == nil {
				continue
			}
			if ok, i := allFinite(o); !ok {
				found = fmt.Sprintf("the first non-finite value comes from op %q in layer %s (element %d of its %v output)", r.Op, layer, i, o.Shape())
				return
			}
		}
	})
	diag, err := dlf.New(m.Config(), pb, m.DType())
	if err != nil {
		return fmt.Sprintf("the layer could not be located: %v", err)
	}
	for _, p := range m.Params() {
		q := diag.Param(p.Name)
		if q == nil {
			return fmt.Sprintf("the layer could not be located: the copy lacks parameter %s", p.Name)
		}
		q.Var.Value.Upload(p.Var.Value.Float64s())
	}
	lt = newLayerTracker(diag, "preprocess")
	x, _, err := diag.Preprocess(images, n, false, seed, offset)
	if err != nil {
		return fmt.Sprintf("the layer could not be located: %v", err)
	}
	defer x.Release()
	cond, err := condition(diag, labels)
	if err != nil {
		return fmt.Sprintf("the layer could not be located: %v", err)
	}
	defer release(cond)
	res, err := diag.Forward(autodiff.NoGrad(), x, cond)
	if err != nil {
		return fmt.Sprintf("the layer could not be located: %v", err)
	}
	res.Release()
	if found == "" {
		return "re-running the forward pass gave finite values everywhere, so the non-finite value came from the backward pass or the update"
	}
	return found
}
