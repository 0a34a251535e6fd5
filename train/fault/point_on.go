//go:build faultinject

package fault

import (
	"fmt"
	"os"
	"sync"
	"syscall"
	"time"
)

// Enabled reports whether this binary was built with fault injection.
const Enabled = true

// The parsed DLF_FAULT and how often its phase was reached (test builds only).
var (
	once    sync.Once
	mu      sync.Mutex
	plan    *Plan
	planErr error
	hits    int
)

// Point stops the process as DLF_FAULT says when phase is reached for the plan's hit-th time.
func Point(phase string) {
	once.Do(func() { plan, planErr = ParsePlan(os.Getenv("DLF_FAULT")) })
	if planErr != nil {
		fmt.Fprintln(os.Stderr, "fault:", planErr)
		os.Exit(3)
	}
	if plan == nil || plan.Phase != phase {
		return
	}
	mu.Lock()
	hits++
	n := hits
	mu.Unlock()
	if n != plan.Hit {
		return
	}
	fmt.Fprintf(os.Stderr, "fault: %s at %s (hit %d)\n", plan.Kind, phase, n)
	switch plan.Kind {
	case "kill":
		_ = syscall.Kill(os.Getpid(), syscall.SIGKILL)
		select {} // the signal is on its way; nothing after the point may run
	case "stop":
		// Alive but silent: the process is frozen until someone sends SIGCONT (or kills it).
		_ = syscall.Kill(os.Getpid(), syscall.SIGSTOP)
		return
	}
	_ = syscall.Kill(os.Getpid(), syscall.SIGINT)
	// Give the signal handler time to record the stop, so that the run stops at this phase and not
	// one later.
	time.Sleep(200 * time.Millisecond)
}
