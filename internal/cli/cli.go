// Package cli is herd's command line: `herd serve` and the API client
// commands (submit, jobs, job, cancel, retry, profiles, version, migrate).
// It parses flags and environment, prints, and sets exit codes; the work is
// done by the packages it calls.
package cli

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math"
	"os"
	"path/filepath"
	"runtime/debug"
	"slices"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
	"go.yaml.in/yaml/v3"
	"golang.org/x/term"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"

	"github.com/herdhq/herd/internal/campaign"
	"github.com/herdhq/herd/internal/client"
	"github.com/herdhq/herd/internal/config"
	"github.com/herdhq/herd/internal/ingest"
	"github.com/herdhq/herd/internal/job"
	"github.com/herdhq/herd/internal/jobview"
	"github.com/herdhq/herd/internal/kube"
	"github.com/herdhq/herd/internal/label"
	"github.com/herdhq/herd/internal/media"
	"github.com/herdhq/herd/internal/patience"
	"github.com/herdhq/herd/internal/profile"
	"github.com/herdhq/herd/internal/queue"
	"github.com/herdhq/herd/internal/server"
	"github.com/herdhq/herd/internal/store/sqlstore"
	"github.com/herdhq/herd/internal/worker"
)

// Version is set at build time with -ldflags "-X github.com/herdhq/herd/internal/cli.Version=...".
var Version = ""

func version() string {
	if Version != "" {
		return Version
	}
	if bi, ok := debug.ReadBuildInfo(); ok {
		rev, dirty := "", ""
		for _, s := range bi.Settings {
			switch s.Key {
			case "vcs.revision":
				rev = s.Value
			case "vcs.modified":
				if s.Value == "true" {
					dirty = "-dirty"
				}
			}
		}
		if len(rev) > 12 {
			rev = rev[:12]
		}
		if rev != "" {
			return "dev-" + rev + dirty
		}
	}
	return "dev"
}

// ExitError carries an exit code out of a command.
type ExitError struct{ Code int }

func (e *ExitError) Error() string { return fmt.Sprintf("exit %d", e.Code) }

// env is what a command may use of the process: herd reads environment
// variables only through getenv and environ, never through package os.
type env struct {
	getenv  func(string) string
	environ func() []string // every variable, as os.Environ lists them (the configuration's HERD_WATCH_*, HERD_PUBLISHERS_*)
	stdout  io.Writer
	stderr  io.Writer
}

// Run executes the command line and returns the process exit code. getenv
// and environ are the environment (os.Getenv and os.Environ).
func Run(ctx context.Context, args []string, getenv func(string) string, environ func() []string, stdout, stderr io.Writer) int {
	e := &env{getenv: getenv, environ: environ, stdout: stdout, stderr: stderr}
	root := e.root()
	root.SetArgs(args)
	root.SetOut(stdout)
	root.SetErr(stderr)
	err := root.ExecuteContext(ctx)
	if err == nil {
		return 0
	}
	var ee *ExitError
	if errors.As(err, &ee) {
		return ee.Code
	}
	fmt.Fprintln(stderr, "herd:", err)
	return 1
}

