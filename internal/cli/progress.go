package cli

import (
	"fmt"
	"io"
	"os"
	"strings"
	"sync"
	"time"

	"golang.org/x/term"

	"github.com/herdhq/herd/internal/jobview"
)

// progress prints upload and job progress on stderr: a redrawn bar on a
// terminal, plain lines (only when something changed, at most every few
// seconds) otherwise.
type progress struct {
	mu       sync.Mutex
	w        io.Writer
	tty      bool
	drawn    bool
	last     string
	lastLine time.Time
	size     int64
}

func newProgress(w io.Writer) *progress {
	tty := false
	if f, ok := w.(*os.File); ok {
		tty = term.IsTerminal(int(f.Fd()))
	}
	return &progress{w: w, tty: tty}
}

func (p *progress) upload(file string) func(int64) {
	if st, err := os.Stat(file); err == nil {
		p.size = st.Size()
	}
	return func(sent int64) {
		if p.size == 0 {
			return
		}
		f := float64(sent) / float64(p.size)
		p.show("upload", f, fmt.Sprintf("%3.0f%%", 100*f), false)
	}
}

func (p *progress) job(j jobview.JobView) {
	line := fmt.Sprintf("%3.0f%%", j.Progress*100)
	if j.Speed > 0 {
		line += fmt.Sprintf("  %.2fx", j.Speed)
	}
	if j.ETASeconds != nil {
		line += "  ETA " + (time.Duration(*j.ETASeconds) * time.Second).String()
	}
	p.show(string(j.State), j.Progress, line, j.State.Final())
}

func bar(f float64) string {
	const width = 30
	f = min(max(f, 0), 1)
	n := int(f * width)
	return "[" + strings.Repeat("#", n) + strings.Repeat("-", width-n) + "]"
}

func (p *progress) show(what string, frac float64, detail string, force bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.tty {
		fmt.Fprintf(p.w, "\r\033[K%-9s %s %s", what, bar(frac), detail)
		p.drawn = true
		return
	}
	// Plain output: only lines that changed, at most every 2 s (the final one always).
	line := what + " " + strings.TrimSpace(detail)
	if line == p.last || (!force && time.Since(p.lastLine) < 2*time.Second) {
		return
	}
	p.last, p.lastLine = line, time.Now()
	fmt.Fprintln(p.w, line)
}

// done ends a bar line on a terminal.
func (p *progress) done() {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.tty && p.drawn {
		fmt.Fprintln(p.w)
		p.drawn = false
	}
}
