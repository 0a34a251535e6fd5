package dlf

import (
	"fmt"
	"math"
	"math/rand/v2"
	"sort"

	"dlf/autodiff"
	"dlf/tensor"
	"dlf/tensor/safetensors"
)

// Param is one named tensor of a model: a trainable parameter, or a fixed buffer that a checkpoint
// must still carry (the LU form's permutation and signs, Glow's actnorm "initialised" flags).
type Param struct {
	// Name is hierarchical and stable, e.g. "level0.step3.dlt.part1.conv1.weight"; checkpoints and
	// the PyTorch twin use the same names.
	Name string
	// Var holds the value; for trainable parameters it also accumulates the gradient.
	Var *autodiff.Var
	// Trainable is false for buffers, which no optimizer may touch.
	Trainable bool
	// Shape is the tensor's shape.
	Shape tensor.Shape
}

// registry owns every Param of a model in creation order and the host RNG that initialises them.
// A dry registry (nil backend) only records names and shapes, for counting parameters.
type registry struct {
	be tensor.Backend
	dt tensor.DType
	// prec is the hyper-networks' convolution arithmetic (Config.ConvPrecision).
	prec  tensor.Precision
	rng   *rand.Rand
	list  []*Param
	index map[string]*Param
}

func newRegistry(be tensor.Backend, dt tensor.DType, seed uint64) *registry {
	// A fixed second PCG word keeps initialisation independent of the other seeded streams (data
	// order, dequantisation noise), which use Philox or their own PCG streams.
	return &registry{be: be, dt: dt, rng: rand.New(rand.NewPCG(seed, 0x646c662d696e6974)), index: map[string]*Param{}}
}

// initFn returns the n initial values of a tensor.
type initFn func(n int) []float64

// add registers a tensor of the given shape with values from init (not called for a dry registry).
func (r *registry) add(name string, trainable bool, shape []int, init initFn) *autodiff.Var {
	if _, dup := r.index[name]; dup {
		panic(fmt.Sprintf("dlf: parameter %q registered twice", name))
	}
	p := &Param{Name: name, Trainable: trainable, Shape: tensor.Shape(shape).Clone()}
	r.list = append(r.list, p)
	r.index[name] = p
	if r.be == nil {
		return nil
	}
	n := p.Shape.Numel()
	vals := init(n)
	if len(vals) != n {
		panic(fmt.Sprintf("dlf: parameter %q of shape %v initialised with %d values", name, shape, len(vals)))
	}
	t := tensor.New(r.be, r.dt, shape...)
	t.Upload(vals)
	if trainable {
		p.Var = autodiff.NewParam(t)
	} else {
		p.Var = autodiff.NewVar(t)
	}
	return p.Var
}

// dry reports whether the registry only counts.
func (r *registry) dry() bool { return r.be == nil }

// unit is the parameter list of one layer group that is differentiated as a whole (a flow step, a
// prior). Layers refer to their tensors by handle (a position in the list), so that the same layer
// code runs on the canonical Vars or on the fresh copies a recomputing backward hands it.
type unit struct {
	reg    *registry
	prefix string
	vars   vars
}

func (r *registry) unit(prefix string) *unit { return &unit{reg: r, prefix: prefix} }

// param is the handle of one of a unit's tensors; a layer's forward resolves it against the Vars
// it is given with vars.of.
type param int

// noParam is the handle of an optional tensor the configuration does without.
const noParam param = -1

// vars is a unit's tensors as one forward pass sees them: the unit's own Vars, or the copies a
// recomputing backward passes in.
type vars []*autodiff.Var

// of returns the Var of handle p, or nil for noParam.
func (v vars) of(p param) *autodiff.Var {
	if p == noParam {
		return nil
	}
	return v[p]
}

// param registers prefix+name and returns its handle.
func (u *unit) param(name string, trainable bool, shape []int, init initFn) param {
	u.vars = append(u.vars, u.reg.add(u.prefix+name, trainable, shape, init))
	return param(len(u.vars) - 1)
}

// Initialisers. They draw from the registry's RNG in creation order, so a seed fixes the model.

// normal initialises from N(0, std²).
func (r *registry) normal(std float64) initFn {
	return func(n int) []float64 {
		out := make([]float64, n)
		for i := range out {
			out[i] = std * r.rng.NormFloat64()
		}
		return out
	}
}

// glorot initialises uniformly in ±sqrt(6/(fanIn+fanOut)): TensorFlow's default glorot_uniform
// initialiser, which the reference's get_variable calls fall back to.
func (r *registry) glorot(fanIn, fanOut int) initFn {
	lim := math.Sqrt(6 / float64(fanIn+fanOut))
	return func(n int) []float64 {
		out := make([]float64, n)
		for i := range out {
			out[i] = lim * (2*r.rng.Float64() - 1)
		}
		return out
	}
}

// constant initialises every element to v.
func constant(v float64) initFn {
	return func(n int) []float64 {
		out := make([]float64, n)
		for i := range out {
			out[i] = v
		}
		return out
	}
}

