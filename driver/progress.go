package main

import (
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"dlf/train"

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
	// cols is the terminal's width: a redrawn line must not wrap, or "\r" returns to its last row
	// only and every redraw leaves a line behind.
	cols int
}

func newProgress(w io.Writer, every int) *progress {
	p := &progress{w: w, tty: isTerminal(w), every: max(every, 1), maxQuiet: 15 * time.Second}
	if p.tty {
		p.cols = terminalWidth(w)
	}
	return p
}

func isTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	if !ok {
		return false
	}
	_, err := unix.IoctlGetTermios(int(f.Fd()), unix.TCGETS)
	return err == nil
}

// terminalWidth returns the width of the terminal w writes to (0: unknown).
func terminalWidth(w io.Writer) int {
	f, ok := w.(*os.File)
	if !ok {
		return 0
	}
	ws, err := unix.IoctlGetWinsize(int(f.Fd()), unix.TIOCGWINSZ)
	if err != nil {
		return 0
	}
	return int(ws.Col)
}

// fit cuts s to fewer than cols characters (cols ≤ 0: no limit); the fields are ordered so that the
// least important ones come last.
func fit(s string, cols int) string {
	if cols <= 0 {
		return s
	}
	r := []rune(s)
	if len(r) < cols {
		return s
	}
	return string(r[:cols-1])
}

// beginEpoch starts a new bar for an epoch of total steps, of which done are already behind us.
func (p *progress) beginEpoch(epoch, total, done int) {
	p.epoch, p.total, p.first, p.start = epoch, total, done, time.Now()
	p.lastDraw = p.start
}

// update shows s if it is time to; it reports whether a line was drawn.
func (p *progress) update(s train.StepStats) bool {
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
		fmt.Fprintf(p.w, "\r\033[K%s", fit(line, p.cols))
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
	if p != nil && p.open {
		fmt.Fprintln(p.w)
		p.open = false
	}
}

func (p *progress) format(s train.StepStats, now time.Time) string {
	width := 20
	if p.cols > 0 && p.cols < 140 {
		width = 10
	}
	frac := 0.0
	if p.total > 0 {
		frac = min(float64(s.EpochStep)/float64(p.total), 1)
	}
	filled := int(frac * float64(width))
	bar := strings.Repeat("█", filled) + strings.Repeat("░", width-filled)
	eta := "?"
	if done := s.EpochStep - p.first; done > 0 && p.total > 0 {
		el := now.Sub(p.start)
		eta = (time.Duration(float64(el) / float64(done) * float64(p.total-s.EpochStep))).Round(time.Second).String()
	}
	return fmt.Sprintf("epoch %d %s %d/%d step %d loss %.4f bits/dim %.4f %.0f img/s data-wait %.1f%% ETA %s lr %.3g",
		p.epoch, bar, s.EpochStep, p.total, s.Step, s.Loss, s.BitsPerDim, s.ImagesPerSec, 100*s.DataWait, eta, s.LR)
}
