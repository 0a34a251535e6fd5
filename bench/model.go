package bench

import (
	"math/rand/v2"
	"regexp"
	"sort"
	"strings"
	"time"

	"dlf/autodiff"
	"dlf/autodiff/optim"
	"dlf/dlf"
	"dlf/tensor"
	"dlf/tensor/device"
	"dlf/tensor/probe"
)

// Settings are how many iterations a model benchmark runs.
type Settings struct {
	// Iters whole steps are timed after Warmup untimed ones; ProfileIters steps are then timed
	// op by op for the per-layer table.
	Iters, Warmup, ProfileIters int
}

// Row is one line of the per-layer table: a layer group in one pass.
type Row struct {
	Layer string `json:"layer"`
	Pass  string `json:"pass"`
	// Instances is how many layers of the group there are (e.g. the 32 steps of a level).
	Instances int     `json:"instances"`
	Ops       int     `json:"ops"`
	Ms        float64 `json:"ms"`
	GFLOP     float64 `json:"gflop"`
	GB        float64 `json:"gb"`
	GFLOPS    float64 `json:"gflops"`
	GBS       float64 `json:"gbs"`
	Floor     float64 `json:"floor_fraction"`
}

// Result is a model benchmark (the JSON of bin/driver bench).
type Result struct {
	Impl   string         `json:"impl"`
	Preset string         `json:"preset"`
	Config dlf.Config     `json:"config"`
	Device string         `json:"device"`
	Batch  int            `json:"batch"`
	Params int            `json:"params"`
	Iters  int            `json:"iters"`
	Floors Floors         `json:"floors"`
	Layers []Row          `json:"layers"`
	Step   Step           `json:"step"`
	Torch  map[string]any `json:"torch,omitempty"`
	Ratio  float64        `json:"torch_over_dlf_time,omitempty"`
	// TorchPolicies holds, on the CPU, the twin's result under each OpenMP wait policy
	// ("passive", "active"); Torch is the faster of them and Ratio is taken against it.
	TorchPolicies map[string]map[string]any `json:"torch_by_omp_wait_policy,omitempty"`
	Warning       string                    `json:"warning,omitempty"`
}

// Step is the whole forward+backward step, timed without per-op synchronisation.
type Step struct {
	MsMedian     float64   `json:"fwd_bwd_ms_median"`
	MsMin        float64   `json:"fwd_bwd_ms_min"`
	Ms           []float64 `json:"fwd_bwd_ms"`
	ImagesPerSec float64   `json:"images_per_s"`
	GFLOP        float64   `json:"gflop"`
	GB           float64   `json:"gb"`
	GFLOPS       float64   `json:"gflops"`
	Floor        float64   `json:"floor_fraction"`
	UpdateMs     float64   `json:"optimizer_ms"`
	Loss         float64   `json:"loss_bits_per_dim"`
}

// stepLayer matches a flow step's layer; the steps of a level are summed in one row ("L0 dlt").
var stepLayer = regexp.MustCompile(`^level(\d+)\.step\d+\.(\w+)$`)

// LayerGroup names the table row of a layer: "level0.step3.dlt" → "L0 dlt", "level1.split" → "L1
// split prior", "top" → "top prior".
func LayerGroup(layer string) string {
	if m := stepLayer.FindStringSubmatch(layer); m != nil {
		return "L" + m[1] + " " + m[2]
	}
	if strings.HasPrefix(layer, "level") && strings.HasSuffix(layer, ".split") {
		return "L" + strings.TrimSuffix(strings.TrimPrefix(layer, "level"), ".split") + " split prior"
	}
	if layer == "top" {
		return "top prior"
	}
	return layer
}

// modelBench is a model built on a probe over the device, with one fixed random batch.
type modelBench struct {
	dev     *device.Device
	pb      *probe.Backend
	m       *dlf.Model
	opt     *optim.Optimizer
	x, cond *tensor.Tensor
	// phase tells the profiler which pass runs: fwd, bwd or update.
	phase string
}

