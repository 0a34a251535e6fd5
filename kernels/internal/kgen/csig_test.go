package kgen

import (
	"errors"
	"reflect"
	"strings"
	"testing"
)

func mustParse(t *testing.T, src string) []Kernel {
	t.Helper()
	ks, err := ParseSource("t.cu", src)
	if err != nil {
		t.Fatalf("ParseSource: %v", err)
	}
	return ks
}

// sig summarises a kernel as "name(GoType name, ...)".
func sig(k Kernel) string {
	parts := make([]string, len(k.Params))
	for i, p := range k.Params {
		parts[i] = p.GoType + " " + p.GoName
	}
	return k.Name + "(" + strings.Join(parts, ", ") + ")"
}

func TestParseTrickySignatures(t *testing.T) {
	src := `// header comment
#include "common.cuh"
#define DLF_THREADS 256
#define MULTI_LINE(x) { \
    extern "C" __global__ void not_a_kernel(int x) { } \
  }

template <typename T>
__global__ void tmpl_kernel(T* p, long long n) { p[0] = T(); }  // template: skipped

template <typename T>
__device__ void helper(T* p) { const char* s = "extern \"C\" __global__ void fake(int a) {"; }

/* A block comment with __global__ and braces { inside } */
extern "C" __global__ void __launch_bounds__(DLF_THREADS, 2)
multi_line(float* __restrict__ dst,   // destination
           const float * const __restrict__ src, /* source */
           unsigned int n,
           unsigned long long big,
           size_t count,
           double scale,
           long long off,
           int64_t a64, uint64_t b64, int32_t a32, uint32_t b32,
           unsigned u, signed s, long l, unsigned long ul, long long int lli,
           unsigned long long int ulli, const int ci, float x[]) {
  helper(dst);
}

extern "C" __global__ void no_args(void) {}
extern "C" __global__ void no_args2() {}

// Declared first, defined later: only the definition counts.
extern "C" __global__ void later(int n);

extern "C" {
// in a block
__global__ void in_block(double** pp, float v) {}
namespace inner {
__global__ void in_namespace(int n) {}
}
}

struct Holder { int x; void f() { } };

extern "C" __global__ void later(int n) { if (n) { return; } }
`
	ks := mustParse(t, src)
	var got []string
	for _, k := range ks {
		got = append(got, sig(k))
	}
	want := []string{
		"multi_line(cu.DevicePtr dst, cu.DevicePtr src, uint32 n, uint64 big, uint64 count, float64 scale, int64 off, " +
			"int64 a64, uint64 b64, int32 a32, uint32 b32, uint32 u, int32 s, int64 l, uint64 ul, int64 lli, uint64 ulli, int32 ci, cu.DevicePtr x)",
		"no_args()",
		"no_args2()",
		"in_block(cu.DevicePtr pp, float32 v)",
		"in_namespace(int32 n)",
		"later(int32 n)",
	}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("kernels:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
	ml := ks[0]
	if ml.Line != 16 || ml.GoName != "MultiLine" || ml.Module != "t" || ml.File != "t.cu" {
		t.Errorf("metadata %+v", ml)
	}
	if ml.Doc != "A block comment with __global__ and braces { inside }" {
		t.Errorf("doc %q", ml.Doc)
	}
	if ml.Params[1].CType != "const float* const __restrict__" || ml.Params[1].Size != 8 || !ml.Params[1].Pointer {
		t.Errorf("src param %+v", ml.Params[1])
	}
	if p := ml.Params[5]; p.CType != "double" || !p.Float || p.Size != 8 {
		t.Errorf("scale param %+v", p)
	}
	if ks[3].Doc != "in a block" {
		t.Errorf("doc of in_block %q", ks[3].Doc)
	}
	if ks[5].Doc != "" {
		t.Errorf("definition of later took doc %q", ks[5].Doc)
	}
	if ks[5].Line != 45 {
		t.Errorf("later defined at line %d, want 45", ks[5].Line)
	}
	if p := ml.Params[18]; p.CType != "float*" || !p.Pointer {
		t.Errorf("array parameter %+v, want a decayed float*", p)
	}
}

func TestParseGoNames(t *testing.T) {
	ks := mustParse(t, `extern "C" __global__ void copy_channels_f32(float* dst, int dst_off, int type, int block, int R, int __x) {}`)
	k := ks[0]
	if k.GoName != "CopyChannelsF32" {
		t.Errorf("GoName %q", k.GoName)
	}
	var names []string
	for _, p := range k.Params {
		names = append(names, p.GoName)
	}
	if want := []string{"dst", "dstOff", "typeArg", "blockArg", "r", "x"}; !reflect.DeepEqual(names, want) {
		t.Errorf("Go param names %v, want %v", names, want)
	}
	// w (weights) and W (width) both lower to w: both keep their C case.
	for _, src := range []string{
		`extern "C" __global__ void conv(const float* w, int H, int W) {}`,
		`extern "C" __global__ void conv(int W, int H, const float* w) {}`,
	} {
		k := mustParse(t, src)[0]
		got := map[string]string{}
		for _, p := range k.Params {
			got[p.Name] = p.GoName
		}
		if want := map[string]string{"w": "w", "W": "W", "H": "h"}; !reflect.DeepEqual(got, want) {
			t.Errorf("%s: Go names %v, want %v", src, got, want)
		}
	}
}

func TestParseErrors(t *testing.T) {
	cases := []struct {
		name, src, want string
		line            int
	}{
		{"unsupported type", "\n\nextern \"C\" __global__ void k(float* a,\n   short s) {}", `unsupported type "short"`, 4},
		{"struct by value", `extern "C" __global__ void k(Params p) {}`, `unsupported type "Params"`, 1},
		{"half", `extern "C" __global__ void k(__half h) {}`, `unsupported type "__half"`, 1},
		{"unnamed", "extern \"C\" __global__ void k(const float*) {}", "no name", 1},
		{"reference", `extern "C" __global__ void k(float& r) {}`, "reference", 1},
		{"default arg", `extern "C" __global__ void k(int n = 3) {}`, "default arguments", 1},
		{"template type", `extern "C" __global__ void k(Vec<float, 4> v) {}`, "template", 1},
		{"not extern C", "\n__global__ void mangled(int n) {}", "not extern \"C\"", 2},
		{"returns int", `extern "C" __global__ int k(int n) {}`, "unexpected \"int\"", 1},
		{"duplicate kernel", "extern \"C\" __global__ void k(int n) {}\nextern \"C\" __global__ void k(int m) {}", "defined twice", 2},
		{"duplicate param", `extern "C" __global__ void k(int n, float n) {}`, "duplicate parameter", 1},
		{"unterminated comment", "/* open\n\n", "unterminated", 1},
		{"unbalanced", "extern \"C\" __global__ void k(int n) {\n", "unbalanced", 1},
		{"variadic", `extern "C" __global__ void k(int n, ...) {}`, "variadic", 1},
		{"C++ linkage", `extern "C++" __global__ void k(int n) {}`, "linkage", 1},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			_, err := ParseSource("bad.cu", c.src)
			var pe *ParseError
			if !errors.As(err, &pe) {
				t.Fatalf("err = %v, want a ParseError", err)
			}
			if !strings.Contains(err.Error(), c.want) || pe.File != "bad.cu" || pe.Line != c.line {
				t.Fatalf("err = %q, want bad.cu:%d containing %q", err, c.line, c.want)
			}
		})
	}
}

