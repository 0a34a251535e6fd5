package train

import (
	"fmt"
	"math"

	"dlf/autodiff"
	"dlf/autodiff/optim"
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
	found, err := probeStep(m, be, images, n, labels, seed, offset, false)
	return explain(found, err, "re-running the forward pass gave finite values everywhere, so the non-finite value came from the backward pass or the update")
}

// locateNonFiniteGrad explains a finite loss whose gradients are not finite: it re-runs the forward
// and the backward pass of the step on a probing copy of the model (whose parameters are still the
// ones the step started from) and names the first op and layer, in execution order, that produced a
// NaN or infinity.
func locateNonFiniteGrad(m *dlf.Model, be tensor.Backend, images []uint8, n int, labels []int32, seed, offset uint64) string {
	found, err := probeStep(m, be, images, n, labels, seed, offset, true)
	return explain(found, err, "re-running the forward and backward pass gave finite values everywhere")
}

// explain turns probeStep's answer into a sentence: the op found, why none could be, or none.
func explain(found string, err error, none string) string {
	switch {
	case err != nil:
		return fmt.Sprintf("the layer could not be located: %v", err)
	case found == "":
		return none
	}
	return found
}

// probeStep copies m onto a probing backend over be, runs the forward pass (and with backward the
// backward pass) on the batch, and describes the first op whose output holds a NaN or infinity ("" if
// none did).
func probeStep(m *dlf.Model, be tensor.Backend, images []uint8, n int, labels []int32, seed, offset uint64, backward bool) (string, error) {
	var found string
	var lt *dlf.LayerTracker
	checking := false
	phase := "forward"
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
				found = fmt.Sprintf("the first non-finite value comes from op %q of the %s pass in layer %s (element %d of its %v output)", r.Op, phase, layer, i, o.Shape())
				return
			}
		}
	})
	diag, err := dlf.New(m.Config(), pb, m.DType())
	if err != nil {
		return "", err
	}
	for _, p := range m.Params() {
		q := diag.Param(p.Name)
		if q == nil {
			return "", fmt.Errorf("the copy lacks parameter %s", p.Name)
		}
		q.Var.Value.Upload(p.Var.Value.Float64s())
	}
	lt = dlf.NewLayerTracker(diag, "preprocess")
	x, cond, _, err := batchInput(diag, images, n, labels, seed, offset)
	if err != nil {
		return "", err
	}
	defer release(x, cond)
	tp := autodiff.NoGrad()
	if backward {
		tp = autodiff.NewTape()
		defer tp.Release()
	}
	res, err := diag.Forward(tp, x, cond)
	if err != nil {
		return "", err
	}
	defer res.Release()
	if backward && found == "" {
		phase = "backward"
		if err := tp.Backward(res.Loss); err != nil {
			return "", err
		}
	}
	return found, nil
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

// gradsFinite reports whether every gradient of params is finite. The global sum of squares is
// computed on the gradients' backend and read back as one number; only when that is not finite are
// the gradients read one by one, since a sum of squares of large finite float32 gradients can
// itself overflow.
func gradsFinite(params []optim.Param) bool {
	vs := optim.Vars(params)
	if n := optim.GradNorm(vs); !math.IsNaN(n) && !math.IsInf(n, 0) {
		return true
	}
	for _, v := range vs {
		if v.Grad != nil {
			if ok, _ := allFinite(v.Grad); !ok {
				return false
			}
		}
	}
	return true
}

// recomputeHint adds what to try when the gradients of a run that rebuilds activations by
// inversion are not finite: the inverse of an affine coupling divides by its scale, which can be
// tiny where the forward pass was fine (docs/results.md, "Study", Fashion-MNIST's Glow runs).
func recomputeHint(c dlf.Config) string {
	if !c.Recompute {
		return ""
	}
	return "; --recompute rebuilds each step's input by inverting the step, which loses precision or overflows where a coupling's scale is tiny; --recompute=false keeps the activations instead"
}

// nonFiniteError reports a loss that is NaN or infinite, a finite loss whose gradients are not
// (grads), or an update that made a parameter so (loss 0).
type nonFiniteError struct {
	step  int
	loss  float64
	grads bool
	where string
}

func (e *nonFiniteError) Error() string {
	if e.grads {
		return fmt.Sprintf("step %d: the loss is finite (%.4f) but its gradients are not: %s", e.step, e.loss, e.where)
	}
	if !math.IsNaN(e.loss) && !math.IsInf(e.loss, 0) {
		return fmt.Sprintf("step %d: %s", e.step, e.where)
	}
	return fmt.Sprintf("step %d: the loss is %v: %s", e.step, e.loss, e.where)
}
