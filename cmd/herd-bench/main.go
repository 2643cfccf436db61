// Command herd-bench runs herd's benchmarks (internal/bench) and writes the
// report: make bench (docs/BENCHMARKS.md) and make bench-quick.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"

	"github.com/herdhq/herd/internal/bench"
	"github.com/herdhq/herd/internal/store/pgtest"
)

func main() {
	bench.Shim()
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "herd-bench:", err)
		os.Exit(1)
	}
}

// run does the work, so that its deferred clean-ups (the PostgreSQL
// cluster, the scratch folder) happen on every way out.
func run() error {
	herd := flag.String("herd", "bin/herd", "the herd binary to measure")
	out := flag.String("out", "docs/BENCHMARKS.md", "where the report goes (- for standard output)")
	work := flag.String("work", "", "scratch folder (default: a new one under the system's temporary folder, removed at the end)")
	cache := flag.String("cache", defaultCache(), "where generated inputs are kept between runs")
	sample := flag.String("sample", "internal/media/testdata/movie-hello.mp4", "the real clip the inputs are made from")
	quick := flag.Bool("quick", false, "small inputs and few repeats: every path, in under a minute")
	only := flag.String("only", "", "comma-separated scenarios to run: "+strings.Join(bench.Names(), ", "))
	noPG := flag.Bool("no-postgres", false, "leave PostgreSQL out of the queue and API benchmarks")
	flag.Parse()

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	opt := bench.Options{Herd: *herd, Work: *work, Cache: *cache, Sample: *sample, Quick: *quick, Log: os.Stderr}
	if *only != "" {
		opt.Only = strings.Split(*only, ",")
	}
	if !*noPG {
		opt.Postgres = pgtest.NewDatabase
		defer pgtest.Stop()
	}
	if opt.Work == "" {
		d, err := os.MkdirTemp("", "herd-bench-")
		if err != nil {
			return err
		}
		defer os.RemoveAll(d)
		opt.Work = d
	}
	r, runErr := bench.Run(ctx, opt)
	if r != nil {
		if err := write(r, *out); err != nil {
			return errors.Join(runErr, err)
		}
		if *out != "-" {
			fmt.Fprintf(os.Stderr, "bench: report written to %s\n", *out)
		}
	}
	return runErr
}

func write(r *bench.Report, path string) error {
	if path == "-" {
		return r.Markdown(os.Stdout)
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return err
	}
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	if err := r.Markdown(f); err != nil {
		_ = f.Close()
		return err
	}
	return f.Close()
}

func defaultCache() string {
	d, err := os.UserCacheDir()
	if err != nil {
		return filepath.Join(os.TempDir(), "herd-bench-cache")
	}
	return filepath.Join(d, "herd", "bench")
}
