package safetensors

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"math"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"
)

// newRand returns a generator with a fresh seed, logged so a failure can be replayed.
func newRand(t testing.TB) *rand.Rand {
	seed := uint64(time.Now().UnixNano())
	t.Logf("seed %d", seed)
	return rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15))
}

// sampleTensors returns F32 and F64 tensors with random non-zero values, including a scalar and an
// empty tensor, which exercise the format's edge cases.
func sampleTensors(r *rand.Rand) []HostTensor {
	f32 := func(n int) []float32 {
		d := make([]float32, n)
		for i := range d {
			d[i] = float32(r.NormFloat64()) + 0.25
		}
		return d
	}
	f64 := func(n int) []float64 {
		d := make([]float64, n)
		for i := range d {
			d[i] = r.NormFloat64() + 0.25
		}
		return d
	}
	return []HostTensor{
		F32("level0.step0.invconv.weight", f32(16), 4, 4),
		F64("level0.step0.dlt.part1.conv1.weight", f64(3*3*3*5), 3, 3, 3, 5),
		F32("level1.scalar", f32(1)),
		F64("empty", f64(0), 0, 3),
		F32("opt.m.level0.step0.invconv.weight", f32(16), 4, 4),
	}
}

func TestRoundTrip(t *testing.T) {
	r := newRand(t)
	ts := sampleTensors(r)
	meta := map[string]string{"step": "17", "config": `{"width":8,"levels":2}`, "ünïcode": "✓ \"quoted\""}
	path := filepath.Join(t.TempDir(), "ckpt.safetensors")
	if err := Write(path, ts, meta); err != nil {
		t.Fatal(err)
	}
	f, err := Read(path)
	if err != nil {
		t.Fatal(err)
	}
	if !maps(f.Meta, meta) {
		t.Errorf("meta %v, want %v", f.Meta, meta)
	}
	var want []string
	for _, h := range ts {
		want = append(want, h.Name)
	}
	// Zero-size tensors sort by offset among the others; all ours are laid out in the given order.
	if got := f.Names(); !slices.Equal(got, want) {
		t.Errorf("names %v, want %v", got, want)
	}
	for _, h := range ts {
		switch d := h.Data.(type) {
		case []float32:
			got, err := f.Float32(h.Name, h.Shape)
			if err != nil {
				t.Fatal(err)
			}
			for i := range d {
				if math.Float32bits(got[i]) != math.Float32bits(d[i]) {
					t.Fatalf("%s[%d] = %v, want %v", h.Name, i, got[i], d[i])
				}
			}
		case []float64:
			got, err := f.Float64(h.Name, h.Shape)
			if err != nil {
				t.Fatal(err)
			}
			for i := range d {
				if math.Float64bits(got[i]) != math.Float64bits(d[i]) {
					t.Fatalf("%s[%d] = %v, want %v", h.Name, i, got[i], d[i])
				}
			}
		}
	}
	var cfg struct{ Width, Levels int }
	if err := f.MetaJSON("config", &cfg); err != nil || cfg.Width != 8 || cfg.Levels != 2 {
		t.Errorf("MetaJSON config = %+v, %v", cfg, err)
	}
	// No temporary file is left behind.
	left, _ := filepath.Glob(filepath.Join(filepath.Dir(path), ".*tmp*"))
	if len(left) != 0 {
		t.Errorf("temporary files left: %v", left)
	}
	st, _ := os.Stat(path)
	if st.Mode().Perm() != 0o644 {
		t.Errorf("mode %v, want 0644", st.Mode().Perm())
	}
}

func maps(a, b map[string]string) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if b[k] != v {
			return false
		}
	}
	return true
}

func TestEncodingIsDeterministicAndAligned(t *testing.T) {
	r := newRand(t)
	ts := sampleTensors(r)
	meta := map[string]string{"b": "2", "a": "1", "c": "3"}
	var b1, b2 bytes.Buffer
	if err := Encode(&b1, ts, meta); err != nil {
		t.Fatal(err)
	}
	if err := Encode(&b2, ts, meta); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(b1.Bytes(), b2.Bytes()) {
		t.Fatal("two encodings of the same tensors differ")
	}
	n := binary.LittleEndian.Uint64(b1.Bytes())
	if (8+n)%8 != 0 {
		t.Errorf("data buffer starts at %d, not 8-byte aligned", 8+n)
	}
	if !strings.HasPrefix(string(b1.Bytes()[8:]), `{"__metadata__":{"a":"1","b":"2","c":"3"}`) {
		t.Errorf("header %q", b1.Bytes()[8:8+n])
	}
}

