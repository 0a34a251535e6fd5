package dlf

import (
	"strings"

	"dlf/tensor"
)

// LayerOf maps a parameter name to the layer it belongs to: "level0.step3.dlt.part1.conv1.weight"
// → "level0.step3.dlt", "level1.split.conv.weight" → "level1.split", "top.conv.bias" → "top".
func LayerOf(param string) string {
	parts := strings.Split(param, ".")
	switch {
	case len(parts) >= 3 && strings.HasPrefix(parts[0], "level") && strings.HasPrefix(parts[1], "step"):
		return strings.Join(parts[:3], ".")
	case len(parts) >= 2 && strings.HasPrefix(parts[0], "level"):
		return parts[0] + "." + parts[1]
	}
	return parts[0]
}

// LayerTracker attributes backend ops to model layers. The model has no per-layer hooks, but nearly
// every op that does real work in a layer reads one of that layer's parameters (a conv or 1x1-conv
// weight, an actnorm scale, the DLT's α and β), in the forward and the backward pass alike. So an op
// that reads a parameter belongs to that parameter's layer, and an op that reads none (a channel
// copy, a ReLU, a gradient accumulation) to the layer of the last one that did. The few
// parameter-free ops at a layer's boundary may be counted with its neighbour.
type LayerTracker struct {
	byBuffer map[tensor.Buffer]string
	current  string
}

// NewLayerTracker indexes m's parameters by their storage; start names the layer of ops before the
// first parameter is read (e.g. "preprocess").
func NewLayerTracker(m *Model, start string) *LayerTracker {
	lt := &LayerTracker{byBuffer: map[tensor.Buffer]string{}, current: start}
	for _, p := range m.Params() {
		if b := p.Var.Value.Buffer(); b != nil {
			lt.byBuffer[b] = p.Name
		}
	}
	return lt
}

// Observe updates the current layer from an op's inputs and returns it, with the parameter that
// identified it ("" when none did).
func (lt *LayerTracker) Observe(inputs []*tensor.Tensor) (layer, param string) {
	for _, t := range inputs {
		if t == nil {
			continue
		}
		if name, ok := lt.byBuffer[t.Buffer()]; ok {
			lt.current = LayerOf(name)
			return lt.current, name
		}
	}
	return lt.current, ""
}
