package data

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"math"
	"testing"
)

// crc32cNaive is a bit-at-a-time CRC-32C (reflected polynomial 0x82F63B78), independent of the
// table-driven hash/crc32 used by the package.
func crc32cNaive(b []byte) uint32 {
	c := ^uint32(0)
	for _, x := range b {
		c ^= uint32(x)
		for k := 0; k < 8; k++ {
			if c&1 != 0 {
				c = c>>1 ^ 0x82f63b78
			} else {
				c >>= 1
			}
		}
	}
	return ^c
}

func TestMaskedCRC(t *testing.T) {
	// The standard CRC-32C check value (RFC 3720 appendix B.4 / the CRC catalogue).
	if c := crc32cNaive([]byte("123456789")); c != 0xe3069283 {
		t.Fatalf("naive crc32c check value 0x%08x", c)
	}
	r := newRand(t)
	for n := 0; n < 100; n++ {
		b := make([]byte, n)
		for i := range b {
			b[i] = byte(r.IntN(256))
		}
		c := crc32cNaive(b)
		want := ((c >> 15) | (c << 17)) + 0xa282ead8
		if got := maskedCRC(b); got != want {
			t.Fatalf("len %d: masked crc 0x%08x want 0x%08x", n, got, want)
		}
	}
}

func TestTFRecordFraming(t *testing.T) {
	r := newRand(t)
	var recs [][]byte
	var buf bytes.Buffer
	for i := 0; i < 20; i++ {
		b := make([]byte, r.IntN(300))
		for j := range b {
			b[j] = byte(r.IntN(256))
		}
		recs = append(recs, b)
		if err := WriteTFRecord(&buf, b); err != nil {
			t.Fatal(err)
		}
	}
	file := buf.Bytes()
	// Hand-check the first frame's layout.
	n := binary.LittleEndian.Uint64(file)
	if n != uint64(len(recs[0])) || binary.LittleEndian.Uint32(file[8:]) != maskedCRC(file[:8]) ||
		binary.LittleEndian.Uint32(file[12+n:]) != maskedCRC(recs[0]) {
		t.Fatal("first frame does not follow the TFRecord layout")
	}
	for _, size := range []int64{int64(len(file)), -1} {
		tr := NewTFRecordReader(bytes.NewReader(file), "f", size)
		for i := 0; ; i++ {
			got, err := tr.Next()
			if i == len(recs) {
				if err == nil {
					t.Fatal("extra record")
				}
				break
			}
			if err != nil || !bytes.Equal(got, recs[i]) {
				t.Fatalf("record %d: %v", i, err)
			}
		}
	}

	// Corruptions: each names the record and its offset.
	off2 := int64(0)
	for _, rec := range recs[:2] {
		off2 += 16 + int64(len(rec))
	}
	read := func(b []byte, size int64) error {
		tr := NewTFRecordReader(bytes.NewReader(b), "c.tfrecords", size)
		for {
			if _, err := tr.Next(); err != nil {
				if err.Error() == "EOF" {
					return nil
				}
				return err
			}
		}
	}
	c := append([]byte(nil), file...)
	c[off2+12] ^= 1
	wantErr(t, read(c, int64(len(c))), "c.tfrecords", "record 2", fmt.Sprintf("offset %d", off2), "data CRC mismatch")
	c = append([]byte(nil), file...)
	c[off2+1] ^= 1
	wantErr(t, read(c, int64(len(c))), "c.tfrecords", "record 2", "length CRC mismatch")
	wantErr(t, read(file[:off2+5], off2+5), "c.tfrecords", "record 2", "truncated record header: 5 of 12")
	wantErr(t, read(file[:off2+20], off2+20), "c.tfrecords", "record 2", "runs past the end")
	wantErr(t, read(file[:off2+20], -1), "c.tfrecords", "record 2", "truncated")
	// A huge length with a valid length CRC must not be allocated.
	var huge [12]byte
	binary.LittleEndian.PutUint64(huge[:], 1<<39)
	binary.LittleEndian.PutUint32(huge[8:], maskedCRC(huge[:8]))
	wantErr(t, read(huge[:], 12), "c.tfrecords", "record 0", "runs past the end")
	wantErr(t, read(huge[:], -1), "c.tfrecords", "record 0", "truncated: got 0 of 549755813888")
	binary.LittleEndian.PutUint64(huge[:], 1<<62)
	binary.LittleEndian.PutUint32(huge[8:], maskedCRC(huge[:8]))
	wantErr(t, read(huge[:], -1), "c.tfrecords", "absurdly large")
}

