package kernels

import (
	"embed"
	"io/fs"
	"reflect"
	"sort"
	"strings"
	"testing"

	"dlf/kernels/internal/kgen"
	"dlf/tensor/cuda/cu"
)

// The sources and the generated file travel inside the test binary, so the
// checks also run from a cross-built binary in another directory.
//
//go:embed *.cu *_gen.go
var sourceFS embed.FS

func embeddedSources(t *testing.T) []kgen.Source {
	t.Helper()
	names, err := fs.Glob(sourceFS, "*.cu")
	if err != nil || len(names) == 0 {
		t.Fatalf("no embedded .cu files: %v", err)
	}
	sort.Strings(names)
	var srcs []kgen.Source
	for _, n := range names {
		b, err := sourceFS.ReadFile(n)
		if err != nil {
			t.Fatal(err)
		}
		srcs = append(srcs, kgen.Source{File: n, Text: string(b)})
	}
	return srcs
}

// TestLaunchGenUpToDate re-runs the generator in memory over the current .cu files: a hand edit of
// a generated file, a .cu change without `make kernels`, or a generated file left behind by a
// removed .cu fails here (no nvcc needed).
func TestLaunchGenUpToDate(t *testing.T) {
	ks, mods, err := kgen.ParseSources(embeddedSources(t))
	if err != nil {
		t.Fatal(err)
	}
	want, err := kgen.Generate(ks, mods)
	if err != nil {
		t.Fatal(err)
	}
	have, _ := fs.Glob(sourceFS, "*_gen.go")
	for _, name := range have {
		if _, ok := want[name]; !ok {
			t.Errorf("%s is not generated from any .cu (run make kernels to delete it)", name)
		}
	}
	for name, w := range want {
		got, err := sourceFS.ReadFile(name)
		if err != nil {
			t.Errorf("%s is missing (run make kernels): %v", name, err)
			continue
		}
		if line, g, w := firstDiff(string(got), string(w)); line > 0 {
			t.Errorf("%s is stale or hand-edited (run make kernels); first difference at line %d:\n  have: %q\n  want: %q", name, line, g, w)
		}
	}
}

// firstDiff returns the first line (1-based) at which a and b differ, with both lines; 0 if equal.
func firstDiff(a, b string) (int, string, string) {
	al, bl := strings.Split(a, "\n"), strings.Split(b, "\n")
	for i := 0; i < max(len(al), len(bl)); i++ {
		var x, y string
		if i < len(al) {
			x = al[i]
		}
		if i < len(bl) {
			y = bl[i]
		}
		if x != y {
			return i + 1, x, y
		}
	}
	return 0, "", ""
}

// TestPTXMatchesSources checks every committed PTX module: the header
// (.version 7.8, .target sm_80), exactly the kernels its .cu declares, and
// for every generated launcher the parameter count, order, byte widths and
// kinds of its .entry.
func TestPTXMatchesSources(t *testing.T) {
	ks, mods, err := kgen.ParseSources(embeddedSources(t))
	if err != nil {
		t.Fatal(err)
	}
	if got := Modules(); !reflect.DeepEqual(got, mods) || !reflect.DeepEqual(moduleNames, mods) {
		t.Fatalf("embedded PTX modules %v, .cu modules %v, generated moduleNames %v", got, mods, moduleNames)
	}
	byModule := map[string][]kgen.Kernel{}
	for _, k := range ks {
		byModule[k.Module] = append(byModule[k.Module], k)
	}
	// The launchers as generated (Table), converted back for the checker.
	fromTable := map[string][]kgen.Kernel{}
	for _, ki := range Table {
		k := kgen.Kernel{Name: ki.Name, File: ki.Source, Line: ki.Line, Module: ki.Module}
		for _, p := range ki.Params {
			k.Params = append(k.Params, kgen.Param{Name: p.Name, CType: p.CType, Size: p.Size,
				Pointer: p.GoType == "cu.DevicePtr", Float: p.GoType == "float32" || p.GoType == "float64"})
		}
		fromTable[ki.Module] = append(fromTable[ki.Module], k)
	}
	for _, m := range mods {
		src, err := PTX(m)
		if err != nil {
			t.Fatal(err)
		}
		mod, err := kgen.ParsePTX(m+".ptx", string(src))
		if err != nil {
			t.Fatal(err)
		}
		if mod.Version != "7.8" || mod.Target != "sm_80" {
			t.Errorf("%s.ptx: .version %s .target %s, want 7.8 / sm_80", m, mod.Version, mod.Target)
		}
		if err := kgen.CheckPTX(m+".ptx", mod, byModule[m]); err != nil {
			t.Errorf("against the .cu: %v", err)
		}
		if err := kgen.CheckPTX(m+".ptx", mod, fromTable[m]); err != nil {
			t.Errorf("against the generated launchers: %v", err)
		}
	}
}

