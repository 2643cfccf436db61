package cli

import (
	"cmp"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"github.com/herdhq/herd/internal/client"
	"github.com/herdhq/herd/internal/config"
	"github.com/herdhq/herd/internal/kube"
	"github.com/herdhq/herd/internal/worker"
)

func (e *env) workerCmd() *cobra.Command {
	var cfg worker.DaemonConfig
	var check bool
	var logFormat string
	var libraries []string
	cmd := &cobra.Command{
		Use:   "worker",
		Short: "Run a remote worker: dial out to the server, claim tasks, run ffmpeg, report",
		Long: `Run a remote worker. It needs only the server's HTTP port: no database, no shared disk.
Give it its worker key with --token (or HERD_WORKER_TOKEN), or on first start a one-time
--registration-token (from herd token create --registration), which it trades for a key saved in
--data (default ./herd-worker, env HERD_WORKER_DATA, also home of the source cache and scratch).
A worker never uses HERD_TOKEN or HERD_DATA: those are the CLI's admin key and the server's folder.

If the server refuses the key (revoked, expired, unknown, or not a worker key) the worker stops at
once with a message naming the key it used, and exits non-zero.

At start it proves which encoders work here with a one-frame trial encode each (software x264/x265,
NVENC, VAAPI, QSV) and advertises only those. --check prints that table and exits.

--library NAME=PATH says that the server's library NAME is mounted here at PATH: the worker then
runs that library's health checks (herd library check NAME), reading the files in place.
Every other flag can also be set as HERD_<FLAG>; a flag given on the command line wins.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			e.workerSettings(cmd, &cfg, "HERD_WORKER_DATA", worker.DefaultData)
			var err error
			if cfg.Libraries, err = parseLibraryMounts(libraries); err != nil {
				return err
			}
			if check {
				ffmpeg := cmp.Or(cfg.FFmpeg, "ffmpeg")
				fmt.Fprint(e.stdout, worker.FormatTrials(worker.Detect(cmd.Context(), ffmpeg)))
				return nil
			}
			return worker.RunDaemon(cmd.Context(), cfg, e.logger(logFormat), e.stdout)
		},
	}
	f := cmd.Flags()
	workerKeyFlags(f, "HERD_WORKER_DATA", worker.DefaultData)
	f.StringVar(&cfg.RegistrationToken, "registration-token", "", "one-time registration token to trade for a worker key on first start")
	f.StringVar(&cfg.Name, "name", "", "worker name (default: the host name)")
	f.StringVar(&cfg.HealthAddr, "health-addr", worker.DefaultHealthAddr, "address of /healthz, /readyz and /metrics")
	f.IntVar(&cfg.MaxTasks, "max-tasks", 1, "tasks run at once")
	f.DurationVar(&cfg.Grace, "grace", worker.DefaultGrace, "on SIGTERM, how long running tasks may finish before they are released")
	f.BoolVar(&check, "check", false, "print which encoders work on this machine, and why not, then exit")
	f.StringArrayVar(&libraries, "library", nil, "NAME=PATH: the server's library NAME is mounted here at PATH; this worker runs its health checks (repeatable)")
	taskFlags(f, &cfg, &logFormat)
	return cmd
}

// parseLibraryMounts reads herd worker's --library NAME=PATH flags.
func parseLibraryMounts(flags []string) (map[string]string, error) {
	out := map[string]string{}
	for _, v := range flags {
		name, dir, ok := strings.Cut(v, "=")
		switch {
		case !ok || name == "" || dir == "":
			return nil, fmt.Errorf("--library %q: write NAME=PATH (the library's name in the server's configuration, and where this machine mounts its folder)", v)
		case !config.ValidLibraryName(name):
			return nil, fmt.Errorf("--library %q: %q is not a library name (lower-case letters, digits and dashes)", v, name)
		case out[name] != "":
			return nil, fmt.Errorf("--library %s is given twice", name)
		case !filepath.IsAbs(dir):
			return nil, fmt.Errorf("--library %s=%s: the path must be absolute", name, dir)
		}
		if st, err := os.Stat(dir); err != nil || !st.IsDir() {
			return nil, fmt.Errorf("--library %s=%s: not a folder this worker can see (is it mounted?)", name, dir)
		}
		out[name] = filepath.Clean(dir)
	}
	return out, nil
}

// taskFlags are the flags of every command that runs tasks (worker, run-task).
func taskFlags(f *pflag.FlagSet, cfg *worker.DaemonConfig, logFormat *string) {
	f.Int64Var(&cfg.GPUSessions, "gpu-sessions", worker.DefaultGPUSessions, "encode sessions the GPU allows at once (consumer NVIDIA cards: 5); a ladder takes one per rung")
	f.DurationVar(&cfg.StallAfter, "stall-after", worker.DefaultStallAfter, "kill and retry a task whose ffmpeg shows no progress for this long")
	f.DurationVar(&cfg.Heartbeat, "heartbeat", worker.DefaultHeartbeat, "how often running tasks report to the server")
	f.StringVar(&cfg.FFmpeg, "ffmpeg", "ffmpeg", "ffmpeg binary")
	f.StringVar(&cfg.FFprobe, "ffprobe", "ffprobe", "ffprobe binary")
	vmafFlags(f, &cfg.MeasureFFmpeg, &cfg.VMAFModel, &cfg.VMAF4KModel)
	f.StringVar(logFormat, "log-format", "auto", "log format: auto, json or text")
}

// workerKeyFlags are the task-running commands' own --token and --data:
// they shadow the CLI's (an admin key, the server's data folder), and are
// read from the worker's own variables, never HERD_TOKEN or HERD_DATA.
func workerKeyFlags(f *pflag.FlagSet, dataEnv, dataDefault string) {
	f.String("token", "", "worker key (env HERD_WORKER_TOKEN; never HERD_TOKEN, which holds the CLI's admin key)")
	f.String("data", "", fmt.Sprintf("work folder: saved worker key, source cache, scratch (env %s; default %s)", dataEnv, dataDefault))
}

// workerSettings fills what task-running commands take from flags or the
// environment: the server, the worker key and the work folder. The key comes
// from --token, else HERD_WORKER_TOKEN, and nowhere else: HERD_TOKEN, which
// fromEnv would map to --token, is the CLI's admin key, and a worker that
// presented it would only ever be refused.
func (e *env) workerSettings(cmd *cobra.Command, cfg *worker.DaemonConfig, dataEnv, dataDefault string) {
	fromEnv(cmd, e.getenv, "token", "data")
	cfg.Server = e.str(cmd, "server", "HERD_SERVER", "")
	cfg.Token, cfg.TokenFrom = e.str(cmd, "token", "HERD_WORKER_TOKEN", ""), "HERD_WORKER_TOKEN"
	if cmd.Flags().Changed("token") {
		cfg.TokenFrom = "--token"
	}
	cfg.Data = e.str(cmd, "data", dataEnv, dataDefault)
}

// Exit codes of herd run-task, which a Job's podFailurePolicy and kubectl show.
var runTaskExit = map[string]int{
	worker.OutcomeSucceeded:    0,
	worker.OutcomeFailed:       1,
	worker.OutcomeLeaseLost:    3,
	worker.OutcomeReleased:     4,
	worker.OutcomeRequeued:     4,
	worker.OutcomeReportFailed: 5,
}

// taskData is herd run-task's work folder unless told otherwise: a pod's
// scratch space.
const taskData = "/tmp/herd-task"

func (e *env) runTaskCmd() *cobra.Command {
	var cfg worker.TaskConfig
	var logFormat string
	cmd := &cobra.Command{
		Use:   "run-task",
		Short: "Run one task leased by the Kubernetes dispatcher, report it, and exit (what each Job's pod runs)",
		Long: `Run the one task that herd serve --dispatcher kubernetes leased for this pod, with
heartbeats, stall detection and the SIGTERM grace period of a worker, then exit.
The server owns retries: run-task never runs anything else.

The server, key and lease come from flags or HERD_SERVER, HERD_WORKER_TOKEN, HERD_TASK,
HERD_LEASE_OWNER and HERD_FENCE. Exit status: 0 succeeded; 1 the task failed (the server
has the reason); 2 it could not start (bad flags, server unreachable); 3 the lease was gone
(canceled or taken over); 4 given back unrun or at shutdown; 5 ended but the server could
not be told.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			e.workerSettings(cmd, &cfg.DaemonConfig, "HERD_TASK_DATA", taskData)
			outcome, err := worker.RunTask(cmd.Context(), cfg, e.logger(logFormat))
			if err != nil {
				fmt.Fprintln(e.stderr, "herd:", err)
				return &ExitError{Code: 2}
			}
			if code := runTaskExit[outcome]; code != 0 {
				return &ExitError{Code: code}
			}
			return nil
		},
	}
	f := cmd.Flags()
	f.StringVar(&cfg.Lease.TaskID, "task", "", "id of the leased task")
	f.StringVar(&cfg.Lease.Owner, "lease-owner", "", "the lease's owner, as the dispatcher wrote it")
	f.Int64Var(&cfg.Lease.Fence, "fence", 0, "the lease's fencing token")
	f.DurationVar(&cfg.Grace, "grace", kube.DefaultGrace, "on SIGTERM, how long the task may finish before it is released")
	workerKeyFlags(f, "HERD_TASK_DATA", taskData)
	taskFlags(f, &cfg.DaemonConfig, &logFormat)
	return cmd
}

