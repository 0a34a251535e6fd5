package data

import (
	"bytes"
	"fmt"
	"path/filepath"
	"sort"
	"testing"
)

func TestOpenLayouts(t *testing.T) {
	r := newRand(t)
	root := t.TempDir()

	// mnist as gzipped idx, fashion-mnist as raw idx.
	mtr, mte := randDataset(r, 30, 28, 28, 1, 10), randDataset(r, 12, 28, 28, 1, 10)
	for _, s := range []struct {
		prob, pre string
		d         *Dataset
		gz        bool
	}{{"mnist", "train", mtr, true}, {"mnist", "t10k", mte, true}, {"fashion-mnist", "train", mtr, false}, {"fashion-mnist", "t10k", mte, false}} {
		ib, lb := idxBytes(t, s.d, s.gz)
		ext := map[bool]string{true: ".gz", false: ""}[s.gz]
		writeFile(t, root, s.prob+"/"+s.pre+"-images-idx3-ubyte"+ext, ib)
		writeFile(t, root, s.prob+"/"+s.pre+"-labels-idx1-ubyte"+ext, lb)
	}
	for _, p := range []string{"mnist", "fashion-mnist"} {
		got, err := Open(p, root, "train", Options{})
		if err != nil {
			t.Fatal(err)
		}
		sameDataset(t, got, mtr)
		got, err = Open(p, root, "test", Options{})
		if err != nil {
			t.Fatal(err)
		}
		sameDataset(t, got, mte)
	}

	// cifar10: five train batches inside cifar-10-batches-bin/, test batch too.
	var parts []*Dataset
	for i, n := range CIFARTrainFiles {
		d := randDataset(r, 3+i, 32, 32, 3, 10)
		parts = append(parts, d)
		writeFile(t, root, "cifar10/cifar-10-batches-bin/"+n, cifarRecordsNaive(d))
	}
	ct := randDataset(r, 4, 32, 32, 3, 10)
	writeFile(t, root, "cifar10/cifar-10-batches-bin/"+CIFARTestFile, cifarRecordsNaive(ct))
	want, _ := concatDatasets("x", parts)
	got, err := Open("cifar10", root, "train", Options{})
	if err != nil {
		t.Fatal(err)
	}
	sameDataset(t, got, want)
	if got, err = Open("cifar10", root, "test", Options{}); err != nil {
		t.Fatal(err)
	}
	sameDataset(t, got, ct)

	// cifar10 in the DLF reference TFRecord layout, in another root.
	root2 := t.TempDir()
	var exs []Example
	for i := 0; i < ct.N; i++ {
		exs = append(exs, ImageExampleDLF(ct.Image(i), int64(ct.Labels[i])))
	}
	writeFile(t, root2, "cifar10/cifar10_train.tfrecords", writeTFRecords(t, exs))
	writeFile(t, root2, "cifar10/cifar10_validation.tfrecords", writeTFRecords(t, exs[:2]))
	if got, err = Open("cifar10", root2, "train", Options{}); err != nil {
		t.Fatal(err)
	}
	sameDataset(t, got, ct)

	// imagenet32 as Glow TFRecords with mixed resolutions: only r05 files are used for 32×32.
	i32a, i32b := randDataset(r, 5, 32, 32, 3, 1000), randDataset(r, 4, 32, 32, 3, 1000)
	i64 := randDataset(r, 3, 64, 64, 3, 1000)
	glowRecs := func(d *Dataset) []byte {
		var exs []Example
		for i := 0; i < d.N; i++ {
			exs = append(exs, ImageExampleGlow(d.Image(i), Shape{d.H, d.W, d.C}, int64(d.Labels[i]), nil))
		}
		return writeTFRecords(t, exs)
	}
	writeFile(t, root, "imagenet32/train/train-r05-s-0010-of-0011.tfrecords", glowRecs(i32b))
	writeFile(t, root, "imagenet32/train/train-r05-s-0002-of-0011.tfrecords", glowRecs(i32a))
	writeFile(t, root, "imagenet32/train/train-r06-s-0000-of-0001.tfrecords", glowRecs(i64))
	writeFile(t, root, "imagenet32/validation/validation-r05-s-0000-of-0001.tfrecords", glowRecs(i32a))
	if got, err = Open("imagenet32x32", root, "train", Options{}); err != nil {
		t.Fatal(err)
	}
	want, _ = concatDatasets("x", []*Dataset{i32a, i32b}) // natural order: 0002 before 0010
	sameDataset(t, got, want)
	if got, err = Open("imagenet32", root, "test", Options{}); err != nil {
		t.Fatal(err)
	}
	sameDataset(t, got, i32a)

	// imagenet64 as Chrabaszcz npz batches: natural order puts batch_2 before batch_10.
	b1, b2, b10 := randDataset(r, 2, 64, 64, 3, 1000), randDataset(r, 3, 64, 64, 3, 1000), randDataset(r, 1, 64, 64, 3, 1000)
	writeFile(t, root, "imagenet64/Imagenet64_train_npz/train_data_batch_10.npz", chrabaszczNpz(t, b10, false))
	writeFile(t, root, "imagenet64/Imagenet64_train_npz/train_data_batch_1.npz", chrabaszczNpz(t, b1, true))
	writeFile(t, root, "imagenet64/Imagenet64_train_npz/train_data_batch_2.npz", chrabaszczNpz(t, b2, false))
	writeFile(t, root, "imagenet64/Imagenet64_val_npz/val_data.npz", chrabaszczNpz(t, b1, false))
	if got, err = Open("imagenet64", root, "train", Options{}); err != nil {
		t.Fatal(err)
	}
	want, _ = concatDatasets("x", []*Dataset{b1, b2, b10})
	sameDataset(t, got, want)
	if got, err = Open("imagenet64", root, "test", Options{}); err != nil {
		t.Fatal(err)
	}
	sameDataset(t, got, b1)
	// The wrong resolution is caught by the problem's shape check.
	root3 := t.TempDir()
	writeFile(t, root3, "imagenet32/val_data.npz", chrabaszczNpz(t, b1, false))
	_, err = Open("imagenet32", root3, "test", Options{})
	wantErr(t, err, filepath.Join(root3, "imagenet32/val_data.npz"), "rows have 12288 values, want 3·32·32 = 3072")

	// celeba as Glow TFRecords with attributes, and as image folders.
	cel := randDataset(r, 4, 16, 16, 3, 0)
	cel.NumAttrs = 40
	cel.Attrs = make([]int32, 4*40)
	var cex []Example
	for i := 0; i < 4; i++ {
		a := make([]int64, 40)
		for k := range a {
			a[k] = int64(r.IntN(2))
			cel.Attrs[i*40+k] = int32(a[k])
		}
		cex = append(cex, ImageExampleGlow(cel.Image(i), Shape{16, 16, 3}, 0, a))
	}
	cel.Labels = make([]int32, 4)
	writeFile(t, root, "celeba/celeba-train.tfrecords", writeTFRecords(t, cex))
	if got, err = Open("celeba", root, "train", Options{}); err != nil {
		t.Fatal(err)
	}
	sameDataset(t, got, cel)
	_, err = Open("celeba", root, "train", Options{Size: 32})
	wantErr(t, err, "", "record 0", "image shape 16x16x3, want 32x32x3")
	croot := t.TempDir()
	for i := 0; i < 3; i++ {
		writeFile(t, croot, "celeba/test/"+string(rune('a'+i))+".png", pngBytes(t, randDataset(r, 1, 20, 12, 3, 0).Images, 20, 12, 3))
	}
	if got, err = Open("celeba", croot, "test", Options{Size: 8, CenterCrop: true}); err != nil {
		t.Fatal(err)
	}
	if got.N != 3 || got.H != 8 || got.W != 8 || got.C != 3 {
		t.Fatalf("celeba folder shape %d %d %d %d", got.N, got.H, got.W, got.C)
	}
	_, err = Open("celeba", croot, "test", Options{})
	wantErr(t, err, "", "want square RGB")

	// folder: a flat folder is train only; train/ and test/ subfolders give both splits.
	froot := t.TempDir()
	fd := randDataset(r, 2, 5, 5, 1, 0)
	writeFile(t, froot, "flat/a.png", pngBytes(t, fd.Image(0), 5, 5, 1))
	writeFile(t, froot, "flat/b.png", pngBytes(t, fd.Image(1), 5, 5, 1))
	if got, err = Open("folder", "", "train", Options{Path: filepath.Join(froot, "flat"), Mode: ModeGray}); err != nil {
		t.Fatal(err)
	}
	sameDataset(t, got, fd)
	_, err = Open("folder", "", "test", Options{Path: filepath.Join(froot, "flat")})
	wantErr(t, err, "", "has no test/ subfolder")
	writeFile(t, froot, "split/train/a.png", pngBytes(t, fd.Image(0), 5, 5, 1))
	writeFile(t, froot, "split/test/b.png", pngBytes(t, fd.Image(1), 5, 5, 1))
	if got, err = Open("folder", "", "test", Options{Path: filepath.Join(froot, "split"), Mode: ModeGray}); err != nil || !bytes.Equal(got.Images, fd.Image(1)) {
		t.Fatalf("folder test split: %v", err)
	}
	_, err = Open("folder", "", "train", Options{})
	wantErr(t, err, "", "needs the image folder path")
}

