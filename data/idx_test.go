package data

import (
	"bytes"
	"compress/gzip"
	"encoding/binary"
	"testing"
)

func idxBytes(t testing.TB, d *Dataset, gz bool) (img, lab []byte) {
	t.Helper()
	var ib, lb bytes.Buffer
	if err := WriteIdxImages(&ib, d); err != nil {
		t.Fatal(err)
	}
	if err := WriteIdxLabels(&lb, d.Labels); err != nil {
		t.Fatal(err)
	}
	if !gz {
		return ib.Bytes(), lb.Bytes()
	}
	return gzipBytes(ib.Bytes()), gzipBytes(lb.Bytes())
}

func gzipBytes(b []byte) []byte {
	var out bytes.Buffer
	zw := gzip.NewWriter(&out)
	zw.Write(b)
	zw.Close()
	return out.Bytes()
}

func TestIdxRoundTrip(t *testing.T) {
	r := newRand(t)
	d := randDataset(r, 37, 9, 7, 1, 10)
	for _, gz := range []bool{false, true} {
		dir := t.TempDir()
		ib, lb := idxBytes(t, d, gz)
		// Independent check of the header bytes against the format description.
		raw := ib
		if gz {
			raw, _ = gunzip(ib)
		}
		if m := binary.BigEndian.Uint32(raw); m != 0x803 {
			t.Fatalf("magic 0x%x", m)
		}
		if n, h, w := binary.BigEndian.Uint32(raw[4:]), binary.BigEndian.Uint32(raw[8:]), binary.BigEndian.Uint32(raw[12:]); n != 37 || h != 9 || w != 7 {
			t.Fatalf("dims %d %d %d", n, h, w)
		}
		got, err := LoadIdx(writeFile(t, dir, "img", ib), writeFile(t, dir, "lab", lb))
		if err != nil {
			t.Fatal(err)
		}
		sameDataset(t, got, d)
	}
}

func gunzip(b []byte) ([]byte, error) {
	zr, err := gzip.NewReader(bytes.NewReader(b))
	if err != nil {
		return nil, err
	}
	var out bytes.Buffer
	_, err = out.ReadFrom(zr)
	return out.Bytes(), err
}

func TestIdxErrors(t *testing.T) {
	r := newRand(t)
	d := randDataset(r, 5, 4, 3, 1, 10)
	ib, lb := idxBytes(t, d, false)
	dir := t.TempDir()
	good := writeFile(t, dir, "good-img", ib)
	goodLab := writeFile(t, dir, "good-lab", lb)

	mod := func(f func(b []byte) []byte) []byte { return f(append([]byte(nil), ib...)) }
	cases := []struct {
		name  string
		data  []byte
		frags []string
	}{
		{"empty", nil, []string{"truncated idx magic"}},
		{"magic-nonzero", mod(func(b []byte) []byte { b[0] = 1; return b }), []string{"first two bytes must be zero"}},
		{"type-int", mod(func(b []byte) []byte { b[2] = 0x0C; return b }), []string{"element type 0x0c", "want 0x08"}},
		{"ndim-0", mod(func(b []byte) []byte { b[3] = 0; return b }), []string{"0 dimensions"}},
		{"header-short", ib[:10], []string{"truncated idx header"}},
		{"data-short", ib[:len(ib)-3], []string{"need 60 data bytes but the file has 57"}},
		{"trailing", append(append([]byte(nil), ib...), 7), []string{"need 60 data bytes but the file has 61"}},
		{"absurd-count", mod(func(b []byte) []byte {
			binary.BigEndian.PutUint32(b[4:], 0xffffffff)
			binary.BigEndian.PutUint32(b[8:], 0xffffffff)
			return b
		}), []string{"overflow"}},
		{"huge-count", mod(func(b []byte) []byte { binary.BigEndian.PutUint32(b[4:], 1<<28); return b }), []string{"need 3221225472 data bytes"}},
		{"labels-as-images", lb, []string{"want 0x00000803"}},
	}
	for _, c := range cases {
		p := writeFile(t, dir, c.name, c.data)
		_, err := LoadIdx(p, goodLab)
		wantErr(t, err, p, c.frags...)
	}
	// The same corruptions inside gzip, where the file size says nothing about the content.
	gzCases := []struct {
		name  string
		data  []byte
		frags []string
	}{
		{"gz-data-short", gzipBytes(ib[:len(ib)-3]), []string{"truncated: got 57 of 60 bytes"}},
		{"gz-trailing", gzipBytes(append(append([]byte(nil), ib...), 1)), []string{"trailing bytes"}},
		{"gz-huge", gzipBytes(mod(func(b []byte) []byte { binary.BigEndian.PutUint32(b[4:], 1<<28); return b })), []string{"truncated: got 60 of 3221225472"}},
		{"gz-bad-header", []byte{0x1f, 0x8b, 1, 2, 3}, []string{"bad gzip header"}},
	}
	for _, c := range gzCases {
		p := writeFile(t, dir, c.name, c.data)
		_, err := LoadIdx(p, goodLab)
		wantErr(t, err, p, c.frags...)
	}
	// A flipped byte in the compressed stream is caught by the gzip CRC or the inflater.
	gz := gzipBytes(ib)
	gz[len(gz)-6] ^= 0xff // inside the CRC32 trailer
	p := writeFile(t, dir, "gz-crc", gz)
	_, err := LoadIdx(p, goodLab)
	wantErr(t, err, p, "checksum")

	// Label problems.
	short := writeFile(t, dir, "short-lab", lb[:len(lb)-1])
	_, err = LoadIdx(good, short)
	wantErr(t, err, short, "need 5 data bytes but the file has 4")
	d2 := randDataset(r, 6, 4, 3, 1, 10)
	_, lb6 := idxBytes(t, d2, false)
	six := writeFile(t, dir, "six-lab", lb6)
	_, err = LoadIdx(good, six)
	wantErr(t, err, six, "6 labels but", "has 5 images")
	_, err = LoadIdx(good, good)
	wantErr(t, err, good, "want 0x00000801")
}
