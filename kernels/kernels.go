package kernels

import (
	"errors"
	"fmt"
	"strings"
	"sync"
	"unsafe"

	"dlf/tensor/cuda/cu"
)

// ParamInfo describes one kernel parameter.
type ParamInfo struct {
	Name   string // C name
	CType  string // C type as written, e.g. "const float* __restrict__"
	GoType string // launcher argument type, e.g. "cu.DevicePtr"
	Size   int    // bytes the kernel reads (the PTX .param width)
}

// KernelInfo describes one kernel: the generated Table holds one per kernel.
type KernelInfo struct {
	Name   string // C and PTX entry name, e.g. "fill_f32"
	GoName string // launcher method on *Kernels, e.g. "FillF32"
	Module string // PTX module (the .cu file's base name)
	Source string // defining file, e.g. "fill.cu"
	Line   int    // line of the kernel's name in Source
	Doc    string // the kernel's comment in the .cu file
	Params []ParamInfo
}

// Signature renders the C prototype, e.g. "fill_f32(float* dst, long long n, float v)".
func (ki KernelInfo) Signature() string {
	parts := make([]string, len(ki.Params))
	for i, p := range ki.Params {
		parts[i] = p.CType + " " + p.Name
	}
	return ki.Name + "(" + strings.Join(parts, ", ") + ")"
}

// Lookup returns the Table entry of the kernel called name.
func Lookup(name string) (KernelInfo, bool) {
	for _, ki := range Table {
		if ki.Name == name {
			return ki, true
		}
	}
	return KernelInfo{}, false
}

// argBlock is the kernelParams storage reused by every launch: one 8-byte
// slot per argument (every supported parameter is at most 8 bytes) and the
// array of pointers to the slots that cuLaunchKernel reads. The driver copies
// the values during the call, so one block serves all launches and a launch
// allocates nothing here. 32-bit values are stored at the start of their
// slot, which is where the driver reads their 4 bytes.
type argBlock struct {
	slots [maxKernelArgs]uint64
	ptrs  [maxKernelArgs]unsafe.Pointer
}

func (a *argBlock) init() {
	for i := range a.ptrs {
		a.ptrs[i] = unsafe.Pointer(&a.slots[i])
	}
}

func (a *argBlock) ptr(i int, v cu.DevicePtr) { a.slots[i] = uint64(v) }
func (a *argBlock) i64(i int, v int64)        { a.slots[i] = uint64(v) }
func (a *argBlock) u64(i int, v uint64)       { a.slots[i] = v }
func (a *argBlock) i32(i int, v int32)        { *(*int32)(unsafe.Pointer(&a.slots[i])) = v }
func (a *argBlock) u32(i int, v uint32)       { *(*uint32)(unsafe.Pointer(&a.slots[i])) = v }
func (a *argBlock) f32(i int, v float32)      { *(*float32)(unsafe.Pointer(&a.slots[i])) = v }
func (a *argBlock) f64(i int, v float64)      { *(*float64)(unsafe.Pointer(&a.slots[i])) = v }

// launchFunc has cu.LaunchKernel's signature; tests substitute a recorder.
type launchFunc func(f cu.Function, grid, block cu.Dim3, sharedMem uint32, stream cu.Stream, params []unsafe.Pointer) error

// Kernels is every embedded kernel loaded on one device. Its launcher
// methods (generated, one per kernel) must be called inside that device's
// Device.Do; a mutex makes concurrent misuse safe rather than silently
// mixing arguments.
type Kernels struct {
	dev     *cu.Device
	modules []cu.Module // parallel to moduleNames
	fns     [numKernels]cu.Function
	launchF launchFunc

	mu   sync.Mutex // guards args
	args argBlock
}

// ErrNotLoaded reports a launch on a Kernels that Load did not produce or
// that was unloaded.
var ErrNotLoaded = errors.New("kernels: not loaded (use kernels.Load)")

