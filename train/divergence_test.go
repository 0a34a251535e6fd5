package train

import (
	"context"
	"math"
	"path/filepath"
	"strings"
	"testing"

	"dlf/dlf"
)

// TestLocateNonFinite checks both explanations of a non-finite loss: a parameter that already holds
// a NaN is named with its layer; otherwise the forward pass is re-run op by op and the first op and
// layer producing a non-finite value are named.
func TestLocateNonFinite(t *testing.T) {
	dev, m, job := evalModel(t)
	imgs := job.Train.Images[:4*job.Train.ImageSize()]
	if got := locateNonFinite(m, dev.Backend, imgs, 4, nil, 1, 0); !strings.Contains(got, "gave finite values everywhere") {
		t.Errorf("a finite model: %q", got)
	}
	// An overflow inside a layer: an actnorm scale of exp(100), beyond float32's range, in the
	// coupling network of level 1's first DLT.
	ls := m.Param("level1.step0.dlt.part1.actnorm1.logs")
	if ls == nil {
		t.Fatal("no level1.step0.dlt.part1.actnorm1.logs")
	}
	big := make([]float64, ls.Var.Value.Numel())
	for i := range big {
		big[i] = 100
	}
	ls.Var.Value.Upload(big)
	got := locateNonFinite(m, dev.Backend, imgs, 4, nil, 1, 0)
	if !strings.Contains(got, `the first non-finite value comes from op "actnorm`) || !strings.Contains(got, "in layer level1.step0.dlt") {
		t.Errorf("an overflowing weight: %q", got)
	}
	w := m.Param("level1.step0.invconv.weight")
	v := w.Var.Value.Float64s()
	v[0] = math.NaN()
	w.Var.Value.Upload(v)
	got = locateNonFinite(m, dev.Backend, imgs, 4, nil, 1, 0)
	if want := "parameter level1.step0.invconv.weight (layer level1.step0.invconv) holds a non-finite value at element 0"; !strings.Contains(got, want) {
		t.Errorf("a NaN parameter: %q, want %q", got, want)
	}
	if p := nonFiniteParam(m); p != "level1.step0.invconv.weight" {
		t.Errorf("nonFiniteParam = %q", p)
	}
}

// TestNonFiniteErrorText checks the two forms of the error: a non-finite loss, and an update that
// made a parameter non-finite while the loss was finite.
func TestNonFiniteErrorText(t *testing.T) {
	for _, c := range []struct {
		e    nonFiniteError
		want string
	}{
		{nonFiniteError{step: 7, loss: math.NaN(), where: "x"}, "step 7: the loss is NaN: x"},
		{nonFiniteError{step: 7, loss: math.Inf(1), where: "x"}, "step 7: the loss is +Inf: x"},
		{nonFiniteError{step: 3, where: "the update made parameter p non-finite"}, "step 3: the update made parameter p non-finite"},
		{nonFiniteError{step: 5, loss: 2.5, grads: true, where: "x"}, "step 5: the loss is finite (2.5000) but its gradients are not: x"},
	} {
		if got := c.e.Error(); got != c.want {
			t.Errorf("%q, want %q", got, c.want)
		}
	}
}

// TestEpochSums checks the batch-size weighting of the per-epoch training metrics.
func TestEpochSums(t *testing.T) {
	var s EpochSums
	if l, b, l2 := s.mean(); l != 0 || b != 0 || l2 != 0 {
		t.Errorf("empty sums: %v %v %v", l, b, l2)
	}
	s.add(3, 2, 1, 10)
	s.add(6, 5, 1, 30)
	l, b, l2 := s.mean()
	if l != 5.25 || b != 4.25 || l2 != 1 || s.Images != 40 {
		t.Errorf("mean %v %v %v over %d images, want 5.25 4.25 1 over 40", l, b, l2, s.Images)
	}
}

// TestNonFiniteGradients: a Glow coupling whose scale σ(h+2) underflows to 0 (h = −1000) has a
// finite forward pass and loss, and a finite backward pass when activations are kept; a backward pass
// that rebuilds them by inversion (Recompute) divides 0 by 0. The step must stop before its update,
// name the op and layer of the backward pass, and suggest --recompute=false.
func TestNonFiniteGradients(t *testing.T) {
	for _, recompute := range []bool{true, false} {
		job := tinyJob(t, filepath.Join(t.TempDir(), "r"), 64, 2)
		glow, err := dlf.Preset("glow-mnist")
		if err != nil {
			t.Fatal(err)
		}
		glow.Depth, glow.Width, glow.BatchSize, glow.Recompute = 1, 8, 16, recompute
		glow.ImageH, glow.ImageW, glow.ImageC, glow.Problem = 28, 28, 1, "mnist"
		job.Config = glow
		r, err := New(job, Hooks{})
		if err != nil {
			t.Fatal(err)
		}
		b := r.Model().Param("level1.step0.coupling.conv3.bias")
		if b == nil {
			t.Fatal("no level1.step0.coupling.conv3.bias")
		}
		v := b.Var.Value.Float64s()
		for i := 1; i < len(v); i += 2 { // h[1::2]: the scale's pre-activations
			v[i] = -1000
		}
		b.Var.Value.Upload(v)
		_, err = r.Train(context.Background())
		steps, bad := r.opt.Steps(), nonFiniteParam(r.Model())
		r.Close()
		if !recompute {
			if err != nil || steps != 2 {
				t.Errorf("kept activations: %v after %d steps, want 2 clean steps", err, steps)
			}
			continue
		}
		if err == nil {
			t.Fatal("recomputed activations: trained without an error")
		}
		for _, want := range []string{"step 1: the loss is finite", "gradients are not", `op "affine_inverse" of the backward pass in layer level1.step0.coupling`, "--recompute=false"} {
			if !strings.Contains(err.Error(), want) {
				t.Errorf("error %q lacks %q", err, want)
			}
		}
		if steps != 0 || bad != "" {
			t.Errorf("the bad step updated the model: %d optimizer steps, non-finite parameter %q", steps, bad)
		}
	}
}

// TestNonFiniteGradientsDataParallel is TestNonFiniteGradients with two CPU ranks: the averaged
// gradients are not finite on either rank, both refuse the update, and the error names a rank and
// the op.
func TestNonFiniteGradientsDataParallel(t *testing.T) {
	job := ddpJob(t, filepath.Join(t.TempDir(), "ddp"), 2)
	job.Config.Recompute = true
	r, err := New(job, Hooks{})
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	b := r.Model().Param("level1.step0.coupling.conv3.bias")
	v := b.Var.Value.Float64s()
	for i := 1; i < len(v); i += 2 {
		v[i] = -1000
	}
	b.Var.Value.Upload(v)
	_, err = r.Train(context.Background())
	if err == nil {
		t.Fatal("trained without an error")
	}
	for _, want := range []string{"step 1: the loss is finite", "gradients are not", `rank 0: the first non-finite value comes from op "affine_inverse" of the backward pass`, "--recompute=false"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q lacks %q", err, want)
		}
	}
	for i, m := range r.Replicas() {
		var steps int
		var bad string
		_ = r.ddpDevice(i).Do(func() error { bad = nonFiniteParam(m); return nil })
		steps = r.ddp.ranks[i].opt.Steps()
		if steps != 0 || bad != "" {
			t.Errorf("rank %d updated: %d optimizer steps, non-finite parameter %q", i, steps, bad)
		}
	}
}
