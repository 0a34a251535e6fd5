package cuda

import (
	"fmt"

	"dlf/tensor"
	"dlf/tensor/cuda/cu"
)

// tile is one of gemm.cuh's block-tile shapes.
type tile struct{ bm, bn int64 }

// The tile shapes, in the order of the kernel suffixes _128x128, _64x64, _128x32.
var (
	tileL = tile{128, 128}
	tileS = tile{64, 64}
	tileN = tile{128, 32}
)

// Tiling policy (shapes only, never the device: see doc.go's determinism note).
const (
	// largeTileBlocks: 128×128 tiles are used when they alone give at least this many blocks (about
	// one per SM of an H100); below it 64×64 tiles trade some data reuse for four times the blocks.
	largeTileBlocks = 128
	// splitBlocks: a GEMM whose tiles give fewer blocks than this splits its reduction so that the
	// slices reach about 2·splitBlocks blocks.
	splitBlocks = 128
	// minSliceK is the shortest reduction slice worth a block (16 stages of the large tile's BK).
	minSliceK = 256
	// maxSplits bounds the workspace (splits × the output) and the finishing pass.
	maxSplits = 64
)

// pickTile is the tile WithTile forced, or the policy's (tilePolicy).
func (b *Backend) pickTile(M, N, batch int64) tile {
	if b.tile != nil {
		return *b.tile
	}
	return tilePolicy(M, N, batch)
}

// tilePolicy chooses the tile for an M×N output repeated batch times.
func tilePolicy(M, N, batch int64) tile {
	if N <= 32 {
		return tileN
	}
	if ceilDiv(M, tileL.bm)*ceilDiv(N, tileL.bn)*batch >= largeTileBlocks {
		return tileL
	}
	return tileS
}

// splitK chooses how many fixed slices to split a reduction of length K into, given the number of
// output blocks, and the slice length (a multiple of 16, as the kernels require).
func splitK(K, blocks int64) (splits int, kChunk int64) {
	s := int64(1)
	if blocks < splitBlocks && K >= 2*minSliceK {
		s = min(ceilDiv(2*splitBlocks, max(blocks, 1)), K/minSliceK, maxSplits)
	}
	kChunk = max((ceilDiv(K, s)+15)&^15, 16)
	return int(max(ceilDiv(K, kChunk), 1)), kChunk
}

// gemmLauncher is the signature shared by the 12 sgemm_* launchers.
type gemmLauncher func(stream cu.Stream, grid, block cu.Dim3, shmem uint32, c, a, b, ws cu.DevicePtr, m, n, k, splits,
	kChunk int32, alpha, beta float32, strideA, strideB, strideC int64) error

// gemmKernel returns the launcher for a tile, transposition and precision: sgemm_* (FP32 on CUDA
// cores, gemm.cuh) or gemm_tf32_* (TF32 tensor cores, mma.cuh).
func (b *Backend) gemmKernel(t tile, ta, tb bool, prec tensor.Precision) gemmLauncher {
	k := b.k
	i := 0
	if ta {
		i += 2
	}
	if tb {
		i++
	}
	var set [4]gemmLauncher // nn, nt, tn, tt
	switch {
	case t == tileL && prec == tensor.TF32:
		set = [4]gemmLauncher{k.GemmTf32Nn128x128, k.GemmTf32Nt128x128, k.GemmTf32Tn128x128, k.GemmTf32Tt128x128}
	case t == tileS && prec == tensor.TF32:
		set = [4]gemmLauncher{k.GemmTf32Nn64x64, k.GemmTf32Nt64x64, k.GemmTf32Tn64x64, k.GemmTf32Tt64x64}
	case prec == tensor.TF32:
		set = [4]gemmLauncher{k.GemmTf32Nn128x32, k.GemmTf32Nt128x32, k.GemmTf32Tn128x32, k.GemmTf32Tt128x32}
	case t == tileL:
		set = [4]gemmLauncher{k.SgemmNn128x128, k.SgemmNt128x128, k.SgemmTn128x128, k.SgemmTt128x128}
	case t == tileS:
		set = [4]gemmLauncher{k.SgemmNn64x64, k.SgemmNt64x64, k.SgemmTn64x64, k.SgemmTt64x64}
	default:
		set = [4]gemmLauncher{k.SgemmNn128x32, k.SgemmNt128x32, k.SgemmTn128x32, k.SgemmTt128x32}
	}
	return set[i]
}

