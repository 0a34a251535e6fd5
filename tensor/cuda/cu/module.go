package cu

import (
	"bytes"
	"fmt"
	"runtime"
	"strings"
	"unsafe"
)

// jitLogSize is the capacity of each JIT log buffer. ptxas messages are a
// line per problem; 16 KiB holds far more than a useful error report.
const jitLogSize = 16 << 10

// jitValues mirrors the void* optionValues array of cuModuleLoadDataEx for
// the options in jitOptions, in the same order. Using a struct with real Go
// pointers for the buffers (instead of uintptrs) keeps them visible to the
// garbage collector; the size slots are integers stored in pointer-sized
// slots, which the driver overwrites with the length it wrote.
type jitValues struct {
	errLog   *byte
	errSize  uintptr
	infoLog  *byte
	infoSize uintptr
	verbose  uintptr
}

// jitOptions are the CUjit_option keys matching jitValues field by field.
var jitOptions = [5]int32{jitErrorLogBuffer, jitErrorLogBufferSize, jitInfoLogBuffer, jitInfoLogBufferSizeBytes, jitLogVerbose}

// ModuleLoadDataEx loads a PTX (or cubin/fatbin) image into the current
// context, JIT-compiling PTX for the device. On failure the returned
// *CallError carries the JIT error and info logs, so a PTX problem reads as
// ptxas's own message. Call inside Device.Do.
func ModuleLoadDataEx(image []byte) (Module, error) {
	m, _, err := ModuleLoadDataExLog(image)
	return m, err
}

// ModuleLoadDataExLog is ModuleLoadDataEx that also returns the JIT info log
// (with verbose output: registers, spills and shared memory per kernel).
// Call inside Device.Do.
func ModuleLoadDataExLog(image []byte) (Module, string, error) {
	d, err := lib()
	if err != nil {
		return 0, "", err
	}
	if len(image) == 0 {
		return 0, "", fmt.Errorf("cu: ModuleLoadDataEx: empty image")
	}
	// The driver reads PTX as a NUL-terminated string (go-cuda.md §1.3).
	if image[len(image)-1] != 0 {
		img := make([]byte, len(image)+1)
		copy(img, image)
		image = img
	}
	errLog := make([]byte, jitLogSize)
	infoLog := make([]byte, jitLogSize)
	vals := &jitValues{errLog: &errLog[0], errSize: jitLogSize, infoLog: &infoLog[0], infoSize: jitLogSize, verbose: 1}
	var m uintptr
	r := call(d.cuModuleLoadDataEx, uintptr(unsafe.Pointer(&m)), uintptr(unsafe.Pointer(&image[0])),
		uintptr(len(jitOptions)), uintptr(unsafe.Pointer(&jitOptions[0])), uintptr(unsafe.Pointer(vals)))
	runtime.KeepAlive(image)
	info := logText(infoLog, vals.infoSize)
	if r != Success {
		var b strings.Builder
		if e := logText(errLog, vals.errSize); e != "" {
			b.WriteString("JIT error log:\n")
			b.WriteString(e)
		}
		if info != "" {
			if b.Len() > 0 {
				b.WriteString("\n")
			}
			b.WriteString("JIT info log:\n")
			b.WriteString(info)
		}
		return 0, info, &CallError{Func: "cuModuleLoadDataEx", Args: fmt.Sprintf("%d-byte image", len(image)), Result: r, Log: b.String()}
	}
	return Module(m), info, nil
}

// logText trims a JIT log buffer to the length the driver reported and to
// its first NUL.
func logText(buf []byte, n uintptr) string {
	if n > uintptr(len(buf)) {
		n = uintptr(len(buf))
	}
	b := buf[:n]
	if i := bytes.IndexByte(b, 0); i >= 0 {
		b = b[:i]
	}
	return strings.TrimSpace(string(b))
}

// ModuleGetFunction returns the kernel entry point name of m. Call inside
// Device.Do.
func ModuleGetFunction(m Module, name string) (Function, error) {
	d, err := lib()
	if err != nil {
		return 0, err
	}
	cname := cBytes(name)
	var f uintptr
	if r := call(d.cuModuleGetFunction, uintptr(unsafe.Pointer(&f)), uintptr(m), uintptr(unsafe.Pointer(&cname[0]))); r != Success {
		return 0, newCallError(r, "cuModuleGetFunction", fmt.Sprintf("%q", name))
	}
	return Function(f), nil
}

