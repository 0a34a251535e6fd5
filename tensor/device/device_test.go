package device

import (
	"strings"
	"testing"

	"dlf/tensor"
)

// TestResolveAndOpen checks the device names and the refusals that need no GPU, and that a CPU
// device runs work and describes itself.
func TestResolveAndOpen(t *testing.T) {
	if k, err := Resolve("cpu"); k != "cpu" || err != nil {
		t.Errorf(`Resolve("cpu") = %q, %v`, k, err)
	}
	if k, err := Resolve("auto"); err != nil || (k != "cpu" && k != "cuda") {
		t.Errorf(`Resolve("auto") = %q, %v`, k, err)
	}
	if _, err := Resolve("tpu"); err == nil || !strings.Contains(err.Error(), `--device "tpu": want auto, cpu or cuda`) {
		t.Errorf(`Resolve("tpu"): %v`, err)
	}
	for _, c := range []struct {
		n       int
		virtual bool
		want    string
	}{{0, false, "--num_gpus 0"}, {2, true, "--virtual_gpus needs --device cuda"}} {
		if err := CheckWorld("cpu", c.n, c.virtual); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("CheckWorld(cpu, %d, %v): %v, want %q", c.n, c.virtual, err, c.want)
		}
	}
	if err := CheckWorld("cpu", 3, false); err != nil {
		t.Errorf("3 CPU ranks: %v", err)
	}
	d, err := OpenRank("cpu", 1, 2, false)
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	if d.GPU != nil || !strings.Contains(d.Desc, "2 ranks") {
		t.Errorf("CPU rank: GPU %v, desc %q", d.GPU, d.Desc)
	}
	var sum float64
	if err := d.Do(func() error {
		x := tensor.FromFloat64(d.Backend, []float64{1, 2, 3.5}, 3)
		sum = x.Float64s()[2]
		return d.Backend.Err()
	}); err != nil || sum != 3.5 {
		t.Errorf("Do: %v, %v", sum, err)
	}
}