func (e *env) root() *cobra.Command {
	root := &cobra.Command{
		Use:           "herd",
		Short:         "herd turns video files into verified HLS/DASH ladders and library MP4/MKV files",
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	root.PersistentFlags().String("server", "", "herd server URL (env HERD_SERVER; default "+defaultServer+")")
	root.PersistentFlags().String("token", "", "admin key (env HERD_TOKEN; default: the key in --data's admin.token)")
	root.PersistentFlags().String("data", "", "data folder (env HERD_DATA; default ./"+server.DefaultData+")")
	root.AddCommand(e.serveCmd(), e.submitCmd(), e.jobsCmd(), e.jobCmd(), e.cancelCmd(), e.retryCmd(),
		e.profilesCmd(), e.versionCmd(), e.migrateCmd(), e.backupCmd(), e.workerCmd(), e.runTaskCmd(), e.tokenCmd(), e.workersCmd(), e.configCmd(), e.shareCmd(), e.campaignCmd(), e.libraryCmd())
	return root
}

func (e *env) str(cmd *cobra.Command, flag, envName, def string) string {
	if f := cmd.Flags().Lookup(flag); f != nil && f.Changed {
		return f.Value.String()
	}
	return cmp.Or(e.getenv(envName), def)
}

func (e *env) dataDir(cmd *cobra.Command) string {
	return e.str(cmd, "data", "HERD_DATA", server.DefaultData)
}

// defaultServer is where the CLI finds herd serve unless told otherwise:
// its default listen address.
const defaultServer = "http://" + server.DefaultAddr

func (e *env) client(cmd *cobra.Command) (*client.Client, error) {
	srv := e.str(cmd, "server", "HERD_SERVER", defaultServer)
	tok := e.str(cmd, "token", "HERD_TOKEN", "")
	if tok == "" {
		b, err := os.ReadFile(filepath.Join(e.dataDir(cmd), server.AdminTokenFile))
		if err != nil {
			return nil, errors.New("no admin key: set HERD_TOKEN (or --token), or run this where `herd serve` keeps its data folder (--data)")
		}
		tok = strings.TrimSpace(string(b))
	}
	return client.New(srv, tok), nil
}

func (e *env) logger(format string) *slog.Logger {
	var h slog.Handler
	isTerm := false
	if f, ok := e.stderr.(*os.File); ok {
		isTerm = term.IsTerminal(int(f.Fd()))
	}
	if format == "text" || (format == "auto" && isTerm) {
		h = slog.NewTextHandler(e.stderr, nil)
	} else {
		h = slog.NewJSONHandler(e.stderr, nil)
	}
	return slog.New(h)
}

func (e *env) serveCmd() *cobra.Command {
	var cfg server.Config
	var logFormat, configPath, pullPolicy, kubeCPU, kubeMemory string
	cmd := &cobra.Command{
		Use:   "serve",
		Short: "Run the API, scheduler and in-process workers",
		Long: `Run herd: the HTTP API, the scheduler and (by default) in-process workers.
Data (SQLite database, stored files, user profiles, admin.token) lives in --data.
On first start an admin key is generated and printed once.

Every flag can also be set in the environment as HERD_<FLAG> (dashes become
underscores), or in the --config file under its name with underscores (addr,
local_workers, ...), which also declares watch folders and publishers.
Flags win over the environment, which wins over the file. Watch folder and
publisher keys can be set (or added) as HERD_WATCH_<N>_<KEY> (N counts the
folders from 0; publish is comma-separated) and HERD_PUBLISHERS_<NAME>_<KEY>.`,
		RunE: func(cmd *cobra.Command, _ []string) error {
			fromEnv(cmd, e.getenv)
			if configPath != "" || config.EnvDeclares(e.environ()) {
				var f *config.File
				var err error
				if configPath != "" {
					f, err = config.Load(configPath, settingKeys(cmd), e.environ())
				} else {
					f, err = config.Parse("environment", nil, settingKeys(cmd), e.environ())
				}
				if err != nil {
					return err
				}
				if err := applySettings(cmd, f); err != nil {
					return err
				}
				cfg.Watch, cfg.Publishers, cfg.Subscriptions, cfg.Libraries = f.Watch, f.Publishers, f.Subscriptions, f.Libraries
			}
			cfg.Data = e.dataDir(cmd)
			cfg.Version = version()
			// After herd's own settings, the AWS variables name the S3 endpoint and region.
			cfg.S3.Endpoint = cmp.Or(cfg.S3.Endpoint, e.getenv("AWS_ENDPOINT_URL_S3"), e.getenv("AWS_ENDPOINT_URL"))
			cfg.S3.Region = cmp.Or(cfg.S3.Region, e.getenv("AWS_REGION"), e.getenv("AWS_DEFAULT_REGION"))
			cfg.PodName = e.getenv("POD_NAME") // from the downward API, in a pod
			cfg.Failpoint = e.getenv(server.EnvFailpoint)
			var err error
			if cfg.Dispatcher == server.DispatchKubernetes && !cmd.Flags().Changed("local-workers") {
				cfg.LocalWorkers = 0 // tasks run as Jobs
			}
			if cfg.Kube.EncodeCPU, err = resource.ParseQuantity(kubeCPU); err != nil {
				return fmt.Errorf("--kube-encode-cpu %q: %w", kubeCPU, err)
			}
			if cfg.Kube.EncodeMemory, err = resource.ParseQuantity(kubeMemory); err != nil {
				return fmt.Errorf("--kube-encode-memory %q: %w", kubeMemory, err)
			}
			cfg.Kube.ImagePullPolicy = corev1.PullPolicy(pullPolicy)
			log := e.logger(logFormat)
			err = server.Run(cmd.Context(), cfg, log, e.stdout, func(addr string) {
				fmt.Fprintf(e.stdout, "herd %s is running at http://%s  (data in %s; Ctrl-C to stop)\n", cfg.Version, addr, cfg.Data)
				fmt.Fprintf(e.stdout, "Open it in a browser and sign in with the admin key, or try:  %s submit VIDEO --profile web-hls --wait\n", os.Args[0])
			})
			if err != nil {
				return err
			}
			return nil
		},
	}
	f := cmd.Flags()
	f.StringVar(&configPath, "config", "", "YAML configuration file: settings, watch folders and publishers (check one with herd config check FILE)")
	f.StringVar(&cfg.Addr, "addr", server.DefaultAddr, "listen address")
	f.DurationVar(&cfg.HTTP.ReadHeader, "read-header-timeout", patience.DefaultReadHeader, "close a connection whose request header has not all arrived after this long")
	f.DurationVar(&cfg.HTTP.Idle, "idle-timeout", patience.DefaultIdle, "close a keep-alive connection idle for this long")
	f.Int64Var(&cfg.HTTP.MinRate, "min-transfer-rate", patience.DefaultMinRate, "bytes per second a request body or response must average (uploads and downloads of any size and length are fine while they keep it)")
	f.DurationVar(&cfg.HTTP.Stall, "slow-transfer-timeout", patience.DefaultStall, "cut off a request body or response once it is this far behind --min-transfer-rate (only time spent waiting on the client counts)")
	f.StringVar(&cfg.Database, "database", "", "database: a postgres:// URL, or a SQLite file (default DATA/herd.db) (env HERD_DATABASE)")
	f.StringVar(&cfg.Blob, "blob", "local", "where sources and outputs are stored: local (DATA/blobs) or s3://BUCKET/PREFIX in any S3-compatible store (credentials from AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY, ~/.aws/credentials or an instance role)")
	f.StringVar(&cfg.S3.Endpoint, "s3-endpoint", "", "S3-compatible endpoint, e.g. http://minio:9000 (default AWS_ENDPOINT_URL_S3, AWS_ENDPOINT_URL, else AWS)")
	f.StringVar(&cfg.S3.Region, "s3-region", "", "S3 region (default AWS_REGION, AWS_DEFAULT_REGION, else us-east-1)")
	f.StringVar(&cfg.S3.PresignEndpoint, "s3-presign-endpoint", "", "endpoint written into the presigned URLs workers use, when they reach the store by another address than the server")
	f.StringVar(&cfg.AdminToken, "admin-token", "", "use this admin key instead of generating one (env HERD_ADMIN_TOKEN)")
	f.IntVar(&cfg.LocalWorkers, "local-workers", server.DefaultLocalWorkers(), "in-process worker slots (default from the core count; 0: none, a pure control plane)")
	f.StringSliceVar(&cfg.WebhookAllow, "webhook-allow", nil, "address or CIDR prefix (10.0.0.0/8) that webhook subscriptions made through the API may reach although it is loopback, private or link-local (repeatable)")
	f.StringSliceVar(&cfg.ImportRoots, "import-root", nil, "folder that POST /api/v1/jobs {source_path} may read from (repeatable)")
	f.StringSliceVar(&cfg.CORSOrigins, "cors-origin", nil, "origin (https://site.example) whose pages may play herd's playback links and embed their player page (repeatable, or comma-separated; none: no other site)")
	f.BoolVar(&cfg.LinkPresign, "link-presign", false, "with --blob s3://, playback links send players to the bucket for media (presigned URLs in HLS media playlists, redirects for other files) instead of passing every byte through the server; the bucket's own CORS rules must then allow the --cors-origin sites")
	f.DurationVar(&cfg.KeepReplaced, "keep-replaced", campaign.DefaultKeep, "how long a replaced output (one a re-encode campaign or a newer job remade) stays playable before its files are removed, so a player in the middle of it is not cut off")
	f.StringVar(&cfg.DefaultProfile, "default-profile", "", "profile the upload page selects first (default web-hls, which every browser plays)")
	f.Int64Var(&cfg.MaxUpload, "max-upload", ingest.DefaultMaxUpload, "largest accepted source file in bytes")
	f.Int64Var(&cfg.MaxStepSize, "max-step-size", 200<<30, "most bytes a worker may upload for one task's outputs (each task is also held to what its plan can plausibly produce)")
	f.IntVar(&cfg.MaxAttempts, "max-attempts", job.DefaultMaxAttempts, "attempts per task before its job fails")
	f.DurationVar(&cfg.LeaseTTL, "lease-ttl", queue.DefaultLeaseTTL, "how long a task lease lasts without a heartbeat")
	f.DurationVar(&cfg.Grace, "grace", worker.DefaultGrace, "on SIGTERM, how long running tasks may finish before they are released")
	f.DurationVar(&cfg.StallAfter, "stall-after", worker.DefaultStallAfter, "kill and retry a task whose ffmpeg shows no progress for this long")
	f.IntVar(&cfg.MaxWidth, "max-width", media.DefaultMaxWidth, "refuse sources wider than this")
	f.IntVar(&cfg.MaxHeight, "max-height", media.DefaultMaxHeight, "refuse sources taller than this")
	f.IntVar(&cfg.MaxPixels, "max-pixels", media.DefaultMaxPixels, "refuse sources whose width × height is larger (the default is DCI 8K, 8192x4320)")
	f.StringVar(&cfg.FFmpeg, "ffmpeg", "ffmpeg", "ffmpeg binary")
	f.StringVar(&cfg.FFprobe, "ffprobe", "ffprobe", "ffprobe binary")
	vmafFlags(f, &cfg.MeasureFFmpeg, &cfg.VMAFModel, &cfg.VMAF4KModel)
	f.StringVar(&logFormat, "log-format", "auto", "log format: auto (text on a terminal, else JSON), json or text")

	f.StringVar(&cfg.Dispatcher, "dispatcher", server.DispatchLocal, "where tasks run: local (in-process and remote herd workers) or kubernetes (one batch/v1 Job per task; --local-workers then defaults to 0)")
	k := &cfg.Kube
	f.StringVar(&k.Kubeconfig, "kubeconfig", "", "kubeconfig for --dispatcher kubernetes (default: in-cluster, then $KUBECONFIG, then ~/.kube/config)")
	f.StringVar(&k.Namespace, "kube-namespace", "", "namespace of task Jobs (default: the kubeconfig's, or this pod's)")
	f.StringVar(&k.Image, "kube-image", "", "image of task pods: herd and ffmpeg (make image builds one)")
	f.StringVar(&pullPolicy, "kube-image-pull-policy", string(corev1.PullIfNotPresent), "imagePullPolicy of task pods: Always, IfNotPresent or Never")
	f.StringVar(&k.ServerURL, "kube-server-url", "", "this server's URL as task pods reach it, e.g. http://herd.herd.svc:8080")
	f.IntVar(&k.MaxJobs, "kube-max-jobs", 4, "task Jobs in flight at once")
	f.StringVar(&k.KeySecret, "kube-key-secret", kube.DefaultKeySecret, "Secret the dispatcher keeps the task pods' worker key in")
	f.StringVar(&k.WorkerSecret, "kube-worker-secret", "", "keep a worker key for herd worker pods in the cluster (a Deployment) in this Secret; they share the worker name pool")
	f.StringVar(&k.ServiceAccount, "kube-service-account", "", "service account of task pods (they need no API rights; default: the namespace's default)")
	f.StringVar(&k.PodTemplate, "kube-pod-template", "", "YAML PodTemplateSpec file every task pod starts from (node selectors, tolerations, host network...)")
	f.StringVar(&k.GPU, "kube-gpu", "", "GPUs the cluster offers task pods: nvidia (nvidia.com/gpu, NVENC) or intel (gpu.intel.com/i915, VAAPI/QSV); empty: none")
	f.IntVar(&k.GPUMaxJobs, "kube-gpu-max-jobs", 1, "GPU task Jobs in flight at once (each pod gets one GPU)")
	f.StringVar(&k.GPUPodTemplate, "kube-gpu-pod-template", "", "YAML PodTemplateSpec file GPU task pods start from instead (runtimeClassName, node selector, tolerations)")
	f.StringVar(&kubeCPU, "kube-encode-cpu", kube.DefaultEncodeCPU, "CPU request of encode, thumbnail and verify pods")
	f.StringVar(&kubeMemory, "kube-encode-memory", kube.DefaultEncodeMemory, "memory request and limit of encode, thumbnail and verify pods")
	f.DurationVar(&k.MinDeadline, "kube-min-deadline", kube.DefaultMinDeadline, "activeDeadlineSeconds of a task Job, at least")
	f.Float64Var(&k.DeadlineFactor, "kube-deadline-factor", kube.DefaultDeadlineFactor, "encode, thumbnail and verify Jobs may run this many times the source's duration (when more than --kube-min-deadline)")
	f.DurationVar(&k.TTLAfterFinished, "kube-job-ttl", kube.DefaultTTLAfterFinished, "how long finished task Jobs stay for kubectl (ttlSecondsAfterFinished)")
	f.DurationVar(&k.UnschedulableTimeout, "kube-unschedulable-timeout", kube.DefaultUnschedulableTimeout, "fail a task whose pod cannot be scheduled for this long")
	return cmd
}

// notSettings are flags a configuration file cannot set.
var notSettings = map[string]bool{"config": true, "help": true, "server": true, "token": true}

// settingKeys are the configuration file's names for serve's flags.
func settingKeys(cmd *cobra.Command) []string {
	var keys []string
	cmd.Flags().VisitAll(func(f *pflag.Flag) {
		if !notSettings[f.Name] {
			keys = append(keys, strings.ReplaceAll(f.Name, "-", "_"))
		}
	})
	return keys
}

// applySettings sets every flag neither the command line nor the
// environment set from the configuration file.
func applySettings(cmd *cobra.Command, file *config.File) error {
	for _, s := range file.Settings {
		fl := cmd.Flags().Lookup(strings.ReplaceAll(s.Key, "_", "-"))
		if fl == nil || fl.Changed {
			continue
		}
		_, isList := fl.Value.(pflag.SliceValue)
		if len(s.Values) != 1 && !isList {
			return &config.Error{File: file.Name, Line: s.Line, Msg: s.Key + ": expected one value, not a list"}
		}
		for _, v := range s.Values {
			if err := fl.Value.Set(v); err != nil {
				return &config.Error{File: file.Name, Line: s.Line, Msg: fmt.Sprintf("%s: %q is not a valid %s", s.Key, v, fl.Value.Type())}
			}
		}
		fl.Changed = true
	}
	return nil
}

// fromEnv sets every flag the user did not pass from HERD_<NAME>, except
// the flags in skip, which the command reads from variables of its own.
func fromEnv(cmd *cobra.Command, getenv func(string) string, skip ...string) {
	cmd.Flags().VisitAll(func(f *pflag.Flag) {
		if f.Changed || slices.Contains(skip, f.Name) {
			return
		}
		name := "HERD_" + strings.ToUpper(strings.ReplaceAll(f.Name, "-", "_"))
		if v := getenv(name); v != "" {
			_ = cmd.Flags().Set(f.Name, v)
		}
	})
}

func (e *env) submitCmd() *cobra.Command {
	var profileName string
	var wait bool
	var chunkSeconds float64
	var publishTo, labels, subtitles []string
	cmd := &cobra.Command{
		Use:   "submit FILE",
		Short: "Upload a file and queue a job; prints only the job id on stdout",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := e.client(cmd)
			if err != nil {
				return err
			}
			var opt client.SubmitOptions
			opt.Publish = publishTo
			if opt.Labels, err = label.Parse(strings.Join(labels, ",")); err != nil {
				return err
			}
			if cmd.Flags().Changed("chunk-seconds") {
				opt.ChunkSeconds = &chunkSeconds
			}
			for _, v := range subtitles {
				spec, path, ok := strings.Cut(v, "=")
				if !ok || path == "" {
					return fmt.Errorf("--subtitle %q: write LANGUAGE=FILE, e.g. fr=movie.fr.srt (en:sdh=..., fr:forced=...)", v)
				}
				refs, err := job.ParseSubtitles(spec + "=x")
				if err != nil || len(refs) != 1 {
					return fmt.Errorf("--subtitle %q: write LANGUAGE=FILE, e.g. fr=movie.fr.srt (en:sdh=..., fr:forced=...)", v)
				}
				opt.Subtitles = append(opt.Subtitles, client.SubtitleFile{Path: path, SourceSubtitle: refs[0]})
			}
			p := newProgress(e.stderr)
			j, created, err := c.Submit(cmd.Context(), args[0], profileName, opt, p.upload(args[0]))
			p.done()
			if err != nil {
				return err
			}
			fmt.Fprintln(e.stdout, j.ID)
			if !created {
				fmt.Fprintf(e.stderr, "the same file with profile %s was submitted before: job %s (%s)\n", j.Profile, j.ID, j.State)
			}
			if !wait {
				return nil
			}
			final, err := c.Wait(cmd.Context(), j.ID, 500*time.Millisecond, p.job)
			p.done()
			if err != nil {
				return err
			}
			if final.State != job.Succeeded {
				fmt.Fprintf(e.stderr, "job %s %s: %s\n", final.ID, final.State, cmp.Or(final.Error, "no reason given"))
				return &ExitError{Code: 1}
			}
			fmt.Fprintf(e.stderr, "job %s succeeded: %d outputs (herd job %s)\n", final.ID, len(final.Outputs), final.ID)
			return nil
		},
	}
	cmd.Flags().StringVarP(&profileName, "profile", "p", "web-hls", "profile to encode with (see herd profiles)")
	cmd.Flags().BoolVarP(&wait, "wait", "w", false, "wait for the job to finish; exit non-zero if it does not succeed")
	cmd.Flags().StringSliceVar(&publishTo, "publish", nil, "deliver the job to these of the server's publishers (its configuration's publishers:), e.g. movies,hook")
	cmd.Flags().StringSliceVarP(&labels, "label", "l", nil, "label the job key=value (repeatable, or comma-separated); subscriptions can hear only of jobs with some labels")
	cmd.Flags().StringArrayVar(&subtitles, "subtitle", nil, "give a subtitle file with the source, LANGUAGE[:forced|:sdh]=FILE (SRT, WebVTT, ASS/SSA or TTML; repeatable), e.g. fr=movie.fr.srt; web profiles make it a subtitle rendition")
	cmd.Flags().Float64Var(&chunkSeconds, "chunk-seconds", 0, "split the video into chunks of about this many seconds that workers encode side by side (0: never; default: the profile's chunk_seconds)")
	return cmd
}

