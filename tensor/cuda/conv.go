package cuda

import (
	"dlf/tensor"
	"dlf/tensor/cuda/cu"
)

// convLauncher is the signature of the conv2d_fwd_* launchers; the backward ones have no bias.
type convLauncher func(stream cu.Stream, grid, block cu.Dim3, shmem uint32, out, in, w, bias, ws cu.DevicePtr,
	n, h, wd, cin, cout, k, edge, splits, kChunk int32) error

type convBwdLauncher func(stream cu.Stream, grid, block cu.Dim3, shmem uint32, out, a, b, ws cu.DevicePtr,
	n, h, wd, cin, cout, k, edge, splits, kChunk int32) error

// convGeom holds a convolution's sizes, checked against the kernels' 32-bit index arithmetic.
type convGeom struct {
	n, h, w, cin, cout, k, cp int64
	edge                      bool
}

func newConvGeom(p tensor.ConvParams, x, w *tensor.Tensor) convGeom {
	n, h, wd, cin := x.Shape().NHWC()
	g := convGeom{n: int64(n), h: int64(h), w: int64(wd), cin: int64(cin), cout: int64(w.Dim(-1)), k: int64(p.K),
		edge: p.EdgeBias}
	g.cp = g.cin
	if p.EdgeBias {
		g.cp++
	}
	return g
}

func (g convGeom) pixels() int64 { return g.n * g.h * g.w }

func (g convGeom) check(op string) error {
	if err := checkInt32(op+" N·H·W", g.pixels()); err != nil {
		return err
	}
	if err := checkInt32(op+" K·K·Cin'·Cout", g.k*g.k*g.cp*g.cout); err != nil {
		return err
	}
	return checkInt32(op+" K·K·Cout", g.k*g.k*g.cout)
}

// args returns the kernels' common trailing arguments (before splits, kChunk).
func (g convGeom) args() (n, h, w, cin, cout, k, edge int32) {
	return int32(g.n), int32(g.h), int32(g.w), int32(g.cin), int32(g.cout), int32(g.k), b32(g.edge)
}

// pickConv chooses among a convolution's six kernels: by precision (FP32 on CUDA cores, TF32 on
// tensor cores: conv.cu's *_tf32_* twins) and by tile (large, small, narrow).
func pickConv[F any](t tile, prec tensor.Precision, set [2][3]F) F {
	p := 0
	if prec == tensor.TF32 {
		p = 1
	}
	switch t {
	case tileL:
		return set[p][0]
	case tileS:
		return set[p][1]
	}
	return set[p][2]
}

// tiled runs one implicit-GEMM convolution kernel over an M×cols output with a reduction of length
// red, splitting the reduction when the output has too few tiles, and finishes split results
// (adding bias, which may be 0) into out. launch receives the grid, the workspace and the split.
func (b *Backend) tiled(op string, M, cols, red int64, out, bias cu.DevicePtr,
	launch func(t tile, grid cu.Dim3, ws cu.DevicePtr, splits int32, kChunk int32) error) error {
	t := b.pickTile(M, cols, 1)
	tilesM, tilesN := ceilDiv(M, t.bm), ceilDiv(cols, t.bn)
	if tilesN > maxGridY {
		return errTooWide(op, cols)
	}
	splits, kChunk := splitK(red, tilesM*tilesN)
	grid := cu.Dim3{X: uint32(tilesM), Y: uint32(tilesN), Z: uint32(splits)}
	if splits == 1 {
		return launch(t, grid, 0, 1, int32(kChunk))
	}
	ws, err := b.scratch(4 * int64(splits) * M * cols)
	if err != nil {
		return err
	}
	defer b.alloc.put(ws)
	if err := launch(t, grid, ws.ptr, int32(splits), int32(kChunk)); err != nil {
		return err
	}
	return b.k.SplitkFinishF32(b.stream, grid1D(M*cols), block1D, 0, out, ws.ptr, bias, M*cols, int32(cols),
		int32(splits), 1, 1, 0, M*cols)
}

