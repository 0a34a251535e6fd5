package dlf

import (
	"fmt"
	"math"

	"dlf/autodiff"
	"dlf/tensor"
)

// Model is a multi-scale DLF or Glow flow (dlf-spec §2.3): L levels of Depth flow steps, a split with
// a learned conditional prior after every level but the last, and a learned top prior. It maps a
// preprocessed image batch x [N,H,W,C] to latents and computes its exact log-likelihood.
//
// A Model is not safe for concurrent use: passes read and (data init, optimizers) write its
// parameters in place.
type Model struct {
	cfg    Config
	be     tensor.Backend
	dt     tensor.DType
	reg    *registry
	levels []*level
	top    *topPrior
	// numW is the number of 1x1-conv weights, the denominator of the L2 term.
	numW int
	// initChecked records that Forward found every Glow actnorm initialised since the parameters
	// were last handed out.
	initChecked bool
	// pack and packed are Preprocess's reused host buffer and device tensor of packed image bytes
	// (the tensor stays allocated between batches of one size: a stream-ordered upload into it
	// follows the unpacking of the previous batch).
	pack   []float32
	packed *tensor.Tensor
	// noise is PreprocessInto's dequantisation-noise buffer, kept like packed.
	noise *tensor.Tensor
}

// level is one scale: its steps and, below the top, the split that follows them.
type level struct {
	steps []*step
	split *splitPrior
}

// New builds a model for cfg on be with parameters of dtype dt, initialised from cfg.Seed (dlf-spec
// §2.8; Glow's actnorms wait for DataInit). It returns cfg.Validate's error for a bad config.
func New(cfg Config, be tensor.Backend, dt tensor.DType) (*Model, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if !be.Supports(dt) {
		return nil, fmt.Errorf("dlf: backend %s does not support %v", be.Name(), dt)
	}
	reg := newRegistry(be, dt, cfg.Seed)
	reg.prec = cfg.ConvPrecision(be)
	m := build(cfg, reg)
	if err := be.Err(); err != nil {
		return nil, fmt.Errorf("dlf: allocating parameters on %s: %w", be.Name(), err)
	}
	return m, nil
}

// build creates the layers of cfg, registering their tensors in reg.
func build(cfg Config, reg *registry) *Model {
	m := &Model{cfg: cfg, be: reg.be, dt: reg.dt, reg: reg}
	for l := 0; l < cfg.Levels; l++ {
		_, _, c := cfg.ChannelsAt(l)
		lv := &level{}
		for s := 0; s < cfg.Depth; s++ {
			lv.steps = append(lv.steps, newStep(m.reg, &cfg, l, s, c))
			m.numW += c * c
		}
		if l < cfg.Levels-1 {
			lv.split = newSplitPrior(m.reg, &cfg, l, c)
		}
		m.levels = append(m.levels, lv)
	}
	m.top = newTopPrior(m.reg, &cfg)
	return m
}

// ParamShapes returns the name, shape and trainability of every tensor a model of c would have, in
// creation order, without allocating or initialising anything. c must be valid.
func (c *Config) ParamShapes() []Param {
	reg := &registry{index: map[string]*Param{}}
	build(*c, reg)
	out := make([]Param, len(reg.list))
	for i, p := range reg.list {
		out[i] = *p
	}
	return out
}

// NumParams returns the number of trainable scalars of a model of c (see Model.NumParams), without
// building it. c must be valid.
func (c *Config) NumParams() int {
	reg := &registry{index: map[string]*Param{}}
	build(*c, reg)
	return reg.numParams()
}

// Config returns the model's configuration.
func (m *Model) Config() Config { return m.cfg }

// Backend returns the backend holding the parameters.
func (m *Model) Backend() tensor.Backend { return m.be }

// DType returns the parameters' element type.
func (m *Model) DType() tensor.DType { return m.dt }

// checkInput validates a batch x and its condition against the model.
func (m *Model) checkInput(what string, x, cond *tensor.Tensor) error {
	s := x.Shape()
	c := m.cfg
	if len(s) != 4 || s[1] != c.ImageH || s[2] != c.ImageW || s[3] != c.ImageC || s[0] < 1 {
		return fmt.Errorf("dlf: %s: batch has shape %v, want [N %d %d %d]", what, s, c.ImageH, c.ImageW, c.ImageC)
	}
	if x.DType() != m.dt {
		return fmt.Errorf("dlf: %s: batch is %v, model is %v", what, x.DType(), m.dt)
	}
	if x.Backend() != m.be {
		return fmt.Errorf("dlf: %s: batch lives on backend %s, a different instance from the model's %s", what, x.Backend().Name(), m.be.Name())
	}
	return m.checkCond(what, cond, s[0])
}

