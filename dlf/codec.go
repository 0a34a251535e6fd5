package dlf

import (
	"fmt"
	"math"

	"dlf/autodiff"
	"dlf/tensor"
)

// Encoding is a batch mapped to its multi-scale latents.
type Encoding struct {
	// Z[l] for l < L−1 is the half of level l's output that its split factors out
	// [N, H/2^(l+1), W/2^(l+1), C_l/2]; Z[L−1] is the top latent.
	Z []*tensor.Tensor
	// Eps are the same latents normalised by their priors, ε = (z − μ)·exp(−log σ): standard normal
	// under the model, the space sampling and interpolation work in.
	Eps []*tensor.Tensor
	// LogDet is the per-example log|det ∂(latents)/∂x| of the flow [N].
	LogDet *tensor.Tensor
	// LogPrior is the per-example Σ log p(latents) of the split and top priors [N].
	LogPrior *tensor.Tensor
}

// Release frees every tensor of the encoding.
func (en *Encoding) Release() {
	for _, t := range append(append([]*tensor.Tensor(nil), en.Z...), en.Eps...) {
		t.Release()
	}
	en.LogDet.Release()
	en.LogPrior.Release()
	en.Z, en.Eps = nil, nil
}

// LatentShapes returns the shapes of Encoding.Z (and Eps) for a batch of n.
func (m *Model) LatentShapes(n int) []tensor.Shape {
	var out []tensor.Shape
	for l := 0; l < m.cfg.Levels; l++ {
		h, w, c := m.cfg.ChannelsAt(l)
		if l < m.cfg.Levels-1 {
			out = append(out, tensor.Shape{n, h, w, c / 2})
		} else {
			out = append(out, tensor.Shape{n, h, w, c})
		}
	}
	return out
}

// Encode maps a preprocessed batch x to its latents, with the flow's log-determinant and the priors'
// log-density; the model's objective is −D·ln(n_bins) + LogDet + LogPrior.
func (m *Model) Encode(x, cond *tensor.Tensor) (*Encoding, error) {
	if err := m.checkInput("encode", x, cond); err != nil {
		return nil, err
	}
	e := &env{t: autodiff.NoGrad()}
	if cond != nil {
		e.cond = constVar(cond)
		defer e.cond.Release()
	}
	col := &collector{}
	xv := constVar(x)
	ld, lp := m.run(e, xv, nil, col)
	xv.Release()
	en := &Encoding{Z: col.z, Eps: col.eps, LogDet: ld.Value, LogPrior: lp.Value}
	return en, m.be.Err()
}

// checkLatents validates latents against the model and returns the batch size.
func (m *Model) checkLatents(what string, zs []*tensor.Tensor) (int, error) {
	if len(zs) != m.cfg.Levels {
		return 0, fmt.Errorf("dlf: %s: %d latents, want one per level (%d)", what, len(zs), m.cfg.Levels)
	}
	n := zs[0].Dim(0)
	for l, want := range m.LatentShapes(n) {
		if !zs[l].Shape().Equal(want) {
			return 0, fmt.Errorf("dlf: %s: latent %d has shape %v, want %v", what, l, zs[l].Shape(), want)
		}
		if zs[l].DType() != m.dt || zs[l].Backend() != m.be {
			return 0, fmt.Errorf("dlf: %s: latent %d is %v on backend %s, the model is %v on %s (the same backend instance is required)", what, l, zs[l].DType(), zs[l].Backend().Name(), m.dt, m.be.Name())
		}
	}
	return n, nil
}

// decode runs the flow backwards from the top latent z, asking split(l, z1) for the factored-out
// half of level l given the kept half.
func (m *Model) decode(e *env, top *tensor.Tensor, split func(l int, z1 *tensor.Tensor) *tensor.Tensor) (*tensor.Tensor, error) {
	z := tensor.Clone(top)
	for l := m.cfg.Levels - 1; l >= 0; l-- {
		if l < m.cfg.Levels-1 {
			n, h, w, c := z.Shape().NHWC()
			z1 := tensor.New(m.be, m.dt, n, 2*h, 2*w, c/4)
			tensor.Unsqueeze2(z1, z)
			z.Release()
			z2 := split(l, z1)
			z = tensor.New(m.be, m.dt, n, 2*h, 2*w, c/2)
			tensor.ConcatChannels(z, z1, z2)
			z1.Release()
			z2.Release()
		}
		steps := m.levels[l].steps
		for s := len(steps) - 1; s >= 0; s-- {
			x, ld, err := steps[s].inverse(e, z)
			z.Release()
			if err != nil {
				return nil, err
			}
			ld.Release()
			z = x
		}
	}
	n, h, w, c := z.Shape().NHWC()
	x := tensor.New(m.be, m.dt, n, 2*h, 2*w, c/4)
	tensor.Unsqueeze2(x, z)
	z.Release()
	return x, m.be.Err()
}

