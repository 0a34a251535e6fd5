package data

import (
	"bytes"
	"encoding/csv"
	"errors"
	"fmt"
	"image"
	stddraw "image/draw"
	_ "image/jpeg" // registers the JPEG decoder for image.Decode
	"image/png"    // also registers the PNG decoder for image.Decode
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"runtime"
	"sort"
	"strconv"
	"strings"
	"sync"

	"golang.org/x/image/draw"
)

// ColorMode selects how folder images are converted to channels.
type ColorMode int

const (
	// ModeRGB yields C = 3; grayscale sources are replicated into the three channels.
	ModeRGB ColorMode = iota
	// ModeGray yields C = 1 using the ITU-R BT.601 luma weights (0.299, 0.587, 0.114), the same
	// weights as Go's color.GrayModel, applied to straight (non-premultiplied) RGB.
	ModeGray
)

// String names the mode for messages.
func (m ColorMode) String() string {
	if m == ModeGray {
		return "gray"
	}
	return "rgb"
}

// FolderOptions controls how an image folder is decoded.
type FolderOptions struct {
	// Size, when > 0, resizes every image to Size×Size with a Catmull-Rom filter (which widens its
	// support when downscaling, so it does not alias). 0 keeps the decoded size, and then every image
	// must have the same size.
	Size int
	// CenterCrop crops the largest centred square before any resize, so aspect ratio is kept.
	CenterCrop bool
	// Mode is the channel layout of the output.
	Mode ColorMode
	// Workers is the number of decoding goroutines; 0 means GOMAXPROCS.
	Workers int
}

// LabelsFile is the optional per-folder label table: CSV rows "filename,label" where filename is
// the image path relative to the folder, with '/' separators; an optional first header row is
// recognised by a non-numeric label.
const LabelsFile = "labels.csv"

// maxImagePixels bounds the declared size of one image (32 Mpixel) so a crafted header cannot make
// the decoder allocate gigabytes before it notices the data is missing.
const maxImagePixels = 1 << 25

// isImageName reports whether a file name has a supported image extension.
func isImageName(name string) bool {
	switch strings.ToLower(filepath.Ext(name)) {
	case ".png", ".jpg", ".jpeg":
		return true
	}
	return false
}

// ListImages returns the image files (PNG/JPEG) under dir, recursively, as '/'-separated paths
// relative to dir in sorted order. Names starting with '.' are skipped.
func ListImages(dir string) ([]string, error) {
	var out []string
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if p != dir && strings.HasPrefix(d.Name(), ".") {
			if d.IsDir() {
				return filepath.SkipDir
			}
			return nil
		}
		if d.IsDir() || !isImageName(d.Name()) {
			return nil
		}
		rel, err := filepath.Rel(dir, p)
		if err != nil {
			return err
		}
		out = append(out, filepath.ToSlash(rel))
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("data: listing images: %w", err)
	}
	sort.Strings(out)
	return out, nil
}