func (m *Model) checkCond(what string, cond *tensor.Tensor, n int) error {
	switch {
	case m.cfg.Conditioning && cond == nil:
		return fmt.Errorf("dlf: %s: the model is class-conditional: pass one-hot labels (Model.OneHot)", what)
	case !m.cfg.Conditioning && cond != nil:
		return fmt.Errorf("dlf: %s: labels given to a model without conditioning", what)
	case cond != nil && !cond.Shape().Equal(tensor.Shape{n, m.cfg.NumClasses}):
		return fmt.Errorf("dlf: %s: condition has shape %v, want [%d %d]", what, cond.Shape(), n, m.cfg.NumClasses)
	}
	return nil
}

// OneHot returns the one-hot condition [N, classes] for labels, or an error naming the first label
// outside 0..classes−1.
func (m *Model) OneHot(labels []int32) (*tensor.Tensor, error) {
	k := m.cfg.NumClasses
	if k < 1 {
		return nil, fmt.Errorf("dlf: one-hot labels need num_classes > 0")
	}
	v := make([]float64, len(labels)*k)
	for i, y := range labels {
		if y < 0 || int(y) >= k {
			return nil, fmt.Errorf("dlf: label %d of example %d is outside 0..%d", y, i, k-1)
		}
		v[i*k+int(y)] = 1
	}
	t := tensor.New(m.be, m.dt, len(labels), k)
	t.Upload(v)
	return t, nil
}

// collector receives the latents of an encoding pass.
type collector struct {
	z, eps []*tensor.Tensor
}

// addLD returns a + b for per-example sums, where a may be nil (nothing yet), and releases a and b.
// The level loop of run releases as it goes instead of in an arena: with recompute, a step's output
// is the only reference to that activation, so holding the outputs until the pass ends would store
// every activation that recomputing exists to drop.
func addLD(t *autodiff.Tape, a, b *autodiff.Var) *autodiff.Var {
	if a == nil {
		return b
	}
	s := t.Add(a, b)
	a.Release()
	b.Release()
	return s
}

// run is the data → latent pass shared by training, evaluation and encoding. It returns the
// per-example sums of the flow's log-determinants and of the priors' log-densities. keep receives
// Vars that must stay alive until the backward pass (outputs of recomputing steps whose consumer
// does not rebuild them); col, when non-nil, receives the latents.
func (m *Model) run(e *env, x *autodiff.Var, keep *[]*autodiff.Var, col *collector) (ld, lp *autodiff.Var) {
	t := e.t
	recompute := m.cfg.Recompute && t.Recording()
	z := t.Squeeze2(x)
	for _, lv := range m.levels {
		for _, s := range lv.steps {
			y, sld := s.apply(e, z, recompute)
			ld = addLD(t, ld, sld)
			z.Release()
			z = y
		}
		if recompute {
			// The split's ops do not rebuild their input, so the level's last output stays.
			*keep = append(*keep, z)
		}
		if lv.split == nil {
			break
		}
		c := z.Value.Dim(-1)
		parts := t.SplitChannels(z, c/2, c/2)
		if !recompute {
			z.Release()
		}
		z1, z2 := parts[0], parts[1]
		lp = addLD(t, lp, lv.split.logProb(t, z1, z2))
		if col != nil {
			col.z = append(col.z, tensor.Clone(z2.Value))
			col.eps = append(col.eps, lv.split.eps(z1.Value, z2.Value))
		}
		z2.Release()
		nz := t.Squeeze2(z1)
		z1.Release()
		z = nz
	}
	lp = addLD(t, lp, m.top.logProb(e, z))
	if col != nil {
		col.z = append(col.z, tensor.Clone(z.Value))
		col.eps = append(col.eps, m.top.eps(e, z.Value))
	}
	if !recompute {
		z.Release()
	}
	return ld, lp
}

// Result is the outcome of a training or evaluation pass.
type Result struct {
	// Loss is the scalar to minimise: mean bits/dim plus the L2 term (dlf-spec §2.7).
	Loss *autodiff.Var
	// Objective is the per-example objective [N] in nats: −D·ln(n_bins) + Σ log-determinants +
	// Σ prior log-densities, the log-density of the dequantised batch in n_bins units per dimension,
	// which lower-bounds the log-likelihood of the discrete images (dlf-spec §2.7).
	Objective *autodiff.Var
	// BitsPerDim is the per-example −Objective/(D·ln 2) [N]; its mean is the reported bits/dim.
	BitsPerDim *autodiff.Var
	// L2 is the L2 term (nil when l2_factor is 0).
	L2 *autodiff.Var

	keep []*autodiff.Var
}

// Release frees the pass's values. Call it after Backward (or after reading the values).
func (r *Result) Release() {
	release(r.Loss, r.Objective, r.BitsPerDim, r.L2)
	release(r.keep...)
	r.keep = nil
}

