//go:build !amd64 || purego

package gemm

// Without amd64 assembly (other architectures, or the purego build tag) only
// the portable kernels exist.
var (
	avx512Kernels32 []*kernel[float32]
	avx512Kernels64 []*kernel[float64]
	avx2Kernels32   []*kernel[float32]
	avx2Kernels64   []*kernel[float64]
)
