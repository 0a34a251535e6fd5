package cuda

import (
	"fmt"
	"math"

	"dlf/tensor/cuda/cu"
)

// Launch configuration. Every shape below depends only on problem sizes, never on the device, so
// that a reduction's summation order, and hence its result, is the same on every GPU.
const (
	// threads is the block size of every kernel (the kernels' DLF_THREADS and GEMM tiles).
	threads = 256
	// maxGrid caps grid-stride launches: 4096 blocks of 256 threads keep every SM of an H100 (132
	// SMs × 2048 threads) busy many times over; beyond that the loop, not more blocks, does the work.
	maxGrid = 4096
	// targetBlocks is the block count partitioned reductions aim for (several waves on 132 SMs).
	targetBlocks = 1024
	// maxGridY is CUDA's limit on gridDim.y and gridDim.z.
	maxGridY = 65535
)

var block1D = cu.D1(threads)

// ceilDiv returns ⌈a/b⌉ for a ≥ 0, b > 0.
func ceilDiv(a, b int64) int64 { return (a + b - 1) / b }

// grid1D returns the grid of a grid-stride kernel over n work items (at least one block).
func grid1D(n int64) cu.Dim3 {
	return cu.D1(uint32(min(max(ceilDiv(n, threads), 1), maxGrid)))
}

// rowParts partitions R rows of L elements for the per-row reduction kernels (common.cuh's
// RowPart): each row is split into parts blocks of chunk elements (chunk a multiple of 4), so that
// the grid (R, parts) has about targetBlocks blocks without giving a block fewer than 2048 elements.
func rowParts(R, L int64) (parts int, chunk int64) {
	p := ceilDiv(targetBlocks, max(R, 1))
	p = min(p, ceilDiv(L, 2048), maxGridY)
	p = max(p, 1)
	chunk = (ceilDiv(max(L, 1), p) + 3) &^ 3
	return int(ceilDiv(max(L, 1), chunk)), chunk
}

// rowGrid is the grid of a RowPart kernel.
func rowGrid(R int64, parts int) cu.Dim3 {
	return cu.Dim3{X: uint32(R), Y: uint32(parts), Z: 1}
}

// colParts partitions an [R, C] array for the per-column reduction kernels (common.cuh's ColPart):
// tiles of min(C, 256) columns, and parts row ranges of chunk rows, aiming at targetBlocks blocks
// while each of a block's row lanes keeps at least minLaneRows rows, so that the partials (P·C
// doubles per quantity) stay a few percent of the data read.
func colParts(R int64, C int) (tiles, parts int, chunk int64) {
	const minLaneRows = 32
	w := min(C, threads)
	tiles = int(ceilDiv(int64(C), int64(w)))
	lanes := int64(threads / w)
	p := ceilDiv(targetBlocks, int64(tiles))
	p = min(p, ceilDiv(R, minLaneRows*lanes), maxGridY)
	p = max(p, 1)
	chunk = ceilDiv(max(R, 1), p)
	return tiles, int(ceilDiv(max(R, 1), chunk)), chunk
}

// checkInt32 fails when a size passed to a kernel as a C int would overflow.
func checkInt32(what string, v int64) error {
	if v > math.MaxInt32 {
		return fmt.Errorf("%s = %d exceeds the kernels' 32-bit limit (%d)", what, v, math.MaxInt32)
	}
	return nil
}

// i32 narrows a size already checked by checkInt32 (or bounded by construction).
func i32(v int) int32 { return int32(v) }

// b32 is a C boolean.
func b32(v bool) int32 {
	if v {
		return 1
	}
	return 0
}