func addOutput(cmd *cobra.Command, def string) *string {
	return cmd.Flags().StringP("output", "o", def, "output format: table, wide, json or yaml")
}

// view is what a command shows: data as -o json or yaml prints it, and
// the table (-o table or wide) drawn of it.
type view struct {
	data  any
	table func(tw io.Writer, wide bool)
}

// showing has cmd show, in the format of its -o flag (table by default),
// the view get makes with the server's client.
func (e *env) showing(cmd *cobra.Command, get func(cmd *cobra.Command, c *client.Client, args []string) (view, error)) *cobra.Command {
	out := addOutput(cmd, "table")
	cmd.RunE = func(cmd *cobra.Command, args []string) error {
		c, err := e.client(cmd)
		if err != nil {
			return err
		}
		v, err := get(cmd, c, args)
		if err != nil {
			return err
		}
		return e.render(*out, v.data, v.table)
	}
	return cmd
}

// render prints v as JSON or YAML where out names one; for table and wide
// it lets table write aligned columns, wide when out is "wide".
func (e *env) render(out string, v any, table func(tw io.Writer, wide bool)) error {
	switch out {
	case "json", "yaml":
		return e.encode(out, v)
	case "table", "wide":
		tw := tabwriter.NewWriter(e.stdout, 0, 4, 2, ' ', 0)
		table(tw, out == "wide")
		return tw.Flush()
	}
	return fmt.Errorf("unknown output format %q: use table, wide, json or yaml", out)
}

