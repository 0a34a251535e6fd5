package safetensors

import (
	"bytes"
	"math/rand/v2"
	"path/filepath"
	"testing"
)

// benchTensors returns 64 MiB of F32 tensors in 64 pieces, about a 16M-parameter checkpoint.
func benchTensors() []HostTensor {
	r := rand.New(rand.NewPCG(1, 2))
	var ts []HostTensor
	for i := range 64 {
		d := make([]float32, 1<<18)
		for j := range d {
			d[j] = float32(r.NormFloat64())
		}
		ts = append(ts, F32("t"+string(rune('A'+i%26))+string(rune('a'+i/26)), d, 512, 512))
	}
	return ts
}

// BenchmarkEncode measures serialization alone (no disk); SetBytes makes -bench report MB/s.
func BenchmarkEncode(b *testing.B) {
	ts := benchTensors()
	var buf bytes.Buffer
	b.SetBytes(64 << 20)
	for b.Loop() {
		buf.Reset()
		if err := Encode(&buf, ts, map[string]string{"step": "1"}); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkWrite measures an atomic checkpoint write including both fsyncs.
func BenchmarkWrite(b *testing.B) {
	ts := benchTensors()
	path := filepath.Join(b.TempDir(), "ck.safetensors")
	b.SetBytes(64 << 20)
	for b.Loop() {
		if err := Write(path, ts, map[string]string{"step": "1"}); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkRead measures reading, validating and extracting every tensor.
func BenchmarkRead(b *testing.B) {
	ts := benchTensors()
	path := filepath.Join(b.TempDir(), "ck.safetensors")
	if err := Write(path, ts, nil); err != nil {
		b.Fatal(err)
	}
	b.SetBytes(64 << 20)
	for b.Loop() {
		f, err := Read(path)
		if err != nil {
			b.Fatal(err)
		}
		for _, t := range ts {
			if _, err := f.Float32(t.Name, t.Shape); err != nil {
				b.Fatal(err)
			}
		}
	}
}

// BenchmarkReadMeta measures what reading a checkpoint's metadata costs, the whole file (Read) and
// the header alone (ReadHeader), on the same 64 MiB checkpoint.
func BenchmarkReadMeta(b *testing.B) {
	path := filepath.Join(b.TempDir(), "ck.safetensors")
	if err := Write(path, benchTensors(), map[string]string{"step": "1"}); err != nil {
		b.Fatal(err)
	}
	for _, c := range []struct {
		name string
		read func(string) (*File, error)
	}{{"Read", Read}, {"ReadHeader", ReadHeader}} {
		b.Run(c.name, func(b *testing.B) {
			for b.Loop() {
				if f, err := c.read(path); err != nil || f.Meta["step"] != "1" {
					b.Fatal(f, err)
				}
			}
		})
	}
}