func TestWriteRejectsBadInput(t *testing.T) {
	dir := t.TempDir()
	cases := map[string][]HostTensor{
		"appears twice":     {F32("a", []float32{1}, 1), F32("a", []float32{2}, 1)},
		"reserved":          {F32("__metadata__", []float32{1}, 1)},
		"holds 4 elements":  {F32("a", []float32{1, 2, 3}, 2, 2)},
		"want []float32":    {{Name: "a", Shape: []int{1}, Data: []int{1}}},
		"negative":          {F64("a", []float64{}, -1)},
		"has an empty name": {F32("", []float32{1}, 1)},
	}
	for want, ts := range cases {
		path := filepath.Join(dir, "x.safetensors")
		err := Write(path, ts, nil)
		if err == nil || !strings.Contains(err.Error(), want) || !strings.Contains(err.Error(), path) {
			t.Errorf("%s: error %v", want, err)
		}
		if _, err := os.Stat(path); !os.IsNotExist(err) {
			t.Errorf("%s: file was created", want)
		}
	}
}

// rawFile assembles a file from a literal header and a data buffer of n bytes, so tests can corrupt
// any part of the structure.
func rawFile(header string, n int) []byte {
	b := make([]byte, 8, 8+len(header)+n)
	binary.LittleEndian.PutUint64(b, uint64(len(header)))
	b = append(b, header...)
	for i := range n {
		b = append(b, byte(i*7+1))
	}
	return b
}

func TestParseRejectsMalformedFiles(t *testing.T) {
	ok := `{"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},"b":{"dtype":"F64","shape":[1],"data_offsets":[8,16]}}`
	if _, err := Parse("ok", rawFile(ok, 16)); err != nil {
		t.Fatalf("valid file rejected: %v", err)
	}
	hugeLen := make([]byte, 16)
	binary.LittleEndian.PutUint64(hugeLen, MaxHeaderBytes+1)
	longLen := make([]byte, 16)
	binary.LittleEndian.PutUint64(longLen, 9)
	cases := []struct {
		name   string
		file   []byte
		tensor string // tensor the error must name ("" for none)
		want   string
	}{
		{"short", []byte{1, 2, 3}, "", "too short"},
		{"huge header", hugeLen, "", "exceeds the limit"},
		{"header past end", longLen, "", "truncated file"},
		{"not an object", rawFile(`["a"]`, 0), "", "does not start with '{'"},
		{"bad json", rawFile(`{"a":{"dtype":"F32",}`, 0), "a", "malformed header JSON"},
		{"bad utf8", rawFile("{\"\xff\":1}", 0), "", "UTF-8"},
		{"duplicate", rawFile(`{"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]},"a":{"dtype":"F32","shape":[1],"data_offsets":[4,8]}}`, 8), "a", "appears twice"},
		{"duplicate field", rawFile(`{"a":{"dtype":"F32","dtype":"F32","shape":[1],"data_offsets":[0,4]}}`, 4), "a", "dtype appears twice"},
		{"unknown field", rawFile(`{"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4],"x":1}}`, 4), "a", "unknown field"},
		{"missing field", rawFile(`{"a":{"dtype":"F32","shape":[1]}}`, 0), "a", "lacks"},
		{"unknown dtype", rawFile(`{"a":{"dtype":"F128","shape":[1],"data_offsets":[0,16]}}`, 16), "a", "unknown dtype"},
		{"negative dim", rawFile(`{"a":{"dtype":"F32","shape":[-1],"data_offsets":[0,4]}}`, 4), "a", "non-negative integer"},
		{"fractional dim", rawFile(`{"a":{"dtype":"F32","shape":[1.5],"data_offsets":[0,4]}}`, 4), "a", "non-negative integer"},
		{"huge dim", rawFile(`{"a":{"dtype":"F32","shape":[4611686018427387904,4],"data_offsets":[0,4]}}`, 4), "a", "too large"},
		{"three offsets", rawFile(`{"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4,8]}}`, 4), "a", "want [begin, end]"},
		{"out of bounds", rawFile(`{"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}}`, 4), "a", "outside"},
		{"reversed", rawFile(`{"a":{"dtype":"F32","shape":[0],"data_offsets":[4,0]}}`, 4), "a", "outside"},
		{"size mismatch", rawFile(`{"a":{"dtype":"F64","shape":[1],"data_offsets":[0,4]}}`, 4), "a", "needs 8"},
		{"overlap", rawFile(`{"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},"b":{"dtype":"F32","shape":[1],"data_offsets":[4,8]}}`, 8), "b", "overlap"},
		{"gap", rawFile(`{"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]},"b":{"dtype":"F32","shape":[1],"data_offsets":[8,12]}}`, 12), "b", "gap"},
		{"trailing", rawFile(`{"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]}}`, 8), "", "trailing bytes"},
		{"meta not string", rawFile(`{"__metadata__":{"step":3}}`, 0), "", "want a string"},
		{"meta twice", rawFile(`{"__metadata__":{},"__metadata__":{}}`, 0), "", "appears twice"},
		{"garbage after", rawFile(`{} {}`, 0), "", "after the header object"},
		{"empty name", rawFile(`{"":{"dtype":"F32","shape":[1],"data_offsets":[0,4]}}`, 4), "", "empty name"},
	}
	for _, c := range cases {
		_, err := Parse("bad.safetensors", c.file)
		var se *Error
		if !errors.As(err, &se) {
			t.Errorf("%s: got %v, want an *Error", c.name, err)
			continue
		}
		if !strings.Contains(err.Error(), c.want) || se.Path != "bad.safetensors" || se.Tensor != c.tensor {
			t.Errorf("%s: error %q (tensor %q), want %q naming tensor %q", c.name, err, se.Tensor, c.want, c.tensor)
		}
	}
}

