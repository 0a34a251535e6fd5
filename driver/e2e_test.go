package main

import (
	"bufio"
	"encoding/json"
	"fmt"
	"image"
	"math"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"dlf/data"
	"dlf/train"
)

// tinyTrain is a train command line small enough for a test: a 2-level DLF of depth 1 and width 8
// on the first images of MNIST.
func tinyTrain(dataDir, results string, extra ...string) []string {
	args := []string{"train", "--device", "cpu", "--data_dir", dataDir, "--results_dir", results,
		"--depth", "1", "--width", "8", "--batch_size", "16", "--print_per_steps", "1",
		"--num_samples", "9", "--temperatures", "0.5,1"}
	return append(args, extra...)
}

func finite(t *testing.T, what string, vs ...float64) {
	t.Helper()
	for i, v := range vs {
		if math.IsNaN(v) || math.IsInf(v, 0) {
			t.Fatalf("%s[%d] = %v", what, i, v)
		}
	}
}

// tileGray returns the gray value of pixel (x, y) of tile k of a grid written by gridImage.
func tileGray(img image.Image, k, cols, h, w, x, y int) uint8 {
	ox, oy := 1+(k%cols)*(w+1), 1+(k/cols)*(h+1)
	r, _, _, _ := img.At(ox+x, oy+y).RGBA()
	return uint8(r >> 8)
}

