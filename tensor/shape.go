package tensor

import (
	"fmt"
	"strings"
)

// Shape is a tensor's dimensions, outermost first. 4-D activations are [N, H, W, C].
type Shape []int

// Numel returns the number of elements (1 for a rank-0 shape).
func (s Shape) Numel() int {
	n := 1
	for _, d := range s {
		n *= d
	}
	return n
}

// Equal reports whether two shapes have the same rank and dimensions.
func (s Shape) Equal(o Shape) bool {
	if len(s) != len(o) {
		return false
	}
	for i := range s {
		if s[i] != o[i] {
			return false
		}
	}
	return true
}

// Clone returns a copy that does not share the backing array.
func (s Shape) Clone() Shape { return append(Shape(nil), s...) }

// String formats the shape as [2 14 14 4].
func (s Shape) String() string {
	parts := make([]string, len(s))
	for i, d := range s {
		parts[i] = fmt.Sprint(d)
	}
	return "[" + strings.Join(parts, " ") + "]"
}

// NHWC splits a rank-4 shape into its dimensions; it panics on any other rank.
func (s Shape) NHWC() (n, h, w, c int) {
	if len(s) != 4 {
		panic(fmt.Sprintf("tensor: want an NHWC shape, got %v", s))
	}
	return s[0], s[1], s[2], s[3]
}

// Rows returns the product of all dimensions but the last, and the last: the [rows, C] matrix view of
// an NHWC tensor that 1x1 convolutions and per-channel ops use.
func (s Shape) Rows() (rows, cols int) {
	if len(s) == 0 {
		return 1, 1
	}
	return Shape(s[:len(s)-1]).Numel(), s[len(s)-1]
}

func (s Shape) valid() bool {
	for _, d := range s {
		if d < 0 {
			return false
		}
	}
	return true
}
