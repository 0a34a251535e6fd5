package data

import (
	"testing"
)

// BenchmarkLoaderMNIST measures the Loader on MNIST's 60000 training images (the real files when
// the GoMNIST module is in the module cache, else random images of the same shape): batch 256,
// shuffled, 2 workers prefetching 4 batches. One iteration is one Next call.
func BenchmarkLoaderMNIST(b *testing.B) {
	var ds *Dataset
	if mnistAvailable() {
		var err error
		if ds, err = Open("mnist", fetchRealMNIST(b), "train", Options{}); err != nil {
			b.Fatal(err)
		}
	} else {
		b.Log("GoMNIST not in the module cache: using random 28×28 images")
		ds = randDataset(newRand(b), 60000, 28, 28, 1, 10)
	}
	const batch = 256
	l, err := NewLoader(ds, LoaderConfig{BatchSize: batch, Shuffle: true, Seed: 1, Workers: 2, Prefetch: 4})
	if err != nil {
		b.Fatal(err)
	}
	defer l.Close()
	b.SetBytes(batch * 28 * 28)
	b.ResetTimer()
	l.ResetStats()
	sum := 0
	for i := 0; i < b.N; i++ {
		bt, err := l.Next()
		if err != nil {
			b.Fatal(err)
		}
		sum += int(bt.Images[0])
	}
	b.StopTimer()
	st := l.Stats()
	b.ReportMetric(float64(st.Images)/b.Elapsed().Seconds(), "images/s")
	b.ReportMetric(st.WaitFraction(), "wait-frac")
	_ = sum
}