// TestTrainEvalSampleInterpolate trains a tiny model for two short epochs, then evaluates, samples
// and interpolates from its checkpoint, checking the files and numbers each step produces.
func TestTrainEvalSampleInterpolate(t *testing.T) {
	dataDir := mnist(t)
	res := filepath.Join(t.TempDir(), "run")
	out := mustRun(t, tinyTrain(dataDir, res, "--train_subset", "64", "--test_subset", "32", "--num_epoch", "2")...)
	for _, want := range []string{"parameters", "device:  cpu", "64 training images (4 steps of 16 per epoch)", "finished 2 epochs at step 8"} {
		if !strings.Contains(out, want) {
			t.Errorf("train output lacks %q:\n%s", want, out)
		}
	}

	// CSV logs: the reference's columns plus seconds, one train row per epoch, a test row per epoch,
	// a steps row per step; every number finite, steps increasing, the loss falling.
	head, rows := readCSV(t, filepath.Join(res, "train.csv"))
	if strings.Join(head, ",") != "epoch,step,loss,bits_x,bits_y,l2_loss,seconds" || len(rows) != 2 {
		t.Fatalf("train.csv: header %v, %d rows", head, len(rows))
	}
	trainBits := column(t, head, rows, "bits_x")
	finite(t, "train bits", trainBits...)
	if got := column(t, head, rows, "step"); got[0] != 4 || got[1] != 8 {
		t.Errorf("train.csv steps %v, want [4 8]", got)
	}
	th, trows := readCSV(t, filepath.Join(res, "test.csv"))
	if len(trows) != 2 {
		t.Fatalf("test.csv has %d rows, want 2", len(trows))
	}
	testBits := column(t, th, trows, "bits_x")
	finite(t, "test bits", testBits...)
	sh, srows := readCSV(t, filepath.Join(res, "steps.csv"))
	steps := column(t, sh, srows, "step")
	if len(steps) != 8 || steps[0] != 1 || steps[7] != 8 {
		t.Errorf("steps.csv steps %v, want 1..8", steps)
	}
	loss := column(t, sh, srows, "loss")
	finite(t, "step loss", loss...)
	if !(loss[7] < loss[0]) {
		t.Errorf("the loss did not fall over 8 steps: %v", loss)
	}

	// Pictures: sample grids of 9 (3×3 tiles of 28×28 with 1-pixel gaps) per temperature and epoch,
	// and the loss curve.
	for _, name := range []string{"epoch_0000_T0.50.png", "epoch_0001_T1.00.png"} {
		img := decodePNG(t, filepath.Join(res, "samples", name))
		if b := img.Bounds(); b.Dx() != 3*29+1 || b.Dy() != 3*29+1 {
			t.Errorf("%s is %v, want 88×88", name, b)
		}
	}
	if b := decodePNG(t, filepath.Join(res, "loss.png")).Bounds(); b.Dx() < 100 || b.Dy() < 100 {
		t.Errorf("loss.png is only %v", b)
	}
	// Checkpoints: the last two steps' and the best one.
	cks, err := train.ListCheckpoints(res)
	if err != nil || len(cks) != 2 || filepath.Base(cks[0]) != "step-000000008.safetensors" || filepath.Base(cks[1]) != "step-000000004.safetensors" {
		t.Errorf("checkpoints %v (%v), want steps 8 and 4", cks, err)
	}
	if !exists(train.BestPath(res)) {
		t.Errorf("no %s", train.BestPath(res))
	}

	// eval of the best checkpoint on the same 32 test images reproduces the logged test bits/dim
	// (the same fixed test noise), and the 3-draw bound is at most the mean.
	best := 0
	if testBits[1] < testBits[0] {
		best = 1
	}
	js := mustRun(t, "eval", "--device", "cpu", "--checkpoint", res, "--data_dir", dataDir, "--subset", "32", "--json")
	var ev struct {
		Images  int     `json:"images"`
		Bits    float64 `json:"bits_per_dim"`
		Bound   float64 `json:"bits_per_dim_bound"`
		Samples int     `json:"dequant_samples"`
	}
	if err := json.Unmarshal([]byte(js[strings.Index(js, "{"):]), &ev); err != nil {
		t.Fatalf("eval JSON %q: %v", js, err)
	}
	if ev.Images != 32 || math.Abs(ev.Bits-testBits[best]) > 1e-5*testBits[best] {
		t.Errorf("eval: %v; test.csv has %v at the best step", ev, testBits[best])
	}
	js = mustRun(t, "eval", "--device", "cpu", "--checkpoint", res, "--data_dir", dataDir, "--subset", "32", "--dequant_samples", "3", "--json")
	if err := json.Unmarshal([]byte(js[strings.Index(js, "{"):]), &ev); err != nil {
		t.Fatalf("eval JSON %q: %v", js, err)
	}
	finite(t, "eval", ev.Bits, ev.Bound)
	if ev.Samples != 3 || ev.Bound > ev.Bits+1e-9 || ev.Bits <= 0 {
		t.Errorf("eval with 3 draws: %v", ev)
	}

	// sample: 6 images in a 3×2 grid per temperature.
	dir := t.TempDir()
	out = mustRun(t, "sample", "--device", "cpu", "--checkpoint", res, "--which", "last", "--n", "6", "--temperatures", "0.7,1", "--out", filepath.Join(dir, "s.png"))
	for _, name := range []string{"s_T0.7.png", "s_T1.png"} {
		if b := decodePNG(t, filepath.Join(dir, name)).Bounds(); b.Dx() != 3*29+1 || b.Dy() != 2*29+1 {
			t.Errorf("%s is %v, want 88×59 (output %s)", name, b, out)
		}
	}

	// interpolate between test image 0 and a PNG of test image 1: a strip of a, 5 points, b. The
	// point at t = 0 decodes image a's own latents, so it must reproduce image a: the flow is
	// invertible and the dequantisation noise stays below one pixel level.
	test, err := data.Open("mnist", "", "test", data.Options{Path: dataDir})
	if err != nil {
		t.Fatal(err)
	}
	f, err := os.Create(filepath.Join(dir, "b.png"))
	if err != nil {
		t.Fatal(err)
	}
	if err := data.WritePNG(f, test.Image(1), 28, 28, 1); err != nil {
		t.Fatal(err)
	}
	f.Close()
	strip := filepath.Join(dir, "strip.png")
	mustRun(t, "interpolate", "--device", "cpu", "--checkpoint", res, "--data_dir", dataDir, "--a_index", "0", "--b", filepath.Join(dir, "b.png"), "--steps", "5", "--out", strip)
	img := decodePNG(t, strip)
	if b := img.Bounds(); b.Dx() != 7*29+1 || b.Dy() != 29+1 {
		t.Fatalf("strip is %v, want 204×30", b)
	}
	a := test.Image(0)
	mismatch := 0
	for y := 0; y < 28; y++ {
		for x := 0; x < 28; x++ {
			if got := tileGray(img, 0, 7, 28, 28, x, y); got != a[y*28+x] {
				t.Fatalf("tile 0 pixel (%d,%d) = %d, want image a's %d", x, y, got, a[y*28+x])
			}
			if got, want := int(tileGray(img, 1, 7, 28, 28, x, y)), int(a[y*28+x]); got != want {
				if got-want > 1 || want-got > 1 {
					t.Fatalf("decoded t=0 pixel (%d,%d) = %d, image a has %d", x, y, got, want)
				}
				mismatch++
			}
			if got := tileGray(img, 6, 7, 28, 28, x, y); got != test.Image(1)[y*28+x] {
				t.Fatalf("last tile pixel (%d,%d) = %d, want image b's %d", x, y, got, test.Image(1)[y*28+x])
			}
		}
	}
	if mismatch > 784/100 {
		t.Errorf("decoded t=0 differs from image a in %d of 784 pixels", mismatch)
	}
}

