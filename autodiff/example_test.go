package autodiff_test

import (
	"fmt"

	"dlf/autodiff"
	"dlf/tensor"
	"dlf/tensor/cpu"
)

// A parameter, one recorded pass and its gradient: d/dw Σ (w·x)² = 2·w·x².
func ExampleTape_Backward() {
	be := cpu.New()
	w := autodiff.NewParam(tensor.FromFloat64(be, []float64{1, 2, 3}, 3))
	x := autodiff.NewVar(tensor.FromFloat64(be, []float64{0.5, -1, 2}, 3))

	tp := autodiff.NewTape()
	loss := tp.Sum(tp.Square(tp.Mul(w, x)), tensor.AxisAll)
	if err := tp.Backward(loss); err != nil {
		fmt.Println(err)
		return
	}
	fmt.Println(loss.Value.Item(), w.Grad.Float64s())
	// Output: 40.25 [0.5 4 24]
}
