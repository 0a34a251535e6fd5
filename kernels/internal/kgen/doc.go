// Package kgen is the logic of the kernel-launcher generator (kernels/gen):
// it parses the extern "C" __global__ kernel signatures of CUDA sources,
// parses the .entry declarations of the PTX that nvcc made from them, checks
// the two against each other, and writes the typed Go launchers of package
// kernels. It lives in a library (not in the generator's package main) so
// that package kernels' tests can re-run it in memory and catch a
// hand-edited or stale launch_gen.go without nvcc.
package kgen
