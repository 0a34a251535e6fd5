package autodiff

import (
	"math"
	"testing"

	"dlf/tensor"
)

// TestOnGradReadyFiresOnceWhenFinal checks that every leaf fires exactly once, that its Grad at
// that moment already equals the final gradient (later ops add nothing to it), that fire order
// is the reverse of last use, and that a leaf used twice fires only after its earlier use.
func TestOnGradReadyFiresOnceWhenFinal(t *testing.T) {
	r, _ := newRand(t)
	be := backend()
	w1 := NewParam(randTensor(be, tensor.Float64, r, signed, 3, 4))
	w2 := NewParam(randTensor(be, tensor.Float64, r, signed, 4, 2))
	b := NewParam(randTensor(be, tensor.Float64, r, signed, 2))
	unused := NewParam(randTensor(be, tensor.Float64, r, signed, 2))
	x := NewVar(randTensor(be, tensor.Float64, r, signed, 5, 3))

	tp := NewTape()
	h := tp.Tanh(tp.MatMul(x, w1, false, false)) // w1 used first (lowest node index)
	y := tp.Add(tp.MatMul(h, w2, false, false), tp.Reshape(b, 1, 2))
	y = tp.Mul(y, tp.Reshape(tp.Exp(b), 1, 2)) // b used a second time, later
	loss := tp.Sum(tp.Square(y), tensor.AxisAll)

	var order []*Var
	snap := map[*Var][]float64{}
	tp.OnGradReady(func(v *Var) {
		order = append(order, v)
		if v.Grad != nil {
			snap[v] = v.Grad.Float64s()
		}
	})
	if err := tp.Backward(loss); err != nil {
		t.Fatal(err)
	}
	if len(order) != 3 {
		t.Fatalf("fired %d times, want 3 (w1, w2, b once each; unused never)", len(order))
	}
	seen := map[*Var]int{}
	for i, v := range order {
		seen[v] = i
	}
	if _, ok := seen[unused]; ok {
		t.Fatal("a leaf no op reads fired")
	}
	// w1 is read by the first op, so its gradient is final last.
	if seen[w1] != 2 {
		t.Fatalf("w1 fired at position %d, want last", seen[w1])
	}
	for _, v := range []*Var{w1, w2, b} {
		got, final := snap[v], v.Grad.Float64s()
		for i := range final {
			if math.Abs(got[i]-final[i]) > 0 {
				t.Fatalf("gradient element %d changed after the ready callback: %g then %g", i, got[i], final[i])
			}
		}
	}
}
