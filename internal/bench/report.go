package bench

import (
	"fmt"
	"io"
	"strings"
	"time"
)

// Markdown writes the report as docs/BENCHMARKS.md has it.
func (r *Report) Markdown(w io.Writer) error {
	var b strings.Builder
	p := func(format string, args ...any) { fmt.Fprintf(&b, format+"\n", args...) }
	p("# herd benchmarks")
	p("")
	mode := "the full run"
	if len(r.Only) > 0 {
		mode = "only " + strings.Join(r.Only, ", ")
	}
	if r.Quick {
		mode = "the quick mode (small inputs, few repeats: it proves every path works; its numbers say little)"
	}
	p("Written by `make bench` (`go run ./cmd/herd-bench`), %s, on %s; it took %s. "+
		"Every comparison ran on the same machine, on the same input, in this run; the tools took turns. "+
		"The machine is shared and noisy: read the ratios and medians, not single absolute times.",
		mode, r.Started.UTC().Format("2006-01-02 15:04 MST"), r.Took.Round(time.Second))
	p("")
	p("Run it again: `make bench` (about 25 minutes on 2 cores; it installs HandBrakeCLI and PostgreSQL when missing), one scenario: `go run ./cmd/herd-bench -only ladder` (names: %s), the quick mode: `make bench-quick` (also part of `make test`).", strings.Join(Names(), ", "))
	p("")
	p("## Machine")
	p("")
	for _, l := range r.Machine {
		p("- %s", l)
	}
	p("")
	p("## Versions")
	p("")
	for _, l := range r.Versions {
		p("- %s", l)
	}
	p("")
	p("## Targets")
	p("")
	p("| scenario | target | measured | |")
	p("|---|---|---|---|")
	for _, s := range r.Sections {
		if s.Err != nil {
			p("| %s | – | failed: %s | ✗ |", s.Key, cell(firstLine(s.Err.Error())))
		}
		for _, t := range s.Targets {
			mark := "met"
			if !t.Met {
				mark = "**missed**"
			}
			p("| %s | %s | %s | %s |", s.Key, cell(t.What), cell(t.Got), mark)
		}
	}
	for i, s := range r.Sections {
		p("")
		p("## %d. %s", i+1, s.Title)
		p("")
		if s.Err != nil {
			p("**This scenario failed:**")
			p("")
			p("```")
			p("%s", strings.TrimSpace(s.Err.Error()))
			p("```")
			p("")
		}
		for _, a := range s.About {
			p("%s", a)
			p("")
		}
		for _, t := range s.Tables {
			p("**%s**", t.Title)
			p("")
			p("| %s |", strings.Join(t.Header, " | "))
			p("|%s", strings.Repeat("---|", len(t.Header)))
			for _, row := range t.Rows {
				cells := make([]string, len(row))
				for k, c := range row {
					cells[k] = cell(c)
				}
				p("| %s |", strings.Join(cells, " | "))
			}
			p("")
		}
		for _, n := range s.Notes {
			p("%s", n)
			p("")
		}
		if len(s.Ran) > 0 {
			p("Commands:")
			p("")
			p("```")
			for _, c := range s.Ran {
				p("%s", c)
			}
			p("```")
		}
	}
	_, err := io.WriteString(w, b.String())
	return err
}

func cell(s string) string { return strings.ReplaceAll(strings.ReplaceAll(s, "|", `\|`), "\n", " ") }

func firstLine(s string) string {
	l, _, _ := strings.Cut(s, "\n")
	return l
}
