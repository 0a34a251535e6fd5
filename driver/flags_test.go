package main

import (
	"errors"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// TestBadFlags checks that bad flags and bad combinations fail before any work starts: a non-nil
// error of one line that names the problem, and no results directory created.
func TestBadFlags(t *testing.T) {
	dataDir := mnist(t)
	// A finished tiny run, for the checkpoint cases.
	run := filepath.Join(t.TempDir(), "run")
	mustRun(t, tinyTrain(dataDir, run, "--train_subset", "32", "--test_subset", "16", "--max_steps", "1")...)

	train := func(extra ...string) []string {
		return append([]string{"train", "--device", "cpu", "--data_dir", dataDir, "--depth", "1", "--width", "8"}, extra...)
	}
	cases := []struct {
		name string
		args []string
		want string
	}{
		{"K not in 2,4,6,8", train("--num_parts", "3"), "--num_parts: K=3, want one of 2, 4, 6, 8"},
		{"K not dividing channels", train("--num_parts", "8"), "K=8 does not divide the 4 channels at level 0"},
		{"levels not dividing size", train("--num_levels", "3"), "--num_levels: 3 levels squeeze the image 3 times"},
		{"affine coupling needs K=2", train("--affine_coupling", "--num_parts", "4"), "--affine_coupling: needs num_parts 2"},
		{"decomposition", train("--decomposition", "2"), "--decomposition: 2, want 0"},
		{"bits", train("--num_bits_x", "9"), "--num_bits_x: 9 is not in 1..8"},
		{"negative batch size", train("--batch_size", "-1"), "--batch_size -1: want at least 1"},
		{"batch larger than data", train("--batch_size", "64", "--train_subset", "32"), "--batch_size 64 is larger than the 32 training images"},
		{"missing dataset", []string{"train", "--device", "cpu", "--data_dir", filepath.Join(t.TempDir(), "none")}, "cannot read the train split of mnist from --data_dir"},
		{"unknown problem", train("--problem", "svhn"), `--problem "svhn" is not a known dataset`},
		{"unknown preset", train("--preset", "mnist-huge"), `--preset: unknown preset "mnist-huge"`},
		{"folder without preset", []string{"train", "--device", "cpu", "--problem", "folder", "--data_dir", dataDir}, "--problem folder has no preset"},
		{"unknown recipe", train("--recipe", "turbo"), `--recipe: recipe "turbo" is not one of fast, reference`},
		{"negative clip norm", train("--clip_grad_norm", "-1"), "--clip_grad_norm: -1, want a finite value ≥ 0"},
		{"unknown precision", train("--precision", "bf16"), `--precision: "bf16" is not "fp32", "tf32" or empty`},
		{"unknown optimizer", train("--optimizer", "sgd"), `--optimizer: "sgd" is neither "adamax" nor "adam"`},
		{"bad device", train("--device", "tpu"), `--device "tpu": want auto, cpu or cuda`},
		{"nan policy", train("--nan_policy", "retry"), `--nan_policy "retry": want stop or lower_lr`},
		{"negative max_time", train("--max_time", "-1s"), "--max_time -1s is negative"},
		{"negative max_steps", train("--max_steps", "-3"), "--max_steps -3 is negative"},
		{"no replicas", train("--num_gpus", "0"), "--num_gpus 0: want at least 1"},
		{"shard smaller than a batch", train("--num_gpus", "2", "--batch_size", "20", "--train_subset", "32"), "--num_gpus 2, --batch_size 20: each replica's shard of the 32 training images has only 16"},
		{"virtual GPUs on the CPU", train("--num_gpus", "2", "--virtual_gpus"), "--virtual_gpus needs --device cuda"},
		{"negative sample interval", train("--sample_per_epochs", "-1"), "--sample_per_epochs -1 is negative"},
		{"temperatures", train("--temperatures", "0.5,hot"), `--temperatures: "hot" is not a non-negative number`},
		{"unknown flag", train("--frobnicate"), "flag provided but not defined: -frobnicate"},
		{"stray argument", train("mnist"), `train takes no arguments, got "mnist"`},
		{"checkpoint of another config", []string{"train", "--device", "cpu", "--data_dir", dataDir, "--results_dir", run, "--depth", "2"},
			"holds a checkpoint of another configuration (depth 1 there, 2 here)"},
		{"checkpoint of another preset", []string{"train", "--device", "cpu", "--data_dir", dataDir, "--results_dir", run, "--preset", "glow-mnist"},
			"holds a checkpoint of another configuration than --preset glow-mnist (flow dlf there, glow here)"},
		{"resume with another batch size", []string{"train", "--device", "cpu", "--data_dir", dataDir, "--results_dir", run, "--batch_size", "8"},
			"--batch_size 8: the run in"},
		{"eval: missing checkpoint", []string{"eval", "--checkpoint", filepath.Join(run, "nope.safetensors")}, "--checkpoint " + filepath.Join(run, "nope.safetensors") + " does not exist"},
		{"eval: no checkpoint flag", []string{"eval"}, "--checkpoint is required"},
		{"eval: not a checkpoint", []string{"eval", "--checkpoint", filepath.Join(run, "train.csv")}, "cannot read checkpoint"},
		{"eval: bad draws", []string{"eval", "--checkpoint", run, "--data_dir", dataDir, "--dequant_samples", "0"}, "--dequant_samples 0: want at least 1"},
		{"eval: bad split", []string{"eval", "--checkpoint", run, "--data_dir", dataDir, "--split", "valid"}, `--split "valid": want train or test`},
		{"sample: no samples", []string{"sample", "--checkpoint", run, "--n", "0"}, "--n 0: want at least 1 sample"},
		{"sample: class without conditioning", []string{"sample", "--checkpoint", run, "--class", "3"}, "--class 3: the checkpoint's model is not class-conditional"},
		{"sample: not png", []string{"sample", "--checkpoint", run, "--out", "x.jpg"}, "--out x.jpg: want a .png file name"},
		{"interpolate: index out of range", []string{"interpolate", "--checkpoint", run, "--data_dir", dataDir, "--a_index", "99999", "--b_index", "0"}, "--a_index 99999 is out of range: the split has 10000 images"},
		{"interpolate: missing end", []string{"interpolate", "--checkpoint", run, "--data_dir", dataDir, "--a_index", "1"}, "interpolate needs --b FILE or --b_index N"},
		{"interpolate: one step", []string{"interpolate", "--checkpoint", run, "--data_dir", dataDir, "--a_index", "1", "--b_index", "2", "--steps", "1"}, "--steps 1: want at least 2"},
		{"bench: unknown preset", []string{"bench", "--preset", "nope"}, `--preset: unknown preset "nope"`},
		{"bench: bad K", []string{"bench", "--device", "cpu", "--num_parts", "5"}, "--num_parts: K=5"},
		{"data fetch: no name", []string{"data", "fetch"}, "data fetch takes one dataset name"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			results := filepath.Join(t.TempDir(), "results")
			args := c.args
			if args[0] == "train" && !contains(args, "--results_dir") {
				args = append(args, "--results_dir", results)
			}
			out, err := runApp(t, args...)
			if err == nil {
				t.Fatalf("driver %v succeeded:\n%s", args, out)
			}
			msg := err.Error()
			if !strings.Contains(msg, c.want) {
				t.Errorf("error %q does not contain %q", msg, c.want)
			}
			if strings.Contains(msg, "\n") {
				t.Errorf("error spans several lines: %q", msg)
			}
			if exists(results) {
				t.Errorf("the failed command created %s", results)
			}
		})
	}
}

func contains(xs []string, s string) bool {
	for _, x := range xs {
		if x == s {
			return true
		}
	}
	return false
}

// TestBadFlagExitStatus checks the process side: a bad flag exits with status 1 and one line on
// stderr, before printing anything else.
func TestBadFlagExitStatus(t *testing.T) {
	exe := driverBinary(t)
	cmd := exec.Command(exe, "train", "--device", "cpu", "--num_parts", "3", "--results_dir", filepath.Join(t.TempDir(), "r"))
	var stdout, stderr strings.Builder
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	var ee *exec.ExitError
	if !errors.As(err, &ee) || ee.ExitCode() != 1 {
		t.Fatalf("exit: %v, want status 1", err)
	}
	if lines := strings.Split(strings.TrimSpace(stderr.String()), "\n"); len(lines) != 1 || !strings.HasPrefix(lines[0], "driver: ") {
		t.Errorf("stderr %q, want one line starting with \"driver: \"", stderr.String())
	}
	if stdout.Len() != 0 {
		t.Errorf("stdout %q, want nothing", stdout.String())
	}
}
