package dlf

import (
	"math"
	"testing"

	"dlf/autodiff"
	"dlf/tensor"
	"dlf/tensor/cuda"
	"dlf/tensor/cuda/cu/gputest"
)

// TestGPUParity runs the same model and batch on the CPU and on CUDA (float32) and requires the same
// loss, per-example objective, gradients of every parameter and latents to 1e-4 relative, for DLF
// (both decompositions, K = 4, recompute) and Glow, with convolutions in FP32 and in TF32 on both
// backends for DLF. TF32 keeps the same bound there because both backends round operands
// identically (tensor.RoundTF32 = cvt.rna; each op meets the conformance suite's γ_(K+2) bound).
// Glow at TF32 is left out on purpose: rounding to 10 mantissa bits is discontinuous, so the ~1e-7
// relative differences that float32 summation order leaves upstream flip the rounding of a few
// operands by 2⁻¹¹ each, and Glow (data-initialised actnorms, coupling scales near 1) amplifies
// them: measured on the emulator, latents 2.6e-4 and gradients up to 3e-2 apart, while on the CPU
// alone a 1e-6 relative change of the input moves Glow's TF32 gradients by 6e-4 to 2.4e-3 (FP32:
// under 1e-6). No bound tighter than that sensitivity is meaningful for Glow at TF32.
// It skips without a GPU (REQUIRE_GPU=1 fails).
func TestGPUParity(t *testing.T) {
	dev := gputest.Device(t)
	gb, err := cuda.NewOnDevice(dev)
	if err != nil {
		t.Fatal(err)
	}
	defer gb.Close()
	cases := []struct {
		name string
		edit func(c *Config)
	}{
		{"mnist-small/decomp=0", func(c *Config) {}},
		{"mnist-small/decomp=1/recompute", func(c *Config) { c.Decomposition, c.Recompute = 1, true }},
		{"cifar10-small/K=4/lu", func(c *Config) {
			*c, _ = Preset("cifar10")
			c.Depth, c.Width, c.Parts, c.InvConv = 3, 64, 4, InvConvLU
		}},
		{"glow-mnist-small", func(c *Config) { *c, _ = Preset("glow-mnist"); c.Depth, c.Width = 3, 64 }},
		{"mnist-small/identity/decomp=0", func(c *Config) { c.Init = InitIdentity }},
		{"mnist-small/identity/decomp=1", func(c *Config) { c.Init, c.Decomposition = InitIdentity, 1 }},
		{"mnist-small/data-init", func(c *Config) { c.Init = InitData }},
		{"mnist-small/tf32", func(c *Config) { c.Precision = PrecisionTF32 }},
		{"cifar10-small/K=4/tf32", func(c *Config) {
			*c, _ = Preset("cifar10")
			c.Depth, c.Width, c.Parts, c.Precision = 3, 64, 4, PrecisionTF32
		}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			cfg, _ := Preset("mnist")
			cfg.Depth, cfg.Width = 4, 64
			tc.edit(&cfg)
			if cfg.Precision == PrecisionAuto {
				cfg.Precision = PrecisionFP32 // not auto, which would give TF32 on CUDA only
			}
			cm, err := New(cfg, testBackend(), tensor.Float32)
			if err != nil {
				t.Fatal(err)
			}
			gm, err := New(cfg, gb, tensor.Float32)
			if err != nil {
				t.Fatal(err)
			}
			r := testRand(t, 51)
			const n = 8
			imgs := make([]uint8, n*cfg.Dims())
			for i := range imgs {
				imgs[i] = uint8(r.IntN(256))
			}
			cx, _, err := cm.Preprocess(imgs, n, false, 3, 0)
			if err != nil {
				t.Fatal(err)
			}
			gx, _, err := gm.Preprocess(imgs, n, false, 3, 0)
			if err != nil {
				t.Fatal(err)
			}
			if d, s := maxAbsDiff(gx.Float64s(), cx.Float64s()); d > 1e-6*s {
				t.Fatalf("preprocessed batches differ by %g", d)
			}
			// Perturbed first, then data-initialised, as training initialises the actnorms of the
			// network they will see: the other order leaves InitData's actnorms normalising
			// activations the perturbed convolutions no longer produce (a loss of 370 bits/dim).
			perturb(r, cm.Params(), 0.02)
			if err := cm.DataInit(cx, nil); err != nil {
				t.Fatal(err)
			}
			if err := gm.CopyFrom(cm); err != nil {
				t.Fatal(err)
			}
			type out struct {
				loss  float64
				obj   []float64
				grads [][]float64
			}
			run := func(m *Model, x *tensor.Tensor) out {
				tp := autodiff.NewTape()
				res, err := m.Forward(tp, x, nil)
				if err != nil {
					t.Fatal(err)
				}
				if err := tp.Backward(res.Loss); err != nil {
					t.Fatal(err)
				}
				o := out{loss: res.Loss.Value.Item(), obj: res.Objective.Value.Float64s()}
				res.Release()
				for _, p := range m.Params() {
					if p.Trainable {
						o.grads = append(o.grads, p.Var.Grad.Float64s())
					}
				}
				m.ZeroGrad()
				if err := m.Backend().Sync(); err != nil {
					t.Fatal(err)
				}
				return o
			}
			c, g := run(cm, cx), run(gm, gx)
			if math.Abs(c.loss-g.loss) > 1e-4*math.Abs(c.loss) {
				t.Errorf("loss: cpu %.8g, cuda %.8g", c.loss, g.loss)
			}
			if d, s := maxAbsDiff(g.obj, c.obj); d > 1e-4*s {
				t.Errorf("objective differs by %.3g (scale %.3g)", d, s)
			}
			worst, worstName := 0.0, ""
			i := 0
			for _, p := range cm.Params() {
				if !p.Trainable {
					continue
				}
				d, s := maxAbsDiff(g.grads[i], c.grads[i])
				if s > 0 && d/s > worst {
					worst, worstName = d/s, p.Name
				}
				if d > 1e-4*s {
					t.Errorf("gradient of %s: cuda differs from cpu by %.3g relative (scale %.3g)", p.Name, d/s, s)
				}
				i++
			}
			t.Logf("loss cpu %.8g cuda %.8g; worst gradient difference %.2g relative (%s)", c.loss, g.loss, worst, worstName)

			ce, err := cm.Encode(cx, nil)
			if err != nil {
				t.Fatal(err)
			}
			ge, err := gm.Encode(gx, nil)
			if err != nil {
				t.Fatal(err)
			}
			for l := range ce.Z {
				if d, s := maxAbsDiff(ge.Z[l].Float64s(), ce.Z[l].Float64s()); d > 1e-4*s {
					t.Errorf("latent %d differs by %.3g relative", l, d/s)
				}
			}
			// Decode(Encode(x)) = x is checked where float32 can represent the round trip. The
			// reference DLT initialisation (shift 1, ℓ ≈ −2.2, dlf-spec §2.8) contracts every step
			// towards a fixed point, losing about one decimal digit of x per step, so after a few
			// steps float32 decodes garbage on the CPU and on CUDA alike (measured: 87 and 145 at
			// depth 4 on the emulator); the float64 model tests cover that initialisation's inverse.
			if cfg.Init == InitIdentity || cfg.Init == InitData || cfg.Flow == FlowGlow {
				xr, err := gm.Decode(ge.Z, nil)
				if err != nil {
					t.Fatal(err)
				}
				if d, _ := maxAbsDiff(xr.Float64s(), gx.Float64s()); d > 1e-4 {
					t.Errorf("cuda Decode(Encode(x)) differs from x by %.3g", d)
				}
			}
		})
	}
}