func TestParseSourcesAcrossFiles(t *testing.T) {
	a := Source{"b_mod.cu", `extern "C" __global__ void zeta(int n) {}` + "\n" + `extern "C" __global__ void alpha(int n) {}`}
	b := Source{"a_mod.cu", `extern "C" __global__ void mid(float* p) {}`}
	ks, mods, err := ParseSources([]Source{a, b})
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, k := range ks {
		names = append(names, k.Name+"@"+k.Module)
	}
	if want := []string{"alpha@b_mod", "mid@a_mod", "zeta@b_mod"}; !reflect.DeepEqual(names, want) {
		t.Errorf("kernels %v, want %v", names, want)
	}
	if want := []string{"a_mod", "b_mod"}; !reflect.DeepEqual(mods, want) {
		t.Errorf("modules %v", mods)
	}
	// Same output whatever the input order.
	out1, err := Generate(ks, mods)
	if err != nil {
		t.Fatal(err)
	}
	ks2, mods2, _ := ParseSources([]Source{b, a})
	out2, _ := Generate(ks2, mods2)
	if !reflect.DeepEqual(out1, out2) {
		t.Error("generated code depends on input order")
	}
	// Kernel names are one namespace across files.
	c := Source{"c.cu", `extern "C" __global__ void mid(int n) {}`}
	if _, _, err := ParseSources([]Source{b, c}); err == nil || !strings.Contains(err.Error(), "c.cu:1") || !strings.Contains(err.Error(), "a_mod.cu:1") {
		t.Errorf("duplicate across files: %v", err)
	}
	d := Source{"d.cu", `extern "C" __global__ void mid_(int n) {}`}
	if _, _, err := ParseSources([]Source{b, d}); err == nil || !strings.Contains(err.Error(), "same Go name") {
		t.Errorf("Go-name clash: %v", err)
	}
}