func (e *env) jobsCmd() *cobra.Command {
	var state, profileName, cursor string
	var limit int
	cmd := &cobra.Command{
		Use:   "jobs",
		Short: "List jobs, newest first",
		Args:  cobra.NoArgs,
	}
	out := addOutput(cmd, "table")
	cmd.RunE = func(cmd *cobra.Command, _ []string) error {
		c, err := e.client(cmd)
		if err != nil {
			return err
		}
		l, err := c.Jobs(cmd.Context(), state, profileName, limit, cursor)
		if err != nil {
			return err
		}
		err = e.render(*out, l, func(tw io.Writer, wide bool) {
			if wide {
				fmt.Fprintln(tw, "ID\tSTATE\tPROFILE\tPROGRESS\tSOURCE\tCREATED\tATTEMPTS\tERROR")
			} else {
				fmt.Fprintln(tw, "ID\tSTATE\tPROFILE\tPROGRESS\tSOURCE\tAGE")
			}
			for _, j := range l.Jobs {
				if wide {
					fmt.Fprintf(tw, "%s\t%s\t%s\t%3.0f%%\t%s\t%s\t%d\t%s\n", j.ID, j.State, jobview.What(j.Job), j.Progress*100, j.Source.Name,
						j.CreatedAt.Format(time.RFC3339), j.Attempts, j.Error)
				} else {
					fmt.Fprintf(tw, "%s\t%s\t%s\t%3.0f%%\t%s\t%s\n", j.ID, j.State, jobview.What(j.Job), j.Progress*100, j.Source.Name, age(j.CreatedAt))
				}
			}
		})
		if err == nil && l.Next != "" && (*out == "table" || *out == "wide") {
			fmt.Fprintf(e.stderr, "more: herd jobs --cursor %s\n", l.Next)
		}
		return err
	}
	cmd.Flags().StringVar(&state, "state", "", "only jobs in this state (queued, running, succeeded, failed, canceled)")
	cmd.Flags().StringVar(&profileName, "profile", "", "only jobs with this profile")
	cmd.Flags().IntVar(&limit, "limit", 50, "jobs per page")
	cmd.Flags().StringVar(&cursor, "cursor", "", "continue after this job id (printed after a full page)")
	return cmd
}

