package main

import (
	"os"
	"strings"
	"testing"
)

// TestProbeGenUpToDate regenerates probe_gen.go in memory from tensor/backend.go: a new Backend
// method without `go generate ./tensor/probe`, or a hand edit of the generated file, fails here.
func TestProbeGenUpToDate(t *testing.T) {
	src, err := os.ReadFile("../../backend.go")
	if err != nil {
		t.Fatal(err)
	}
	want, err := Generate("backend.go", src)
	if err != nil {
		t.Fatal(err)
	}
	got, err := os.ReadFile("../probe_gen.go")
	if err != nil {
		t.Fatal(err)
	}
	if string(got) != string(want) {
		t.Errorf("tensor/probe/probe_gen.go is stale or hand-edited: run go generate ./tensor/probe")
	}
}

// TestGenerateShapes checks the two kinds of generated method on a small interface.
func TestGenerateShapes(t *testing.T) {
	src := `package tensor
type Backend interface {
	Name() string
	Free(b Buffer)
	Scale(dst, x *Tensor, s float64)
}`
	out, err := Generate("b.go", []byte(src))
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{
		"func (pb *Backend) Name() string {\n\treturn pb.inner.Name()\n}",
		"func (pb *Backend) Free(b tensor.Buffer) {\n\tpb.inner.Free(b)\n}",
		"func (pb *Backend) Scale(dst, x *tensor.Tensor, s float64) {\n\tpb.call(func() { pb.inner.Scale(dst, x, s) }, func() *Record { return costScale(dst, x, s) })\n}",
	} {
		if !strings.Contains(string(out), want) {
			t.Errorf("generated code lacks\n%s\n---\n%s", want, out)
		}
	}
	if _, err := Generate("b.go", []byte("package tensor\ntype Other interface{}")); err == nil {
		t.Error("a file without Backend was accepted")
	}
}
