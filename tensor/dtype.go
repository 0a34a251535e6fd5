package tensor

import "fmt"

// DType is the element type of a tensor.
type DType uint8

// The element types. The zero value is invalid so that a forgotten dtype is caught.
const (
	Float32 DType = iota + 1
	Float64
)

// Size returns the size of one element in bytes.
func (d DType) Size() int {
	switch d {
	case Float32:
		return 4
	case Float64:
		return 8
	}
	panic(fmt.Sprintf("tensor: invalid dtype %d", d))
}

// String returns the conventional lower-case name ("float32", "float64").
func (d DType) String() string {
	switch d {
	case Float32:
		return "float32"
	case Float64:
		return "float64"
	}
	return fmt.Sprintf("dtype(%d)", d)
}

// ParseDType maps "float32"/"float64" (also "f32"/"f64") to a DType.
func ParseDType(s string) (DType, error) {
	switch s {
	case "float32", "f32", "F32":
		return Float32, nil
	case "float64", "f64", "F64":
		return Float64, nil
	}
	return 0, fmt.Errorf("unknown dtype %q (want float32 or float64)", s)
}