func TestExtractionChecksDTypeAndShape(t *testing.T) {
	var b bytes.Buffer
	if err := Encode(&b, []HostTensor{F32("w", []float32{1, 2, 3, 4, 5, 6}, 2, 3)}, nil); err != nil {
		t.Fatal(err)
	}
	f, err := Parse("ck", b.Bytes())
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		err  error
		want string
	}{
		{second(f.Float64("w", []int{2, 3})), "dtype is F32, want F64"},
		{second(f.Float32("w", []int{3, 2})), "shape is [2 3], want [3 2]"},
		{second(f.Float32("w", []int{6})), "shape is [2 3], want [6]"},
		{second(f.Float32("v", []int{2, 3})), "not in the checkpoint"},
		{f.MetaJSON("step", new(int)), `no "step"`},
	} {
		if c.err == nil || !strings.Contains(c.err.Error(), c.want) || !strings.Contains(c.err.Error(), "ck") {
			t.Errorf("error %v, want %q", c.err, c.want)
		}
	}
	if got, err := f.Float32("w", []int{2, 3}); err != nil || !slices.Equal(got, []float32{1, 2, 3, 4, 5, 6}) {
		t.Errorf("got %v, %v", got, err)
	}
}

func second[T any](_ T, err error) error { return err }

// failAfter fails every write once k bytes have gone through, like a full disk or a killed writer.
type failAfter struct {
	w io.Writer
	k int
}

func (f *failAfter) Write(p []byte) (int, error) {
	if len(p) > f.k {
		n, _ := f.w.Write(p[:f.k])
		f.k = 0
		return n, errors.New("simulated write failure")
	}
	f.k -= len(p)
	return f.w.Write(p)
}