// LoadFolder decodes every PNG/JPEG image under dir (recursively, in sorted path order) into a
// Dataset, applying opt. When dir holds labels.csv, every image must have a label there.
func LoadFolder(dir string, opt FolderOptions) (*Dataset, error) {
	if opt.Size < 0 {
		return nil, fmt.Errorf("data: folder size %d must be >= 0", opt.Size)
	}
	st, err := os.Stat(dir)
	if err != nil {
		return nil, fmt.Errorf("data: image folder: %w", err)
	}
	if !st.IsDir() {
		return nil, fmt.Errorf("data: image folder %s is not a directory", dir)
	}
	names, err := ListImages(dir)
	if err != nil {
		return nil, err
	}
	if len(names) == 0 {
		return nil, fmt.Errorf("data: image folder %s has no .png/.jpg/.jpeg files", dir)
	}
	var labels []int32
	if lp := filepath.Join(dir, LabelsFile); fileExists(lp) {
		if labels, err = readLabelsCSV(lp, names); err != nil {
			return nil, err
		}
	}
	c := 3
	if opt.Mode == ModeGray {
		c = 1
	}
	workers := opt.Workers
	if workers <= 0 {
		workers = runtime.GOMAXPROCS(0)
	}
	type result struct {
		pix  []uint8
		h, w int
		err  error
	}
	res := make([]result, len(names))
	var wg sync.WaitGroup
	next := make(chan int)
	for range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range next {
				p := filepath.Join(dir, filepath.FromSlash(names[i]))
				b, err := os.ReadFile(p)
				if err != nil {
					res[i].err = fmt.Errorf("data: %w", err)
					continue
				}
				res[i].pix, res[i].h, res[i].w, res[i].err = DecodeImage(b, p, opt)
			}
		}()
	}
	for i := range names {
		next <- i
	}
	close(next)
	wg.Wait()
	// Report the first failure in path order so the message does not depend on scheduling.
	for _, r := range res {
		if r.err != nil {
			return nil, r.err
		}
	}
	h, w := res[0].h, res[0].w
	for i, r := range res {
		if r.h != h || r.w != w {
			return nil, errf(filepath.Join(dir, names[i]), "image is %d×%d but %s is %d×%d; set a resize size to mix sizes", r.w, r.h, names[0], w, h)
		}
	}
	sz := h * w * c
	ds := &Dataset{N: len(names), H: h, W: w, C: c, Labels: labels, Source: dir}
	ds.Images = make([]uint8, len(names)*sz)
	for i := range res {
		copy(ds.Images[i*sz:], res[i].pix)
		res[i].pix = nil
	}
	return ds, nil
}

// DecodeImage decodes one PNG or JPEG file's bytes, applies the crop/resize of opt and converts to
// opt.Mode, returning HWC pixels. name labels errors.
func DecodeImage(b []byte, name string, opt FolderOptions) ([]uint8, int, int, error) {
	cfg, format, err := image.DecodeConfig(bytes.NewReader(b))
	if err != nil {
		return nil, 0, 0, errf(name, "cannot read image header (want PNG or JPEG): %v", err)
	}
	if cfg.Width <= 0 || cfg.Height <= 0 || int64(cfg.Width)*int64(cfg.Height) > maxImagePixels {
		return nil, 0, 0, errf(name, "%s image size %d×%d is empty or over the %d-pixel limit", format, cfg.Width, cfg.Height, maxImagePixels)
	}
	img, _, err := image.Decode(bytes.NewReader(b))
	if err != nil {
		return nil, 0, 0, errf(name, "corrupt %s image: %v", format, err)
	}
	r := img.Bounds()
	if opt.CenterCrop {
		s := min(r.Dx(), r.Dy())
		x0 := r.Min.X + (r.Dx()-s)/2
		y0 := r.Min.Y + (r.Dy()-s)/2
		r = image.Rect(x0, y0, x0+s, y0+s)
	}
	w, h := r.Dx(), r.Dy()
	if opt.Size > 0 {
		w, h = opt.Size, opt.Size
	}
	var dst *image.NRGBA
	if n, ok := img.(*image.NRGBA); ok && r == n.Bounds() && w == r.Dx() && h == r.Dy() && r.Min == (image.Point{}) {
		dst = n
	} else {
		dst = image.NewNRGBA(image.Rect(0, 0, w, h))
		if w == r.Dx() && h == r.Dy() {
			stddraw.Draw(dst, dst.Bounds(), img, r.Min, stddraw.Src)
		} else {
			draw.CatmullRom.Scale(dst, dst.Bounds(), img, r, draw.Src, nil)
		}
	}
	return nrgbaPixels(dst, opt.Mode), h, w, nil
}

// nrgbaPixels extracts straight RGB or BT.601 luma from an NRGBA image. Alpha is dropped rather than
// composited, so a transparent pixel keeps its colour in both modes alike.
func nrgbaPixels(m *image.NRGBA, mode ColorMode) []uint8 {
	w, h := m.Rect.Dx(), m.Rect.Dy()
	c := 3
	if mode == ModeGray {
		c = 1
	}
	out := make([]uint8, w*h*c)
	for y := 0; y < h; y++ {
		row := m.Pix[y*m.Stride : y*m.Stride+4*w]
		o := out[y*w*c : (y+1)*w*c]
		if mode == ModeGray {
			for x := 0; x < w; x++ {
				o[x] = luma(row[4*x], row[4*x+1], row[4*x+2])
			}
		} else {
			for x := 0; x < w; x++ {
				o[3*x], o[3*x+1], o[3*x+2] = row[4*x], row[4*x+1], row[4*x+2]
			}
		}
	}
	return out
}