func age(t time.Time) string {
	d := time.Since(t)
	switch {
	case d < time.Minute:
		return fmt.Sprintf("%ds", int(d.Seconds()))
	case d < time.Hour:
		return fmt.Sprintf("%dm", int(d.Minutes()))
	case d < 48*time.Hour:
		return fmt.Sprintf("%dh", int(d.Hours()))
	}
	return fmt.Sprintf("%dd", int(d.Hours()/24))
}

func (e *env) jobCmd() *cobra.Command {
	cmd := &cobra.Command{Use: "job ID", Short: "Show one job with its source, outputs and tasks", Args: cobra.ExactArgs(1)}
	out := addOutput(cmd, "table")
	cmd.RunE = func(cmd *cobra.Command, args []string) error {
		c, err := e.client(cmd)
		if err != nil {
			return err
		}
		j, err := c.Job(cmd.Context(), args[0])
		if err != nil {
			return err
		}
		switch *out {
		case "json", "yaml":
			return e.encode(*out, j)
		case "table", "wide":
			e.printJob(j, *out == "wide")
			return nil
		}
		return fmt.Errorf("unknown output format %q: use table, wide, json or yaml", *out)
	}
	return cmd
}

func (e *env) printJob(j jobview.JobView, wide bool) {
	w := tabwriter.NewWriter(e.stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintf(w, "Job:\t%s\n", j.ID)
	fmt.Fprintf(w, "State:\t%s\n", j.State)
	if j.Source.Library != "" {
		fmt.Fprintf(w, "Health check:\t%s in library %s\n", j.Source.Name, j.Source.Library)
		if j.Check != nil {
			fmt.Fprintf(w, "Found:\t%s\n", strings.TrimSuffix(j.Check.State+": "+j.Check.Note, ": "))
		}
	} else {
		fmt.Fprintf(w, "Profile:\t%s (version %d)\n", j.Profile, j.ProfileVersion)
	}
	progress := fmt.Sprintf("%.0f%%", j.Progress*100)
	if j.Speed > 0 {
		progress += fmt.Sprintf(", encoding at %.1fx realtime", j.Speed)
	}
	if j.ETASeconds != nil {
		progress += ", about " + time.Duration(*j.ETASeconds*float64(time.Second)).Round(time.Second).String() + " left"
	}
	fmt.Fprintf(w, "Progress:\t%s\n", progress)
	if c := jobview.CountChunks(j.Tasks); c.N > 0 {
		fmt.Fprintf(w, "Chunks:\t%d: %d done, %d running\n", c.N, c.Done, c.Running)
	}
	if j.Error != "" {
		fmt.Fprintf(w, "Error:\t%s\n", j.Error)
	}
	if j.Waiting != "" {
		fmt.Fprintf(w, "Waiting:\t%s\n", j.Waiting)
	}
	s := j.Source
	fmt.Fprintf(w, "Source:\t%s, %d bytes, %.1f s, %dx%d %s, %d audio channels\n", s.Name, s.Size, s.Duration, s.Width, s.Height, s.VideoCodec, s.AudioChannels)
	if j.Watch != nil {
		fmt.Fprintf(w, "Watched:\t%s in %s\n", j.Watch.File, j.Watch.Folder)
	}
	if len(j.Labels) > 0 {
		fmt.Fprintf(w, "Labels:\t%s\n", label.Format(j.Labels))
	}
	if len(j.Publish) > 0 {
		fmt.Fprintf(w, "Publish:\t%s\n", strings.Join(j.Publish, ", "))
	}
	fmt.Fprintf(w, "Created:\t%s\n", j.CreatedAt.Format(time.RFC3339))
	_ = w.Flush()
	if len(j.Outputs) > 0 {
		w = e.section("OUTPUTS", "NAME\tKIND\tSIZE\tRESOLUTION\tBITRATE\tCODEC\tSSIM\tPSNR\tVMAF\tVERIFIED\tURL")
		for _, o := range j.Outputs {
			res := ""
			if o.Width > 0 {
				res = fmt.Sprintf("%dx%d", o.Width, o.Height)
			}
			// How it was verified: "sampled 5/40 segments decoded", "full".
			ver := o.Verify
			if o.Segments > 0 {
				ver = fmt.Sprintf("%s %d/%d", o.Verify, o.Decoded, o.Segments)
			}
			// VMAF: the mean and, after the slash, the 5th percentile.
			vmaf := ""
			if o.VMAF != nil {
				vmaf = fmt.Sprintf("%.1f/%.1f", o.VMAF.Mean, o.VMAF.Low)
			}
			fmt.Fprintf(w, "%s\t%s\t%d\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n", o.Name, o.Kind, o.Size, res, kbps(o.Bitrate), o.Codec, num(o.SSIM, 4), num(o.PSNR, 1), vmaf, ver, o.URL)
		}
		_ = w.Flush()
	}
	e.printAudio(j)
	e.printSubtitles(j)
	e.printSearch(j)
	if len(j.Tasks) > 0 {
		w = e.section("TASKS", "KIND\tSTATE\tPROGRESS\tSPEED\tATTEMPT\tWORKER\tDURATION\tERROR")
		for _, t := range j.Tasks {
			d := ""
			if t.StartedAt != nil && t.FinishedAt != nil {
				d = t.FinishedAt.Sub(*t.StartedAt).Round(10 * time.Millisecond).String()
			}
			kind := string(t.Kind)
			if t.Chunk > 0 {
				kind += " " + strconv.Itoa(t.Chunk)
			}
			speed := ""
			if t.Speed > 0 {
				speed = fmt.Sprintf("%.1fx", t.Speed)
			}
			fmt.Fprintf(w, "%s\t%s\t%3.0f%%\t%s\t%d\t%s\t%s\t%s\n", kind, t.State, t.Progress*100, speed, t.Attempt, t.Worker, d, t.Error)
			if wide {
				for _, c := range t.Commands {
					fmt.Fprintf(w, "\t$ %s\n", strings.Join(c, " "))
				}
			}
		}
		_ = w.Flush()
	}
	if len(j.Deliveries) > 0 {
		w = e.section("DELIVERIES", "AT\tPUBLISHER\tTYPE\tEVENT\tATTEMPT\tRESULT\tDETAIL")
		for _, d := range j.Deliveries {
			res := "ok"
			switch {
			case !d.OK && d.Final:
				res = "gave up"
			case !d.OK:
				res = "failed, will retry"
			}
			fmt.Fprintf(w, "%s\t%s\t%s\t%s\t%d\t%s\t%s\n", d.At.Local().Format(time.DateTime), d.Publisher, d.Type, d.Event, d.Attempt, res, d.Detail)
		}
		_ = w.Flush()
	}
}

// planAudio is what the job's plan says of its audio tracks (media.Plan's
// fields that herd job shows).
type planAudio struct {
	Rungs     []struct{} `json:"rungs"`
	Notes     []string   `json:"notes"`
	Subtitles []struct {
		Name            string `json:"name"`
		Language        string `json:"language"`
		Input           int    `json:"input"`
		Forced          bool   `json:"forced"`
		HearingImpaired bool   `json:"hearing_impaired"`
		Sidecar         string `json:"sidecar"`
	} `json:"subtitles"`
	Audio []struct {
		Name     string        `json:"name"`
		Language string        `json:"language"`
		Channels int           `json:"channels"`
		Note     string        `json:"note"`
		Measured *job.Loudness `json:"measured"`
		Loudness *struct {
			Target    float64 `json:"target"`
			Gain      float64 `json:"gain"`
			Shortfall float64 `json:"shortfall"`
		} `json:"loudness"`
	} `json:"audio"`
}

// printAudio lists what the plan leaves out of the source (its notes),
// and the job's audio tracks: the source's loudness, the gain planned,
// and the loudness verification measured on the output.
func (e *env) printAudio(j jobview.JobView) {
	var pl planAudio
	if len(j.Plan) == 0 || json.Unmarshal(j.Plan, &pl) != nil {
		return
	}
	if len(pl.Notes) > 0 {
		fmt.Fprintln(e.stdout, "\nNOTES")
		for _, n := range pl.Notes {
			fmt.Fprintln(e.stdout, n)
		}
	}
	if len(pl.Audio) == 0 {
		return
	}
	made := map[string]*job.Loudness{}
	for _, o := range j.Outputs {
		if o.Loudness != nil {
			made[o.Path] = o.Loudness
		}
	}
	w := e.section("AUDIO", "TRACK	LANGUAGE	CHANNELS	SOURCE	GAIN	OUTPUT	NOTE")
	for i, a := range pl.Audio {
		src, gain, note := loud(a.Measured), "", a.Note
		if l := a.Loudness; l != nil {
			gain = fmt.Sprintf("%+.1f dB", l.Gain)
			if l.Shortfall > 0 {
				note = fmt.Sprintf("%.1f LU under %.0f LUFS: more gain would pass the true-peak limit", l.Shortfall, l.Target)
			}
		}
		out := loud(made[fmt.Sprintf("media_%d.m3u8", len(pl.Rungs)+i)])
		fmt.Fprintf(w, "%s\t%s\t%d\t%s\t%s\t%s\t%s\n", cmp.Or(a.Name, fmt.Sprintf("track %d", i+1)), dash(a.Language), a.Channels, src, gain, out, note)
	}
	_ = w.Flush()
}

// printSearch shows a per-title job's search: per rung its target, the
// CRF chosen, the quality predicted and measured, and what it spends
// against the fixed ladder.
func (e *env) printSearch(j jobview.JobView) {
	var pl media.Plan
	if len(j.Plan) == 0 || json.Unmarshal(j.Plan, &pl) != nil || pl.Quality == nil {
		return
	}
	t := pl.Quality.Target
	s := pl.Quality.Search
	if s == nil {
		fmt.Fprintf(e.stdout, "\nSEARCH\nTarget %s %g: not searched yet\n", strings.ToUpper(t.Metric), t.Target)
		return
	}
	measured := map[string]string{}
	for _, o := range j.Outputs {
		name, ok := pl.RungOf(o.Output)
		if !ok {
			continue
		}
		switch {
		case s.Metric == profile.MetricVMAF && o.VMAF != nil:
			measured[name] = fmt.Sprintf("%.1f", o.VMAF.Mean)
		case s.Metric == profile.MetricSSIM && o.SSIM > 0:
			measured[name] = fmt.Sprintf("%.4f", o.SSIM)
		}
	}
	samples := "1 sample"
	if len(s.Samples) != 1 {
		samples = fmt.Sprintf("%d samples", len(s.Samples))
	}
	title := fmt.Sprintf("SEARCH (%s, %s; target %s %g)", strings.ToUpper(s.Metric), samples, strings.ToUpper(t.Metric), t.Target)
	if chosen, fixed := s.Spend(); fixed > 0 {
		less, word := 100*(1-float64(chosen)/float64(fixed)), "less"
		if less < 0 {
			less, word = -less, "more"
		}
		title += fmt.Sprintf(": %d kb/s against the fixed ladder's %d kb/s, %.0f%% %s", chosen/1000, fixed/1000, less, word)
	}
	w := e.section(title, "RUNG	TARGET	CRF	PREDICTED	BITRATE	MEASURED	PROBES	RESULT")
	for _, r := range s.Rungs {
		result := "kept"
		switch {
		case r.Dropped != "":
			result = "dropped: " + r.Dropped
		case r.Reencoded != "":
			result = "kept; " + r.Reencoded
		case r.Capped && r.Fixed > 0:
			result = "kept: capped, encoded at the fixed ladder's bitrate"
		case r.Capped:
			result = "kept: capped (its bitrate cap binds)"
		case !r.Reached:
			result = "kept: the target is out of reach under its cap"
		case r.Bound > 0:
			result = fmt.Sprintf("kept: its size bounds it (best %g probed, its own target %g): aims %g under that best", r.Bound, r.Wanted, math.Round((r.Bound-r.Target)*1000)/1000)
		}
		fmt.Fprintf(w, "%s\t%g\t%d\t%g\t%d kb/s\t%s\t%d\t%s\n", r.Name, r.Target, r.CRF, r.Score, r.Bitrate/1000, dash(measured[r.Name]), len(r.Probes), result)
	}
	_ = w.Flush()
}

// printSubtitles lists the job's subtitle renditions or tracks, and what
// each is made from.
func (e *env) printSubtitles(j jobview.JobView) {
	var pl planAudio
	if len(j.Plan) == 0 || json.Unmarshal(j.Plan, &pl) != nil {
		return
	}
	if len(pl.Subtitles) > 0 {
		w := e.section("SUBTITLES", "TRACK	LANGUAGE	KIND	FROM")
		for i, s := range pl.Subtitles {
			kind, from := "", fmt.Sprintf("source stream %d", s.Input)
			switch {
			case s.Forced:
				kind = "forced"
			case s.HearingImpaired:
				kind = "SDH"
			}
			if s.Sidecar != "" {
				from = "subtitle file " + s.Sidecar[:min(12, len(s.Sidecar))]
			}
			fmt.Fprintf(w, "%s\t%s\t%s\t%s\n", cmp.Or(s.Name, fmt.Sprintf("subtitles %d", i+1)), dash(s.Language), dash(kind), from)
		}
		_ = w.Flush()
	}
}

// loud shows a loudness measurement: integrated loudness and true peak.
func loud(l *job.Loudness) string {
	if l == nil {
		return ""
	}
	if l.Silent() {
		return "silent"
	}
	return fmt.Sprintf("%.1f LUFS, %.1f dBTP", l.Integrated, l.TruePeak)
}

// section prints a titled table's heading and returns its writer.
func (e *env) section(title, header string) *tabwriter.Writer {
	fmt.Fprintln(e.stdout, "\n"+title)
	w := tabwriter.NewWriter(e.stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(w, header)
	return w
}

func kbps(b int64) string {
	if b <= 0 {
		return ""
	}
	return fmt.Sprintf("%d kb/s", b/1000)
}

func num(f float64, prec int) string {
	if f == 0 {
		return ""
	}
	return fmt.Sprintf("%.*f", prec, f)
}

// encode prints v as JSON or YAML with the API's field names.
func (e *env) encode(format string, v any) error {
	b, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		return err
	}
	if format == "json" {
		_, err = fmt.Fprintln(e.stdout, string(b))
		return err
	}
	var generic any
	if err := json.Unmarshal(b, &generic); err != nil {
		return err
	}
	y, err := yaml.Marshal(generic)
	if err != nil {
		return err
	}
	_, err = e.stdout.Write(y)
	return err
}

func (e *env) cancelCmd() *cobra.Command {
	return e.jobAction("cancel ID", "Cancel a job; running ffmpeg processes are stopped", (*client.Client).Cancel)
}

func (e *env) retryCmd() *cobra.Command {
	return e.jobAction("retry ID", "Queue a failed or canceled job again (finished steps are kept)", (*client.Client).Retry)
}

// jobAction is a command that does one thing to a job and prints its new state.
func (e *env) jobAction(use, short string, do func(*client.Client, context.Context, string) (jobview.JobView, error)) *cobra.Command {
	return &cobra.Command{
		Use: use, Short: short, Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := e.client(cmd)
			if err != nil {
				return err
			}
			j, err := do(c, cmd.Context(), args[0])
			if err != nil {
				return err
			}
			fmt.Fprintf(e.stdout, "%s %s\n", j.ID, j.State)
			return nil
		},
	}
}