func TestExampleWire(t *testing.T) {
	// Example{"label": int64_list [5]} as TensorFlow serializes it, assembled by hand from
	// example.proto / feature.proto field numbers.
	want := []byte{0x0a, 0x10, 0x0a, 0x0e, 0x0a, 0x05, 'l', 'a', 'b', 'e', 'l', 0x12, 0x05, 0x1a, 0x03, 0x0a, 0x01, 0x05}
	ex := Example{"label": {Kind: KindInt64, Int64s: []int64{5}}}
	if got := ex.Marshal(); !bytes.Equal(got, want) {
		t.Fatalf("Marshal = % x\nwant      % x", got, want)
	}
	// Unpacked encodings, negative varints and unknown fields at every level.
	feat := func(key string, body []byte) []byte {
		entry := appendLenField(nil, 1, []byte(key))
		entry = appendLenField(entry, 2, body)
		return appendLenField(nil, 1, entry)
	}
	var f32 [4]byte
	binary.LittleEndian.PutUint32(f32[:], math.Float32bits(-1.5))
	floatList := append([]byte{0x0d}, f32[:]...)                   // field 1, wire 5
	floatList = append(floatList, 0x0d, 0, 0, 0x80, 0x3f)          // 1.0
	intList := []byte{0x08, 0x07}                                  // field 1 wire 0: 7
	intList = appendVarint(append(intList, 0x08), uint64(1<<64-3)) // -3
	intList = append(intList, 0x10, 0x01)                          // unknown field 2
	var feats []byte
	feats = append(feats, feat("f", append(appendLenField(nil, 2, floatList), 0x20, 0x01))...)
	feats = append(feats, feat("i", appendLenField(nil, 3, intList))...)
	feats = append(feats, feat("b", appendLenField(nil, 1, append(appendLenField(nil, 1, []byte("xy")), appendLenField(nil, 1, []byte{})...)))...)
	feats = append(feats, 0x18, 0x09)                              // unknown varint field in Features
	msg := append(appendLenField(nil, 1, feats), 0x15, 1, 2, 3, 4) // unknown fixed32 in Example
	got, err := ParseExample(msg)
	if err != nil {
		t.Fatal(err)
	}
	if f := got["f"]; f.Kind != KindFloat || fmt.Sprint(f.Floats) != "[-1.5 1]" {
		t.Fatalf("floats %+v", f)
	}
	if f := got["i"]; f.Kind != KindInt64 || fmt.Sprint(f.Int64s) != "[7 -3]" {
		t.Fatalf("ints %+v", f)
	}
	if f := got["b"]; f.Kind != KindBytes || len(f.Bytes) != 2 || string(f.Bytes[0]) != "xy" || len(f.Bytes[1]) != 0 {
		t.Fatalf("bytes %+v", f)
	}
	// Round trip through Marshal (packed form).
	again, err := ParseExample(got.Marshal())
	if err != nil || fmt.Sprint(again["f"].Floats, again["i"].Int64s) != "[-1.5 1] [7 -3]" {
		t.Fatalf("round trip: %v", err)
	}
	// Malformed messages.
	for _, bad := range [][]byte{
		{0x0a},                   // truncated length
		{0x0a, 0x05, 0x0a},       // length past end
		{0x0b},                   // group start
		{0x0a, 0x02, 0x0a, 0x7f}, // nested length past end
		{0x08, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x7f}, // varint overflow
		{0x00, 0x01}, // field number 0
		feat("k", appendLenField(nil, 2, []byte{0x0a, 0x03, 1, 2, 3})), // packed floats not multiple of 4
	} {
		if _, err := ParseExample(bad); err == nil {
			t.Fatalf("% x: no error", bad)
		}
	}
}

func writeTFRecords(t testing.TB, exs []Example) []byte {
	var buf bytes.Buffer
	for _, ex := range exs {
		if err := WriteTFRecord(&buf, ex.Marshal()); err != nil {
			t.Fatal(err)
		}
	}
	return buf.Bytes()
}