// Gemm computes c = alpha·op(a)·op(b) + beta·c for 2-D operands or per batch for 3-D ones (row-major;
// with beta = 0, c is not read). FP32: exact single precision on CUDA cores (gemm.cuh's tiled
// kernel); TF32: the same tiles on tensor cores (mma.cuh). Either splits the reduction into fixed
// slices (added in order by splitk_finish_f32) when the output alone has too few tiles to fill the
// GPU.
func (b *Backend) Gemm(prec tensor.Precision, transA, transB bool, alpha float64, a, bm *tensor.Tensor, beta float64, c *tensor.Tensor) {
	as, bs := a.Shape(), bm.Shape()
	o := len(as) - 2
	batch := int64(1)
	if len(as) == 3 {
		batch = int64(as[0])
	}
	M, K := int64(as[o]), int64(as[o+1])
	if transA {
		M, K = K, M
	}
	N := int64(bs[o+1])
	if transB {
		N = int64(bs[o])
	}
	if M == 0 || N == 0 || batch == 0 {
		return
	}
	b.run("Gemm", func() error {
		for _, d := range []struct {
			what string
			v    int64
		}{{"Gemm M", M}, {"Gemm N", N}, {"Gemm K", K}} {
			if err := checkInt32(d.what, d.v); err != nil {
				return err
			}
		}
		t := b.pickTile(M, N, batch)
		tilesM, tilesN := ceilDiv(M, t.bm), ceilDiv(N, t.bn)
		if err := checkInt32("Gemm row tiles", tilesM); err != nil {
			return err
		}
		if tilesN > maxGridY {
			return errTooWide("Gemm", N)
		}
		splits, kChunk := splitK(K, tilesM*tilesN*batch)
		launch := b.gemmKernel(t, transA, transB, prec)
		sA, sB, sC := M*K, K*N, M*N
		var ws *buffer
		if splits > 1 {
			var err error
			if ws, err = b.scratch(4 * int64(splits) * min(batch, maxGridY/int64(splits)) * M * N); err != nil {
				return err
			}
			defer b.alloc.put(ws)
		}
		pa, pb, pc := dptr(a), dptr(bm), dptr(c)
		perLaunch := maxGridY / int64(splits) // batches per launch (gridDim.z ≤ 65535)
		for b0 := int64(0); b0 < batch; b0 += perLaunch {
			nb := min(perLaunch, batch-b0)
			grid := cu.Dim3{X: uint32(tilesM), Y: uint32(tilesN), Z: uint32(nb * int64(splits))}
			cp := pc.Add(4 * b0 * sC)
			var wsp cu.DevicePtr
			if ws != nil {
				wsp = ws.ptr
			}
			if err := launch(b.stream, grid, block1D, 0, cp, pa.Add(4*b0*sA), pb.Add(4*b0*sB), wsp, int32(M),
				int32(N), int32(K), int32(splits), int32(kChunk), float32(alpha), float32(beta), sA, sB, sC); err != nil {
				return err
			}
			if splits > 1 {
				if err := b.k.SplitkFinishF32(b.stream, grid1D(nb*sC), block1D, 0, cp, wsp, 0, sC, int32(N),
					int32(splits), int32(nb), float32(alpha), float32(beta), sC); err != nil {
					return err
				}
			}
		}
		return nil
	})
}

// errTooWide reports an output with more column tiles than a grid's y dimension holds.
func errTooWide(op string, n int64) error {
	return fmt.Errorf("%s: %d output columns exceed the kernels' grid limit (%d tiles)", op, n, maxGridY)
}

// PolicyTile names the block tile (see Tiles) the tiling policy picks for an M×N output of one
// batch, for the workbench's tables.
func PolicyTile(M, N int64) string {
	t := tilePolicy(M, N, 1)
	return fmt.Sprintf("%dx%d", t.bm, t.bn)
}
