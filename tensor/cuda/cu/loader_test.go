package cu

import (
	"errors"
	"os"
	"os/exec"
	"strings"
	"testing"
	"unsafe"

	"github.com/ebitengine/purego"
)

func TestLoadMissingLibrary(t *testing.T) {
	path := t.TempDir() + "/nonexistent/libcuda.so.1"
	d, err := loadLibrary(path)
	if err == nil {
		d.close()
		t.Fatal("loadLibrary of a nonexistent path succeeded")
	}
	if !errors.Is(err, ErrNoLibrary) {
		t.Fatalf("error %v does not match ErrNoLibrary", err)
	}
	var dl purego.Dlerror
	if !errors.As(err, &dl) {
		t.Errorf("error %v does not wrap the dlopen error", err)
	}
	for _, want := range []string{path, "install the NVIDIA driver", LibraryEnv} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not mention %q", err, want)
		}
	}
}

// The package-level loader runs once per process, so the DLF_LIBCUDA
// override is checked in a child process running TestInitHelper.
func TestInitEnvOverrideMissingLibrary(t *testing.T) {
	if os.Getenv("CU_TEST_HELPER") != "" {
		t.Skip("in helper process")
	}
	cmd := exec.Command(os.Args[0], "-test.run=^TestInitHelper$", "-test.v")
	cmd.Env = append(os.Environ(), "CU_TEST_HELPER=1", LibraryEnv+"=/nonexistent/dir/libcuda.so.1")
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("helper failed: %v\n%s", err, out)
	}
	if !strings.Contains(string(out), "HELPER-OK") {
		t.Fatalf("helper did not confirm ErrNoLibrary:\n%s", out)
	}
}

// TestInitHelper is the child side of TestInitEnvOverrideMissingLibrary.
func TestInitHelper(t *testing.T) {
	if os.Getenv("CU_TEST_HELPER") == "" {
		t.Skip("only runs as a helper process")
	}
	for i := 0; i < 3; i++ { // repeated calls return the same outcome
		err := Init()
		if !errors.Is(err, ErrNoLibrary) || !strings.Contains(err.Error(), "/nonexistent/dir/libcuda.so.1") {
			t.Fatalf("Init() = %v, want ErrNoLibrary naming the override path", err)
		}
	}
	// Wrappers report the load error rather than crashing.
	if _, err := MemAlloc(1024); !errors.Is(err, ErrNoLibrary) {
		t.Fatalf("MemAlloc after failed Init = %v, want ErrNoLibrary", err)
	}
	if _, err := Open(0); !errors.Is(err, ErrNoLibrary) {
		t.Fatalf("Open after failed Init = %v, want ErrNoLibrary", err)
	}
	if Loaded() != "" {
		t.Fatalf("Loaded() = %q after failed Init", Loaded())
	}
	t.Log("HELPER-OK")
}

func TestLoadMissingSymbol(t *testing.T) {
	const libc = "libc.so.6" // a real library with no cu* symbols
	d, err := loadLibrary(libc)
	if err == nil {
		d.close()
		t.Fatal("loadLibrary(libc) succeeded")
	}
	if !errors.Is(err, ErrMissingSymbol) {
		t.Fatalf("error %v does not match ErrMissingSymbol", err)
	}
	if errors.Is(err, ErrNoLibrary) || errors.Is(err, ErrNoDevice) {
		t.Fatalf("missing-symbol error %v also matches another sentinel", err)
	}
	for _, want := range []string{"cuInit", libc} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not name %q", err, want)
		}
	}
}

// realDriver loads the machine's driver library independently of the
// package-level one, or skips when the machine has none.
func realDriver(t *testing.T) *driver {
	t.Helper()
	d, err := loadLibrary(DefaultLibrary)
	if err != nil {
		if !errors.Is(err, ErrNoLibrary) {
			t.Fatalf("loadLibrary(%s) = %v, want success or ErrNoLibrary", DefaultLibrary, err)
		}
		t.Skipf("%s not installed here: %v", DefaultLibrary, err)
	}
	t.Cleanup(func() { d.close() })
	return d
}

func TestNoDevice(t *testing.T) {
	d, err := loadLibrary(DefaultLibrary)
	if err != nil {
		// A machine without the driver (a fresh CI box): the same path
		// must then be reported as ErrNoLibrary by Init too.
		if !errors.Is(err, ErrNoLibrary) {
			t.Fatalf("loadLibrary = %v, want ErrNoLibrary", err)
		}
		if err := Init(); !errors.Is(err, ErrNoLibrary) && os.Getenv(LibraryEnv) == "" {
			t.Fatalf("Init() = %v, want ErrNoLibrary", err)
		}
		t.Logf("no driver library on this machine; checked ErrNoLibrary instead: %v", err)
		return
	}
	defer d.close()
	err = d.initialize()
	if err == nil {
		t.Logf("a CUDA device is present; the no-device path cannot be exercised here")
		return
	}
	if !errors.Is(err, ErrNoDevice) {
		t.Fatalf("initialize() = %v, want ErrNoDevice", err)
	}
	if r, ok := ResultOf(err); !ok || r != ErrorNoDevice {
		t.Errorf("initialize() error %v does not carry CUDA_ERROR_NO_DEVICE", err)
	}
	t.Logf("driver present, no device: %v", err)
	if os.Getenv(LibraryEnv) == "" {
		if err := Init(); !errors.Is(err, ErrNoDevice) {
			t.Fatalf("Init() = %v, want ErrNoDevice", err)
		}
		if _, err := Open(0); !errors.Is(err, ErrNoDevice) {
			t.Fatalf("Open(0) = %v, want ErrNoDevice", err)
		}
		if err := LaunchKernel(0, D1(1), D1(1), 0, 0, nil); !errors.Is(err, ErrNoDevice) {
			t.Fatalf("LaunchKernel after failed Init = %v, want ErrNoDevice", err)
		}
	}
}

func TestOptionalSymbolsResolvedOnRealDriver(t *testing.T) {
	d := realDriver(t)
	for _, s := range d.symbols() {
		if !s.optional && *s.addr == 0 {
			t.Errorf("required symbol %s unresolved", s.name)
		}
	}
	// The 535 driver here has every optional symbol too; log what is
	// missing rather than fail, since older drivers legitimately lack some.
	for _, s := range d.symbols() {
		if s.optional && *s.addr == 0 {
			t.Logf("optional symbol %s missing in %s", s.name, d.path)
		}
	}
}

// TestLaunchKernelBindingWithoutContext calls the real cuLaunchKernel (11
// arguments, 5 on the stack) with no context current: the driver must
// answer with an error code, which must come back as a CallError naming the
// call, not a crash.
func TestLaunchKernelBindingWithoutContext(t *testing.T) {
	d := realDriver(t)
	var v uint64 = 7
	params := []unsafe.Pointer{unsafe.Pointer(&v)}
	err := d.launchKernel(0, Dim3{1, 1, 1}, Dim3{32, 1, 1}, 0, 0, params)
	if err == nil {
		t.Fatal("cuLaunchKernel with a null function succeeded")
	}
	var ce *CallError
	if !errors.As(err, &ce) || ce.Func != "cuLaunchKernel" || ce.Result == Success {
		t.Fatalf("error %v is not a CallError from cuLaunchKernel", err)
	}
	if !strings.Contains(err.Error(), "grid (1,1,1), block (32,1,1)") {
		t.Errorf("error %q does not describe the launch shape", err)
	}
	t.Logf("%v", err)
}