func TestTFRecordImageLayouts(t *testing.T) {
	r := newRand(t)
	d := randDataset(r, 9, 6, 6, 3, 10)
	d.NumAttrs = 40
	d.Attrs = make([]int32, 9*40)
	for i := range d.Attrs {
		d.Attrs[i] = int32(2*r.IntN(2) - 1)
	}
	var glow, dlf []Example
	for i := 0; i < d.N; i++ {
		attrs := make([]int64, 40)
		for k := range attrs {
			attrs[k] = int64(d.Attrs[i*40+k])
		}
		glow = append(glow, ImageExampleGlow(d.Image(i), Shape{6, 6, 3}, int64(d.Labels[i]), attrs))
		dlf = append(dlf, ImageExampleDLF(d.Image(i), int64(d.Labels[i])))
	}
	gb := writeTFRecords(t, glow)
	got, err := ReadTFRecordImages(bytes.NewReader(gb), "glow", int64(len(gb)), Shape{})
	if err != nil {
		t.Fatal(err)
	}
	sameDataset(t, got, d)

	db := writeTFRecords(t, dlf)
	noAttr := *d
	noAttr.Attrs, noAttr.NumAttrs = nil, 0
	for _, hint := range []Shape{{6, 6, 3}, {}} {
		got, err = ReadTFRecordImages(bytes.NewReader(db), "dlf", int64(len(db)), hint)
		if err != nil {
			t.Fatal(err)
		}
		sameDataset(t, got, &noAttr)
	}
	// Independent decode of one DLF record's float bytes.
	ex, _ := ParseExample(dlf[3].Marshal())
	raw := ex["image"].Bytes[0]
	for j := 0; j < 108; j++ {
		if v := math.Float32frombits(binary.LittleEndian.Uint32(raw[4*j:])); v != float32(d.Image(3)[j]) {
			t.Fatalf("float %d = %g", j, v)
		}
	}

	_, err = ReadTFRecordImages(bytes.NewReader(gb), "glow", -1, Shape{8, 8, 3})
	wantErr(t, err, "glow", "record 0", "image shape 6x6x3, want 8x8x3")
	_, err = ReadTFRecordImages(bytes.NewReader(db), "dlf", -1, Shape{4, 4, 3})
	wantErr(t, err, "dlf", "record 0", "has 108 values, want 4x4x3 = 48")

	badF := ImageExampleDLF(d.Image(0), 1)
	binary.LittleEndian.PutUint32(badF["image"].Bytes[0][8:], math.Float32bits(0.5))
	b := writeTFRecords(t, []Example{dlf[0], badF})
	_, err = ReadTFRecordImages(bytes.NewReader(b), "frac", -1, Shape{})
	wantErr(t, err, "frac", "record 1", "value 0.5 at index 2 is not a whole pixel value")

	b = writeTFRecords(t, []Example{glow[0], ImageExampleGlow(d.Image(1), Shape{6, 6, 3}, -1, make([]int64, 40))})
	_, err = ReadTFRecordImages(bytes.NewReader(b), "mixed", -1, Shape{})
	wantErr(t, err, "mixed", "record 1", "label present=false")

	b = writeTFRecords(t, []Example{{"pixels": {Kind: KindBytes, Bytes: [][]byte{{1}}}, "y": {Kind: KindInt64, Int64s: []int64{1}}}})
	_, err = ReadTFRecordImages(bytes.NewReader(b), "names", -1, Shape{})
	wantErr(t, err, "names", "record 0", `want "data" (Glow layout) or "image" (DLF layout)`, `features "pixels", "y"`)

	short := ImageExampleGlow(d.Image(0)[:100], Shape{6, 6, 3}, 1, nil)
	b = writeTFRecords(t, []Example{short})
	_, err = ReadTFRecordImages(bytes.NewReader(b), "short", -1, Shape{})
	wantErr(t, err, "short", "record 0", "has 100 bytes, want 6x6x3 = 108")

	_, err = ReadTFRecordImages(bytes.NewReader(nil), "empty", 0, Shape{})
	wantErr(t, err, "empty", "no records")
}