// ModuleUnload unloads m. Call inside Device.Do.
func ModuleUnload(m Module) error {
	d, err := lib()
	if err != nil {
		return err
	}
	if r := call(d.cuModuleUnload, uintptr(m)); r != Success {
		return newCallError(r, "cuModuleUnload", fmt.Sprintf("%#x", uintptr(m)))
	}
	return nil
}

// FuncGetAttribute returns an attribute of f, e.g. FuncAttrNumRegs. Call
// inside Device.Do.
func FuncGetAttribute(f Function, attr FuncAttribute) (int, error) {
	d, err := lib()
	if err != nil {
		return 0, err
	}
	var v int32
	if r := call(d.cuFuncGetAttribute, uintptr(unsafe.Pointer(&v)), uintptr(attr), uintptr(f)); r != Success {
		return 0, newCallError(r, "cuFuncGetAttribute", fmt.Sprintf("attribute %d", attr))
	}
	return int(v), nil
}

// FuncSetAttribute sets an attribute of f; kernels that need more than
// 48 KiB of dynamic shared memory must raise
// FuncAttrMaxDynamicSharedSizeBytes first. Call inside Device.Do.
func FuncSetAttribute(f Function, attr FuncAttribute, value int) error {
	d, err := lib()
	if err != nil {
		return err
	}
	if r := call(d.cuFuncSetAttribute, uintptr(f), uintptr(attr), uintptr(int32(value))); r != Success {
		return newCallError(r, "cuFuncSetAttribute", fmt.Sprintf("attribute %d = %d", attr, value))
	}
	return nil
}

// OccupancyMaxActiveBlocksPerMultiprocessor returns how many blocks of
// blockSize threads using dynSmem bytes of dynamic shared memory fit on one
// SM at once. Call inside Device.Do.
func OccupancyMaxActiveBlocksPerMultiprocessor(f Function, blockSize int, dynSmem int) (int, error) {
	d, err := lib()
	if err != nil {
		return 0, err
	}
	if err := optional(d.cuOccupancyMaxActiveBlocksPerMultiprocessor, "cuOccupancyMaxActiveBlocksPerMultiprocessor"); err != nil {
		return 0, err
	}
	var n int32
	if r := call(d.cuOccupancyMaxActiveBlocksPerMultiprocessor, uintptr(unsafe.Pointer(&n)), uintptr(f),
		uintptr(int32(blockSize)), uintptr(dynSmem)); r != Success {
		return 0, newCallError(r, "cuOccupancyMaxActiveBlocksPerMultiprocessor", fmt.Sprintf("block %d, %d B shared", blockSize, dynSmem))
	}
	return int(n), nil
}

// OccupancyMaxPotentialBlockSize suggests the block size that maximises
// occupancy of f with a fixed dynSmem bytes of dynamic shared memory
// (blockLimit 0 means no limit), and the minimum grid size that reaches it.
// Call inside Device.Do.
func OccupancyMaxPotentialBlockSize(f Function, dynSmem int, blockLimit int) (minGrid, block int, err error) {
	d, err := lib()
	if err != nil {
		return 0, 0, err
	}
	if err := optional(d.cuOccupancyMaxPotentialBlockSize, "cuOccupancyMaxPotentialBlockSize"); err != nil {
		return 0, 0, err
	}
	var g, b int32
	// A NULL blockSizeToDynamicSMemSize callback means "dynSmem for every
	// block size"; passing a Go callback would spend one of purego's 2000
	// never-freed callback slots per call.
	if r := call(d.cuOccupancyMaxPotentialBlockSize, uintptr(unsafe.Pointer(&g)), uintptr(unsafe.Pointer(&b)), uintptr(f),
		0, uintptr(dynSmem), uintptr(int32(blockLimit))); r != Success {
		return 0, 0, newCallError(r, "cuOccupancyMaxPotentialBlockSize", fmt.Sprintf("%d B shared, limit %d", dynSmem, blockLimit))
	}
	return int(g), int(b), nil
}