func (e *env) shareCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "share JOB_ID",
		Short: "Print a signed, expiring link that plays a job's outputs with no key (--revoke: end every link)",
		Long: "share prints a playback link for one job: its page plays the video, and the HLS playlist and\n" +
			"DASH manifest beside it play in any player. Whoever holds it may read that job's outputs, and\n" +
			"nothing else, until it expires. Players on other sites need the site in herd serve's --cors-origin.\n" +
			"share --revoke replaces the server's link secret: every link made so far stops working.",
		Args: cobra.RangeArgs(0, 1),
	}
	ttl := cmd.Flags().String("ttl", "24h", "how long the link works, e.g. 1h, 24h or 720h (at most 8784h)")
	revoke := cmd.Flags().Bool("revoke", false, "revoke every playback link made so far (no JOB_ID)")
	out := addOutput(cmd, "table")
	cmd.RunE = func(cmd *cobra.Command, args []string) error {
		if *revoke == (len(args) == 1) {
			return errors.New("give a JOB_ID to share, or --revoke alone to end every link")
		}
		c, err := e.client(cmd)
		if err != nil {
			return err
		}
		if *revoke {
			if err := c.RevokeLinks(cmd.Context()); err != nil {
				return err
			}
			fmt.Fprintln(e.stdout, "every playback link made so far is revoked")
			return nil
		}
		l, err := c.Share(cmd.Context(), args[0], *ttl)
		if err != nil {
			return err
		}
		if *out == "json" || *out == "yaml" {
			return e.encode(*out, l)
		}
		fmt.Fprintln(e.stdout, l.URL)
		if *out == "wide" {
			for _, u := range []string{l.Playlist, l.Manifest} {
				if u != "" {
					fmt.Fprintln(e.stdout, u)
				}
			}
			fmt.Fprintln(e.stdout, "expires", l.ExpiresAt.Format(time.RFC3339))
		}
		return nil
	}
	return cmd
}

