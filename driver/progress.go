package main

import (
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"golang.org/x/sys/unix"
)

// progress draws one status line per epoch: a bar, step, loss, bits/dim, images/s, the fraction of
// time the step waited on data, and the epoch's ETA. On a terminal it redraws in place a few times a
// second; otherwise (logs, CI, pipes) it prints a plain line every `every` steps, or sooner when
// `maxQuiet` has passed since the last line, so that a slow CPU run still shows signs of life.
type progress struct {
	w        io.Writer
	tty      bool
	every    int
	maxQuiet time.Duration
	total    int
	epoch    int
	// first is the epoch step this session started at (a resumed run starts mid-epoch); ETA and
	// rates count only the steps done since.
	first    int
	start    time.Time
	lastDraw time.Time
	open     bool // a tty line is drawn without its newline
}

func newProgress(w io.Writer, every int) *progress {
	return &progress{w: w, tty: isTerminal(w), every: max(every, 1), maxQuiet: 15 * time.Second}
}

func isTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	if !ok {
		return false
	}
	_, err := unix.IoctlGetTermios(int(f.Fd()), unix.TCGETS)
	return err == nil
}

// beginEpoch starts a new bar for an epoch of total steps, of which done are already behind us.
func (p *progress) beginEpoch(epoch, total, done int) {
	p.epoch, p.total, p.first, p.start = epoch, total, done, time.Now()
	p.lastDraw = p.start
}

// stepStats is what one progress update shows.
type stepStats struct {
	Step, EpochStep  int
	Loss, BitsPerDim float64
	ImagesPerSec     float64
	DataWait         float64 // fraction of wall time spent waiting for batches
	LR               float64
}

// update shows s if it is time to; it reports whether a line was drawn.
func (p *progress) update(s stepStats) bool {
	now := time.Now()
	last := s.EpochStep == p.total
	if p.tty {
		if !last && now.Sub(p.lastDraw) < 200*time.Millisecond {
			return false
		}
	} else if !last && s.EpochStep%p.every != 0 && now.Sub(p.lastDraw) < p.maxQuiet {
		return false
	}
	p.lastDraw = now
	line := p.format(s, now)
	if p.tty {
		fmt.Fprintf(p.w, "\r\033[K%s", line)
		p.open = !last
		if last {
			fmt.Fprintln(p.w)
		}
		return true
	}
	fmt.Fprintln(p.w, line)
	return true
}

// breakLine ends a partly drawn terminal line so that a message can follow on its own line.
func (p *progress) breakLine() {
	if p.open {
		fmt.Fprintln(p.w)
		p.open = false
	}
}

func (p *progress) format(s stepStats, now time.Time) string {
	const width = 20
	frac := 0.0
	if p.total > 0 {
		frac = min(float64(s.EpochStep)/float64(p.total), 1)
	}
	filled := int(frac * width)
	bar := strings.Repeat("█", filled) + strings.Repeat("░", width-filled)
	eta := "?"
	if done := s.EpochStep - p.first; done > 0 && p.total > 0 {
		el := now.Sub(p.start)
		eta = (time.Duration(float64(el) / float64(done) * float64(p.total-s.EpochStep))).Round(time.Second).String()
	}
	return fmt.Sprintf("epoch %d %s %d/%d  step %d  loss %.4f  bits/dim %.4f  %.1f img/s  data-wait %.1f%%  lr %.3g  ETA %s",
		p.epoch, bar, s.EpochStep, p.total, s.Step, s.Loss, s.BitsPerDim, s.ImagesPerSec, 100*s.DataWait, s.LR, eta)
}