// previous writes a first checkpoint and returns its bytes, for the crash tests.
func previous(t *testing.T, path string, r *rand.Rand) []byte {
	t.Helper()
	if err := Write(path, sampleTensors(r), map[string]string{"step": "1"}); err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// checkIntact asserts the file at path still holds exactly old and still loads.
func checkIntact(t *testing.T, path string, old []byte) {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(b, old) {
		t.Fatal("previous checkpoint was modified")
	}
	f, err := Read(path)
	if err != nil {
		t.Fatalf("previous checkpoint no longer loads: %v", err)
	}
	if f.Meta["step"] != "1" {
		t.Fatalf("previous checkpoint has step %q", f.Meta["step"])
	}
}

func TestFailedWriteKeepsPreviousCheckpoint(t *testing.T) {
	r := newRand(t)
	dir := t.TempDir()
	path := filepath.Join(dir, "ckpt.safetensors")
	old := previous(t, path, r)
	next := sampleTensors(r)
	for _, k := range []int{0, 5, 100, len(old) - 3} {
		err := write(path, next, map[string]string{"step": "2"}, writeHooks{
			wrap: func(w io.Writer) io.Writer { return &failAfter{w: w, k: k} },
		})
		if err == nil || !strings.Contains(err.Error(), "simulated write failure") {
			t.Fatalf("fail after %d bytes: error %v", k, err)
		}
		checkIntact(t, path, old)
	}
	// A failure between the synced temporary file and the rename (the last moment a crash can
	// interrupt) also leaves the previous file.
	err := write(path, next, map[string]string{"step": "2"}, writeHooks{
		beforeRename: func(string) error { return errors.New("simulated crash before rename") },
	})
	if err == nil {
		t.Fatal("write with a failing hook succeeded")
	}
	checkIntact(t, path, old)
	if left, _ := filepath.Glob(filepath.Join(dir, ".*tmp*")); len(left) != 0 {
		t.Errorf("temporary files left after failed writes: %v", left)
	}
}

// TestKilledWriterKeepsPreviousCheckpoint kills a real process between the write and the rename: the
// test binary re-executes itself, writes a new checkpoint over the old one and exits abruptly from the
// hook, with the temporary file complete on disk.
func TestKilledWriterKeepsPreviousCheckpoint(t *testing.T) {
	if path := os.Getenv("SAFETENSORS_CRASH_PATH"); path != "" {
		r := rand.New(rand.NewPCG(1, 2))
		write(path, sampleTensors(r), map[string]string{"step": "2"}, writeHooks{
			beforeRename: func(string) error { os.Exit(7); return nil },
		})
		os.Exit(0) // not reached: the hook exits first
	}
	r := newRand(t)
	dir := t.TempDir()
	path := filepath.Join(dir, "ckpt.safetensors")
	old := previous(t, path, r)
	cmd := exec.Command(os.Args[0], "-test.run=^TestKilledWriterKeepsPreviousCheckpoint$")
	cmd.Env = append(os.Environ(), "SAFETENSORS_CRASH_PATH="+path)
	out, err := cmd.CombinedOutput()
	var ee *exec.ExitError
	if !errors.As(err, &ee) || ee.ExitCode() != 7 {
		t.Fatalf("child did not die in the hook: %v\n%s", err, out)
	}
	checkIntact(t, path, old)
	// The crash leaves the complete temporary file behind; it does not disturb later writes.
	left, _ := filepath.Glob(filepath.Join(dir, ".ckpt.safetensors.tmp-*"))
	if len(left) != 1 {
		t.Fatalf("expected the crashed writer's temporary file, found %v", left)
	}
	if _, err := Read(left[0]); err != nil {
		t.Errorf("crashed writer's temporary file is incomplete: %v", err)
	}
	if err := Write(path, sampleTensors(r), map[string]string{"step": "3"}); err != nil {
		t.Fatal(err)
	}
	if f, err := Read(path); err != nil || f.Meta["step"] != "3" {
		t.Fatalf("write after crash: %v", err)
	}
}

func TestReadErrorsNameTheFile(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "trunc.safetensors")
	var b bytes.Buffer
	if err := Encode(&b, sampleTensors(newRand(t)), nil); err != nil {
		t.Fatal(err)
	}
	for _, n := range []int{0, 4, 8, 20, b.Len() - 1} {
		if err := os.WriteFile(path, b.Bytes()[:n], 0o644); err != nil {
			t.Fatal(err)
		}
		_, err := Read(path)
		if err == nil || !strings.Contains(err.Error(), path) {
			t.Errorf("truncated to %d bytes: error %v", n, err)
		}
	}
	if _, err := Read(filepath.Join(dir, "missing")); err == nil || !strings.Contains(err.Error(), "missing") {
		t.Errorf("missing file: %v", err)
	}
}

func ExampleWrite() {
	dir, _ := os.MkdirTemp("", "example")
	defer os.RemoveAll(dir)
	path := filepath.Join(dir, "ckpt.safetensors")
	err := Write(path, []HostTensor{
		F32("level0.step0.actnorm.bias", []float32{0.5, -0.25}, 2),
	}, map[string]string{"step": "100"})
	if err != nil {
		fmt.Println(err)
		return
	}
	f, err := Read(path)
	if err != nil {
		fmt.Println(err)
		return
	}
	bias, err := f.Float32("level0.step0.actnorm.bias", []int{2})
	fmt.Println(f.Names(), bias, f.Meta["step"], err)
	// Output: [level0.step0.actnorm.bias] [0.5 -0.25] 100 <nil>
}