func (e *env) profilesCmd() *cobra.Command {
	cmd := &cobra.Command{Use: "profiles", Short: "List the server's encoding profiles", Args: cobra.NoArgs}
	return e.showing(cmd, func(cmd *cobra.Command, c *client.Client, _ []string) (view, error) {
		ps, err := c.Profiles(cmd.Context())
		return view{map[string]any{"profiles": ps}, func(tw io.Writer, _ bool) {
			fmt.Fprintln(tw, "NAME\tVERSION\tFORMAT\tBUILTIN\tQUALITY\tDESCRIPTION")
			for _, p := range ps {
				fmt.Fprintf(tw, "%v\t%v\t%v\t%v\t%v\t%v\n", p["name"], p["version"], p["format"], p["builtin"], qualityText(p), p["description"])
			}
		}}, err
	})
}

// qualityText says a profile's quality target (video.quality), as the
// API gives it: the metric and target at the source's size, how much
// lower each halving of a rung's height aims, and the SSIM fallback; "-"
// for a profile of fixed settings.
func qualityText(p map[string]any) string {
	v, _ := p["video"].(map[string]any)
	q, _ := v["quality"].(map[string]any)
	if q == nil {
		return "-"
	}
	s := fmt.Sprintf("%s %v, -%v per halving", strings.ToUpper(fmt.Sprint(q["metric"])), q["target"], q["step"])
	if f, ok := q["fallback"]; ok {
		s += fmt.Sprintf(" (SSIM %v without VMAF)", f)
	}
	return s
}

