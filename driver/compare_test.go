package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestCompare: two fake runs (batch 64 and 32) reach 2.5 bits/dim at different steps; the table
// gives each run's images and seconds and the ratios to the first, and both plots are written.
// Bad input gets one clear error.
func TestCompare(t *testing.T) {
	dir := t.TempDir()
	mk := func(name string, batch int, test string) string {
		d := filepath.Join(dir, name)
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
		cfg := `{"batch_size": ` + map[int]string{64: "64", 32: "32"}[batch] + `}`
		if err := os.WriteFile(filepath.Join(d, "config.json"), []byte(cfg), 0o644); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(d, "test.csv"), []byte("epoch,step,loss,bits_x,bits_y,l2_loss,seconds\n"+test), 0o644); err != nil {
			t.Fatal(err)
		}
		return d
	}
	a := mk("a", 64, "0,100,4,4,0,0,10\n0,200,2.4,2.4,0,0,20\n")
	b := mk("b", 32, "0,100,3,3,0,0,5\n0,400,2.5,2.5,0,0,20\n0,800,2.1,2.1,0,0,40\n")
	prefix := filepath.Join(dir, "out", "cmp")
	out := mustRun(t, "compare", "--out_prefix", prefix, "--reach", "2.5,2", a+"=dlf", b)
	for _, want := range []string{
		"| dlf | 2.4000 | 13k images, 20 s | not reached |",              // 200 steps × 64
		"| b | 2.1000 | 13k images, 20 s (×1.00, ×1.00) | not reached |", // 400 × 32
	} {
		if !strings.Contains(out, want) {
			t.Errorf("table lacks %q:\n%s", want, out)
		}
	}
	for _, f := range []string{prefix + "-images.png", prefix + "-seconds.png"} {
		if st, err := os.Stat(f); err != nil || st.Size() < 1000 {
			t.Errorf("%s: %v", f, err)
		}
	}
	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{"compare"}, "compare needs at least one results directory"},
		{[]string{"compare", dir}, "config.json"},
		{[]string{"compare", "--reach", "x", a}, `--reach: "x" is not a positive number`},
	} {
		if out, err := runApp(t, c.args...); err == nil || !strings.Contains(err.Error()+out, c.want) {
			t.Errorf("driver %v: err %v, want %q", c.args, err, c.want)
		}
	}
}
