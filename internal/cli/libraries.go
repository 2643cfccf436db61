package cli

import (
	"cmp"
	"encoding/json"
	"fmt"
	"io"
	"slices"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/herdhq/herd/internal/client"
	"github.com/herdhq/herd/internal/jobview"
	"github.com/herdhq/herd/internal/library"
	"github.com/herdhq/herd/internal/store"
)

func (e *env) libraryCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "library",
		Short: "Re-encode the libraries the server's configuration declares, by their rules",
		Long: `A library is a folder tree the configuration file declares (libraries:) with a rule, a CEL
expression over each file's probe facts, a profile and an action. A scan probes the files new or
changed since the last one (size, modification time, inode), queues a job for each file the rule
matches (within max_running and the window) and, once the job has succeeded, puts the new file in
place of the original (replace; the original goes to the library's .herd-trash folder), beside it
(alongside), or delivers it to library publishers (publish). A file herd made never matches.`,
	}
	cmd.AddCommand(e.libraryListCmd(), e.libraryRunCmd("status", "Show a library's files by state, without scanning"),
		e.libraryRunCmd("plan", "Probe what is new or changed and show what a scan would do, and the estimated savings; change nothing"),
		e.libraryRunCmd("scan", "Scan a library now: probe what is new or changed, queue what the rule matches"),
		e.libraryCheckCmd())
	return cmd
}

func (e *env) libraryCheckCmd() *cobra.Command {
	var wait bool
	cmd := &cobra.Command{Use: "check NAME", Short: "Decode every file of a library and report the ones that do not decode cleanly; change nothing", Args: cobra.ExactArgs(1)}
	out := addOutput(cmd, "table")
	cmd.RunE = func(cmd *cobra.Command, args []string) error {
		c, err := e.client(cmd)
		if err != nil {
			return err
		}
		r, err := c.Library(cmd.Context(), args[0], "check", "")
		told := false
		for wait && err == nil && r.Checks[library.CheckPending] > 0 {
			if r.Waiting != "" && !told {
				fmt.Fprintln(e.stderr, r.Waiting)
				told = true
			}
			select {
			case <-cmd.Context().Done():
				return cmd.Context().Err()
			case <-time.After(time.Second):
			}
			r, err = c.Library(cmd.Context(), args[0], "status", "")
		}
		if err != nil {
			return err
		}
		if err := e.render(*out, r, func(tw io.Writer, _ bool) {
			fmt.Fprintf(tw, "library %s: %d checked, %d damaged, %d to check", r.Library, r.Checks[library.CheckOK]+r.Checks[library.CheckDamaged],
				r.Checks[library.CheckDamaged], r.Checks[library.CheckPending])
			if n := r.Checks[library.CheckSkipped]; n > 0 {
				fmt.Fprintf(tw, "; %d larger or longer than herd decodes, not checked", n)
			}
			fmt.Fprintln(tw)
			if r.Waiting != "" {
				fmt.Fprintln(tw, r.Waiting)
			}
			if r.Checks[library.CheckDamaged] > 0 {
				fmt.Fprintln(tw, "DAMAGED\tFIRST ERROR")
				for _, f := range r.Files {
					if f.Check == library.CheckDamaged {
						fmt.Fprintf(tw, "%s\t%s\n", f.Path, f.CheckNote)
					}
				}
			}
		}); err != nil {
			return err
		}
		if wait && r.Checks[library.CheckDamaged] > 0 {
			return &ExitError{Code: 1}
		}
		return nil
	}
	cmd.Flags().BoolVarP(&wait, "wait", "w", false, "wait until every file is checked; exit 1 if any is damaged")
	return cmd
}

func (e *env) libraryListCmd() *cobra.Command {
	cmd := &cobra.Command{Use: "list", Short: "List the server's libraries, their files and the bytes saved", Args: cobra.NoArgs}
	return e.showing(cmd, func(cmd *cobra.Command, c *client.Client, _ []string) (view, error) { return libraryList(cmd, c) })
}

