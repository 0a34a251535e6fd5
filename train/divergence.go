package train

import (
	"fmt"
	"math"

	"dlf/autodiff"
	"dlf/dlf"
	"dlf/tensor"
	"dlf/tensor/probe"
)

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
			return fmt.Sprintf("parameter %s (layer %s) holds a non-finite value at element %d, so an earlier update diverged", p.Name, dlf.LayerOf(p.Name), i)
		}
	}
	var found string
	var lt *dlf.LayerTracker
	checking := false
	pb := probe.New(be, func(r *probe.Record, run func()) {
		// Uploads carry host data, not results (the image batch goes up as packed bytes, whose
		// words may look like NaN): only computed values are searched.
		if checking || found != "" || lt == nil || r.Op == "upload" {
			run()
			return
		}
		layer, _ := lt.Observe(r.Inputs)
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
	lt = dlf.NewLayerTracker(diag, "preprocess")
	x, cond, _, err := batchInput(diag, images, n, labels, seed, offset)
	if err != nil {
		return fmt.Sprintf("the layer could not be located: %v", err)
	}
	defer release(x, cond)
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

// nonFiniteParam returns the first parameter holding a NaN or infinity, or "".
func nonFiniteParam(m *dlf.Model) string {
	for _, p := range m.ParamsView() {
		if ok, _ := allFinite(p.Var.Value); !ok {
			return p.Name
		}
	}
	return ""
}

// nonFiniteError reports a loss that is NaN or infinite, or an update that made a parameter so
// (loss 0).
type nonFiniteError struct {
	step  int
	loss  float64
	where string
}

func (e *nonFiniteError) Error() string {
	if !math.IsNaN(e.loss) && !math.IsInf(e.loss, 0) {
		return fmt.Sprintf("step %d: %s", e.step, e.where)
	}
	return fmt.Sprintf("step %d: the loss is %v: %s", e.step, e.loss, e.where)
}
