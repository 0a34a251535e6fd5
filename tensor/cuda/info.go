package cuda

import (
	"dlf/kernels"
	"dlf/tensor/cuda/cu"
)

// KernelStat describes one loaded kernel as the driver compiled it for this device.
type KernelStat struct {
	Name   string // entry name, e.g. "sgemm_nn_128x128"
	Module string // PTX module (the .cu file's base name)
	// Registers per thread, local (spill/stack) bytes per thread and static shared bytes per block,
	// as cuFuncGetAttribute reports them after the JIT; MaxThreads is the largest block the kernel
	// can launch with those resources.
	Registers, LocalBytes, SharedBytes, MaxThreads int
}

// KernelInfo lists every loaded kernel with its resource use on this device (the CLI's info
// command prints it). A non-zero LocalBytes on a hot kernel means the JIT spilled registers.
func (b *Backend) KernelInfo() ([]KernelStat, error) {
	out := make([]KernelStat, 0, len(kernels.Table))
	err := b.dev.Do(func() error {
		for _, ki := range kernels.Table {
			f, err := b.k.Function(ki.Name)
			if err != nil {
				return err
			}
			st := KernelStat{Name: ki.Name, Module: ki.Module}
			for _, a := range []struct {
				attr cu.FuncAttribute
				dst  *int
			}{
				{cu.FuncAttrNumRegs, &st.Registers},
				{cu.FuncAttrLocalSizeBytes, &st.LocalBytes},
				{cu.FuncAttrSharedSizeBytes, &st.SharedBytes},
				{cu.FuncAttrMaxThreadsPerBlock, &st.MaxThreads},
			} {
				if *a.dst, err = cu.FuncGetAttribute(f, a.attr); err != nil {
					return err
				}
			}
			out = append(out, st)
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	return out, nil
}