// zeros initialises to 0.
func zeros(n int) []float64 { return make([]float64, n) }

// values initialises from a precomputed slice.
func values(v []float64) initFn { return func(int) []float64 { return v } }

// Params returns every parameter and buffer in creation order (levels, steps, priors). The caller
// may change their values, so Forward checks Glow's actnorm flags again afterwards.
func (m *Model) Params() []*Param {
	m.initChecked = false
	return m.reg.list
}

// ParamsView returns the list Params returns, for a caller that only reads the values (a
// checkpoint write, a finiteness or replica check): Forward's check of Glow's actnorm flags stays
// valid, so the step after a checkpoint does not read the flags from the device again.
func (m *Model) ParamsView() []*Param { return m.reg.list }

// Param returns the named parameter or buffer, or nil (Forward then checks the flags again, as
// after Params).
func (m *Model) Param(name string) *Param {
	m.initChecked = false
	return m.reg.index[name]
}

// Trainable returns the Vars of the trainable parameters in creation order, for an optimizer.
func (m *Model) Trainable() []*autodiff.Var {
	var out []*autodiff.Var
	for _, p := range m.reg.list {
		if p.Trainable {
			out = append(out, p.Var)
		}
	}
	return out
}

// NumParams returns the number of trainable scalars, the figure the reference prints at start-up
// (masked entries of the LU factors count, as they are whole variables there too).
func (m *Model) NumParams() int {
	return m.reg.numParams()
}

func (r *registry) numParams() int {
	n := 0
	for _, p := range r.list {
		if p.Trainable {
			n += p.Shape.Numel()
		}
	}
	return n
}

// ZeroGrad clears every parameter gradient.
func (m *Model) ZeroGrad() {
	for _, p := range m.reg.list {
		p.Var.ZeroGrad()
	}
}

// State returns every parameter and buffer as host tensors named as in Params, ready for
// safetensors.Write.
func (m *Model) State() []safetensors.HostTensor {
	out := make([]safetensors.HostTensor, len(m.reg.list))
	for i, p := range m.reg.list {
		out[i] = safetensors.FromTensor(p.Name, p.Var.Value)
	}
	return out
}

// LoadState copies every parameter and buffer from a checkpoint. It fails, naming the tensor, when
// one is missing or has another shape, and when the file holds tensors this model does not have
// (ignoring names under the prefixes in skip, e.g. "opt." and "ema." for optimizer state). Values are
// converted to the model's dtype.
func (m *Model) LoadState(f *safetensors.File, skip ...string) error {
	for _, p := range m.reg.list {
		e, ok := f.Entry(p.Name)
		if !ok {
			return fmt.Errorf("dlf: checkpoint lacks tensor %q (shape %v): it was written by a different model configuration", p.Name, p.Var.Value.Shape())
		}
		var vals any
		var err error
		switch e.DType {
		case "F32":
			vals, err = f.Float32(p.Name, p.Var.Value.Shape())
		case "F64":
			vals, err = f.Float64(p.Name, p.Var.Value.Shape())
		default:
			err = fmt.Errorf("dlf: checkpoint tensor %q has dtype %s, want F32 or F64", p.Name, e.DType)
		}
		if err != nil {
			return err
		}
		p.Var.Value.Upload(vals)
	}
	var extra []string
	for _, name := range f.Names() {
		if m.reg.index[name] != nil {
			continue
		}
		skipped := false
		for _, s := range skip {
			if len(name) >= len(s) && name[:len(s)] == s {
				skipped = true
			}
		}
		if !skipped {
			extra = append(extra, name)
		}
	}
	if len(extra) > 0 {
		sort.Strings(extra)
		return fmt.Errorf("dlf: checkpoint has %d tensors this model does not, e.g. %q: it was written by a different model configuration", len(extra), extra[0])
	}
	return nil
}

// byVar returns the Param holding v, or nil.
func (r *registry) byVar(v *autodiff.Var) *Param {
	for _, p := range r.list {
		if p.Var == v {
			return p
		}
	}
	return nil
}

// CopyFrom copies every parameter and buffer value of src, a model of the same configuration on any
// backend and dtype (e.g. to move a model between the CPU and a GPU).
func (m *Model) CopyFrom(src *Model) error {
	if len(src.reg.list) != len(m.reg.list) {
		return fmt.Errorf("dlf: copy: source has %d tensors, destination %d: the configurations differ", len(src.reg.list), len(m.reg.list))
	}
	for i, p := range m.reg.list {
		q := src.reg.list[i]
		if q.Name != p.Name || !q.Shape.Equal(p.Shape) {
			return fmt.Errorf("dlf: copy: tensor %d is %s %v in the source and %s %v in the destination", i, q.Name, q.Shape, p.Name, p.Shape)
		}
		p.Var.Value.Upload(q.Var.Value.Float64s())
	}
	return m.be.Err()
}
