// Package kernels holds dlf's hand-written CUDA kernels and their typed Go
// launchers.
//
// Each kernels/*.cu file (one family per file) is compiled by `make kernels`
// with the pinned toolchain (nvcc 11.8: -ptx -arch=compute_80 -O3) into a
// committed .ptx module that is embedded here, so building and running need
// no CUDA toolkit; the driver JIT-compiles compute_80 PTX for Ampere and
// Hopper. The generator (kernels/gen) then reads every
// extern "C" __global__ signature and writes table_gen.go and <module>_gen.go: one method per
// kernel on *Kernels whose Go parameter types follow the C types (pointers
// → cu.DevicePtr, int → int32, long long → int64, float → float32, ...),
// so a launch can never disagree with its kernel's signature. Tests check
// the generated file against the sources and against the PTX .param lists.
//
// Use:
//
//	dev, _ := cu.Open(0)
//	k, err := kernels.Load(dev) // loads every module, resolves every kernel
//	err = dev.Do(func() error {
//		return k.FillF32(stream, kernels.Grid1D(dev, n, 256), cu.D1(256), 0, buf, n, 1.5)
//	})
package kernels

import (
	"embed"
	"fmt"
	"io/fs"
	"sort"
	"strings"
)

//go:generate go run ./gen -dir . -nvcc nvcc

// ptxFS holds every compiled module.
//
//go:embed *.ptx
var ptxFS embed.FS

// PTX returns the PTX text of module (a .cu file's base name, e.g. "fill").
func PTX(module string) ([]byte, error) {
	b, err := ptxFS.ReadFile(module + ".ptx")
	if err != nil {
		return nil, fmt.Errorf("kernels: no PTX module %q (have %s)", module, strings.Join(Modules(), ", "))
	}
	return b, nil
}

// Modules returns the names of the embedded PTX modules, sorted.
func Modules() []string {
	ents, err := fs.Glob(ptxFS, "*.ptx")
	if err != nil {
		return nil
	}
	out := make([]string, len(ents))
	for i, e := range ents {
		out[i] = strings.TrimSuffix(e, ".ptx")
	}
	sort.Strings(out)
	return out
}
