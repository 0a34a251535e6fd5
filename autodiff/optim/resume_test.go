package optim_test

import (
	"encoding/json"
	"fmt"
	"math"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"testing"

	"dlf/autodiff"
	"dlf/autodiff/optim"
	"dlf/tensor"
	"dlf/tensor/cpu"
)

// tiny is a small flow: actnorm, then an affine coupling whose parameters come from an edge-bias
// conv of the first half, then a learned diagonal Gaussian prior (DLF's bounded, halves layout,
// shared over the batch). Its loss is the negative log-likelihood in bits per dimension.
type tiny struct {
	params []optim.Param
	be     tensor.Backend
	dt     tensor.DType
}

// Shapes of the tiny model and its data.
const (
	tinyN, tinyH, tinyW, tinyC = 4, 4, 4, 4
	dataSeed                   = 20240611
)

func newTiny(be tensor.Backend, dt tensor.DType, seed uint64) *tiny {
	r := rand.New(rand.NewPCG(seed, 7))
	m := &tiny{be: be, dt: dt}
	add := func(name string, scale, shift float64, shape ...int) {
		d := make([]float64, tensor.Shape(shape).Numel())
		for i := range d {
			d[i] = shift + scale*r.NormFloat64()
		}
		t := tensor.New(be, dt, shape...)
		t.Upload(d)
		m.params = append(m.params, optim.Param{Name: name, Var: autodiff.NewParam(t)})
	}
	add("actnorm.bias", 0.1, 0, tinyC)
	add("actnorm.logs", 0.1, 0, tinyC)
	add("coupling.conv.weight", 0.05, 0, 3, 3, tinyC/2+1, tinyC)
	add("coupling.conv.bias", 0.1, 0, tinyC)
	add("coupling.alpha", 0.1, 1, 1)
	add("coupling.beta", 0.1, -1, 1)
	add("prior.p", 0.1, 0, 1, tinyH, tinyW, 2*tinyC)
	add("prior.alpha", 0.1, 1, 1)
	add("prior.beta", 0.1, 0, 1)
	return m
}

func (m *tiny) p(i int) *autodiff.Var { return m.params[i].Var }

// loss returns the mean negative log-likelihood of x in bits per dimension.
func (m *tiny) loss(tp *autodiff.Tape, x *autodiff.Var) *autodiff.Var {
	y1, ld1 := tp.ActNorm(x, m.p(0), m.p(1), 1)
	parts := tp.SplitChannels(y1, tinyC/2, tinyC/2)
	y1.Release()
	h := tp.Conv2D(parts[0], m.p(2), m.p(3), tensor.ConvParams{K: 3, EdgeBias: true})
	y2, ld2 := tp.Affine(tensor.AffineParams{Mode: tensor.ScaleTanh}, parts[1], h, m.p(4), m.p(5))
	h.Release()
	z := tp.ConcatChannels(parts[0], y2)
	parts[0].Release()
	parts[1].Release()
	y2.Release()
	lp := tp.GaussianLogProb(tensor.GaussianParams{Bounded: true, BatchBroadcast: true}, z, m.p(6), m.p(7), m.p(8))
	z.Release()
	obj := tp.Add(tp.Add(lp, ld1), ld2)
	d := float64(tinyH * tinyW * tinyC)
	return tp.Scale(tp.Mean(obj, tensor.AxisAll), -1/(d*math.Ln2))
}

// trainer holds everything a training run carries from step to step, all of which a checkpoint
// must capture: parameters, optimizer and EMA state, the RNG offset and the data position.
type trainer struct {
	m      *tiny
	opt    *optim.Optimizer
	ema    *optim.EMA
	sched  optim.Schedule
	step   int    // data position: the next step to run
	offset uint64 // next unused Philox counter of the data RNG
}

func newTrainer(t *testing.T, be tensor.Backend, dt tensor.DType, initSeed uint64) *trainer {
	m := newTiny(be, dt, initSeed)
	opt, err := optim.New(optim.DLFConfig(), m.params)
	if err != nil {
		t.Fatal(err)
	}
	ema, err := optim.NewEMA(0.9, m.params)
	if err != nil {
		t.Fatal(err)
	}
	// A faster decay than the reference's so that 20 steps cross several schedule points.
	sched := optim.Schedule{Initial: 0.01, Rate: 0.5, DecaySteps: 10, Floor: 0.003, WarmupSteps: 3}
	return &trainer{m: m, opt: opt, ema: ema, sched: sched}
}

