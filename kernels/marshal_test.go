package kernels

import (
	"encoding/binary"
	"errors"
	"math"
	"math/rand/v2"
	"reflect"
	"testing"
	"unsafe"

	"dlf/kernels/internal/kgen"
	"dlf/tensor/cuda/cu"
)

// launchRecord is what a fake cuLaunchKernel saw: the argument bytes read
// exactly as the driver would, i.e. the PTX-declared number of bytes from
// each kernelParams pointer.
type launchRecord struct {
	f             cu.Function
	grid, block   cu.Dim3
	shmem         uint32
	stream        cu.Stream
	args          [][]byte
	declaredSizes []int
}

// recorder returns a launchFunc that decodes params with the sizes of the
// PTX .entry of each kernel (looked up by function handle).
func recorder(t *testing.T, sizes map[cu.Function][]int, rec *launchRecord) launchFunc {
	return func(f cu.Function, grid, block cu.Dim3, shmem uint32, stream cu.Stream, params []unsafe.Pointer) error {
		ds, ok := sizes[f]
		if !ok {
			return errors.New("unknown function handle")
		}
		*rec = launchRecord{f: f, grid: grid, block: block, shmem: shmem, stream: stream, declaredSizes: ds}
		if len(params) != len(ds) {
			t.Errorf("launch passed %d params, the PTX declares %d", len(params), len(ds))
			return nil
		}
		for i, p := range params {
			rec.args = append(rec.args, append([]byte(nil), unsafe.Slice((*byte)(p), ds[i])...))
		}
		return nil
	}
}

// ptxSizes maps each Table kernel to its PTX .param byte sizes.
func ptxSizes(t *testing.T) map[string][]int {
	t.Helper()
	out := map[string][]int{}
	for _, m := range moduleNames {
		src, err := PTX(m)
		if err != nil {
			t.Fatal(err)
		}
		mod, err := kgen.ParsePTX(m+".ptx", string(src))
		if err != nil {
			t.Fatal(err)
		}
		for _, e := range mod.Entries {
			var s []int
			for _, p := range e.Params {
				s = append(s, p.Size)
			}
			out[e.Name] = s
		}
	}
	return out
}

// randomArg returns a random non-zero value of a launcher parameter type
// and its little-endian encoding at that type's width.
func randomArg(r *rand.Rand, typ reflect.Type) (reflect.Value, []byte) {
	v := reflect.New(typ).Elem()
	var enc []byte
	switch typ.Kind() {
	case reflect.Uint64:
		x := r.Uint64() | 1<<63
		v.SetUint(x)
		enc = binary.LittleEndian.AppendUint64(nil, x)
	case reflect.Int64:
		x := int64(r.Uint64()) | 1<<40
		v.SetInt(x)
		enc = binary.LittleEndian.AppendUint64(nil, uint64(x))
	case reflect.Uint32:
		x := r.Uint32() | 1<<31
		v.SetUint(uint64(x))
		enc = binary.LittleEndian.AppendUint32(nil, x)
	case reflect.Int32:
		x := int32(r.Uint32()) | 1<<20
		v.SetInt(int64(x))
		enc = binary.LittleEndian.AppendUint32(nil, uint32(x))
	case reflect.Float32:
		x := float32(r.NormFloat64()) + 0.5
		v.SetFloat(float64(x))
		enc = binary.LittleEndian.AppendUint32(nil, math.Float32bits(x))
	case reflect.Float64:
		x := r.NormFloat64() + 0.5
		v.SetFloat(x)
		enc = binary.LittleEndian.AppendUint64(nil, math.Float64bits(x))
	default:
		panic("unsupported launcher type " + typ.String())
	}
	return v, enc
}

