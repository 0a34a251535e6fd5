package main

import (
	"fmt"
	"image"
	"image/color"
	"image/png"
	"os"
	"path/filepath"
)

// gridImage tiles n uint8 NHWC images of h×w×c (c = 1 or 3) into a rows×cols mosaic with a 1-pixel
// gap, for sample grids and interpolation strips.
func gridImage(pixels []uint8, n, h, w, c, cols int) (image.Image, error) {
	if c != 1 && c != 3 {
		return nil, fmt.Errorf("image grid: %d channels, want 1 or 3", c)
	}
	if len(pixels) != n*h*w*c {
		return nil, fmt.Errorf("image grid: %d bytes for %d images of %d×%d×%d", len(pixels), n, h, w, c)
	}
	if cols <= 0 {
		cols = 1
	}
	rows := (n + cols - 1) / cols
	const gap = 1
	img := image.NewRGBA(image.Rect(0, 0, cols*(w+gap)+gap, rows*(h+gap)+gap))
	for i := range img.Pix {
		img.Pix[i] = 255 // white gaps
	}
	for k := 0; k < n; k++ {
		ox, oy := gap+(k%cols)*(w+gap), gap+(k/cols)*(h+gap)
		for y := 0; y < h; y++ {
			for x := 0; x < w; x++ {
				p := pixels[((k*h+y)*w+x)*c:]
				col := color.RGBA{p[0], p[0], p[0], 255}
				if c == 3 {
					col = color.RGBA{p[0], p[1], p[2], 255}
				}
				img.SetRGBA(ox+x, oy+y, col)
			}
		}
	}
	return img, nil
}

// writePNG writes img to path atomically (temporary file, then rename), so a reader never sees half
// a picture and an existing file survives a failed write.
func writePNG(path string, img image.Image) error {
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return err
	}
	tmp, err := os.CreateTemp(filepath.Dir(path), ".tmp-*.png")
	if err != nil {
		return err
	}
	defer os.Remove(tmp.Name())
	if err := png.Encode(tmp, img); err != nil {
		tmp.Close()
		return fmt.Errorf("write %s: %w", path, err)
	}
	// CreateTemp makes the file private (0600); a picture should be as readable as any output.
	if err := tmp.Chmod(0o644); err != nil {
		tmp.Close()
		return fmt.Errorf("write %s: %w", path, err)
	}
	if err := tmp.Close(); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	return os.Rename(tmp.Name(), path)
}
