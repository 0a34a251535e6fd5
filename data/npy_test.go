package data

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// rawNpy assembles an npy v1 stream by hand from a header dict and data bytes.
func rawNpy(dict string, data []byte) []byte {
	h := dict + "\n"
	b := []byte(npyMagic + "\x01\x00")
	b = binary.LittleEndian.AppendUint16(b, uint16(len(h)))
	b = append(b, h...)
	return append(b, data...)
}

func TestNpyHeaders(t *testing.T) {
	cases := []struct {
		dict  string
		data  []byte
		shape []int
		ints  []int64
	}{
		{"{'descr': '|u1', 'fortran_order': False, 'shape': (2, 3), }", []byte{1, 2, 3, 4, 5, 250}, []int{2, 3}, []int64{1, 2, 3, 4, 5, 250}},
		{"{\"descr\": \"<i4\", \"fortran_order\": False, \"shape\": (2L,)}", []byte{0xff, 0xff, 0xff, 0xff, 7, 0, 0, 0}, []int{2}, []int64{-1, 7}},
		{"{'shape': (1,), 'fortran_order': False, 'descr': '>i8'}", []byte{0, 0, 0, 0, 0, 0, 1, 2}, []int{1}, []int64{258}},
		{"{'descr': '<u2', 'fortran_order': False, 'shape': (), }", []byte{0x34, 0x12}, []int{}, []int64{0x1234}},
		{"{'descr': '|b1', 'fortran_order': False, 'shape': (3,), }", []byte{1, 0, 1}, []int{3}, []int64{1, 0, 1}},
		{"{'descr': '<i2', 'fortran_order': False, 'shape': (0, 5), }", nil, []int{0, 5}, []int64{}},
	}
	for _, c := range cases {
		b := rawNpy(c.dict, c.data)
		a, err := ReadNpy(bytes.NewReader(b), "h", int64(len(b)))
		if err != nil {
			t.Fatalf("%s: %v", c.dict, err)
		}
		if fmt.Sprint(a.Shape) != fmt.Sprint(c.shape) {
			t.Fatalf("%s: shape %v want %v", c.dict, a.Shape, c.shape)
		}
		got, err := a.Int64()
		if err != nil {
			t.Fatal(err)
		}
		if fmt.Sprint(got) != fmt.Sprint(c.ints) {
			t.Fatalf("%s: values %v want %v", c.dict, got, c.ints)
		}
	}
	// Version 2 header (uint32 length).
	h := "{'descr': '|u1', 'fortran_order': False, 'shape': (2,), }\n"
	v2 := []byte(npyMagic + "\x02\x00")
	v2 = binary.LittleEndian.AppendUint32(v2, uint32(len(h)))
	v2 = append(append(v2, h...), 9, 8)
	a, err := ReadNpy(bytes.NewReader(v2), "v2", -1)
	if err != nil || !bytes.Equal(a.Data, []byte{9, 8}) {
		t.Fatalf("v2: %v %v", a, err)
	}
}

func TestNpyErrors(t *testing.T) {
	ok := "{'descr': '|u1', 'fortran_order': False, 'shape': (2, 3), }"
	six := []byte{1, 2, 3, 4, 5, 6}
	cases := []struct {
		b     []byte
		frags []string
	}{
		{[]byte("\x93NUMP"), []string{"truncated npy preamble"}},
		{[]byte("PK\x03\x04abcdefgh"), []string{"bad npy magic"}},
		{append([]byte(npyMagic+"\x04\x00"), 0, 0), []string{"version 4.0 not supported"}},
		{rawNpy(strings.Replace(ok, "False", "True", 1), six), []string{"fortran_order True not supported"}},
		{rawNpy(strings.Replace(ok, "|u1", "<c16", 1), six), []string{"dtype \"<c16\" not supported"}},
		{rawNpy(strings.Replace(ok, "|u1", "|O", 1), six), []string{"not supported"}},
		{rawNpy(strings.Replace(ok, "'descr': '|u1', ", "", 1), six), []string{"missing key \"descr\""}},
		{rawNpy(strings.Replace(ok, "(2, 3)", "(2, -3)", 1), six), []string{"want a non-negative integer"}},
		{rawNpy(strings.Replace(ok, "(2, 3)", "[2, 3]", 1), six), []string{"want '('"}},
		{rawNpy(strings.Replace(ok, "}", "} x", 1), six), []string{"unexpected text after the dict"}},
		{rawNpy(strings.Replace(ok, "'shape'", "'shape': (1,), 'shape'", 1), six), []string{"duplicate key"}},
		{rawNpy(ok, six[:5]), []string{"needs 6 data bytes but 5 follow"}},
		{rawNpy(ok, append(six, 7)), []string{"needs 6 data bytes but 7 follow"}},
		{rawNpy(strings.Replace(ok, "(2, 3)", "(1000000000, 1000000000)", 1), six), []string{"absurdly large"}},
		{rawNpy(strings.Replace(ok, "(2, 3)", "(100000000, 100)", 1), six), []string{"needs 10000000000 data bytes but 6 follow"}},
		{append([]byte(npyMagic+"\x01\x00"), 0xff, 0x00, '{'), []string{"runs past the end"}},
	}
	for i, c := range cases {
		name := fmt.Sprintf("case%d.npy", i)
		_, err := ReadNpy(bytes.NewReader(c.b), name, int64(len(c.b)))
		wantErr(t, err, name, c.frags...)
	}
	// Unknown length (as inside a compressed npz): a huge header is caught by the short read.
	b := rawNpy(strings.Replace(ok, "(2, 3)", "(100000000, 100)", 1), six)
	_, err := ReadNpy(bytes.NewReader(b), "stream", -1)
	wantErr(t, err, "stream", "truncated: got 6 of 10000000000")
}

