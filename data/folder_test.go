package data

import (
	"bytes"
	"encoding/binary"
	"hash/crc32"
	"image"
	"image/color"
	"image/jpeg"
	"os"
	"path/filepath"
	"testing"
)

func pngBytes(t testing.TB, pix []uint8, h, w, c int) []byte {
	t.Helper()
	var buf bytes.Buffer
	if err := WritePNG(&buf, pix, h, w, c); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

func TestFolderRGBAndGray(t *testing.T) {
	r := newRand(t)
	d := randDataset(r, 7, 5, 4, 3, 0)
	dir := t.TempDir()
	// Nested, unsorted creation order; the reader must sort by path.
	names := []string{"b/img2.png", "a.png", "b/img10.PNG", "c/d/e.png", "a2.png", "b/img1.png", "z.png"}
	sorted := []string{"a.png", "a2.png", "b/img1.png", "b/img10.PNG", "b/img2.png", "c/d/e.png", "z.png"}
	byName := map[string]int{}
	for i, n := range names {
		writeFile(t, dir, n, pngBytes(t, d.Image(i), 5, 4, 3))
		byName[n] = i
	}
	writeFile(t, dir, "notes.txt", []byte("ignored"))
	writeFile(t, dir, ".hidden/x.png", []byte("ignored, not even decoded"))
	got, err := LoadFolder(dir, FolderOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if got.N != 7 || got.H != 5 || got.W != 4 || got.C != 3 || got.Labels != nil {
		t.Fatalf("shape %d %d %d %d", got.N, got.H, got.W, got.C)
	}
	for k, n := range sorted {
		if !bytes.Equal(got.Image(k), d.Image(byName[n])) {
			t.Fatalf("image %d (%s) differs", k, n)
		}
	}
	gray, err := LoadFolder(dir, FolderOptions{Mode: ModeGray, Workers: 3})
	if err != nil {
		t.Fatal(err)
	}
	if gray.C != 1 {
		t.Fatalf("gray C = %d", gray.C)
	}
	for k, n := range sorted {
		src := d.Image(byName[n])
		for p := 0; p < 20; p++ {
			want := color.GrayModel.Convert(color.NRGBA{src[3*p], src[3*p+1], src[3*p+2], 255}).(color.Gray).Y
			if gray.Image(k)[p] != want {
				t.Fatalf("%s pixel %d: gray %d want %d", n, p, gray.Image(k)[p], want)
			}
		}
	}

	// Grayscale sources: identity in gray mode, replicated in RGB mode.
	gdir := t.TempDir()
	g := randDataset(r, 3, 6, 6, 1, 0)
	for i := 0; i < 3; i++ {
		writeFile(t, gdir, string(rune('a'+i))+".png", pngBytes(t, g.Image(i), 6, 6, 1))
	}
	gg, err := LoadFolder(gdir, FolderOptions{Mode: ModeGray})
	if err != nil {
		t.Fatal(err)
	}
	sameDataset(t, gg, g)
	gr, err := LoadFolder(gdir, FolderOptions{Mode: ModeRGB})
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 3*36; i++ {
		if gr.Images[3*i] != g.Images[i] || gr.Images[3*i+1] != g.Images[i] || gr.Images[3*i+2] != g.Images[i] {
			t.Fatalf("gray→RGB pixel %d", i)
		}
	}
}

func TestFolderCropResize(t *testing.T) {
	r := newRand(t)
	dir := t.TempDir()
	// 10 wide × 6 high: the centred square is columns 2..7.
	src := randDataset(r, 1, 6, 10, 3, 0).Images
	writeFile(t, dir, "wide.png", pngBytes(t, src, 6, 10, 3))
	got, err := LoadFolder(dir, FolderOptions{CenterCrop: true})
	if err != nil {
		t.Fatal(err)
	}
	if got.H != 6 || got.W != 6 {
		t.Fatalf("crop size %d×%d", got.H, got.W)
	}
	for y := 0; y < 6; y++ {
		for x := 0; x < 6; x++ {
			for c := 0; c < 3; c++ {
				if got.Images[(y*6+x)*3+c] != src[(y*10+x+2)*3+c] {
					t.Fatalf("crop pixel (%d,%d,%d)", y, x, c)
				}
			}
		}
	}
	// Size equal to the crop side does not resample.
	same, err := LoadFolder(dir, FolderOptions{CenterCrop: true, Size: 6})
	if err != nil {
		t.Fatal(err)
	}
	sameDataset(t, same, got)

	// Resizing mixed sizes: a constant colour stays that colour, a horizontal ramp stays monotone.
	mdir := t.TempDir()
	cst := make([]uint8, 30*40*3)
	for i := 0; i < len(cst); i += 3 {
		cst[i], cst[i+1], cst[i+2] = 200, 17, 99
	}
	writeFile(t, mdir, "const.png", pngBytes(t, cst, 30, 40, 3))
	ramp := make([]uint8, 50*20)
	for y := 0; y < 50; y++ {
		for x := 0; x < 20; x++ {
			ramp[y*20+x] = uint8(10 + 12*x)
		}
	}
	writeFile(t, mdir, "ramp.png", pngBytes(t, ramp, 50, 20, 1))
	// A JPEG of a constant colour as well (lossy, but a flat field survives exactly or within the
	// codec's rounding; only the shape is checked for it).
	jimg := image.NewRGBA(image.Rect(0, 0, 33, 21))
	for i := 0; i < len(jimg.Pix); i += 4 {
		jimg.Pix[i], jimg.Pix[i+1], jimg.Pix[i+2], jimg.Pix[i+3] = 120, 130, 140, 255
	}
	var jb bytes.Buffer
	if err := jpeg.Encode(&jb, jimg, &jpeg.Options{Quality: 95}); err != nil {
		t.Fatal(err)
	}
	writeFile(t, mdir, "photo.jpg", jb.Bytes())

	_, err = LoadFolder(mdir, FolderOptions{})
	wantErr(t, err, filepath.Join(mdir, "photo.jpg"), "image is 33×21 but const.png is 40×30", "set a resize size")

	rs, err := LoadFolder(mdir, FolderOptions{Size: 8, CenterCrop: true})
	if err != nil {
		t.Fatal(err)
	}
	if rs.N != 3 || rs.H != 8 || rs.W != 8 || rs.C != 3 {
		t.Fatalf("resized shape %d %d %d %d", rs.N, rs.H, rs.W, rs.C)
	}
	for p := 0; p < 64; p++ {
		if c := rs.Image(0)[3*p : 3*p+3]; c[0] != 200 || c[1] != 17 || c[2] != 99 {
			t.Fatalf("constant image pixel %d became %v", p, c)
		}
	}
	// The ramp is 20 wide and 50 high: centre-cropped to 20×20 then scaled to 8×8.
	row := rs.Image(2)
	for y := 0; y < 8; y++ {
		for x := 1; x < 8; x++ {
			if row[(y*8+x)*3] <= row[(y*8+x-1)*3] {
				t.Fatalf("ramp not increasing at (%d,%d): %d then %d", y, x, row[(y*8+x-1)*3], row[(y*8+x)*3])
			}
		}
	}
	if lo, hi := row[0], row[7*3]; lo < 10 || hi > 238 || hi-lo < 150 {
		t.Fatalf("ramp range %d..%d", lo, hi)
	}
}

func TestFolderLabelsAndErrors(t *testing.T) {
	r := newRand(t)
	dir := t.TempDir()
	d := randDataset(r, 3, 4, 4, 3, 0)
	for i, n := range []string{"x/1.png", "x/2.png", "y.png"} {
		writeFile(t, dir, n, pngBytes(t, d.Image(i), 4, 4, 3))
	}
	writeFile(t, dir, LabelsFile, []byte("filename,label\ny.png, 7\nx/2.png,3\nx/1.png,0\n"))
	got, err := LoadFolder(dir, FolderOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if got.Labels[0] != 0 || got.Labels[1] != 3 || got.Labels[2] != 7 {
		t.Fatalf("labels %v", got.Labels)
	}
	lp := filepath.Join(dir, LabelsFile)
	for _, c := range []struct{ csv, frag string }{
		{"y.png,7\nx/1.png,0\n", `no label for image "x/2.png"`},
		{"y.png,7\nx/1.png,0\nx/2.png,1\nq.png,2\n", `"q.png" is not an image in the folder`},
		{"y.png,7\nx/1.png,0\nx/2.png,x\n", `label "x" for "x/2.png" is not an integer`},
		{"y.png,7\ny.png,0\n", `"y.png" is listed twice`},
		{"y.png,-1\n", "negative"},
		{"y.png,1,2\n", "bad CSV row"},
	} {
		writeFile(t, dir, LabelsFile, []byte(c.csv))
		_, err := LoadFolder(dir, FolderOptions{})
		wantErr(t, err, lp, c.frag)
	}
	os.Remove(lp)

	// Corrupt and truncated images name the file.
	full := pngBytes(t, d.Image(0), 4, 4, 3)
	bad := writeFile(t, dir, "x/3.png", full[:len(full)-20])
	_, err = LoadFolder(dir, FolderOptions{})
	wantErr(t, err, bad, "corrupt png image")
	writeFile(t, dir, "x/3.png", []byte("GIF89a not supported"))
	_, err = LoadFolder(dir, FolderOptions{})
	wantErr(t, err, bad, "cannot read image header")
	os.Remove(bad)

	// A header claiming a gigantic image is refused before decoding.
	huge := append([]byte(nil), full...)
	huge[16], huge[17], huge[18], huge[19] = 0, 1, 0, 0                    // width 65536
	huge[20], huge[21], huge[22], huge[23] = 0, 1, 0, 0                    // height 65536
	binary.BigEndian.PutUint32(huge[29:], crc32.ChecksumIEEE(huge[12:29])) // IHDR chunk CRC
	_, _, _, err = DecodeImage(huge, "huge.png", FolderOptions{})
	wantErr(t, err, "huge.png", "over the 33554432-pixel limit")

	_, err = LoadFolder(t.TempDir(), FolderOptions{})
	wantErr(t, err, "", "has no .png/.jpg/.jpeg files")
	_, err = LoadFolder(filepath.Join(dir, "missing"), FolderOptions{})
	wantErr(t, err, "", "no such file")
}
