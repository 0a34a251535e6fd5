// Package mpitest runs a test binary's own test under mpirun, for the tests of the packages that
// talk MPI: the test starts itself with `mpirun -np N`, and the started ranks, recognising an
// environment variable, run the rank's side of the test instead.
package mpitest

import (
	"fmt"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"
)

// RunSelf runs `mpirun -np n <this test binary> -test.run run -test.v` with the variables env
// ("NAME=value", passed to every rank) and returns the combined output; it skips the test without
// mpirun and fails it when mpirun fails or runs for more than two minutes.
func RunSelf(t testing.TB, n int, run string, env ...string) string {
	t.Helper()
	mpirun, err := exec.LookPath("mpirun")
	if err != nil {
		t.Skip("skipping: no mpirun (Debian: apt-get install openmpi-bin libopenmpi3)")
	}
	args := []string{"-np", fmt.Sprint(n), "--oversubscribe"}
	if os.Geteuid() == 0 {
		args = append(args, "--allow-run-as-root")
	}
	for _, e := range env {
		name, _, _ := strings.Cut(e, "=")
		args = append(args, "-x", name)
	}
	args = append(args, os.Args[0], "-test.run", run, "-test.v")
	cmd := exec.Command(mpirun, args...)
	cmd.Env = append(os.Environ(), env...)
	done := time.AfterFunc(120*time.Second, func() { _ = cmd.Process.Kill() })
	defer done.Stop()
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("mpirun: %v\n%s", err, out)
	}
	return string(out)
}