// TestLauncherMarshalling calls every generated launcher with random
// arguments and checks, byte for byte, what a driver reading the
// PTX-declared sizes would receive — for every kernel of every module, so
// new kernels are covered automatically.
func TestLauncherMarshalling(t *testing.T) {
	r := rand.New(rand.NewPCG(11, 12))
	declared := ptxSizes(t)
	sizes := map[cu.Function][]int{}
	var rec launchRecord
	k := newKernels(nil, recorder(t, sizes, &rec))
	for i, ki := range Table {
		k.fns[i] = cu.Function(0x1000 + i)
		sizes[k.fns[i]] = declared[ki.Name]
	}
	kv := reflect.ValueOf(k)
	for round := 0; round < 3; round++ { // reuse of the argument block must not leak values
		for i, ki := range Table {
			m := kv.MethodByName(ki.GoName)
			grid := cu.Dim3{X: r.Uint32N(1000) + 1, Y: r.Uint32N(4) + 1, Z: 1}
			block := cu.Dim3{X: 32 * (r.Uint32N(8) + 1), Y: 1, Z: 1}
			shmem := r.Uint32N(4096)
			stream := cu.Stream(r.Uint64() | 1)
			in := []reflect.Value{reflect.ValueOf(stream), reflect.ValueOf(grid), reflect.ValueOf(block), reflect.ValueOf(shmem)}
			var want [][]byte
			for j := range ki.Params {
				v, enc := randomArg(r, m.Type().In(4+j))
				in = append(in, v)
				want = append(want, enc)
			}
			out := m.Call(in)
			if err := out[0].Interface(); err != nil {
				t.Fatalf("%s: %v", ki.GoName, err)
			}
			if rec.f != k.fns[i] || rec.grid != grid || rec.block != block || rec.shmem != shmem || rec.stream != stream {
				t.Fatalf("%s: launch shape %+v, want f=%#x grid=%v block=%v shmem=%d stream=%#x", ki.GoName, rec, k.fns[i], grid, block, shmem, stream)
			}
			if !reflect.DeepEqual(rec.args, want) {
				t.Fatalf("%s: the kernel would read %x, want %x (PTX sizes %v)", ki.GoName, rec.args, want, rec.declaredSizes)
			}
		}
	}
}

func TestLauncherErrors(t *testing.T) {
	k := newKernels(nil, func(cu.Function, cu.Dim3, cu.Dim3, uint32, cu.Stream, []unsafe.Pointer) error {
		return cu.ErrorInvalidValue
	})
	if err := k.FillF32(0, cu.D1(1), cu.D1(1), 0, 0, 1, 1); !errors.Is(err, ErrNotLoaded) {
		t.Fatalf("launch on an unloaded Kernels: %v", err)
	}
	k.fns[idxFillF32] = 1
	err := k.FillF32(0, cu.D1(1), cu.D1(1), 0, 0, 1, 1)
	if !errors.Is(err, cu.ErrorInvalidValue) {
		t.Fatalf("launch error lost: %v", err)
	}
	if want := "kernels: fill_f32 (fill.cu:"; len(err.Error()) < len(want) || err.Error()[:len(want)] != want {
		t.Fatalf("launch error %q does not name the kernel and source", err)
	}
	if _, err := k.Function("fill_f32"); err != nil {
		t.Fatal(err)
	}
	if _, err := k.Function("copy_f32"); !errors.Is(err, ErrNotLoaded) {
		t.Fatalf("Function of an unloaded kernel: %v", err)
	}
	if _, err := k.Function("nope"); err == nil {
		t.Fatal("Function of an unknown kernel succeeded")
	}
}

// TestLauncherAllocations checks the launch path allocates nothing of its
// own (the argument block is reused).
func TestLauncherAllocations(t *testing.T) {
	k := newKernels(nil, func(cu.Function, cu.Dim3, cu.Dim3, uint32, cu.Stream, []unsafe.Pointer) error { return nil })
	k.fns[idxCopyChannelsF32] = 1
	allocs := testing.AllocsPerRun(1000, func() {
		_ = k.CopyChannelsF32(0, cu.D1(64), cu.D1(256), 0, 0x1000, 0x2000, 100, 8, 2, 6, 1, 3)
	})
	if allocs != 0 {
		t.Fatalf("%v allocations per launch, want 0", allocs)
	}
}

func BenchmarkLauncherMarshal(b *testing.B) {
	k := newKernels(nil, func(cu.Function, cu.Dim3, cu.Dim3, uint32, cu.Stream, []unsafe.Pointer) error { return nil })
	k.fns[idxCopyChannelsF32] = 1
	b.ReportAllocs()
	for b.Loop() {
		_ = k.CopyChannelsF32(0, cu.D1(64), cu.D1(256), 0, 0x1000, 0x2000, 100, 8, 2, 6, 1, 3)
	}
}