// MeanBitsPerDim downloads the batch mean of BitsPerDim.
func (r *Result) MeanBitsPerDim() float64 {
	v := r.BitsPerDim.Value.Float64s()
	s := 0.0
	for _, b := range v {
		s += b
	}
	return s / float64(len(v))
}

// Forward runs the model on a preprocessed batch x [N,H,W,C] (see Preprocess) with the one-hot
// condition cond (nil without conditioning), recording on t for a later t.Backward(res.Loss) (pass
// autodiff.NoGrad() to evaluate). With Config.Recompute the pass keeps only each level's last
// activation; the backward rebuilds the rest by inverting the steps.
func (m *Model) Forward(t *autodiff.Tape, x, cond *tensor.Tensor) (*Result, error) {
	if err := m.checkInput("forward", x, cond); err != nil {
		return nil, err
	}
	// The flags are read from the device once, not every step (each read waits for the GPU): the
	// answer stays valid until the parameters are handed out again (Params, Param), the only way to
	// change them from outside.
	if !m.initChecked {
		if m.NeedsDataInit() {
			return nil, fmt.Errorf("dlf: forward: the data-initialised actnorms are not initialised: call DataInit with a batch first")
		}
		m.initChecked = true
	}
	var cv *autodiff.Var
	if cond != nil {
		cv = constVar(cond)
	}
	xv := constVar(x)
	res := m.forward(t, xv, cv)
	xv.Release()
	release(cv) // res holds its own reference when a recomputing backward needs it
	return res, m.be.Err()
}

// forward is Forward on Vars, so that tests can differentiate with respect to x.
func (m *Model) forward(t *autodiff.Tape, x, cond *autodiff.Var) *Result {
	if t == nil {
		// A nil tape records nothing, like NoGrad, but has no arenas: the layers need one.
		t = autodiff.NoGrad()
	}
	e := &env{t: t}
	res := &Result{}
	if cond != nil {
		// A recomputing backward re-runs the steps with the condition, so it lives as long as res.
		e.cond = autodiff.Detach(cond)
		res.keep = append(res.keep, e.cond)
	}
	ld, lp := m.run(e, x, &res.keep, nil)
	d := float64(m.cfg.Dims())
	s := t.Add(ld, lp)
	release(ld, lp)
	res.Objective = t.AddConst(s, -d*math.Log(math.Exp2(float64(m.cfg.NumBits))))
	s.Release()
	res.BitsPerDim = t.Scale(res.Objective, -1/(d*math.Ln2))
	loss := t.Mean(res.BitsPerDim, tensor.AxisAll)
	if m.cfg.L2Factor > 0 {
		res.L2 = m.l2(t)
		l := t.Add(loss, res.L2)
		loss.Release()
		loss = l
	}
	res.Loss = loss
	return res
}

// l2 returns (l2_factor / n_W)·Σ ½W² over every 1x1-conv weight (dlf-spec §2.7).
func (m *Model) l2(t *autodiff.Tape) *autodiff.Var {
	var sum *autodiff.Var
	for _, lv := range m.levels {
		for _, s := range lv.steps {
			sum = addLD(t, sum, s.inv.sumSquares(t, s.u.vars))
		}
	}
	out := t.Scale(sum, m.cfg.L2Factor/float64(m.numW))
	sum.Release()
	return out
}

// NeedsDataInit reports whether some data-initialised actnorm (Glow's, or DLF's hyper-networks'
// with InitData) has not been initialised.
func (m *Model) NeedsDataInit() bool {
	for _, p := range m.reg.list {
		if isInitFlag(p.Name) && p.Var.Value.Item() == 0 {
			return true
		}
	}
	return false
}

func isInitFlag(name string) bool {
	const suffix = ".initialized"
	return len(name) > len(suffix) && name[len(name)-len(suffix):] == suffix
}

// DataInit performs Glow's data-dependent actnorm initialisation with the batch x (Kingma &
// Dhariwal 2018, §3.1): one forward pass in which every actnorm not yet initialised sets its bias
// and scale so that its output has zero mean and unit variance per channel. It does nothing for
// models without such actnorms (DLF unless Config.Init is InitData) and for actnorms whose flag
// (saved in checkpoints) is already set.
func (m *Model) DataInit(x, cond *tensor.Tensor) error {
	if err := m.checkInput("data init", x, cond); err != nil {
		return err
	}
	if !m.NeedsDataInit() {
		return nil
	}
	e := &env{t: autodiff.NoGrad(), dataInit: true}
	if cond != nil {
		e.cond = constVar(cond)
		defer e.cond.Release()
	}
	xv := constVar(x)
	ld, lp := m.run(e, xv, nil, nil)
	release(xv, ld, lp)
	return m.be.Err()
}
