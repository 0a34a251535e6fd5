package data

import (
	"fmt"
	"math"
	"math/bits"
	"sort"
)

// The loader's shuffles come from this self-contained generator rather than math/rand so that a
// permutation depends only on (seed, epoch) and never on the Go release: a run resumed from a
// checkpoint with a newer toolchain must see the same batches.

// splitmix64 advances *s and returns the next output of SplitMix64 (Steele, Lea, Flood,
// "Fast splittable pseudorandom number generators", OOPSLA 2014; constants from Vigna's reference).
func splitmix64(s *uint64) uint64 {
	*s += 0x9e3779b97f4a7c15
	z := *s
	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9
	z = (z ^ (z >> 27)) * 0x94d049bb133111eb
	return z ^ (z >> 31)
}

// boundedRand returns a uniform value in [0, n) using Lemire's multiply-shift with rejection
// ("Fast Random Integer Generation in an Interval", ACM TOMACS 2019), which is unbiased.
func boundedRand(s *uint64, n uint64) uint64 {
	hi, lo := bits.Mul64(splitmix64(s), n)
	if lo < n {
		t := -n % n
		for lo < t {
			hi, lo = bits.Mul64(splitmix64(s), n)
		}
	}
	return hi
}

// streamState derives an independent generator state for (seed, stream, epoch).
func streamState(seed uint64, stream uint64, epoch int) uint64 {
	s := seed
	a := splitmix64(&s)
	s = a ^ (stream * 0xd1b54a32d192ed03)
	b := splitmix64(&s)
	s = b ^ uint64(epoch)
	splitmix64(&s)
	return s
}

const (
	streamEpoch = 1 // per-epoch training permutations
	streamVal   = 2 // the validation carve-out
)

// EpochPermutation returns the permutation of [0, n) used for epoch of a loader seeded with seed:
// a Fisher–Yates shuffle driven by SplitMix64. It is a pure function of (n, seed, epoch).
func EpochPermutation(n int, seed uint64, epoch int) []int {
	return permutation(n, streamState(seed, streamEpoch, epoch))
}

func permutation(n int, s uint64) []int {
	p := make([]int, n)
	for i := range p {
		p[i] = i
	}
	for i := n - 1; i > 0; i-- {
		j := int(boundedRand(&s, uint64(i+1)))
		p[i], p[j] = p[j], p[i]
	}
	return p
}

// ValSplit says how many training images to hold out for validation: Count when > 0, otherwise
// round(Fraction·N). The held-out set is chosen by a permutation seeded with Seed, independent of
// the loader's epoch permutations.
type ValSplit struct {
	Fraction float64
	Count    int
	Seed     uint64
}

// CarveValidation splits ds into a training part and a validation part. It reorders ds's storage in
// place (no second copy of the images is made, only of the held-out ones) and returns two views on
// it: train keeps the remaining images in their original order, val the held-out images in their
// original order. ds itself must not be used afterwards.
func CarveValidation(ds *Dataset, spec ValSplit) (train, val *Dataset, err error) {
	if err := ds.Validate(); err != nil {
		return nil, nil, err
	}
	k := spec.Count
	if k <= 0 {
		if !(spec.Fraction > 0 && spec.Fraction < 1) {
			return nil, nil, fmt.Errorf("data: validation split needs a count > 0 or a fraction in (0,1), got count %d fraction %g", spec.Count, spec.Fraction)
		}
		k = int(math.Round(spec.Fraction * float64(ds.N)))
	}
	if k <= 0 || k >= ds.N {
		return nil, nil, fmt.Errorf("data: validation split of %d images leaves no training or no validation data out of %d", k, ds.N)
	}
	held := permutation(ds.N, streamState(spec.Seed, streamVal, 0))[:k]
	sort.Ints(held)
	isVal := make([]bool, ds.N)
	for _, i := range held {
		isVal[i] = true
	}
	sz, na := ds.ImageSize(), ds.NumAttrs
	vImg := make([]uint8, k*sz)
	var vLab, vAttr []int32
	if ds.Labels != nil {
		vLab = make([]int32, k)
	}
	if ds.Attrs != nil {
		vAttr = make([]int32, k*na)
	}
	for j, i := range held {
		copy(vImg[j*sz:], ds.Image(i))
		if vLab != nil {
			vLab[j] = ds.Labels[i]
		}
		if vAttr != nil {
			copy(vAttr[j*na:], ds.Attrs[i*na:(i+1)*na])
		}
	}
	w := 0
	for i := 0; i < ds.N; i++ {
		if isVal[i] {
			continue
		}
		if w != i {
			copy(ds.Images[w*sz:(w+1)*sz], ds.Images[i*sz:(i+1)*sz])
			if ds.Labels != nil {
				ds.Labels[w] = ds.Labels[i]
			}
			if ds.Attrs != nil {
				copy(ds.Attrs[w*na:(w+1)*na], ds.Attrs[i*na:(i+1)*na])
			}
		}
		w++
	}
	copy(ds.Images[w*sz:], vImg)
	if ds.Labels != nil {
		copy(ds.Labels[w:], vLab)
	}
	if ds.Attrs != nil {
		copy(ds.Attrs[w*na:], vAttr)
	}
	view := func(from, to int, what string) *Dataset {
		d := &Dataset{N: to - from, H: ds.H, W: ds.W, C: ds.C, NumAttrs: na, Source: ds.Source + " (" + what + ")"}
		d.Images = ds.Images[from*sz : to*sz : to*sz]
		if ds.Labels != nil {
			d.Labels = ds.Labels[from:to:to]
		}
		if ds.Attrs != nil {
			d.Attrs = ds.Attrs[from*na : to*na : to*na]
		}
		return d
	}
	return view(0, w, "train part"), view(w, ds.N, "validation part"), nil
}