// chrabaszczNpz builds an npz in Chrabaszcz et al.'s layout: (N, 3·S·S) CHW-planar rows, 1-based
// labels, and a 'mean' array the reader must ignore.
func chrabaszczNpz(t testing.TB, d *Dataset, compress bool) []byte {
	t.Helper()
	s := d.H
	rows := make([]uint8, d.N*3*s*s)
	for i := 0; i < d.N; i++ {
		for c := 0; c < 3; c++ {
			for y := 0; y < s; y++ {
				for x := 0; x < s; x++ {
					rows[i*3*s*s+c*s*s+y*s+x] = d.Images[((i*s+y)*s+x)*3+c]
				}
			}
		}
	}
	labs := make([]int64, d.N)
	for i, l := range d.Labels {
		labs[i] = int64(l) + 1
	}
	da, err := NewNpyUint8([]int{d.N, 3 * s * s}, rows)
	if err != nil {
		t.Fatal(err)
	}
	la, _ := NewNpyInt64([]int{d.N}, labs)
	mean, _ := NewNpyUint8([]int{3 * s * s}, rows[:3*s*s])
	var buf bytes.Buffer
	if err := WriteNpz(&buf, map[string]*NpyArray{"data": da, "labels": la, "mean": mean}, compress); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

func TestNpzImageNetLayouts(t *testing.T) {
	r := newRand(t)
	d := randDataset(r, 13, 8, 8, 3, 1000)
	for _, compress := range []bool{false, true} {
		b := chrabaszczNpz(t, d, compress)
		got, err := DecodeNpzImages(b, "x.npz", 8)
		if err != nil {
			t.Fatal(err)
		}
		sameDataset(t, got, d)
		got, err = DecodeNpzImages(b, "x.npz", 0) // side inferred
		if err != nil {
			t.Fatal(err)
		}
		sameDataset(t, got, d)
		_, err = DecodeNpzImages(b, "x.npz", 16)
		wantErr(t, err, "x.npz", "rows have 192 values, want 3·16·16 = 768")
	}
	// (N, H, W, C) layout, no labels.
	d4 := randDataset(r, 4, 5, 6, 3, 0)
	a, _ := NewNpyUint8([]int{4, 5, 6, 3}, d4.Images)
	var buf bytes.Buffer
	if err := WriteNpz(&buf, map[string]*NpyArray{"data": a}, false); err != nil {
		t.Fatal(err)
	}
	got, err := DecodeNpzImages(buf.Bytes(), "nhwc.npz", 0)
	if err != nil {
		t.Fatal(err)
	}
	sameDataset(t, got, d4)

	// Error cases.
	bad := func(arrs map[string]*NpyArray) []byte {
		var buf bytes.Buffer
		if err := WriteNpz(&buf, arrs, false); err != nil {
			t.Fatal(err)
		}
		return buf.Bytes()
	}
	l0, _ := NewNpyInt64([]int{4}, []int64{1, 2, 0, 3})
	_, err = DecodeNpzImages(bad(map[string]*NpyArray{"data": a, "labels": l0}), "zero.npz", 0)
	wantErr(t, err, "zero.npz", "record 2", "label 0, want a 1-based class id")
	l3, _ := NewNpyInt64([]int{3}, []int64{1, 2, 3})
	_, err = DecodeNpzImages(bad(map[string]*NpyArray{"data": a, "labels": l3}), "count.npz", 0)
	wantErr(t, err, "count.npz", "'labels' has 3 values", "'data' has 4 images")
	_, err = DecodeNpzImages(bad(map[string]*NpyArray{"x": a}), "nodata.npz", 0)
	wantErr(t, err, "nodata.npz", "no array \"data\"", "[x]")
	odd, _ := NewNpyUint8([]int{2, 7}, make([]uint8, 14))
	_, err = DecodeNpzImages(bad(map[string]*NpyArray{"data": odd}), "odd.npz", 0)
	wantErr(t, err, "odd.npz", "not 3·S·S")
	i64, _ := NewNpyInt64([]int{1, 3}, []int64{1, 2, 3})
	_, err = DecodeNpzImages(bad(map[string]*NpyArray{"data": i64}), "dtype.npz", 0)
	wantErr(t, err, "dtype.npz", "want unsigned bytes")
	_, err = DecodeNpzImages([]byte("not a zip"), "junk.npz", 0)
	wantErr(t, err, "junk.npz", "not a valid npz")
	// A flipped data byte inside a stored member is caught by the zip CRC.
	b := chrabaszczNpz(t, d, false)
	k := bytes.Index(b, []byte("'shape': (13, 192)"))
	b[k+200] ^= 0x55
	_, err = DecodeNpzImages(b, "crc.npz", 8)
	wantErr(t, err, "crc.npz:data.npy", "checksum")
	// Truncated archive.
	b = chrabaszczNpz(t, d, true)
	_, err = DecodeNpzImages(b[:len(b)/2], "trunc.npz", 8)
	wantErr(t, err, "trunc.npz", "not a valid npz")
}

// TestNpzNumPyCrossCheck compares with NumPy itself when Debian's python3 has it: NumPy writes
// npz files (plain and compressed) that we read, and reads the files we write.
func TestNpzNumPyCrossCheck(t *testing.T) {
	py := "/usr/bin/python3"
	if _, err := os.Stat(py); err != nil {
		t.Skip("no /usr/bin/python3")
	}
	if err := exec.Command(py, "-c", "import numpy").Run(); err != nil {
		t.Skip("python3 has no numpy")
	}
	dir := t.TempDir()
	script := `
import numpy as np, sys
d = sys.argv[1]
rng = np.random.default_rng(7)
x = rng.integers(0, 256, size=(6, 3*4*4), dtype=np.uint8)
y = rng.integers(1, 1001, size=6).astype(np.int64)
np.savez(d + '/plain.npz', data=x, labels=y, mean=x.mean(0))
np.savez_compressed(d + '/comp.npz', data=x, labels=y)
x.tofile(d + '/x.raw'); y.astype('<i8').tofile(d + '/y.raw')
z = np.load(d + '/ours.npz')
assert z['data'].dtype == np.uint8 and z['data'].shape == (2, 4, 4, 3), z['data'].shape
assert z['labels'].tolist() == [5, 9], z['labels']
assert z['data'].reshape(-1).tolist() == list(range(96)), 'data'
print('ok')
`
	da, _ := NewNpyUint8([]int{2, 4, 4, 3}, func() []uint8 {
		b := make([]uint8, 96)
		for i := range b {
			b[i] = uint8(i)
		}
		return b
	}())
	la, _ := NewNpyInt64([]int{2}, []int64{5, 9})
	var buf bytes.Buffer
	if err := WriteNpz(&buf, map[string]*NpyArray{"data": da, "labels": la}, true); err != nil {
		t.Fatal(err)
	}
	writeFile(t, dir, "ours.npz", buf.Bytes())
	out, err := exec.Command(py, "-c", script, dir).CombinedOutput()
	if err != nil || !strings.Contains(string(out), "ok") {
		t.Fatalf("numpy: %v\n%s", err, out)
	}
	raw, _ := os.ReadFile(filepath.Join(dir, "x.raw"))
	yraw, _ := os.ReadFile(filepath.Join(dir, "y.raw"))
	for _, f := range []string{"plain.npz", "comp.npz"} {
		got, err := LoadNpz(4, filepath.Join(dir, f))
		if err != nil {
			t.Fatal(err)
		}
		for i := 0; i < 6; i++ {
			if got.Labels[i] != int32(binary.LittleEndian.Uint64(yraw[8*i:]))-1 {
				t.Fatalf("%s: label %d", f, i)
			}
			for c := 0; c < 3; c++ {
				for p := 0; p < 16; p++ {
					if got.Images[i*48+p*3+c] != raw[i*48+c*16+p] {
						t.Fatalf("%s: image %d channel %d pixel %d", f, i, c, p)
					}
				}
			}
		}
	}
}