func (e *env) tokenCmd() *cobra.Command {
	cmd := &cobra.Command{Use: "token", Short: "Create, list and revoke keys (admin keys, worker keys, registration tokens, sessions)"}
	cmd.AddCommand(e.tokenListCmd(), e.tokenRevokeCmd())
	var registration bool
	var name, ttl string
	create := &cobra.Command{
		Use:   "create",
		Short: "Create a registration token for a worker (--registration) or another admin key; prints it once",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			c, err := e.client(cmd)
			if err != nil {
				return err
			}
			kind := "admin"
			if registration {
				kind = "registration"
			}
			k, err := c.CreateToken(cmd.Context(), kind, name, ttl)
			if err != nil {
				return err
			}
			fmt.Fprintln(e.stdout, k.Secret)
			if k.ExpiresAt != nil {
				fmt.Fprintf(e.stderr, "%s key, shown once; expires %s\n", k.Kind, k.ExpiresAt.Format(time.RFC3339))
			}
			return nil
		},
	}
	create.Flags().BoolVar(&registration, "registration", false, "a one-time token a new worker trades for its own key (herd worker --registration-token)")
	create.Flags().StringVar(&name, "name", "", "a label for the key")
	create.Flags().StringVar(&ttl, "ttl", "", "expiry, such as 24h (registration tokens default to 24h)")
	cmd.AddCommand(create)
	return cmd
}