// batch draws the next batch from the data RNG: normals scaled and shifted so there is something to
// learn.
func (tr *trainer) batch() *autodiff.Var {
	x := tensor.New(tr.m.be, tr.m.dt, tinyN, tinyH, tinyW, tinyC)
	tr.offset = tensor.RandNormal(x, dataSeed, tr.offset)
	tensor.UnaryT(tensor.Scale, x, x, 0.7, 0)
	tensor.UnaryT(tensor.AddConst, x, x, 0.2, 0)
	return autodiff.NewVar(x)
}

// trainStep runs one step and returns the loss it computed.
func (tr *trainer) trainStep(t *testing.T) float64 {
	x := tr.batch()
	tp := autodiff.NewTape()
	loss := tr.m.loss(tp, x)
	x.Release()
	l := loss.Value.Item()
	if err := tp.Backward(loss); err != nil {
		t.Fatal(err)
	}
	loss.Release()
	optim.ClipGradNorm(optim.Vars(tr.m.params), 2)
	tr.opt.Step(tr.sched.LR(tr.step))
	tr.opt.ZeroGrad()
	tr.ema.Update()
	tr.step++
	return l
}

// evalEMA returns the loss of a fixed batch under the averaged weights, without recording.
func (tr *trainer) evalEMA() float64 {
	x := tensor.New(tr.m.be, tr.m.dt, tinyN, tinyH, tinyW, tinyC)
	tensor.RandNormal(x, dataSeed+1, 0)
	xv := autodiff.NewVar(x)
	tr.ema.Swap()
	loss := tr.m.loss(autodiff.NoGrad(), xv)
	tr.ema.Swap()
	l := loss.Value.Item()
	loss.Release()
	xv.Release()
	return l
}

type runState struct {
	Step   int    `json:"step"`
	Offset uint64 `json:"offset"`
}

func (tr *trainer) save(t *testing.T, path string) {
	rng, _ := json.Marshal(runState{tr.step, tr.offset})
	cfg, _ := json.Marshal(map[string]any{"dtype": tr.m.dt.String(), "n": tinyN, "h": tinyH, "w": tinyW, "c": tinyC})
	meta := map[string]string{"config": string(cfg), "step": strconv.Itoa(tr.step), "rng": string(rng), "data": fmt.Sprintf(`{"position":%d}`, tr.step)}
	if err := optim.SaveCheckpoint(path, tr.m.params, tr.opt, tr.ema, meta); err != nil {
		t.Fatal(err)
	}
}

func (tr *trainer) load(t *testing.T, path string) {
	meta, err := optim.LoadCheckpoint(path, tr.m.params, tr.opt, tr.ema)
	if err != nil {
		t.Fatal(err)
	}
	var rs runState
	if err := json.Unmarshal([]byte(meta["rng"]), &rs); err != nil {
		t.Fatal(err)
	}
	var cfg struct{ DType string }
	if err := json.Unmarshal([]byte(meta["config"]), &cfg); err != nil || cfg.DType != tr.m.dt.String() {
		t.Fatalf("checkpoint config %q for a %v model: %v", meta["config"], tr.m.dt, err)
	}
	tr.step, tr.offset = rs.Step, rs.Offset
}

// runResult is what a run reports for comparison: the bits of every loss, of the final parameters
// and of the EMA evaluation.
type runResult struct {
	Losses []uint64 `json:"losses"`
	Params []uint64 `json:"params"`
	Eval   uint64   `json:"eval"`
}

func (tr *trainer) result(losses []float64) runResult {
	var r runResult
	for _, l := range losses {
		r.Losses = append(r.Losses, math.Float64bits(l))
	}
	for _, p := range tr.m.params {
		for _, v := range p.Var.Value.Float64s() {
			r.Params = append(r.Params, math.Float64bits(v))
		}
	}
	r.Eval = math.Float64bits(tr.evalEMA())
	return r
}