// Model builds cfg's model on dev, times whole training steps (forward and backward of the
// bits/dim loss, as the PyTorch twin times them), then profiles them op by op.
func Model(dev *device.Device, cfg dlf.Config, floors Floors, s Settings) (*Result, error) {
	mb, err := newModelBench(dev, cfg)
	if err != nil {
		return nil, err
	}
	defer mb.release()
	res := &Result{Impl: "dlf", Config: cfg, Device: dev.Desc, Batch: cfg.BatchSize, Iters: s.Iters, Floors: floors, Params: mb.m.NumParams()}
	if err := mb.timeSteps(res, s); err != nil {
		return nil, err
	}
	p, err := mb.profile(s.ProfileIters)
	if err != nil {
		return nil, err
	}
	p.summarise(res, floors, s.ProfileIters)
	return res, nil
}

// newModelBench builds the model on a probe (no hook yet), a random batch, and Glow's init.
func newModelBench(dev *device.Device, cfg dlf.Config) (*modelBench, error) {
	mb := &modelBench{dev: dev, pb: probe.New(dev.Backend, nil)}
	err := dev.Do(func() error {
		var err error
		if mb.m, err = dlf.New(cfg, mb.pb, tensor.Float32); err != nil {
			return err
		}
		rng := rand.New(rand.NewPCG(uint64(cfg.Seed), 1))
		imgs := make([]uint8, cfg.BatchSize*cfg.Dims())
		for i := range imgs {
			imgs[i] = uint8(rng.IntN(256))
		}
		if mb.x, _, err = mb.m.Preprocess(imgs, cfg.BatchSize, false, cfg.Seed, 0); err != nil {
			return err
		}
		if cfg.Conditioning {
			labels := make([]int32, cfg.BatchSize)
			for i := range labels {
				labels[i] = int32(rng.IntN(cfg.NumClasses))
			}
			if mb.cond, err = mb.m.OneHot(labels); err != nil {
				return err
			}
		}
		return mb.m.DataInit(mb.x, mb.cond)
	})
	if err != nil {
		return nil, err
	}
	mb.opt, err = optim.New(cfg.OptimConfig(1000), mb.m.OptimParams())
	return mb, err
}

func (mb *modelBench) release() {
	for _, t := range []*tensor.Tensor{mb.x, mb.cond} {
		if t != nil {
			t.Release()
		}
	}
}

// fwdBwd runs one forward and backward pass of the loss and returns the loss; the gradients stay
// for the caller to use or zero.
func (mb *modelBench) fwdBwd() (float64, error) {
	var loss float64
	err := mb.dev.Do(func() error {
		tp := autodiff.NewTape()
		mb.phase = "fwd"
		r, err := mb.m.Forward(tp, mb.x, mb.cond)
		if err != nil {
			tp.Release()
			return err
		}
		loss = r.Loss.Value.Item()
		mb.phase = "bwd"
		err = tp.Backward(r.Loss)
		r.Release()
		if err != nil {
			return err
		}
		return mb.pb.Sync()
	})
	return loss, err
}

// timeSteps times whole steps after the warm-up.
func (mb *modelBench) timeSteps(res *Result, s Settings) error {
	for range s.Warmup {
		if _, err := mb.fwdBwd(); err != nil {
			return err
		}
		mb.opt.ZeroGrad()
	}
	for range s.Iters {
		start := time.Now()
		loss, err := mb.fwdBwd()
		if err != nil {
			return err
		}
		res.Step.Ms = append(res.Step.Ms, float64(time.Since(start).Microseconds())/1e3)
		res.Step.Loss = loss
		mb.opt.ZeroGrad()
	}
	sorted := append([]float64(nil), res.Step.Ms...)
	sort.Float64s(sorted)
	res.Step.MsMedian, res.Step.MsMin = sorted[len(sorted)/2], sorted[0]
	res.Step.ImagesPerSec = float64(res.Batch) / (res.Step.MsMedian / 1e3)
	return nil
}
