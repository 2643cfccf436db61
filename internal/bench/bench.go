// Package bench measures herd against what a user would otherwise run, on
// the same input, in the same run: one hand-written ffmpeg command and one
// ffmpeg per rendition for the web ladder, HandBrakeCLI for a library MP4,
// dd for uploads; and herd's own overhead, queue and API latency. Every
// figure that a target speaks of is a ratio or a median, because the
// machines it runs on are shared and noisy.
//
// cmd/herd-bench runs it and writes docs/BENCHMARKS.md (make bench); the
// quick mode (make bench-quick) runs in make test through TestQuick, so that
// none of it rots.
package bench

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"time"
)

// Options say what to run and where.
type Options struct {
	Herd   string // the herd binary under test
	Work   string // scratch folder, emptied by the caller
	Cache  string // generated inputs are kept here between runs
	Sample string // a real clip the inputs are made from (internal/media/testdata/movie-hello.mp4)
	Quick  bool   // small inputs and few repeats: proves every path, measures little
	// Only names the scenarios to run (ladder, library, chunks, overhead,
	// queue, upload, api, av1, pertitle, live); empty runs all of them.
	Only []string
	// Postgres returns the URL of a new, empty PostgreSQL database; nil
	// leaves PostgreSQL out of the queue benchmark (and says so).
	Postgres func() (string, error)
	Log      io.Writer // progress lines
}

// Report is one run's results.
type Report struct {
	Started  time.Time
	Took     time.Duration
	Quick    bool
	Only     []string // the scenarios run, when not all
	Machine  []string
	Versions []string
	Sections []*Section
}

// Section is one scenario's results: a table, the targets and what they say.
type Section struct {
	Key     string
	Title   string
	About   []string // what is compared, on what input
	Tables  []*Table
	Targets []Target
	Notes   []string
	Ran     []string // the commands, as a reader would run them again
	Err     error
}

// Target is one of the targets, measured.
type Target struct {
	What string // e.g. "herd ≤ 1.05 × the single command (wall)"
	Got  string // e.g. "1.12 ×"
	Met  bool
}

// Table is a titled grid of results.
type Table struct {
	Title  string
	Header []string
	Rows   [][]string
}

func (s *Section) table(title string, header ...string) *Table {
	t := &Table{Title: title, Header: header}
	s.Tables = append(s.Tables, t)
	return t
}

func (t *Table) add(cells ...string) { t.Rows = append(t.Rows, cells) }

func (s *Section) target(what, got string, met bool) {
	s.Targets = append(s.Targets, Target{What: what, Got: got, Met: met})
}

type scenario struct {
	key, title string
	run        func(ctx context.Context, e *env, s *Section) error
}

func scenarios() []scenario {
	return []scenario{
		{"ladder", "Web ladder: herd web-hls against one ffmpeg command and one ffmpeg per rendition", ladder},
		{"library", "Library MP4: herd mp4-library against HandBrakeCLI \"Fast 1080p30\"", library},
		{"chunks", "Chunks: one long web-hls and one mp4-library job by one single-core worker, and by two in chunks", chunking},
		{"overhead", "Overhead: submit → succeeded, less the time ffmpeg and ffprobe ran", overhead},
		{"queue", "Queue: claims per second, 16 claimers", queue},
		{"upload", "Upload: through the API and through tus, against dd", upload},
		{"api", "API latency at a fixed rate", apiLatency},
		{"av1", "AV1: SVT-AV1 against x264 at equal SSIM, web-cmaf-av1's presets", av1Cost},
		{"pertitle", "Per-title: web-hls-auto against web-hls on real clips of different difficulty", perTitle},
		{"live", "Time to first playable: a web-hls job's live playlist while it encodes", timeToPlay},
	}
}

// Names lists the scenarios in the order they run.
func Names() []string {
	var n []string
	for _, s := range scenarios() {
		n = append(n, s.key)
	}
	return n
}

// env is what the scenarios share.
type env struct {
	Options
}

func (e *env) logf(format string, args ...any) {
	if e.Log != nil {
		fmt.Fprintf(e.Log, "bench: "+format+"\n", args...)
	}
}

// dir makes a fresh folder under Work.
func (e *env) dir(name string) (string, error) {
	d := filepath.Join(e.Work, name)
	if err := os.RemoveAll(d); err != nil {
		return "", err
	}
	return d, os.MkdirAll(d, 0o755)
}

// Run runs the scenarios. A scenario that fails keeps its error in its
// section and the others still run; the returned error joins them.
func Run(ctx context.Context, opt Options) (*Report, error) {
	for _, n := range opt.Only {
		if !slices.Contains(Names(), n) {
			return nil, fmt.Errorf("no scenario %q (there are: %v)", n, Names())
		}
	}
	if opt.Herd == "" || opt.Work == "" || opt.Sample == "" {
		return nil, errors.New("bench: Herd, Work and Sample are required")
	}
	if opt.Cache == "" {
		opt.Cache = filepath.Join(opt.Work, "cache")
	}
	for _, d := range []string{opt.Work, opt.Cache} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			return nil, err
		}
	}
	e := &env{Options: opt}
	r := &Report{Started: time.Now(), Quick: opt.Quick, Only: opt.Only, Machine: machine(), Versions: versions(ctx, opt.Herd)}
	var errs []error
	for _, sc := range scenarios() {
		if len(opt.Only) > 0 && !slices.Contains(opt.Only, sc.key) {
			continue
		}
		s := &Section{Key: sc.key, Title: sc.title}
		e.logf("%s: start", sc.key)
		t0 := time.Now()
		if err := sc.run(ctx, e, s); err != nil {
			s.Err = err
			errs = append(errs, fmt.Errorf("%s: %w", sc.key, err))
			e.logf("%s: FAILED after %s: %v", sc.key, time.Since(t0).Round(time.Second), err)
		} else {
			e.logf("%s: done in %s", sc.key, time.Since(t0).Round(time.Second))
		}
		r.Sections = append(r.Sections, s)
		if ctx.Err() != nil {
			break
		}
	}
	r.Took = time.Since(r.Started)
	return r, errors.Join(errs...)
}