// Conv2D computes y = conv(x, w) + bias (stride 1, "same" padding, optional edge-bias channel) as
// an implicit GEMM: rows N·H·W, columns Cout, reduction K·K·Cin'.
func (b *Backend) Conv2D(p tensor.ConvParams, y, x, w, bias *tensor.Tensor) {
	g := newConvGeom(p, x, w)
	M := g.pixels()
	if M == 0 || g.cout == 0 {
		return
	}
	b.run("Conv2D", func() error {
		if err := g.check("Conv2D"); err != nil {
			return err
		}
		py, px, pw, pb := dptr(y), dptr(x), dptr(w), dptr(bias)
		n, h, wd, cin, cout, k, edge := g.args()
		return b.tiled("Conv2D", M, g.cout, g.k*g.k*g.cp, py, pb,
			func(t tile, grid cu.Dim3, ws cu.DevicePtr, splits, kChunk int32) error {
				f := pickConv(t, p.Precision, [2][3]convLauncher{
					{b.k.Conv2dFwd128x128, b.k.Conv2dFwd64x64, b.k.Conv2dFwd128x32},
					{b.k.Conv2dFwdTf32128x128, b.k.Conv2dFwdTf3264x64, b.k.Conv2dFwdTf32128x32}})
				return f(b.stream, grid, block1D, 0, py, px, pw, pb, ws, n, h, wd, cin, cout, k, edge, splits, kChunk)
			})
	})
}

// Conv2DBackwardData computes dx from dy and w: an implicit GEMM over the flipped kernel, rows
// N·H·W, columns Cin (the edge channel has no input gradient), reduction K·K·Cout.
func (b *Backend) Conv2DBackwardData(p tensor.ConvParams, dx, dy, w *tensor.Tensor) {
	g := newConvGeom(p, dx, w)
	M := g.pixels()
	if M == 0 || g.cin == 0 {
		return
	}
	b.run("Conv2DBackwardData", func() error {
		if err := g.check("Conv2DBackwardData"); err != nil {
			return err
		}
		pdx, pdy, pw := dptr(dx), dptr(dy), dptr(w)
		n, h, wd, cin, cout, k, edge := g.args()
		return b.tiled("Conv2DBackwardData", M, g.cin, g.k*g.k*g.cout, pdx, 0,
			func(t tile, grid cu.Dim3, ws cu.DevicePtr, splits, kChunk int32) error {
				f := pickConv(t, p.Precision, [2][3]convBwdLauncher{
					{b.k.Conv2dBwdData128x128, b.k.Conv2dBwdData64x64, b.k.Conv2dBwdData128x32},
					{b.k.Conv2dBwdDataTf32128x128, b.k.Conv2dBwdDataTf3264x64, b.k.Conv2dBwdDataTf32128x32}})
				return f(b.stream, grid, block1D, 0, pdx, pdy, pw, ws, n, h, wd, cin, cout, k, edge, splits, kChunk)
			})
	})
}

// Conv2DBackwardWeights computes dw from x and dy: rows K·K·Cin' of dw, columns Cout, reduction over
// all N·H·W pixels in fixed slices (deterministic, no atomics).
func (b *Backend) Conv2DBackwardWeights(p tensor.ConvParams, dw, x, dy *tensor.Tensor) {
	g := newConvGeom(p, x, dw)
	rows := g.k * g.k * g.cp
	if rows == 0 || g.cout == 0 {
		return
	}
	if g.pixels() == 0 {
		b.Fill(dw, 0)
		return
	}
	b.run("Conv2DBackwardWeights", func() error {
		if err := g.check("Conv2DBackwardWeights"); err != nil {
			return err
		}
		pdw, px, pdy := dptr(dw), dptr(x), dptr(dy)
		n, h, wd, cin, cout, k, edge := g.args()
		return b.tiled("Conv2DBackwardWeights", rows, g.cout, g.pixels(), pdw, 0,
			func(t tile, grid cu.Dim3, ws cu.DevicePtr, splits, kChunk int32) error {
				f := pickConv(t, p.Precision, [2][3]convBwdLauncher{
					{b.k.Conv2dBwdFilter128x128, b.k.Conv2dBwdFilter64x64, b.k.Conv2dBwdFilter128x32},
					{b.k.Conv2dBwdFilterTf32128x128, b.k.Conv2dBwdFilterTf3264x64, b.k.Conv2dBwdFilterTf32128x32}})
				return f(b.stream, grid, block1D, 0, pdw, px, pdy, ws, n, h, wd, cin, cout, k, edge, splits, kChunk)
			})
	})
}
