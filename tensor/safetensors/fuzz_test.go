package safetensors

import (
	"bytes"
	"math/rand/v2"
	"testing"
)

// FuzzRead feeds arbitrary bytes to the loader. It must never panic; when a file is accepted, every
// tensor it lists must be extractable with its own dtype and shape, and re-encoding the F32/F64
// tensors and metadata must give a file that parses to the same content.
func FuzzRead(f *testing.F) {
	r := rand.New(rand.NewPCG(3, 4))
	var valid bytes.Buffer
	if err := Encode(&valid, sampleTensors(r), map[string]string{"step": "5", "rng": `{"seed":1,"offset":99}`}); err != nil {
		f.Fatal(err)
	}
	v := valid.Bytes()
	f.Add(v)
	for _, n := range []int{0, 7, 8, 9, 40, len(v) / 2, len(v) - 1} {
		f.Add(v[:n])
	}
	f.Add(rawFile(`{"a":{"dtype":"BF16","shape":[2],"data_offsets":[0,4]},"__metadata__":{"k":"v"}}`, 4))
	f.Add(rawFile(`{"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},"b":{"dtype":"F32","shape":[1],"data_offsets":[4,8]}}`, 8))
	f.Add(rawFile(`{}`, 0))
	f.Fuzz(func(t *testing.T, b []byte) {
		file, err := Parse("fuzz", b)
		if err != nil {
			if _, ok := err.(*Error); !ok {
				t.Fatalf("error of type %T: %v", err, err)
			}
			return
		}
		var again []HostTensor
		for _, name := range file.Names() {
			e, ok := file.Entry(name)
			if !ok {
				t.Fatalf("listed tensor %q has no entry", name)
			}
			switch e.DType {
			case "F32":
				d, err := file.Float32(name, e.Shape)
				if err != nil || len(d) != e.Numel() {
					t.Fatalf("accepted tensor %q does not extract: %v", name, err)
				}
				again = append(again, F32(name, d, e.Shape...))
			case "F64":
				d, err := file.Float64(name, e.Shape)
				if err != nil || len(d) != e.Numel() {
					t.Fatalf("accepted tensor %q does not extract: %v", name, err)
				}
				again = append(again, F64(name, d, e.Shape...))
			}
		}
		var buf bytes.Buffer
		if err := Encode(&buf, again, file.Meta); err != nil {
			t.Fatalf("re-encoding an accepted file: %v", err)
		}
		back, err := Parse("re-encoded", buf.Bytes())
		if err != nil {
			t.Fatalf("re-encoded file rejected: %v", err)
		}
		if len(back.Names()) != len(again) || !maps(back.Meta, file.Meta) {
			t.Fatalf("re-encoded file differs: %v vs %v", back.Names(), file.Names())
		}
	})
}