func (e *env) tokenListCmd() *cobra.Command {
	var all bool
	cmd := &cobra.Command{
		Use:   "list",
		Short: "List keys: kind, name, state, when made, when they expire and were last used (never a key itself)",
		Long: `List the server's keys: admin keys, worker keys, registration tokens and browser sessions,
with when each was made, when it expires and when it was last used (recorded about once a minute).
A key itself is never shown: only its hash is stored. --all also lists revoked and expired keys
that the server has not swept yet. Revoke one with herd token revoke ID.`,
		Args: cobra.NoArgs,
	}
	cmd.Flags().BoolVar(&all, "all", false, "also list revoked and expired keys")
	return e.showing(cmd, func(cmd *cobra.Command, c *client.Client, _ []string) (view, error) {
		keys, err := c.Tokens(cmd.Context(), all)
		return view{map[string]any{"keys": keys}, func(tw io.Writer, wide bool) {
			fmt.Fprintln(tw, "ID\tKIND\tNAME\tSTATE\tCREATED\tEXPIRES\tLAST USED")
			for _, k := range keys {
				fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\n", k.ID, k.Kind, k.Name, k.State, when(&k.CreatedAt, wide, ""),
					when(k.ExpiresAt, wide, "never"), when(k.LastUsed, wide, "never"))
			}
		}}, err
	})
}

// when shows a time: RFC 3339 when wide, else local and to the minute.
func when(t *time.Time, wide bool, none string) string {
	switch {
	case t == nil:
		return none
	case wide:
		return t.Format(time.RFC3339)
	}
	return t.Local().Format("2006-01-02 15:04")
}