func (e *env) configCmd() *cobra.Command {
	cmd := &cobra.Command{Use: "config", Short: "Work with herd's configuration file"}
	cmd.AddCommand(&cobra.Command{
		Use: "check FILE", Short: "Check a configuration file without starting herd (exit 1 with the line of the first mistake)", Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			keys := append(settingKeys(e.serveCmd()), "data")
			f, err := config.Load(args[0], keys, e.environ())
			if err != nil {
				return err
			}
			profiles, err := profile.Load(filepath.Join(e.dataDir(cmd), "profiles"))
			if err != nil {
				return fmt.Errorf("load profiles: %w", err)
			}
			for _, w := range f.Watch {
				if _, ok := profiles.Get(w.Profile); !ok {
					return &config.Error{File: f.Name, Line: w.Line, Msg: fmt.Sprintf("watch %s: no profile %q (choose one of %s)", w.Path, w.Profile, strings.Join(profiles.Names(), ", "))}
				}
				if st, err := os.Stat(w.Path); err != nil || !st.IsDir() {
					fmt.Fprintf(e.stderr, "warning: watch folder %s does not exist (yet); herd will keep looking for it\n", w.Path)
				}
			}
			_, err = fmt.Fprintf(e.stdout, "%s is valid: %d settings, %d watch folders, %d publishers\n", args[0], len(f.Settings), len(f.Watch), len(f.Publishers))
			return err
		},
	})
	return cmd
}

func (e *env) versionCmd() *cobra.Command {
	return &cobra.Command{
		Use: "version", Short: "Print herd's version", Args: cobra.NoArgs,
		RunE: func(*cobra.Command, []string) error {
			_, err := fmt.Fprintf(e.stdout, "herd %s\n", version())
			return err
		},
	}
}

func (e *env) backupCmd() *cobra.Command {
	var database, out string
	var keep int
	cmd := &cobra.Command{
		Use:   "backup",
		Short: "Copy the SQLite database into a checked backup and keep only the newest (safe while herd serve runs)",
		Long: `Copy the SQLite database (a consistent snapshot, taken while herd serve keeps running),
check the copy with PRAGMA integrity_check, then give it its final name (herd-TIME.db in --out)
and remove all but the newest --keep backups. A copy that fails its check is removed and the
older backups stay. PostgreSQL: use pg_dump -Fc and check it with pg_restore --list.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			fromEnv(cmd, e.getenv)
			data := e.dataDir(cmd)
			db := e.str(cmd, "database", "HERD_DATABASE", filepath.Join(data, "herd.db"))
			st, err := sqlstore.Open(cmd.Context(), db)
			if err != nil {
				return err
			}
			defer st.Close()
			path, err := st.Backup(cmd.Context(), cmp.Or(out, filepath.Join(data, "backups")), keep, time.Now())
			if err != nil {
				return err
			}
			fmt.Fprintln(e.stdout, path)
			return nil
		},
	}
	cmd.Flags().StringVar(&database, "database", "", "the SQLite file (default DATA/herd.db) (env HERD_DATABASE)")
	cmd.Flags().StringVar(&out, "out", "", "backup folder (default DATA/backups)")
	cmd.Flags().IntVar(&keep, "keep", 7, "backups to keep, newest first")
	return cmd
}

func (e *env) migrateCmd() *cobra.Command {
	var database string
	cmd := &cobra.Command{
		Use: "migrate", Short: "Apply database migrations and exit (herd serve also applies them at start)", Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			db := e.str(cmd, "database", "HERD_DATABASE", filepath.Join(e.dataDir(cmd), "herd.db"))
			st, err := sqlstore.Open(cmd.Context(), db)
			if err != nil {
				return err
			}
			defer st.Close()
			v, err := st.SchemaVersion(cmd.Context())
			if err != nil {
				return err
			}
			fmt.Fprintf(e.stdout, "database schema at version %d\n", v)
			return nil
		},
	}
	cmd.Flags().StringVar(&database, "database", "", "a postgres:// URL, or a SQLite file (default DATA/herd.db) (env HERD_DATABASE)")
	return cmd
}

// Command returns herd's command tree, for tests that check what the
// deployment manifests name (flags, environment variables) exists.
func Command() *cobra.Command {
	return (&env{getenv: func(string) string { return "" }, environ: func() []string { return nil }, stdout: io.Discard, stderr: io.Discard}).root()
}