// luma is color.GrayModel's fixed-point BT.601 formula, (19595·R + 38470·G + 7471·B + 2^15) >> 24 on
// 16-bit channels, applied to straight 8-bit RGB widened by ×257; gray inputs map to themselves.
func luma(r, g, b uint8) uint8 {
	return uint8((19595*uint32(r)*257 + 38470*uint32(g)*257 + 7471*uint32(b)*257 + 1<<15) >> 24)
}

// readLabelsCSV reads labels.csv and returns one label per name in names' order.
func readLabelsCSV(path string, names []string) ([]int32, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("data: %w", err)
	}
	defer f.Close()
	cr := csv.NewReader(f)
	cr.FieldsPerRecord = 2
	cr.TrimLeadingSpace = true
	want := make(map[string]int, len(names))
	for i, n := range names {
		want[n] = i
	}
	labels := make([]int32, len(names))
	seen := make([]bool, len(names))
	for row := 0; ; row++ {
		rec, err := cr.Read()
		if err == io.EOF {
			break
		}
		if err != nil {
			var pe *csv.ParseError
			if errors.As(err, &pe) {
				return nil, errRec(path, pe.Line, -1, "bad CSV row (want filename,label): %v", pe.Err)
			}
			return nil, errf(path, "%v", err)
		}
		name, lab := filepath.ToSlash(strings.TrimSpace(rec[0])), strings.TrimSpace(rec[1])
		v, err := strconv.ParseInt(lab, 10, 32)
		if err != nil {
			if row == 0 {
				continue // header row
			}
			return nil, errRec(path, row+1, -1, "label %q for %q is not an integer", lab, name)
		}
		if v < 0 {
			return nil, errRec(path, row+1, -1, "label %d for %q is negative", v, name)
		}
		i, ok := want[name]
		if !ok {
			return nil, errRec(path, row+1, -1, "%q is not an image in the folder", name)
		}
		if seen[i] {
			return nil, errRec(path, row+1, -1, "%q is listed twice", name)
		}
		seen[i], labels[i] = true, int32(v)
	}
	for i, ok := range seen {
		if !ok {
			return nil, errf(path, "no label for image %q", names[i])
		}
	}
	return labels, nil
}

func fileExists(p string) bool {
	st, err := os.Stat(p)
	return err == nil && !st.IsDir()
}

// WritePNG encodes an HWC uint8 image (C = 1 or 3) as PNG; a helper for building image folders.
func WritePNG(w io.Writer, pix []uint8, h, wd, c int) error {
	var img image.Image
	switch c {
	case 1:
		g := image.NewGray(image.Rect(0, 0, wd, h))
		if len(pix) != h*wd {
			return fmt.Errorf("data: %d bytes for a %d×%d gray image", len(pix), wd, h)
		}
		copy(g.Pix, pix)
		img = g
	case 3:
		if len(pix) != h*wd*3 {
			return fmt.Errorf("data: %d bytes for a %d×%d RGB image", len(pix), wd, h)
		}
		m := image.NewNRGBA(image.Rect(0, 0, wd, h))
		for i := 0; i < h*wd; i++ {
			m.Pix[4*i], m.Pix[4*i+1], m.Pix[4*i+2], m.Pix[4*i+3] = pix[3*i], pix[3*i+1], pix[3*i+2], 255
		}
		img = m
	default:
		return fmt.Errorf("data: PNG writer takes 1 or 3 channels, got %d", c)
	}
	// Fast compression: fixtures and converted folders favour speed over size.
	enc := png.Encoder{CompressionLevel: png.BestSpeed}
	return enc.Encode(w, img)
}
