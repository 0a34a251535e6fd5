package bench

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"
)

// FindReference locates the PyTorch twin, reference/dlf_torch.py; flag (when set) is its path.
func FindReference(flag string) (string, error) {
	if flag != "" {
		if _, err := os.Stat(flag); err != nil {
			return "", fmt.Errorf("--reference %s does not exist", flag)
		}
		return flag, nil
	}
	cands := []string{filepath.Join("reference", "dlf_torch.py")}
	if exe, err := os.Executable(); err == nil {
		cands = append(cands, filepath.Join(filepath.Dir(filepath.Dir(exe)), "reference", "dlf_torch.py"),
			filepath.Join(filepath.Dir(filepath.Dir(filepath.Dir(exe))), "reference", "dlf_torch.py"))
	}
	for _, p := range cands {
		if _, err := os.Stat(p); err == nil {
			return p, nil
		}
	}
	return "", fmt.Errorf("--compare: reference/dlf_torch.py not found here or next to the binary; give --reference")
}

// FindTorchPython returns a Python interpreter that can import torch: flag when set, else the
// first of the usual places that works.
func FindTorchPython(flag string) (string, error) {
	cands := []string{"/opt/torch/.venv/bin/python3", "/usr/bin/python3", "python3"}
	if flag != "" {
		cands = []string{flag}
	}
	for _, p := range cands {
		path, err := exec.LookPath(p)
		if err != nil {
			continue
		}
		ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
		err = exec.CommandContext(ctx, path, "-c", "import torch").Run()
		cancel()
		if err == nil {
			return path, nil
		}
	}
	return "", fmt.Errorf("--compare: no Python with torch found (tried %s); give --python", strings.Join(cands, ", "))
}

// CompareTorch runs the PyTorch twin (interpreter py, script ref) on the result's configuration
// and batch on the same device kind, and records its timing and the time ratio in res. threads > 0
// gives torch that many CPU threads (dlf's own count, so both use the same cores; torch's default
// is the number of physical cores, which on a hyper-threaded VM is half the vCPUs).
func CompareTorch(res *Result, py, ref, kind string, iters, warmup, threads int) error {
	tmp, err := os.CreateTemp("", "dlf-bench-*.json")
	if err != nil {
		return err
	}
	defer os.Remove(tmp.Name())
	if _, err := tmp.WriteString(res.Config.JSON()); err != nil {
		return err
	}
	tmp.Close()
	args := []string{ref, "--bench", "--config", tmp.Name(), "--batch", fmt.Sprint(res.Batch), "--device", kind,
		"--iters", fmt.Sprint(iters), "--warmup", fmt.Sprint(warmup), "--dtype", "float32"}
	if threads > 0 {
		args = append(args, "--threads", fmt.Sprint(threads))
	}
	run := func(env ...string) (map[string]any, error) {
		var stdout, stderr bytes.Buffer
		cmd := exec.Command(py, args...)
		cmd.Env = append(os.Environ(), env...)
		cmd.Stdout, cmd.Stderr = &stdout, &stderr
		if err := cmd.Run(); err != nil {
			return nil, fmt.Errorf("--compare: %s %s failed: %v: %s", py, strings.Join(args, " "), err, strings.TrimSpace(stderr.String()+stdout.String()))
		}
		lines := strings.Split(strings.TrimSpace(stdout.String()), "\n")
		var t map[string]any
		if err := json.Unmarshal([]byte(lines[len(lines)-1]), &t); err != nil {
			return nil, fmt.Errorf("--compare: the twin printed %q, not JSON", lines[len(lines)-1])
		}
		if e, ok := t["error"]; ok {
			return nil, fmt.Errorf("--compare: the twin says: %v", e)
		}
		return t, nil
	}
	var t map[string]any
	if kind != "cpu" {
		if t, err = run(); err != nil {
			return err
		}
	} else {
		// On the CPU torch's OpenMP threads either sleep between parallel regions (passive) or spin
		// (active, which steals the core from anything else): the twin runs under both, and dlf is
		// compared with the faster.
		res.TorchPolicies = map[string]map[string]any{}
		for _, pol := range []string{"passive", "active"} {
			tp, err := run("OMP_WAIT_POLICY=" + strings.ToUpper(pol))
			if err != nil {
				return err
			}
			tp["omp_wait_policy"] = pol
			res.TorchPolicies[pol] = tp
			if t == nil || num(tp["fwd_bwd_ms_median"]) < num(t["fwd_bwd_ms_median"]) {
				t = tp
			}
		}
	}
	res.Torch = t
	if ms := num(t["fwd_bwd_ms_median"]); ms > 0 {
		res.Ratio = ms / res.Step.MsMedian
	}
	if res.Config.Recompute {
		res.Warning = "--recompute is on here; the twin keeps activations, so the ratio compares different work"
	}
	return nil
}