const resumeSteps = 20

// TestResumeBitForBit trains the tiny model for 20 steps with Adamax (clipping, schedule with
// warm-up, EMA), checkpointing after step 10; then a fresh process (this test binary, re-executed)
// loads the checkpoint into a differently initialised model and runs steps 10..19. The resumed loss
// sequence, final parameters and EMA evaluation must equal the uninterrupted run's bit for bit, in
// float64 and float32.
func TestResumeBitForBit(t *testing.T) {
	if os.Getenv("DLF_RESUME_CHILD") != "" {
		resumeChild(t)
		return
	}
	for _, dt := range []tensor.DType{tensor.Float64, tensor.Float32} {
		t.Run(dt.String(), func(t *testing.T) {
			dir := t.TempDir()
			ckpt := filepath.Join(dir, "step10.safetensors")
			tr := newTrainer(t, cpu.New(), dt, 1)
			var losses []float64
			for tr.step < resumeSteps {
				if tr.step == resumeSteps/2 {
					tr.save(t, ckpt)
				}
				losses = append(losses, tr.trainStep(t))
			}
			for _, l := range losses {
				if math.IsNaN(l) || math.IsInf(l, 0) {
					t.Fatalf("loss %v", l)
				}
			}
			if !(losses[len(losses)-1] < losses[0]) {
				t.Errorf("training did not reduce the loss: %v → %v", losses[0], losses[len(losses)-1])
			}
			t.Logf("%v losses (bits/dim): %.6f", dt, losses)
			want := tr.result(losses[resumeSteps/2:])

			out := filepath.Join(dir, "child.json")
			cmd := exec.Command(os.Args[0], "-test.run=^TestResumeBitForBit$", "-test.count=1")
			cmd.Env = append(os.Environ(), "DLF_RESUME_CHILD=1", "DLF_RESUME_CKPT="+ckpt, "DLF_RESUME_OUT="+out, "DLF_RESUME_DTYPE="+dt.String())
			if b, err := cmd.CombinedOutput(); err != nil {
				t.Fatalf("resumed process failed: %v\n%s", err, b)
			}
			b, err := os.ReadFile(out)
			if err != nil {
				t.Fatal(err)
			}
			var got runResult
			if err := json.Unmarshal(b, &got); err != nil {
				t.Fatal(err)
			}
			if len(got.Losses) != len(want.Losses) {
				t.Fatalf("resumed run made %d steps, want %d", len(got.Losses), len(want.Losses))
			}
			for i := range want.Losses {
				if got.Losses[i] != want.Losses[i] {
					t.Errorf("step %d: resumed loss %v, uninterrupted %v", resumeSteps/2+i,
						math.Float64frombits(got.Losses[i]), math.Float64frombits(want.Losses[i]))
				}
			}
			for i := range want.Params {
				if got.Params[i] != want.Params[i] {
					t.Fatalf("final parameter element %d differs after resume", i)
				}
			}
			if got.Eval != want.Eval {
				t.Errorf("EMA evaluation differs after resume: %v vs %v", math.Float64frombits(got.Eval), math.Float64frombits(want.Eval))
			}
		})
	}
}

// resumeChild is the fresh process: it builds the model from a different seed, loads the
// checkpoint and finishes the run.
func resumeChild(t *testing.T) {
	dt, err := tensor.ParseDType(os.Getenv("DLF_RESUME_DTYPE"))
	if err != nil {
		t.Fatal(err)
	}
	tr := newTrainer(t, cpu.New(), dt, 999)
	tr.load(t, os.Getenv("DLF_RESUME_CKPT"))
	if tr.step != resumeSteps/2 {
		t.Fatalf("checkpoint at step %d", tr.step)
	}
	var losses []float64
	for tr.step < resumeSteps {
		losses = append(losses, tr.trainStep(t))
	}
	b, _ := json.Marshal(tr.result(losses))
	if err := os.WriteFile(os.Getenv("DLF_RESUME_OUT"), b, 0o644); err != nil {
		t.Fatal(err)
	}
}
