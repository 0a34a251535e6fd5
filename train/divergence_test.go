package train

import (
	"math"
	"strings"
	"testing"
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
