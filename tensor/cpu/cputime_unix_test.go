//go:build unix

package cpu

import "syscall"

// processCPU returns the CPU time (user + system) this process has used, in nanoseconds. The
// benchmarks report it next to wall time because the development machine is shared: CPU time
// excludes the time the benchmark spent descheduled while other jobs ran.
func processCPU() int64 {
	var ru syscall.Rusage
	if syscall.Getrusage(syscall.RUSAGE_SELF, &ru) != nil {
		return 0
	}
	return ru.Utime.Nano() + ru.Stime.Nano()
}