func TestOpenErrors(t *testing.T) {
	r := newRand(t)
	root := t.TempDir()
	_, err := Open("svhn", root, "train", Options{})
	wantErr(t, err, "", `unknown problem "svhn"`, "mnist, fashion-mnist, cifar10")
	_, err = Open("mnist", root, "valid", Options{})
	wantErr(t, err, "", `unknown split "valid"`)
	_, err = Open("mnist", root, "train", Options{})
	wantErr(t, err, "", "directory "+filepath.Join(root, "mnist")+" not found", "train-images-idx3-ubyte")
	writeFile(t, root, "cifar10/readme.txt", []byte("x"))
	_, err = Open("cifar10", root, "train", Options{})
	wantErr(t, err, "", "no train data", "data_batch_1.bin")

	// Wrong image size for the problem.
	d := randDataset(r, 3, 20, 20, 1, 10)
	ib, lb := idxBytes(t, d, false)
	writeFile(t, root, "mnist/train-images-idx3-ubyte", ib)
	writeFile(t, root, "mnist/train-labels-idx1-ubyte", lb)
	_, err = Open("mnist", root, "train", Options{})
	wantErr(t, err, "", "images are 20×20×1, problem mnist needs 28×28×1")
	// Label outside the problem's classes.
	d = randDataset(r, 3, 28, 28, 1, 10)
	d.Labels[2] = 12
	ib, lb = idxBytes(t, d, false)
	writeFile(t, root, "mnist/train-images-idx3-ubyte", ib)
	writeFile(t, root, "mnist/train-labels-idx1-ubyte", lb)
	_, err = Open("mnist", root, "train", Options{})
	wantErr(t, err, "", "image 2 has label 12, want 0-9")
}

func TestNaturalSort(t *testing.T) {
	in := []string{"b10", "b2", "a", "b1", "b02", "b", "c0010x", "c9x"}
	sort.Slice(in, func(i, j int) bool { return naturalLess(in[i], in[j]) })
	want := "[a b b1 b2 b02 b10 c9x c0010x]"
	if got := fmt.Sprint(in); got != want {
		t.Fatalf("natural order %s, want %s", got, want)
	}
}