// libraryList is every library, a line each.
func libraryList(cmd *cobra.Command, c *client.Client) (view, error) {
	ls, err := c.Libraries(cmd.Context())
	return view{map[string]any{"libraries": ls}, func(tw io.Writer, wide bool) {
		fmt.Fprintln(tw, "NAME\tPATH\tPROFILE\tACTION\tFILES\tSAVED\tRULE")
		for _, l := range ls {
			n := 0
			for _, k := range l.Counts {
				n += k
			}
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%d\t%s\t%s\n", l.Name, l.Path, l.Profile, l.Action, n, library.BytesIEC(l.Saved), l.Rule)
		}
	}}, err
}

func (e *env) libraryRunCmd(what, short string) *cobra.Command {
	var state string
	cmd := &cobra.Command{Use: what + " NAME", Short: short, Args: cobra.ExactArgs(1)}
	if what == "status" {
		cmd.Use, cmd.Short, cmd.Args = "status [NAME]", short+" (without NAME, every library: as list)", cobra.RangeArgs(0, 1)
	}
	cmd.Flags().StringVar(&state, "state", "", "only files in this state ("+strings.Join(library.States, ", ")+")")
	return e.showing(cmd, func(cmd *cobra.Command, c *client.Client, args []string) (view, error) {
		if len(args) == 0 {
			return libraryList(cmd, c)
		}
		r, err := c.Library(cmd.Context(), args[0], what, state)
		return view{r, func(tw io.Writer, wide bool) { libraryTable(tw, r, what, wide) }}, err
	})
}

// libraryTable prints a library's report: a summary line, then its files.
func libraryTable(tw io.Writer, r jobview.LibraryReport, what string, wide bool) {
	var counts []string
	for _, st := range library.States {
		if n := r.Counts[st]; n > 0 {
			counts = append(counts, fmt.Sprintf("%d %s", n, st))
		}
	}
	fmt.Fprintf(tw, "library %s: %s\n", r.Library, cmp.Or(strings.Join(counts, ", "), "no files yet"))
	switch what {
	case "scan":
		fmt.Fprintf(tw, "probed %d new or changed files, queued %d jobs\n", r.Probed, r.Queued)
	case "plan":
		fmt.Fprintf(tw, "probed %d new or changed files; nothing queued or changed\n", r.Probed)
	}
	if r.Bytes > 0 {
		fmt.Fprintf(tw, "to encode: %s, estimated to become %s (saving %s; estimate: %s)\n", library.BytesIEC(r.Bytes), library.BytesIEC(r.Estimate), library.BytesIEC(r.Bytes-r.Estimate), r.EstimateBasis)
	}
	if r.Saved > 0 {
		fmt.Fprintf(tw, "saved so far: %s\n", library.BytesIEC(r.Saved))
	}
	if wide {
		fmt.Fprintln(tw, "STATE\tPATH\tSIZE\tCODEC\tJOB\tNOTE\tFACTS")
	} else {
		fmt.Fprintln(tw, "STATE\tPATH\tSIZE\tCODEC\tJOB\tNOTE")
	}
	files := slices.Clone(r.Files)
	slices.SortStableFunc(files, func(a, b store.LibraryFile) int {
		return slices.Index(library.States, a.State) - slices.Index(library.States, b.State)
	})
	for _, f := range files {
		var facts struct {
			Video struct{ Codec string } `json:"video"`
		}
		_ = json.Unmarshal(f.Facts, &facts)
		line := fmt.Sprintf("%s\t%s\t%s\t%s\t%s\t%s", f.State, f.Path, library.BytesIEC(f.Size), dash(facts.Video.Codec), dash(f.JobID), f.Note)
		if wide {
			line += "\t" + string(f.Facts)
		}
		fmt.Fprintln(tw, line)
	}
}