// newKernels returns an unloaded Kernels launching through launch.
func newKernels(dev *cu.Device, launch launchFunc) *Kernels {
	k := &Kernels{dev: dev, launchF: launch}
	k.args.init()
	return k
}

// Load loads every embedded PTX module on dev (the driver JIT-compiles it;
// a failure reports the JIT log) and resolves every kernel of Table. It may
// be called inside or outside dev.Do.
func Load(dev *cu.Device) (*Kernels, error) {
	k := newKernels(dev, cu.LaunchKernel)
	err := dev.Do(func() error {
		mods := map[string]cu.Module{}
		for _, name := range moduleNames {
			ptx, err := PTX(name)
			if err != nil {
				return err
			}
			m, err := cu.ModuleLoadDataEx(ptx)
			if err != nil {
				return fmt.Errorf("kernels: load module %s.ptx on %v: %w", name, dev, err)
			}
			k.modules = append(k.modules, m)
			mods[name] = m
		}
		for i, ki := range Table {
			f, err := cu.ModuleGetFunction(mods[ki.Module], ki.Name)
			if err != nil {
				return fmt.Errorf("kernels: kernel %s (%s:%d) in module %s.ptx: %w", ki.Name, ki.Source, ki.Line, ki.Module, err)
			}
			k.fns[i] = f
		}
		return nil
	})
	if err != nil {
		if uerr := k.Unload(); uerr != nil {
			err = errors.Join(err, uerr)
		}
		return nil, err
	}
	return k, nil
}

// Unload unloads the modules; the Kernels cannot launch afterwards.
func (k *Kernels) Unload() error {
	k.mu.Lock()
	defer k.mu.Unlock()
	mods := k.modules
	k.modules = nil
	k.fns = [numKernels]cu.Function{}
	if len(mods) == 0 {
		return nil
	}
	return k.dev.Do(func() error {
		var errs []error
		for _, m := range mods {
			if err := cu.ModuleUnload(m); err != nil {
				errs = append(errs, err)
			}
		}
		return errors.Join(errs...)
	})
}

// Device returns the device the kernels are loaded on.
func (k *Kernels) Device() *cu.Device { return k.dev }

// Function returns the loaded entry point of the kernel called name, e.g.
// to query cu.FuncGetAttribute or occupancy.
func (k *Kernels) Function(name string) (cu.Function, error) {
	for i, ki := range Table {
		if ki.Name == name {
			if k.fns[i] == 0 {
				return 0, ErrNotLoaded
			}
			return k.fns[i], nil
		}
	}
	return 0, fmt.Errorf("kernels: no kernel %q", name)
}

// launch runs kernel idx with the first nargs argument slots; k.mu is held.
func (k *Kernels) launch(idx int, stream cu.Stream, grid, block cu.Dim3, shmem uint32, nargs int) error {
	f := k.fns[idx]
	if f == 0 {
		return fmt.Errorf("%w: launch of %s", ErrNotLoaded, Table[idx].Name)
	}
	if err := k.launchF(f, grid, block, shmem, stream, k.args.ptrs[:nargs]); err != nil {
		return fmt.Errorf("kernels: %s (%s:%d): %w", Table[idx].Name, Table[idx].Source, Table[idx].Line, err)
	}
	return nil
}

// BlocksPerSM is how many blocks per SM Grid1D aims for: enough resident
// warps to hide memory latency in grid-stride kernels, few enough that the
// loop, not block scheduling, does the work.
const BlocksPerSM = 4

// Grid1D returns the grid for a grid-stride kernel over n elements with
// blocks of block threads: ceil(n/block) blocks, capped at BlocksPerSM per
// SM of dev, and at least 1 (a zero grid is an invalid launch).
func Grid1D(dev *cu.Device, n int64, block uint32) cu.Dim3 {
	if block == 0 {
		block = 1
	}
	blocks := (n + int64(block) - 1) / int64(block)
	limit := int64(BlocksPerSM * max(dev.SMCount(), 1))
	return cu.D1(uint32(max(1, min(blocks, limit))))
}