// TestPortableByteOrderPath checks that the element-by-element conversion used on big-endian hosts
// produces the same bytes and values as the raw-memory path used on little-endian ones.
func TestPortableByteOrderPath(t *testing.T) {
	r := newRand(t)
	for _, h := range sampleTensors(r) {
		var raw, portable bytes.Buffer
		if err := writeData(&raw, h.Data, true); err != nil {
			t.Fatal(err)
		}
		if err := writeData(&portable, h.Data, false); err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(raw.Bytes(), portable.Bytes()) {
			t.Fatalf("%s: portable encoding differs", h.Name)
		}
		switch d := h.Data.(type) {
		case []float32:
			out := make([]float32, len(d))
			readData(out, portable.Bytes(), false)
			if !slices.Equal(out, d) {
				t.Fatalf("%s: portable decoding differs", h.Name)
			}
		case []float64:
			out := make([]float64, len(d))
			readData(out, portable.Bytes(), false)
			if !slices.Equal(out, d) {
				t.Fatalf("%s: portable decoding differs", h.Name)
			}
		}
	}
}

// TestWriteObservedStages checks the stages WriteObserved reports, in order, and what is on disk at
// each: the destination appears only at Renamed, and then holds the complete new file.
func TestWriteObservedStages(t *testing.T) {
	path := filepath.Join(t.TempDir(), "x.safetensors")
	ts := []HostTensor{F32("w", []float32{1.5, -2.25, 3}, 3)}
	var seen []Stage
	err := WriteObserved(path, ts, map[string]string{"k": "v"}, func(s Stage) {
		seen = append(seen, s)
		_, statErr := os.Stat(path)
		if exists := statErr == nil; exists != (s == Renamed) {
			t.Errorf("stage %d: destination exists %v", s, exists)
		}
		if s == Renamed {
			f, err := Read(path)
			if err != nil {
				t.Fatalf("at Renamed: %v", err)
			}
			if v, err := f.Float32("w", []int{3}); err != nil || v[2] != 3 || f.Meta["k"] != "v" {
				t.Errorf("at Renamed: %v %v %v", v, f.Meta, err)
			}
		}
	})
	if err != nil {
		t.Fatal(err)
	}
	if fmt.Sprint(seen) != fmt.Sprint([]Stage{Written, Synced, Renamed}) {
		t.Errorf("stages %v, want [0 1 2]", seen)
	}
}

// TestReadHeader checks that the header-only read agrees with Read on names, entries and metadata,
// refuses a truncated file as Read does, and refuses to hand out tensor data.
func TestReadHeader(t *testing.T) {
	path := filepath.Join(t.TempDir(), "x.safetensors")
	ts := []HostTensor{F32("a", []float32{1, 2, 3, 4, 5, 6}, 2, 3), F64("b", []float64{0.5, -1}, 2)}
	if err := Write(path, ts, map[string]string{"k": "v"}); err != nil {
		t.Fatal(err)
	}
	full, err := Read(path)
	if err != nil {
		t.Fatal(err)
	}
	h, err := ReadHeader(path)
	if err != nil {
		t.Fatal(err)
	}
	if fmt.Sprint(h.Names(), h.Meta) != fmt.Sprint(full.Names(), full.Meta) {
		t.Errorf("header %v %v, full %v %v", h.Names(), h.Meta, full.Names(), full.Meta)
	}
	for _, n := range full.Names() {
		he, _ := h.Entry(n)
		fe, _ := full.Entry(n)
		if fmt.Sprint(he) != fmt.Sprint(fe) {
			t.Errorf("entry %s: %v, full read %v", n, he, fe)
		}
	}
	if _, err := h.Float32("a", []int{2, 3}); err == nil || !strings.Contains(err.Error(), "only the header") {
		t.Errorf("tensor data from a header-only read: %v", err)
	}
	if _, err := h.Raw("b"); err == nil {
		t.Error("raw bytes from a header-only read")
	}
	b, _ := os.ReadFile(path)
	if err := os.WriteFile(path, b[:len(b)-4], 0o644); err != nil {
		t.Fatal(err)
	}
	_, errFull := Read(path)
	_, errHead := ReadHeader(path)
	if errFull == nil || errHead == nil || errFull.Error() != errHead.Error() {
		t.Errorf("a truncated file: Read %v, ReadHeader %v", errFull, errHead)
	}
}