// goTypes maps Table's GoType names to the reflect types of the launchers.
var goTypes = map[string]reflect.Type{
	"cu.DevicePtr": reflect.TypeOf(cu.DevicePtr(0)),
	"int32":        reflect.TypeOf(int32(0)), "uint32": reflect.TypeOf(uint32(0)),
	"int64": reflect.TypeOf(int64(0)), "uint64": reflect.TypeOf(uint64(0)),
	"float32": reflect.TypeOf(float32(0)), "float64": reflect.TypeOf(float64(0)),
}

// TestLauncherSignatures checks each launcher method's Go signature against
// Table, including that each Go type's size is the declared byte size.
func TestLauncherSignatures(t *testing.T) {
	kt := reflect.TypeOf(&Kernels{})
	fixed := []reflect.Type{reflect.TypeOf(cu.Stream(0)), reflect.TypeOf(cu.Dim3{}), reflect.TypeOf(cu.Dim3{}), reflect.TypeOf(uint32(0))}
	for _, ki := range Table {
		m, ok := kt.MethodByName(ki.GoName)
		if !ok {
			t.Errorf("no launcher method %s for %s", ki.GoName, ki.Name)
			continue
		}
		ft := m.Type
		if ft.NumIn() != 1+len(fixed)+len(ki.Params) || ft.NumOut() != 1 || ft.Out(0) != reflect.TypeOf((*error)(nil)).Elem() {
			t.Errorf("%s: signature %v", ki.GoName, ft)
			continue
		}
		for i, want := range fixed {
			if ft.In(1+i) != want {
				t.Errorf("%s: fixed argument %d is %v, want %v", ki.GoName, i, ft.In(1+i), want)
			}
		}
		for i, p := range ki.Params {
			got := ft.In(1 + len(fixed) + i)
			if got != goTypes[p.GoType] || int(got.Size()) != p.Size {
				t.Errorf("%s param %s: Go type %v (%d bytes), Table says %s (%d bytes)", ki.GoName, p.Name, got, got.Size(), p.GoType, p.Size)
			}
		}
	}
}

func TestLookupAndSignature(t *testing.T) {
	ki, ok := Lookup("copy_channels_f32")
	if !ok {
		t.Fatal("copy_channels_f32 not in Table")
	}
	want := "copy_channels_f32(float* __restrict__ dst, const float* __restrict__ src, long long rows, int dst_c, int dst_off, int src_c, int src_off, int c)"
	if ki.Signature() != want || ki.Source != "fill.cu" || ki.Module != "fill" || ki.Doc == "" {
		t.Fatalf("copy_channels_f32: %s from %s/%s", ki.Signature(), ki.Source, ki.Module)
	}
	if _, ok := Lookup("no_such_kernel"); ok {
		t.Fatal("Lookup found a kernel that does not exist")
	}
	if _, err := PTX("no_such_module"); err == nil || !strings.Contains(err.Error(), "fill") {
		t.Fatalf("PTX of a missing module: %v", err)
	}
	for i := 1; i < len(Table); i++ {
		if Table[i-1].Name >= Table[i].Name {
			t.Fatalf("Table not sorted: %s before %s", Table[i-1].Name, Table[i].Name)
		}
	}
}