func (e *env) tokenRevokeCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "revoke ID",
		Short: "Revoke a key by its id (from herd token list): it stops working at once, with the sessions made with it",
		Long: `Revoke a key by its id (herd token list shows the ids). It stops working at once: requests
with it are refused, browser sessions signed in with it end, and a worker using it stops. Revoking a
worker's key revokes the worker (its running tasks go back to the queue). The last live admin key
cannot be revoked: create another first (herd token create).`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := e.client(cmd)
			if err != nil {
				return err
			}
			k, err := c.RevokeToken(cmd.Context(), args[0])
			if err != nil {
				return err
			}
			fmt.Fprintf(e.stdout, "%s %s (%s key %q)\n", k.ID, k.State, k.Kind, k.Name)
			return nil
		},
	}
}

func (e *env) workersCmd() *cobra.Command {
	cmd := &cobra.Command{Use: "workers", Short: "List remote workers; drain, resume or revoke one", Args: cobra.NoArgs}
	out := addOutput(cmd, "table")
	cmd.RunE = func(cmd *cobra.Command, _ []string) error {
		c, err := e.client(cmd)
		if err != nil {
			return err
		}
		ws, unmet, err := c.WorkersAndNeeds(cmd.Context())
		if err != nil {
			return err
		}
		err = e.render(*out, map[string]any{"workers": ws, "unmet_needs": unmet}, func(tw io.Writer, _ bool) {
			// A worker of an older protocol version is leased only finalize
			// tasks: the server says so (Outdated), and so does the last column.
			fmt.Fprintln(tw, "NAME\tSTATE\tSLOTS\tCAPABILITIES\tRUNNING\tLAST SEEN\tNOTE")
			for _, w := range ws {
				seen := "never"
				if w.LastSeen != nil {
					seen = age(*w.LastSeen) + " ago"
				}
				fmt.Fprintf(tw, "%s\t%s\t%d\t%s\t%s\t%s\t%s\n", w.Name, w.State, w.Slots, strings.Join(w.Caps, ","), strings.Join(w.Tasks, ","), seen, w.Outdated)
			}
		})
		if err != nil || *out == "json" || *out == "yaml" {
			return err
		}
		// Jobs that wait for what no worker has would wait forever: say so
		// here, not only on each job.
		for _, u := range unmet {
			what := u.Capability
			if u.Encoder != "" {
				what += " (the " + u.Encoder + " encoder)"
			}
			fmt.Fprintf(e.stdout, "\nNo worker has capability %s, which %d waiting job(s) need: %s.\nTo run them, %s.\n",
				what, len(u.Jobs), strings.Join(u.Jobs, ", "), u.Hint)
		}
		return nil
	}
	for _, a := range []struct{ use, short string }{
		{"drain", "Stop giving the worker new tasks; running ones finish"},
		{"resume", "Give a drained worker tasks again"},
		{"revoke", "Revoke the worker's key; its running tasks go back to the queue at once"},
	} {
		cmd.AddCommand(&cobra.Command{
			Use: a.use + " NAME", Short: a.short, Args: cobra.ExactArgs(1),
			RunE: func(cmd *cobra.Command, args []string) error {
				c, err := e.client(cmd)
				if err != nil {
					return err
				}
				w, err := c.WorkerAction(cmd.Context(), args[0], a.use)
				if err != nil {
					return err
				}
				fmt.Fprintf(e.stdout, "%s %s\n", w.Name, w.State)
				return nil
			},
		})
	}
	return cmd
}

// vmafFlags are the flags of every command that verifies outputs (serve,
// worker, run-task): where VMAF is measured.
func vmafFlags(f *pflag.FlagSet, measure, model, model4K *string) {
	f.StringVar(measure, "measure-ffmpeg", "", "an ffmpeg with libvmaf that measures VMAF in verification (it only reads raw frames herd's ffmpeg decodes); default: the encoding ffmpeg, where it has libvmaf")
	f.StringVar(model, "vmaf-model", "", "the VMAF model file a libvmaf 1.x measuring ffmpeg reads (vmaf_v0.6.1.pkl, its .pkl.model beside it); default: herd's own copy")
	f.StringVar(model4K, "vmaf-4k-model", "", "the 4K VMAF model file a libvmaf 1.x measuring ffmpeg reads for sources taller than 1440 lines (vmaf_4k_v0.6.1.pkl, its .pkl.model beside it); default: none, the standard model for every source (libvmaf 2.x and later have it built in)")
}