func TestGenerateShape(t *testing.T) {
	ks, mods, err := ParseSources([]Source{{"fill.cu", `
// Sets dst to v.
extern "C" __global__ void fill_f32(float* dst, long long n, float v) {}
extern "C" __global__ void mix(double d, unsigned u, unsigned long long q, int i) {}
`}})
	if err != nil {
		t.Fatal(err)
	}
	out, err := Generate(ks, mods)
	if err != nil {
		t.Fatal(err)
	}
	if len(out) != 2 || out[TableFile] == nil || out["fill_gen.go"] == nil {
		t.Fatalf("generated files %v, want %s and fill_gen.go", keys(out), TableFile)
	}
	src := string(out[TableFile]) + string(out["fill_gen.go"])
	if !strings.HasPrefix(string(out["fill_gen.go"]), Header+"\n") || strings.Contains(string(out[TableFile]), "func (k *Kernels)") {
		t.Error("launchers are not in the module's own file")
	}
	for _, want := range []string{
		Header + "\n",
		"func (k *Kernels) FillF32(stream cu.Stream, grid, block cu.Dim3, shmem uint32, dst cu.DevicePtr, n int64, v float32) error {",
		"\tk.args.ptr(0, dst)\n\tk.args.i64(1, n)\n\tk.args.f32(2, v)\n\treturn k.launch(idxFillF32, stream, grid, block, shmem, 3)",
		"func (k *Kernels) Mix(stream cu.Stream, grid, block cu.Dim3, shmem uint32, d float64, u uint32, q uint64, i int32) error {",
		"k.args.f64(0, d)", "k.args.u32(1, u)", "k.args.u64(2, q)", "k.args.i32(3, i)",
		"// Sets dst to v.\n",
		"//\tvoid fill_f32(float* dst, long long n, float v)\n",
		"const maxKernelArgs = 4\n",
		`var moduleNames = []string{"fill"}`,
		`{Name: "v", CType: "float", GoType: "float32", Size: 4},`,
	} {
		if !strings.Contains(src, want) {
			t.Errorf("generated code lacks %q", want)
		}
	}
	if strings.Index(src, "idxFillF32 = iota") > strings.Index(src, "idxMix\n") {
		t.Error("kernel indices not sorted by name")
	}
}

func keys(m map[string][]byte) []string {
	var out []string
	for k := range m {
		out = append(out, k)
	}
	return out
}
