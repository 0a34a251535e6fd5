package data

import (
	"bytes"
	"testing"
)

// cifarRecordsNaive builds CIFAR-10 binary records straight from the format description, as an
// independent reference for the writer and the reader.
func cifarRecordsNaive(d *Dataset) []byte {
	var out []byte
	for i := 0; i < d.N; i++ {
		out = append(out, byte(d.Labels[i]))
		for c := 0; c < 3; c++ {
			for y := 0; y < 32; y++ {
				for x := 0; x < 32; x++ {
					out = append(out, d.Images[((i*32+y)*32+x)*3+c])
				}
			}
		}
	}
	return out
}

func TestCIFARRoundTrip(t *testing.T) {
	d := randDataset(newRand(t), 23, 32, 32, 3, 10)
	want := cifarRecordsNaive(d)
	var buf bytes.Buffer
	if err := WriteCIFAR(&buf, d); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(buf.Bytes(), want) {
		t.Fatal("writer output differs from the naive CHW encoding")
	}
	got, err := ReadCIFAR(bytes.NewReader(want), "mem", int64(len(want)))
	if err != nil {
		t.Fatal(err)
	}
	sameDataset(t, got, d)
	// Unknown size: read until EOF.
	got, err = ReadCIFAR(bytes.NewReader(want), "mem", -1)
	if err != nil {
		t.Fatal(err)
	}
	sameDataset(t, got, d)

	dir := t.TempDir()
	d2 := randDataset(newRand(t), 11, 32, 32, 3, 10)
	p1 := writeFile(t, dir, "a.bin", want)
	p2 := writeFile(t, dir, "b.bin", cifarRecordsNaive(d2))
	all, err := LoadCIFAR(p1, p2)
	if err != nil {
		t.Fatal(err)
	}
	if all.N != 34 || all.Labels[23] != d2.Labels[0] || !bytes.Equal(all.Image(30), d2.Image(7)) {
		t.Fatal("concatenation of two batch files is wrong")
	}
}

func TestCIFARErrors(t *testing.T) {
	d := randDataset(newRand(t), 3, 32, 32, 3, 10)
	rec := cifarRecordsNaive(d)
	dir := t.TempDir()
	p := writeFile(t, dir, "trunc.bin", rec[:len(rec)-100])
	_, err := ReadCIFARFile(p)
	wantErr(t, err, p, "not a multiple of the 3073-byte", "2 whole records and 2973 extra bytes")

	_, err = ReadCIFAR(bytes.NewReader(rec[:len(rec)-100]), "stream", -1)
	wantErr(t, err, "stream", "record 2", "offset 6146", "truncated record: 2973 of 3073")

	bad := append([]byte(nil), rec...)
	bad[3073] = 10
	p = writeFile(t, dir, "label.bin", bad)
	_, err = ReadCIFARFile(p)
	wantErr(t, err, p, "record 1", "label byte 10", "want 0-9")

	p = writeFile(t, dir, "empty.bin", nil)
	_, err = ReadCIFARFile(p)
	wantErr(t, err, p, "no CIFAR-10 records")

	if err := WriteCIFAR(&bytes.Buffer{}, randDataset(newRand(t), 2, 28, 28, 1, 10)); err == nil {
		t.Fatal("writer accepted 28×28×1 images")
	}
}
