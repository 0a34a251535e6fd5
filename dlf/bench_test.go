package dlf

import (
	"fmt"
	"testing"

	"dlf/autodiff"
	"dlf/tensor"
	"dlf/tensor/cpu"
)

// benchModel builds preset name with depth overridden (0 keeps the preset's) and a preprocessed batch
// of n random images on the CPU backend.
func benchModel(b *testing.B, name string, depth, n int, recompute bool) (*Model, *tensor.Tensor) {
	cfg, err := Preset(name)
	if err != nil {
		b.Fatal(err)
	}
	if depth > 0 {
		cfg.Depth = depth
	}
	cfg.Recompute = recompute
	m, err := New(cfg, cpu.New(), tensor.Float32)
	if err != nil {
		b.Fatal(err)
	}
	imgs := make([]uint8, n*cfg.Dims())
	for i := range imgs {
		imgs[i] = uint8(i * 7)
	}
	x, _, err := m.Preprocess(imgs, n, false, 1, 0)
	if err != nil {
		b.Fatal(err)
	}
	if err := m.DataInit(x, nil); err != nil {
		b.Fatal(err)
	}
	return m, x
}

// BenchmarkTrainStep times one forward + backward of the loss (no optimizer update) on the CPU:
// the mnist preset at full depth and a depth-4 cifar10, storing or recomputing activations.
// Reported: images/s.
func BenchmarkTrainStep(b *testing.B) {
	for _, bc := range []struct {
		preset       string
		depth, batch int
	}{{"mnist", 0, 16}, {"cifar10", 4, 4}, {"glow-cifar10", 4, 4}} {
		for _, rec := range []bool{false, true} {
			b.Run(fmt.Sprintf("%s/depth=%d/batch=%d/recompute=%v", bc.preset, bc.depth, bc.batch, rec), func(b *testing.B) {
				m, x := benchModel(b, bc.preset, bc.depth, bc.batch, rec)
				b.ResetTimer()
				for i := 0; i < b.N; i++ {
					tp := autodiff.NewTape()
					res, err := m.Forward(tp, x, nil)
					if err != nil {
						b.Fatal(err)
					}
					if err := tp.Backward(res.Loss); err != nil {
						b.Fatal(err)
					}
					res.Release()
					m.ZeroGrad()
				}
				b.ReportMetric(float64(bc.batch*b.N)/b.Elapsed().Seconds(), "images/s")
			})
		}
	}
}

// BenchmarkEncodeDecode times encoding and decoding (sampling's inverse pass) of the mnist preset.
func BenchmarkEncodeDecode(b *testing.B) {
	m, x := benchModel(b, "mnist", 0, 16, false)
	b.Run("encode", func(b *testing.B) {
		for i := 0; i < b.N; i++ {
			en, err := m.Encode(x, nil)
			if err != nil {
				b.Fatal(err)
			}
			en.Release()
		}
	})
	en, err := m.Encode(x, nil)
	if err != nil {
		b.Fatal(err)
	}
	b.Run("decode", func(b *testing.B) {
		for i := 0; i < b.N; i++ {
			y, err := m.Decode(en.Z, nil)
			if err != nil {
				b.Fatal(err)
			}
			y.Release()
		}
	})
}