// Decode maps latents Z (as Encode returns them) back to the batch x, exactly up to rounding.
func (m *Model) Decode(zs []*tensor.Tensor, cond *tensor.Tensor) (*tensor.Tensor, error) {
	n, err := m.checkLatents("decode", zs)
	if err != nil {
		return nil, err
	}
	if err := m.checkCond("decode", cond, n); err != nil {
		return nil, err
	}
	e := &env{t: autodiff.NoGrad()}
	if cond != nil {
		e.cond = constVar(cond)
		defer e.cond.Release()
	}
	return m.decode(e, zs[m.cfg.Levels-1], func(l int, _ *tensor.Tensor) *tensor.Tensor { return tensor.Clone(zs[l]) })
}

// DecodeEps maps normalised latents ε (Encoding.Eps, or standard normals for sampling) to x: each
// level's z = μ + σ·ε with μ, σ from its prior, then the inverse flow.
func (m *Model) DecodeEps(eps []*tensor.Tensor, cond *tensor.Tensor) (*tensor.Tensor, error) {
	n, err := m.checkLatents("decode", eps)
	if err != nil {
		return nil, err
	}
	if err := m.checkCond("decode", cond, n); err != nil {
		return nil, err
	}
	e := &env{t: autodiff.NoGrad()}
	if cond != nil {
		e.cond = constVar(cond)
		defer e.cond.Release()
	}
	top := m.top.sample(e, eps[m.cfg.Levels-1])
	defer top.Release()
	return m.decode(e, top, func(l int, z1 *tensor.Tensor) *tensor.Tensor { return m.levels[l].split.sample(z1, eps[l]) })
}

// Sample draws n images (as continuous x; see Postprocess) at the given temperature T: ε ~ N(0, T²)
// at the top and, with mode TemperatureAll (Glow), at every level; with TemperatureTop (DLF's
// visualisation, dlf-spec §2.9) the lower levels draw ε ~ N(0, 1). mode "" means
// Config.Temperature. The noise is Philox normals for (seed, offset); the returned offset is the next
// unused one.
func (m *Model) Sample(n int, temperature float64, mode string, cond *tensor.Tensor, seed, offset uint64) (*tensor.Tensor, uint64, error) {
	if n < 1 {
		return nil, offset, fmt.Errorf("dlf: sample: %d images, want at least 1", n)
	}
	if temperature < 0 || math.IsNaN(temperature) {
		return nil, offset, fmt.Errorf("dlf: sample: temperature %g is not ≥ 0", temperature)
	}
	if mode == "" {
		mode = m.cfg.Temperature
	}
	if mode != TemperatureTop && mode != TemperatureAll {
		return nil, offset, fmt.Errorf("dlf: sample: temperature mode %q is neither %q nor %q", mode, TemperatureTop, TemperatureAll)
	}
	shapes := m.LatentShapes(n)
	eps := make([]*tensor.Tensor, len(shapes))
	for l, s := range shapes {
		eps[l] = tensor.New(m.be, m.dt, s...)
		offset = tensor.RandNormal(eps[l], seed, offset)
		if l == len(shapes)-1 || mode == TemperatureAll {
			tensor.UnaryT(tensor.Scale, eps[l], eps[l], temperature, 0)
		}
	}
	x, err := m.DecodeEps(eps, cond)
	for _, t := range eps {
		t.Release()
	}
	return x, offset, err
}

// Interpolate encodes two batches of the same size and decodes len(ts) mixtures of their normalised
// latents, (1−t)·ε_a + t·ε_b at every level, as the reference's demo does in the full multi-level ε
// space. It returns one batch per t.
func (m *Model) Interpolate(a, b, cond *tensor.Tensor, ts []float64) ([]*tensor.Tensor, error) {
	if !a.Shape().Equal(b.Shape()) {
		return nil, fmt.Errorf("dlf: interpolate: batches of shapes %v and %v", a.Shape(), b.Shape())
	}
	ea, err := m.Encode(a, cond)
	if err != nil {
		return nil, err
	}
	defer ea.Release()
	eb, err := m.Encode(b, cond)
	if err != nil {
		return nil, err
	}
	defer eb.Release()
	var out []*tensor.Tensor
	for _, tv := range ts {
		mix := make([]*tensor.Tensor, len(ea.Eps))
		for l := range mix {
			mix[l] = tensor.Clone(ea.Eps[l])
			tensor.UnaryT(tensor.Scale, mix[l], mix[l], 1-tv, 0)
			tensor.Axpy(tv, eb.Eps[l], mix[l])
		}
		x, err := m.DecodeEps(mix, cond)
		for _, t := range mix {
			t.Release()
		}
		if err != nil {
			for _, o := range out {
				o.Release()
			}
			return nil, err
		}
		out = append(out, x)
	}
	return out, nil
}
