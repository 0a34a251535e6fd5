//go:build !amd64 || purego

package gemm

// peakLoops is empty without amd64 assembly.
func peakLoops() []peakLoop { return nil }
