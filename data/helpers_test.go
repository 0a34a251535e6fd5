package data

import (
	"errors"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// randDataset makes n random H×W×C images (random bytes, so never all zero) with labels in
// [0, classes) when classes > 0.
func randDataset(r *rand.Rand, n, h, w, c, classes int) *Dataset {
	d := &Dataset{N: n, H: h, W: w, C: c, Source: "random"}
	d.Images = make([]uint8, n*h*w*c)
	for i := range d.Images {
		d.Images[i] = uint8(r.IntN(256))
	}
	if classes > 0 {
		d.Labels = make([]int32, n)
		for i := range d.Labels {
			d.Labels[i] = int32(r.IntN(classes))
		}
	}
	return d
}

func newRand(t testing.TB) *rand.Rand {
	return rand.New(rand.NewPCG(uint64(len(t.Name())), 0x5eed))
}

// writeFile writes b to dir/name, creating parent folders.
func writeFile(t testing.TB, dir, name string, b []byte) string {
	t.Helper()
	p := filepath.Join(dir, name)
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(p, b, 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

// wantErr checks err is non-nil, mentions every fragment, and (when file != "") is a FormatError or
// at least names file.
func wantErr(t testing.TB, err error, file string, frags ...string) {
	t.Helper()
	if err == nil {
		t.Fatalf("want error containing %q, got nil", frags)
	}
	msg := err.Error()
	for _, f := range frags {
		if !strings.Contains(msg, f) {
			t.Errorf("error %q does not contain %q", msg, f)
		}
	}
	if file != "" {
		var fe *FormatError
		if errors.As(err, &fe) {
			if fe.File != file {
				t.Errorf("FormatError names file %q, want %q", fe.File, file)
			}
		} else if !strings.Contains(msg, file) {
			t.Errorf("error %q does not name file %q", msg, file)
		}
	}
}

func sameDataset(t testing.TB, got, want *Dataset) {
	t.Helper()
	if got.N != want.N || got.H != want.H || got.W != want.W || got.C != want.C {
		t.Fatalf("shape %d×%d×%d×%d, want %d×%d×%d×%d", got.N, got.H, got.W, got.C, want.N, want.H, want.W, want.C)
	}
	for i := range want.Images {
		if got.Images[i] != want.Images[i] {
			t.Fatalf("image byte %d (image %d) = %d, want %d", i, i/want.ImageSize(), got.Images[i], want.Images[i])
		}
	}
	if (got.Labels == nil) != (want.Labels == nil) {
		t.Fatalf("labels present %v, want %v", got.Labels != nil, want.Labels != nil)
	}
	for i := range want.Labels {
		if got.Labels[i] != want.Labels[i] {
			t.Fatalf("label %d = %d, want %d", i, got.Labels[i], want.Labels[i])
		}
	}
	if got.NumAttrs != want.NumAttrs || len(got.Attrs) != len(want.Attrs) {
		t.Fatalf("attrs %d×%d, want %d×%d", len(got.Attrs), got.NumAttrs, len(want.Attrs), want.NumAttrs)
	}
	for i := range want.Attrs {
		if got.Attrs[i] != want.Attrs[i] {
			t.Fatalf("attr %d = %d, want %d", i, got.Attrs[i], want.Attrs[i])
		}
	}
}
