package tensor

import (
	"fmt"
	"math"
)

// Precision selects the arithmetic of GEMM and convolution on Float32 tensors; it is a per-call
// setting (ConvParams.Precision, GemmPrecision), as cuBLAS takes a compute type per call, so one
// model can run its convolutions in TF32 next to an invertible 1×1 convolution in FP32 with no
// global state between them. Float64 tensors are always computed in float64.
type Precision uint8

const (
	// FP32 multiplies and adds in float32 (the zero value: exact single precision).
	FP32 Precision = iota
	// TF32 rounds both operands to TF32 — float32 with a 10-bit mantissa, by RoundTF32 — and
	// accumulates the (exact) products in float32: NVIDIA's tensor-core format on sm_80 and newer,
	// and PyTorch's default for convolutions there. The CPU backend rounds the same way, so the two
	// backends multiply identical values and differ only in summation order.
	TF32
)

// String returns "fp32" or "tf32".
func (p Precision) String() string {
	switch p {
	case FP32:
		return "fp32"
	case TF32:
		return "tf32"
	}
	return fmt.Sprintf("Precision(%d)", uint8(p))
}

// valid reports whether p is FP32 or TF32.
func (p Precision) valid() bool { return p == FP32 || p == TF32 }

// ParsePrecision reads "fp32" or "tf32".
func ParsePrecision(s string) (Precision, error) {
	switch s {
	case "fp32":
		return FP32, nil
	case "tf32":
		return TF32, nil
	}
	return FP32, fmt.Errorf("precision %q is not fp32 or tf32", s)
}

// RoundTF32 rounds x to TF32 exactly as the CUDA kernels' cvt.rna.tf32.f32 does: to nearest, ties
// away from zero, at the 10th mantissa bit, by adding half a unit (0x1000) to the bit pattern and
// clearing the 13 low bits (the carry propagates into the exponent, up to Inf). Inf and NaN pass
// unchanged. (Rounding facts: shared/reference/graphs-tf32-mpi-nccl.md §2.3, from a SASS dump of
// cvt.rna on sm_86.)
func RoundTF32(x float32) float32 {
	b := math.Float32bits(x)
	if b&0x7f800000 == 0x7f800000 {
		return x
	}
	return math.Float32frombits((b + 0x1000) &^ 0x1fff)
}

// RoundTF32Slice rounds every element of s in place with RoundTF32.
func RoundTF32Slice(s []float32) {
	for i, v := range s {
		s[i] = RoundTF32(v)
	}
}
