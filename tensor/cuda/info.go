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

// Clocks are the figures a roofline floor is computed from, as the driver reports them.
type Clocks struct {
	Name string
	// SMs is the multiprocessor count; Major.Minor the compute capability.
	SMs, Major, Minor int
	// ClockKHz and MemClockKHz are the peak SM and memory clocks; BusBits the memory bus width.
	ClockKHz, MemClockKHz, BusBits int
}

// Clocks reads the device's clocks and sizes.
func (b *Backend) Clocks() (Clocks, error) { return clocksOf(b.dev) }

func clocksOf(d *cu.Device) (Clocks, error) {
	c := Clocks{Name: d.Name(), SMs: d.SMCount()}
	c.Major, c.Minor = d.ComputeCapability()
	for _, a := range []struct {
		attr cu.DeviceAttribute
		dst  *int
	}{{cu.AttrClockRate, &c.ClockKHz}, {cu.AttrMemoryClockRate, &c.MemClockKHz}, {cu.AttrGlobalMemoryBusWidth, &c.BusBits}} {
		v, err := d.Attribute(a.attr)
		if err != nil {
			return c, err
		}
		*a.dst = v
	}
	return c, nil
}

// DriverInfo describes the loaded CUDA driver and its devices, read without loading any kernel.
type DriverInfo struct {
	// Library is the driver library's path; Version the CUDA version it implements (1000·major +
	// 10·minor).
	Library string
	Version int
	Devices []DeviceInfo
}

// DeviceInfo is one device of DriverInfo; Err says why it could not be opened or read.
type DeviceInfo struct {
	Ordinal int
	Desc    string
	Clocks  Clocks
	Err     error
}

// Driver loads the CUDA driver (once) and describes it and every device; an error says why no GPU
// can be used.
func Driver() (DriverInfo, error) {
	var info DriverInfo
	n, err := DeviceCount()
	if err != nil {
		return info, err
	}
	if info.Version, err = cu.DriverVersion(); err != nil {
		return info, err
	}
	info.Library = cu.Loaded()
	for i := 0; i < n; i++ {
		di := DeviceInfo{Ordinal: i}
		d, err := cu.Open(i)
		if err != nil {
			di.Err = err
		} else {
			di.Desc = d.String()
			di.Clocks, di.Err = clocksOf(d)
			d.Close()
		}
		info.Devices = append(info.Devices, di)
	}
	return info, nil
}
