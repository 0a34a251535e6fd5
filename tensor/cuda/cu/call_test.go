package cu

import (
	"bytes"
	"fmt"
	"testing"
	"unsafe"

	"github.com/ebitengine/purego"
)

// TestCallStackArguments checks that call passes 11 integer-class arguments
// (6 in registers, 5 on the stack, the shape of cuLaunchKernel) in order,
// using libc's snprintf as an echo: it prints its 8 integer varargs.
func TestCallStackArguments(t *testing.T) {
	h, err := purego.Dlopen("libc.so.6", purego.RTLD_NOW)
	if err != nil {
		t.Skipf("no libc.so.6: %v", err)
	}
	defer purego.Dlclose(h)
	snprintf, err := purego.Dlsym(h, "snprintf")
	if err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 256)
	format := cBytes("%lu %lu %lu %lu %lu %lu %lu %lu")
	args := []uint64{1, 1 << 32, 3, 0xdeadbeef, 5, 1<<63 + 6, 7, 0xffffffff}
	n := call(snprintf, uintptr(unsafe.Pointer(&buf[0])), uintptr(len(buf)), uintptr(unsafe.Pointer(&format[0])),
		uintptr(args[0]), uintptr(args[1]), uintptr(args[2]), uintptr(args[3]),
		uintptr(args[4]), uintptr(args[5]), uintptr(args[6]), uintptr(args[7]))
	want := fmt.Sprintf("%d %d %d %d %d %d %d %d", args[0], args[1], args[2], args[3], args[4], args[5], args[6], args[7])
	got := string(buf[:bytes.IndexByte(buf, 0)])
	if got != want || int(n) != len(want) {
		t.Fatalf("snprintf via call = %q (%d), want %q", got, n, want)
	}
}

func TestCString(t *testing.T) {
	b := cBytes("cuInit")
	if len(b) != 7 || b[6] != 0 {
		t.Fatalf("cBytes = %v", b)
	}
	if s := cString(&b[0]); s != "cuInit" {
		t.Fatalf("cString = %q", s)
	}
	if cString(nil) != "" {
		t.Fatal("cString(nil) not empty")
	}
}

func TestBytesAndView(t *testing.T) {
	f := []float32{1.5, -2, 3.25}
	b := Bytes(f)
	if len(b) != 12 {
		t.Fatalf("Bytes len %d", len(b))
	}
	back, err := View[float32](b)
	if err != nil || len(back) != 3 || back[2] != 3.25 {
		t.Fatalf("View = %v, %v", back, err)
	}
	back[0] = 9 // a view, not a copy
	if f[0] != 9 {
		t.Fatal("View copied")
	}
	if _, err := View[float64](b); err == nil {
		t.Fatal("View of 12 bytes as float64 succeeded")
	}
	if _, err := View[int32](b[1:5]); err == nil {
		t.Fatal("misaligned View succeeded")
	}
	if Bytes([]int32(nil)) != nil {
		t.Fatal("Bytes(nil) not nil")
	}
}

// BenchmarkCallLaunchShape measures call's overhead at cuLaunchKernel's
// shape (11 integer arguments, 5 on the stack) against libc's labs, which
// reads only its first argument (SysV callers own the stack arguments).
func BenchmarkCallLaunchShape(b *testing.B) {
	h, err := purego.Dlopen("libc.so.6", purego.RTLD_NOW)
	if err != nil {
		b.Skipf("no libc.so.6: %v", err)
	}
	defer purego.Dlclose(h)
	labs, err := purego.Dlsym(h, "labs")
	if err != nil {
		b.Fatal(err)
	}
	var v uint64
	params := []unsafe.Pointer{unsafe.Pointer(&v)}
	b.ReportAllocs()
	for b.Loop() {
		call(labs, 1, 2, 3, 4, 5, 6, 7, 8, 9, uintptr(unsafe.Pointer(&params[0])), 0)
	}
}
