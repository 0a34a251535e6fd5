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
// second; otherwise (logs, CI) it prints a plain line every `every` steps, so logs stay readable.
type progress struct {
	w        io.Writer
	tty      bool
	every    int
	total    int
	epoch    int
	start    time.Time
	lastDraw time.Time
}

func newProgress(w io.Writer, every int) *progress {
	return &progress{w: w, tty: isTerminal(w), every: max(every, 1)}
}

func isTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	if !ok {
		return false
	}
	_, err := unix.IoctlGetTermios(int(f.Fd()), unix.TCGETS)
	return err == nil
}

// beginEpoch starts a new bar for an epoch of total steps.
func (p *progress) beginEpoch(epoch, total int) {
	p.epoch, p.total, p.start = epoch, total, time.Now()
}

// stepStats is what one progress update shows.
type stepStats struct {
	Step, EpochStep  int
	Loss, BitsPerDim float64
	ImagesPerSec     float64
	DataWait         float64 // fraction of wall time spent waiting for batches
	LR               float64
}

func (p *progress) update(s stepStats) {
	now := time.Now()
	last := s.EpochStep == p.total
	if p.tty {
		if !last && now.Sub(p.lastDraw) < 200*time.Millisecond {
			return
		}
	} else if !last && s.EpochStep%p.every != 0 {
		return
	}
	p.lastDraw = now
	line := p.format(s, now)
	if p.tty {
		fmt.Fprintf(p.w, "\r\033[K%s", line)
		if last {
			fmt.Fprintln(p.w)
		}
		return
	}
	fmt.Fprintln(p.w, line)
}

func (p *progress) format(s stepStats, now time.Time) string {
	const width = 24
	frac := 0.0
	if p.total > 0 {
		frac = float64(s.EpochStep) / float64(p.total)
	}
	filled := int(frac * width)
	bar := strings.Repeat("█", filled) + strings.Repeat("░", width-filled)
	eta := "?"
	if s.EpochStep > 0 && p.total > 0 {
		el := now.Sub(p.start)
		eta = (time.Duration(float64(el) / float64(s.EpochStep) * float64(p.total-s.EpochStep))).Round(time.Second).String()
	}
	return fmt.Sprintf("epoch %d %s %d/%d  step %d  loss %.4f  bits/dim %.4f  %.1f img/s  data-wait %.1f%%  lr %.2g  ETA %s",
		p.epoch, bar, s.EpochStep, p.total, s.Step, s.Loss, s.BitsPerDim, s.ImagesPerSec, 100*s.DataWait, s.LR, eta)
}
