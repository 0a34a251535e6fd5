//go:build faultinject

package fault

import (
	"fmt"
	"os"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
)

// Enabled reports whether this binary was built with fault injection.
const Enabled = true

// plan is the parsed DLF_FAULT; hits counts how often its phase was reached.
var (
	once sync.Once
	mu   sync.Mutex
	plan struct {
		phase, kind string
		hit         int
	}
	hits    int
	planErr error
)

func parse() {
	s := os.Getenv("DLF_FAULT")
	if s == "" {
		return
	}
	f := strings.Split(s, ":")
	if len(f) < 2 || len(f) > 3 || (f[1] != "kill" && f[1] != "interrupt") {
		planErr = fmt.Errorf("DLF_FAULT=%q: want phase:kill|interrupt[:hit]", s)
		return
	}
	plan.phase, plan.kind, plan.hit = f[0], f[1], 1
	if len(f) == 3 {
		n, err := strconv.Atoi(f[2])
		if err != nil || n < 1 {
			planErr = fmt.Errorf("DLF_FAULT=%q: hit %q is not a positive integer", s, f[2])
			return
		}
		plan.hit = n
	}
}

// Point stops the process as DLF_FAULT says when phase is reached for the hit-th time.
func Point(phase string) {
	once.Do(parse)
	if planErr != nil {
		fmt.Fprintln(os.Stderr, "fault:", planErr)
		os.Exit(3)
	}
	if plan.phase != phase {
		return
	}
	mu.Lock()
	hits++
	n := hits
	mu.Unlock()
	if n != plan.hit {
		return
	}
	fmt.Fprintf(os.Stderr, "fault: %s at %s (hit %d)\n", plan.kind, phase, n)
	if plan.kind == "kill" {
		_ = syscall.Kill(os.Getpid(), syscall.SIGKILL)
		select {} // the signal is on its way; nothing after the point may run
	}
	_ = syscall.Kill(os.Getpid(), syscall.SIGINT)
	// Give the signal handler time to record the stop, so that the run stops at this phase and not
	// one later.
	time.Sleep(200 * time.Millisecond)
}