// TestInterruptAndResume runs the built binary, interrupts it with SIGINT, and checks that it saved
// a checkpoint, exited cleanly, and that rerunning resumes at the saved step with logs that
// continue without duplicates.
func TestInterruptAndResume(t *testing.T) {
	dataDir := mnist(t)
	exe := driverBinary(t)
	res := filepath.Join(t.TempDir(), "run")
	args := tinyTrain(dataDir, res, "--train_subset", "256", "--test_subset", "16")
	cmd := exec.Command(exe, args...)
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stderr = cmd.Stdout
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	// A watchdog, so that a run that ignores SIGINT fails the test instead of hanging it.
	watchdog := time.AfterFunc(60*time.Second, func() { cmd.Process.Kill() })
	defer watchdog.Stop()
	var log strings.Builder
	sc := bufio.NewScanner(stdout)
	sent := false
	for sc.Scan() {
		line := sc.Text()
		log.WriteString(line + "\n")
		if !sent && strings.Contains(line, "step 5 ") {
			if err := cmd.Process.Signal(syscall.SIGINT); err != nil {
				t.Fatal(err)
			}
			sent = true
		}
	}
	if err := cmd.Wait(); err != nil {
		t.Fatalf("interrupted run exited with %v (killed by the watchdog if it ignored SIGINT):\n%s", err, log.String())
	}
	m := regexp.MustCompile(`interrupted at step (\d+)`).FindStringSubmatch(log.String())
	if !sent || m == nil {
		t.Fatalf("no interrupt report:\n%s", log.String())
	}
	stopped, _ := strconv.Atoi(m[1])
	if !exists(train.StepPath(res, stopped)) {
		t.Fatalf("no checkpoint for step %d", stopped)
	}

	// Resume for three more steps.
	target := stopped + 3
	out, err := exec.Command(exe, append(args, "--max_steps", strconv.Itoa(target))...).CombinedOutput()
	if err != nil {
		t.Fatalf("resumed run: %v\n%s", err, out)
	}
	for _, want := range []string{fmt.Sprintf("resuming at step %d,", stopped), fmt.Sprintf("--max_steps %d reached at step %d", target, target)} {
		if !strings.Contains(string(out), want) {
			t.Errorf("resumed run output lacks %q:\n%s", want, out)
		}
	}
	head, rows := readCSV(t, filepath.Join(res, "steps.csv"))
	steps := column(t, head, rows, "step")
	if len(steps) != target {
		t.Errorf("steps.csv has %d rows, want %d (one per step, none repeated): %v", len(steps), target, steps)
	}
	for i, s := range steps {
		if s != float64(i+1) {
			t.Fatalf("steps.csv row %d is step %v, want %d: %v", i, s, i+1, steps)
		}
	}
	secs := column(t, head, rows, "seconds")
	for i := 1; i < len(secs); i++ {
		if secs[i] < secs[i-1] {
			t.Errorf("the training clock went backwards at row %d: %v", i, secs)
		}
	}
}

// TestNonFiniteLoss makes training diverge with an absurd learning rate: with --nan_policy stop it
// must fail naming the step and the layer; with lower_lr it must restore and go on lowering the rate.
func TestNonFiniteLoss(t *testing.T) {
	dataDir := mnist(t)
	res := filepath.Join(t.TempDir(), "run")
	out, err := runApp(t, tinyTrain(dataDir, res, "--train_subset", "64", "--test_subset", "16", "--initial_lr", "1e6", "--num_epoch", "1")...)
	if err == nil {
		t.Fatalf("training at lr 1e6 did not fail:\n%s", out)
	}
	msg := err.Error()
	if !regexp.MustCompile(`^training stopped at step \d+: .*(layer|parameter) (level\d|top)`).MatchString(msg) || strings.Contains(msg, "\n") {
		t.Errorf("message %q does not name the step and layer in one line", msg)
	}
	if !strings.Contains(msg, "step-000000000.safetensors") {
		t.Errorf("message %q does not name the last good checkpoint", msg)
	}

	res2 := filepath.Join(t.TempDir(), "run")
	out, _ = runApp(t, tinyTrain(dataDir, res2, "--train_subset", "64", "--test_subset", "16", "--initial_lr", "1e6", "--num_epoch", "1", "--nan_policy", "lower_lr")...)
	if !strings.Contains(out, "continuing with the learning rate × 0.5") || !strings.Contains(out, "× 0.25") {
		t.Errorf("lower_lr did not restore and halve the rate:\n%s", out)
	}
}

// TestSampleEvery checks --sample_per_epochs: grids only at the end of every second epoch with 2,
// and none with 0, while training and checkpoints proceed as usual.
func TestSampleEvery(t *testing.T) {
	dataDir := mnist(t)
	for _, c := range []struct {
		every string
		want  []bool // per epoch 0..2: grids written
	}{{"2", []bool{false, true, false}}, {"0", []bool{false, false, false}}} {
		res := filepath.Join(t.TempDir(), "run")
		out := mustRun(t, tinyTrain(dataDir, res, "--train_subset", "32", "--test_subset", "16", "--max_steps", "6",
			"--sample_per_epochs", c.every)...)
		if !strings.Contains(out, "--max_steps 6 reached") {
			t.Fatalf("--sample_per_epochs %s: training did not finish:\n%s", c.every, out)
		}
		for e, want := range c.want {
			got := exists(filepath.Join(res, "samples", fmt.Sprintf("epoch_%04d_T0.50.png", e)))
			if got != want {
				t.Errorf("--sample_per_epochs %s: epoch %d grid written %v, want %v", c.every, e, got, want)
			}
		}
	}
}
