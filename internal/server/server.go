// Package server wires `herd serve`: the store, blob store, profiles, admin
// key, API, reaper and in-process workers, and runs them until the context
// ends. It owns start-up order and shutdown, not the behaviour of the parts.
package server

import (
	"cmp"
	"context"
	"database/sql"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"net"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"syscall"
	"time"

	"github.com/prometheus/client_golang/prometheus/promhttp"
	"golang.org/x/sync/errgroup"
	"golang.org/x/term"
	"k8s.io/klog/v2"

	"github.com/herdhq/herd/internal/api"
	"github.com/herdhq/herd/internal/apikey"
	"github.com/herdhq/herd/internal/blob"
	"github.com/herdhq/herd/internal/campaign"
	"github.com/herdhq/herd/internal/config"
	"github.com/herdhq/herd/internal/deliver"
	"github.com/herdhq/herd/internal/ingest"
	"github.com/herdhq/herd/internal/job"
	"github.com/herdhq/herd/internal/kube"
	"github.com/herdhq/herd/internal/library"
	"github.com/herdhq/herd/internal/live"
	"github.com/herdhq/herd/internal/media"
	"github.com/herdhq/herd/internal/metrics"
	"github.com/herdhq/herd/internal/patience"
	"github.com/herdhq/herd/internal/pipeline"
	"github.com/herdhq/herd/internal/profile"
	"github.com/herdhq/herd/internal/queue"
	"github.com/herdhq/herd/internal/store"
	"github.com/herdhq/herd/internal/store/sqlstore"
	"github.com/herdhq/herd/internal/watch"
	"github.com/herdhq/herd/internal/web"
	"github.com/herdhq/herd/internal/worker"
)

// Config is everything `herd serve` can be told.
type Config struct {
	Data       string // data folder: database, blobs, profiles, admin.token
	Database   string // postgres:// URL, or a SQLite file; empty → DATA/herd.db
	Blob       string // "local" (DATA/blobs) or s3://bucket/prefix
	Watch      []config.Watch
	Publishers map[string]config.Publisher
	// Libraries are folder trees re-encoded by rules (package library).
	Libraries []config.Library
	// Subscriptions are the configuration file's webhook subscriptions.
	Subscriptions map[string]config.Subscription
	// WebhookAllow are addresses (CIDR prefixes) that webhook
	// subscriptions made through the API may reach although they are
	// loopback, private or link-local.
	WebhookAllow []string
	S3           blob.S3Config
	Addr         string          // listen address
	HTTP         patience.Config // how long a slow or idle client may hold a connection
	AdminToken   string          // fixed admin key for automation; empty → generate on first start
	LocalWorkers int             // in-process worker slots; 0 → none (a pure control plane); see DefaultLocalWorkers
	Dispatcher   string          // local (in-process and remote workers only) or kubernetes (also a Job per task)
	Kube         KubeConfig
	ImportRoots  []string
	CORSOrigins  []string // origins whose pages may play playback links (and frame their player page)
	LinkPresign  bool     // playback links' media comes from the bucket (S3 only)
	// DefaultProfile is the profile the upload page picks first (empty:
	// web-hls when there is one), so a first upload plays in any browser.
	DefaultProfile string
	// KeepReplaced is how long a replaced job's outputs stay (0:
	// campaign.DefaultKeep).
	KeepReplaced time.Duration
	MaxUpload    int64
	MaxStepSize  int64 // most bytes one task's step may upload
	MaxAttempts  int
	LeaseTTL     time.Duration
	Grace        time.Duration // how long running tasks may finish at shutdown
	StallAfter   time.Duration
	MaxWidth     int
	MaxHeight    int
	MaxPixels    int
	FFmpeg       string
	FFprobe      string
	// MeasureFFmpeg, VMAFModel and VMAF4KModel say where the in-process
	// workers measure VMAF (media.VMAFConfig; --measure-ffmpeg,
	// --vmaf-model, --vmaf-4k-model).
	MeasureFFmpeg, VMAFModel, VMAF4KModel string
	Version                               string
	PodName                               string // this server's pod (POD_NAME), which names it in the Kubernetes Lease; empty → the host name
	// Failpoint, for crash tests only (EnvFailpoint), kills the server with
	// SIGKILL where it names: library:POINT, a point of a library
	// replacement's journal.
	Failpoint string
}

// EnvFailpoint names the failpoint of a crash test (Config.Failpoint).
const EnvFailpoint = "HERD_FAILPOINT"

// KubeConfig is how --dispatcher kubernetes reaches the cluster and shapes Jobs.
type KubeConfig struct {
	kube.Config
	Kubeconfig     string // empty: in-cluster, $KUBECONFIG or ~/.kube/config
	PodTemplate    string // file: base of every task pod
	GPU            string // nvidia | intel | "" (none)
	GPUMaxJobs     int
	GPUPodTemplate string // file: base of GPU task pods
	WorkerSecret   string // keep a key for in-cluster pull workers (worker "pool") in this Secret
}

// Dispatchers.
const (
	DispatchLocal      = "local"
	DispatchKubernetes = "kubernetes"
)

// DefaultLocalWorkers is the in-process slot count from the core count: one
// ffmpeg already uses several cores, so half the cores, and at least two so
// that thumbnails run beside an encode.
func DefaultLocalWorkers() int { return max(2, runtime.NumCPU()/2) }

// Defaults of Config, which herd serve's flags show.
const (
	DefaultAddr = "127.0.0.1:8080"
	DefaultData = "herd-data" // the data folder, relative to the working directory
)

// AdminTokenFile is the name of the local copy of a generated admin key.
const AdminTokenFile = "admin.token"

func (c *Config) withDefaults() {
	c.Data = cmp.Or(c.Data, DefaultData)
	c.Addr = cmp.Or(c.Addr, DefaultAddr)
	c.MaxAttempts = cmp.Or(c.MaxAttempts, job.DefaultMaxAttempts)
	c.LeaseTTL = cmp.Or(c.LeaseTTL, queue.DefaultLeaseTTL)
	c.Grace = cmp.Or(c.Grace, worker.DefaultGrace)
	c.Dispatcher = cmp.Or(c.Dispatcher, DispatchLocal)
}

// validate checks the configuration, its defaults filled in, before
// anything is opened or started: a mistake stops the start and leaves
// nothing behind. What only the cluster can tell (the namespace) is checked
// once connected, still before anything starts.
func (c Config) validate() error {
	if c.Dispatcher != DispatchLocal && c.Dispatcher != DispatchKubernetes {
		return fmt.Errorf("--dispatcher %q: use local or kubernetes", c.Dispatcher)
	}
	if err := c.HTTP.Validate(); err != nil {
		return err
	}
	if c.Blob != "" && c.Blob != "local" && !strings.HasPrefix(c.Blob, "s3://") {
		return fmt.Errorf("--blob %q: use local, or s3://BUCKET/PREFIX", c.Blob)
	}
	for _, o := range c.CORSOrigins {
		if err := checkOrigin(o); err != nil {
			return err
		}
	}
	if _, err := deliver.NewGuard(c.WebhookAllow); err != nil {
		return err
	}
	if c.LinkPresign && !strings.HasPrefix(c.Blob, "s3://") {
		return errors.New("--link-presign needs --blob s3://...: local outputs can only come through the server")
	}
	if c.AdminToken != "" {
		if err := checkAdminToken(c.AdminToken); err != nil {
			return err
		}
	}
	if c.Dispatcher == DispatchKubernetes {
		if err := c.Kube.Validate(); err != nil {
			return err
		}
		if _, ok := kube.GPUKind(c.Kube.GPU); !ok && c.Kube.GPU != "" {
			return fmt.Errorf("--kube-gpu %q: use nvidia or intel (or leave it empty for CPU-only clusters)", c.Kube.GPU)
		}
	}
	return nil
}

// checkOrigin accepts an origin as browsers send it: scheme://host[:port],
// no path, no wildcard.
func checkOrigin(o string) error {
	u, err := url.Parse(o)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" || u.Path != "" || u.RawQuery != "" || u.Fragment != "" || u.User != nil ||
		strings.ContainsAny(u.Host, "*;, ") || u.String() != o || strings.ToLower(o) != o ||
		(u.Scheme == "https" && u.Port() == "443") || (u.Scheme == "http" && u.Port() == "80") {
		return fmt.Errorf("--cors-origin %q: give an origin as a browser sends it: scheme://host[:port] in lower case, with no path, wildcard or default port, e.g. https://videos.example.com", o)
	}
	return nil
}

// Run starts herd serve and blocks until ctx ends and everything has stopped.
// ready, when not nil, is called with the listening address once requests are served.
// Its steps: check the configuration, lock the data folder, open what is
// stored there, install the admin key and recover the previous run's
// leases, build the parts, prepare the loops that run beside the HTTP
// server, and serve until ctx ends.
func Run(ctx context.Context, cfg Config, log *slog.Logger, out io.Writer, ready func(addr string)) error {
	cfg.withDefaults()
	if err := cfg.validate(); err != nil {
		return err
	}
	unlock, err := lockData(cfg.Data)
	if err != nil {
		return err
	}
	defer unlock()
	res, err := open(ctx, cfg, log)
	if err != nil {
		return err
	}
	defer res.st.Close()
	if res.uploadLocks != nil {
		defer res.uploadLocks.Close()
	}
	if err := ensureAdminKey(ctx, res.st, cfg, out, log); err != nil {
		return err
	}
	local := localWorkerName()
	if err := recoverLeases(ctx, res.st, local+"/", log); err != nil {
		return err
	}
	a, err := build(cfg, res, log)
	if err != nil {
		return err
	}
	loops, err := prepareLoops(cfg, res, a, local, log)
	if err != nil {
		return err
	}
	return serve(ctx, cfg, a, loops, log, ready)
}

// resources are what Run opens before it builds anything: the media tools,
// the database, the files and the profiles.
type resources struct {
	tools   media.Tools
	st      *sqlstore.Store
	blobs   *blob.Local      // the data folder's blobs: local storage, or scratch space beside a bucket
	storage pipeline.Storage // where job files live
	sources ingest.Blobs     // where new sources are stored
	// uploadLocks is the pool resumable uploads take their locks from on
	// PostgreSQL (api.UploadLockConns), nil on SQLite.
	uploadLocks *sql.DB
	profiles    *profile.Set // the current versions (versions.Current)
	versions    *profile.Versions
}

// open finds ffmpeg and opens the database, the files and the profiles. On
// an error nothing stays open.
func open(ctx context.Context, cfg Config, log *slog.Logger) (r resources, err error) {
	if r.tools, err = media.Locate(cfg.FFmpeg, cfg.FFprobe, log); err != nil {
		return r, err
	}
	if r.st, err = sqlstore.Open(ctx, cmp.Or(cfg.Database, filepath.Join(cfg.Data, "herd.db"))); err != nil {
		return r, fmt.Errorf("open database: %w", err)
	}
	defer func() {
		if err != nil {
			_ = r.st.Close()
		}
	}()
	if r.st.Postgres() {
		if r.uploadLocks, err = sqlstore.OpenPostgresPool(cfg.Database, api.UploadLockConns); err != nil {
			return r, err
		}
		defer func() {
			if err != nil {
				_ = r.uploadLocks.Close()
			}
		}()
	}
	if r.blobs, err = blob.NewLocal(filepath.Join(cfg.Data, "blobs")); err != nil {
		return r, err
	}
	// Scratch files belong to attempts of this server's own workers, which
	// are all dead now, except remote workers' uploads: a remote worker's
	// lease can outlive a restart. TendScratch removes those whose lease is gone.
	left, err := r.blobs.CleanTemp(api.IsUploadScratch)
	if err != nil {
		return r, err
	}
	if len(left) > 0 {
		log.Warn(blob.ScratchLeft, "left", left)
	}
	if r.storage, r.sources, err = openStorage(ctx, cfg, r.st.Tasks, r.blobs, log); err != nil {
		return r, err
	}
	set, err := profile.Load(profilesDir(cfg))
	if err != nil {
		return r, fmt.Errorf("load profiles: %w", err)
	}
	if err := checkProfiles(cfg)(set); err != nil {
		return r, err
	}
	if r.versions, err = profile.NewVersions(ctx, r.st, set); err != nil {
		return r, err
	}
	r.profiles = r.versions.Current
	return r, nil
}

// profilesDir is where the user's profiles are.
func profilesDir(cfg Config) string { return filepath.Join(cfg.Data, "profiles") }

// localWorkerName names this server's in-process workers; their lease
// owners start with it and a slash.
func localWorkerName() string {
	host, _ := os.Hostname()
	return "local/" + cmp.Or(host, "localhost")
}

// recoverLeases gives back the tasks this server's in-process workers (lease
// owners starting with prefix) held when it stopped: none of them runs now.
func recoverLeases(ctx context.Context, st *sqlstore.Store, prefix string, log *slog.Logger) error {
	n, err := st.ReleaseOwners(ctx, prefix, time.Now())
	if err != nil {
		return fmt.Errorf("recover tasks of the previous run: %w", err)
	}
	if n > 0 {
		log.Warn("requeued tasks that were running when the server stopped", "tasks", n)
	}
	return nil
}

// app is what Run builds on the resources: the queue, the submitter, the
// executor of in-process tasks, and the API and web UI behind one HTTP server.
type app struct {
	deliver   *deliver.Service
	campaigns *campaign.Service
	libraries *library.Manager
	m         *metrics.Metrics
	sig       *queue.Signal
	q         *queue.Queue
	sub       *ingest.Submitter
	exec      *pipeline.Executor
	playlists *live.Hub
	api       *api.Server
	http      *http.Server
	// localCaps are the encoders the in-process workers proved.
	localCaps []string
}

func build(cfg Config, r resources, log *slog.Logger) (*app, error) {
	reg, m := metrics.NewRegistry()
	reg.MustRegister(metrics.NewStoreCollector(r.st, log))

	sig := &queue.Signal{}
	q := queue.New(r.st, sig, queue.Config{LeaseTTL: cfg.LeaseTTL})
	pubs := map[string]string{}
	for name, p := range cfg.Publishers {
		pubs[name] = p.Type
	}
	sub := ingest.New(r.st, r.sources, r.profiles, sig, ingest.Config{MaxUpload: cfg.MaxUpload, ImportRoots: cfg.ImportRoots, MaxAttempts: cfg.MaxAttempts,
		Publishers: pubs})
	guard, err := deliver.NewGuard(cfg.WebhookAllow)
	if err != nil {
		return nil, err
	}
	// The libraries' folders: media servers index them, and the in-process
	// workers read them (their health checks run here).
	libPaths := map[string]string{}
	for _, l := range cfg.Libraries {
		libPaths[l.Name] = l.Path
	}
	dlv, err := deliver.New(r.st, localWorkerName(), r.storage, cfg.Publishers, libPaths, guard, log)
	if err != nil {
		return nil, err
	}
	libraries := slices.Sorted(maps.Keys(cfg.Publishers))
	for _, w := range cfg.Watch {
		libraries = append(libraries, w.Path)
	}
	camp := campaign.New(campaign.Config{Store: r.st, Redo: sub, Profiles: r.profiles, Files: r.storage, Libraries: libraries,
		Keep: cfg.KeepReplaced, Log: log.With("component", "campaigns")})
	limits := media.Limits{MaxWidth: cfg.MaxWidth, MaxHeight: cfg.MaxHeight, MaxPixels: cfg.MaxPixels}
	libs, err := libraryManager(cfg, r, sub, limits, log)
	if err != nil {
		return nil, err
	}
	libs.Wake = sig.Kick
	// The in-process workers prove the software encoders as remote ones do
	// (a trial encode each), so that a task needing libsvtav1 or libx265 runs
	// here only where this ffmpeg has it; they use no GPU.
	var localCaps []string
	if cfg.LocalWorkers > 0 {
		trials := worker.DetectCaps(context.Background(), r.tools.FFmpeg, worker.Software)
		localCaps = worker.Caps(trials)
		log.Info("encoders proven by trial encodes", "capabilities", localCaps, "workers", "in-process")
		if r.tools.VMAF, err = media.SetupVMAF(context.Background(), media.VMAFConfig{Measure: cfg.MeasureFFmpeg, Model: cfg.VMAFModel,
			Model4K: cfg.VMAF4KModel, ModelDir: filepath.Join(cfg.Data, "vmaf")}, r.tools.FFmpeg, log); err != nil {
			return nil, err
		}
		if r.tools.VMAF != nil {
			localCaps = append(localCaps, job.CapVMAF)
		}
		for _, name := range slices.Sorted(maps.Keys(libPaths)) {
			localCaps = append(localCaps, job.LibraryNeed(name))
		}
	}
	playlists := live.New(r.st, r.storage, log)
	exec := pipeline.New(r.tools, r.storage, r.versions, limits, log).WithLibraries(libPaths).WithLive(playlists)

	srv := api.New(api.Deps{
		Store: r.st, Blobs: r.blobs, Profiles: r.profiles, Versions: r.versions, Submit: sub, Kick: sig, Log: log, Metrics: m,
		Scrape:    promhttp.HandlerFor(reg, promhttp.HandlerOpts{}),
		Campaigns: camp,
		Libraries: libs,
		Queue:     q, Files: r.storage, Limits: limits, MaxStep: cfg.MaxStepSize, CORSOrigins: cfg.CORSOrigins,
		LinkPresign: cfg.LinkPresign, CheckHook: guard.CheckURL, OtherCaps: otherCaps(cfg, localCaps), Live: playlists,
		Checks: []api.Check{
			{Name: "database", Fn: r.st.Ping},
			{Name: "storage", Fn: r.storage.Check},
			{Name: "ffmpeg", Fn: r.tools.Check},
		},
	})
	// Unfinished uploads wait where every replica sees them: in the bucket
	// with S3 storage, locked through PostgreSQL when there is one.
	upcfg := api.UploadsConfig{Dir: filepath.Join(cfg.Data, "uploads"), Postgres: r.uploadLocks}
	if b, ok := r.sources.(*blob.S3); ok {
		upcfg.Bucket = b
	}
	if err := srv.EnableUploads(upcfg); err != nil {
		return nil, err
	}
	ui, err := web.New(web.Deps{API: srv, Profiles: r.profiles, Version: cfg.Version, Log: log,
		DefaultProfile: cfg.DefaultProfile, FrameOrigins: cfg.CORSOrigins, Publishers: slices.Sorted(maps.Keys(cfg.Publishers))})
	if err != nil {
		return nil, fmt.Errorf("web ui: %w", err)
	}
	// No server-wide read or write timeout, which would cut a 2 GiB upload
	// or an event stream: each body and response must keep moving instead.
	httpSrv := cfg.HTTP.Server(handler(srv.Handler(), ui.Handler()))
	httpSrv.ErrorLog = slog.NewLogLogger(log.Handler(), slog.LevelWarn)
	httpSrv.RegisterOnShutdown(srv.Shutdown) // event streams end, so Shutdown need not wait them out
	return &app{deliver: dlv, campaigns: camp, libraries: libs, m: m, sig: sig, q: q, sub: sub, exec: exec, playlists: playlists, api: srv, http: httpSrv, localCaps: localCaps}, nil
}

// libraryManager makes the configuration's libraries (their rules
// compiled when the file was loaded) and checks their profiles.
func libraryManager(cfg Config, r resources, sub *ingest.Submitter, limits media.Limits, log *slog.Logger) (*library.Manager, error) {
	specs := make([]library.Spec, 0, len(cfg.Libraries))
	for _, l := range cfg.Libraries {
		if l.CompiledRule == nil {
			return nil, fmt.Errorf("library %s: its rule was not checked (libraries come from a configuration file)", l.Name)
		}
		spec := library.Spec{Name: l.Name, Path: l.Path, Rule: l.CompiledRule, Profile: l.Profile, Action: l.Action.Kind, Publish: l.Action.Publish,
			MinSavings: float64(l.MinSavings), KeepOriginals: time.Duration(l.KeepOriginals), Window: l.Hours, MaxRunning: l.MaxRunning,
			ScanEvery: time.Duration(l.ScanEvery), Labels: l.Labels}
		for _, name := range slices.Sorted(maps.Keys(cfg.Publishers)) {
			if pc := cfg.Publishers[name]; (pc.Type == config.PublishPlex || pc.Type == config.PublishJellyfin) && pc.Library == l.Name {
				spec.Notify = append(spec.Notify, name)
			}
		}
		specs = append(specs, spec)
	}
	m := library.New(specs, r.st, sub, r.storage, r.tools, limits, log)
	if err := m.Validate(); err != nil {
		return nil, err
	}
	if point, ok := strings.CutPrefix(cfg.Failpoint, "library:"); ok {
		log.Warn("crash test: the server kills itself when a library replacement reaches a point", "point", point)
		m.CrashAt(point)
	}
	return m, nil
}

// loop is one of the parts that run beside the HTTP server until their
// context ends.
type loop func(ctx context.Context) error

// prepareLoops makes, without starting any, what runs beside the HTTP
// server: the reaper and the API's sweeps, the in-process workers (named
// local), the Kubernetes leader's work and the watch folders.
func prepareLoops(cfg Config, r resources, a *app, local string, log *slog.Logger) ([]loop, error) {
	loops := []loop{
		queue.NewReaper(a.q, log, a.m.Reaped).Run,
		a.api.TendUploads,
		a.api.TendScratch,
		a.playlists.Run,
		a.api.SweepKeys,
		a.deliver.Run,
		func(ctx context.Context) error { a.campaigns.Run(ctx); return nil },
		newProfileReloader(profilesDir(cfg), r.versions, checkProfiles(cfg), log.With("component", "profiles")).Run,
	}
	if err := syncSubscriptions(context.Background(), r.st, cfg.Subscriptions); err != nil {
		return nil, err
	}
	if cfg.LocalWorkers > 0 {
		pool := worker.NewPool(a.q, a.exec, worker.Config{
			Name: local, OwnerPrefix: local + "/", Slots: cfg.LocalWorkers, Caps: a.localCaps,
			Heartbeat: cfg.LeaseTTL / 3, Grace: cfg.Grace, StallAfter: cfg.StallAfter,
		}, log, a.m)
		loops = append(loops, pool.Run)
	}
	if cfg.Dispatcher == DispatchKubernetes || cfg.Kube.WorkerSecret != "" {
		lead, err := kubeLeader(cfg, r.st, a, log)
		if err != nil {
			return nil, err
		}
		loops = append(loops, lead)
	}
	if len(cfg.Libraries) > 0 {
		loops = append(loops, func(ctx context.Context) error { a.libraries.Run(ctx); return nil })
	}
	if len(cfg.Watch) > 0 {
		wt, err := watch.New(cfg.Watch, cfg.Publishers, filepath.Join(cfg.Data, "watch"), a.sub, r.st, log)
		if err != nil {
			return nil, err
		}
		loops = append(loops, wt.Run)
	}
	return loops, nil
}

// kubeLeader connects to the cluster and returns what the server holding
// the Kubernetes Lease runs: the dispatcher, and the key of the in-cluster
// pull workers. Of several servers, the one holding the Lease dispatches and
// keeps the keys. Settings errors stop the start; each term as leader gets a
// fresh dispatcher.
func kubeLeader(cfg Config, st kube.TaskStore, a *app, log *slog.Logger) (loop, error) {
	cs, ns, err := kube.Connect(cfg.Kube.Kubeconfig)
	if err != nil {
		return nil, err
	}
	ns = cmp.Or(cfg.Kube.Namespace, ns)
	klog.SetSlogLogger(log.With("component", "client-go")) // client-go's own reports, in herd's log
	var kc kube.Config
	if cfg.Dispatcher == DispatchKubernetes {
		if kc, err = dispatcherConfig(cfg, ns); err != nil {
			return nil, err
		}
		if _, err := kube.New(kc, cs, st, a.q, a.sig, log); err != nil {
			return nil, err
		}
	}
	return func(ctx context.Context) error {
		return kube.Lead(ctx, cs, ns, kube.Identity(cfg.PodName), log, func(lctx context.Context) error {
			lg, lgctx := errgroup.WithContext(lctx)
			if cfg.Kube.WorkerSecret != "" {
				lg.Go(func() error { return kube.KeepWorkerKey(lgctx, cs, st, ns, cfg.Kube.WorkerSecret, PoolWorker, 1, log) })
			}
			if cfg.Dispatcher == DispatchKubernetes {
				d, err := kube.New(kc, cs, st, a.q, a.sig, log)
				if err != nil {
					return err
				}
				lg.Go(func() error { return d.Run(lgctx) })
			}
			return lg.Wait()
		})
	}, nil
}

// serve listens on cfg.Addr and runs the HTTP server and the loops until
// ctx ends or one of them fails; then the HTTP server shuts down.
func serve(ctx context.Context, cfg Config, a *app, loops []loop, log *slog.Logger, ready func(addr string)) error {
	ln, err := net.Listen("tcp", cfg.Addr)
	if err != nil {
		return fmt.Errorf("listen on %s: %w (pass --addr to choose another)", cfg.Addr, err)
	}
	g, gctx := errgroup.WithContext(ctx)
	g.Go(func() error {
		if err := a.http.Serve(ln); !errors.Is(err, http.ErrServerClosed) {
			return fmt.Errorf("serve http: %w", err)
		}
		return nil
	})
	g.Go(func() error {
		<-gctx.Done()
		sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
		defer cancel()
		err := a.http.Shutdown(sctx)
		if err == nil {
			a.api.FinalSweep(sctx)
		}
		return err
	})
	for _, run := range loops {
		g.Go(func() error { return run(gctx) })
	}
	addr := ln.Addr().String()
	log.Info("herd is serving", "url", "http://"+addr, "data", cfg.Data, "local_workers", max(cfg.LocalWorkers, 0), "dispatcher", cfg.Dispatcher, "version", cfg.Version)
	if ready != nil {
		ready(addr)
	}
	return g.Wait()
}

// handler sends the API's addresses to the API and every other to the web UI.
func handler(apiH, ui http.Handler) http.Handler {
	mux := http.NewServeMux()
	for _, p := range []string{"/api/", "/healthz", "/readyz", "/metrics", api.LinkPrefix} {
		mux.Handle(p, apiH)
	}
	mux.Handle("/", ui)
	mux.Handle("GET "+api.LinkPrefix+"{token}/{job}/{$}", ui) // a playback link's player page
	return mux
}

// syncSubscriptions makes the store's configuration-file subscriptions
// the file's: each is stored under the id "config-NAME"; those the file
// no longer has are removed. A paused one stays paused.
func syncSubscriptions(ctx context.Context, st store.Store, subs map[string]config.Subscription) error {
	have, err := st.ListSubscriptions(ctx)
	if err != nil {
		return err
	}
	for _, s := range have {
		if _, ok := subs[strings.TrimPrefix(s.ID, "config-")]; s.Origin == "config" && !ok {
			if err := st.DeleteSubscription(ctx, s.ID); err != nil {
				return err
			}
		}
	}
	for name, c := range subs {
		s := store.Subscription{ID: "config-" + name, Name: name, URL: c.URL, Secret: c.Secret, Events: c.Events, Profiles: c.Profiles,
			Labels: c.Labels, Origin: "config", CreatedAt: time.Now().UTC()}
		for _, h := range have {
			if h.ID == s.ID {
				s.CreatedAt, s.FailingSince, s.PausedAt, s.Note = h.CreatedAt, h.FailingSince, h.PausedAt, h.Note
			}
		}
		if err := st.PutSubscription(ctx, s); err != nil {
			return err
		}
	}
	return nil
}

// otherCaps are the capabilities of the executors that do not register as
// workers: the in-process workers' proven encoders, and what the Kubernetes
// dispatcher claims for its task pods (kube.Dispatcher.dispatch).
func otherCaps(cfg Config, local []string) []string {
	caps := slices.Clone(local)
	if cfg.Dispatcher == DispatchKubernetes {
		caps = append(caps, media.SoftwareCaps()...)
		if g, ok := kube.GPUKind(cfg.Kube.GPU); ok {
			caps = append(caps, g.Caps...)
		}
	}
	return caps
}

// PoolWorker is the worker name the replicas of an in-cluster pull-worker
// Deployment share (--kube-worker-secret).
const PoolWorker = "pool"

// dispatcherConfig is the Kubernetes dispatcher's configuration, with its
// pod templates read from their files.
func dispatcherConfig(cfg Config, ns string) (kube.Config, error) {
	kc := cfg.Kube.Config
	kc.LeaseTTL, kc.Grace = cfg.LeaseTTL, min(cfg.Grace, 5*time.Minute)
	var err error
	if kc.Template, err = kube.LoadTemplate(cfg.Kube.PodTemplate); err != nil {
		return kc, err
	}
	if cfg.Kube.GPU != "" {
		g, _ := kube.GPUKind(cfg.Kube.GPU) // validate checked the name
		g.MaxJobs = cmp.Or(cfg.Kube.GPUMaxJobs, g.MaxJobs)
		if g.Template, err = kube.LoadTemplate(cfg.Kube.GPUPodTemplate); err != nil {
			return kc, err
		}
		kc.GPU = &g
	}
	kc.Namespace = ns
	return kc, nil
}

// openStorage opens where job files live: the local blob folder, or an
// S3-compatible bucket (with blobs as local scratch space and a source cache
// for the in-process workers). tasks lists a job's tasks (the store's).
func openStorage(ctx context.Context, cfg Config, tasks func(ctx context.Context, jobID string) ([]job.Task, error), blobs *blob.Local, log *slog.Logger) (pipeline.Storage, ingest.Blobs, error) {
	if cfg.Blob == "" || cfg.Blob == "local" {
		return &pipeline.LocalFiles{Blobs: blobs, Log: log}, blobs, nil
	}
	s3cfg := cfg.S3 // an s3:// URL: validate refused anything else
	s3cfg.URL = cfg.Blob
	tmp, err := blobs.TempDir("s3")
	if err != nil {
		return nil, nil, err
	}
	b, err := blob.OpenS3(ctx, s3cfg, tmp)
	if err != nil {
		return nil, nil, err
	}
	cache, err := blob.NewCache(filepath.Join(cfg.Data, "cache", "sources"), blob.DefaultCacheMaxAge)
	if err != nil {
		return nil, nil, err
	}
	log.Info("storing files in a bucket", "blob", b.String())
	return &pipeline.ObjectFiles{Blobs: b, Cache: cache, Temp: blobs, Log: log, Tasks: tasks}, b, nil
}

// lockData creates the data folder when missing and takes an exclusive
// lock on it: two servers on one SQLite database would fight over leases.
func lockData(dir string) (func(), error) {
	if err := os.MkdirAll(dir, 0o750); err != nil {
		return nil, fmt.Errorf("create data folder: %w", err)
	}
	f, err := os.OpenFile(filepath.Join(dir, "herd.lock"), os.O_CREATE|os.O_RDWR, 0o600)
	if err != nil {
		return nil, fmt.Errorf("open lock file: %w", err)
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		_ = f.Close()
		return nil, fmt.Errorf("another herd serve is using %s; stop it first, or pass another --data", dir)
	}
	return func() { _ = f.Close() }, nil
}

// adminKeys is what installing the admin key needs from the store.
type adminKeys interface {
	CountKeys(ctx context.Context, kind string) (int, error)
	CreateKey(ctx context.Context, k store.Key) error
	KeyByHash(ctx context.Context, hash string) (store.Key, error)
	ListKeys(ctx context.Context) ([]store.Key, error)
	RevokeKey(ctx context.Context, id string) (store.Key, error)
}

// ensureAdminKey installs the configured admin key, or on first start
// generates one, prints it once (to a terminal only), and leaves a 0600 copy for the local CLI.
func ensureAdminKey(ctx context.Context, st adminKeys, cfg Config, out io.Writer, log *slog.Logger) error {
	now := time.Now().UTC()
	if cfg.AdminToken != "" {
		return installAdminToken(ctx, st, cfg.AdminToken, now, log)
	}
	n, err := st.CountKeys(ctx, "admin")
	if err != nil {
		return err
	}
	if n > 0 {
		return nil
	}
	key := apikey.New("herd_adm_")
	if err := st.CreateKey(ctx, store.Key{ID: job.NewID("k"), Kind: "admin", Name: "generated at first start", Hash: apikey.Hash(key), CreatedAt: now}); err != nil {
		return err
	}
	path := filepath.Join(cfg.Data, AdminTokenFile)
	if err := os.WriteFile(path, []byte(key+"\n"), 0o600); err != nil {
		return fmt.Errorf("save admin key copy: %w", err)
	}
	// A key is shown only to a person at a terminal: output that is not a
	// terminal (a container's, a service's) is kept as a log, and keys never
	// go into logs.
	if f, ok := out.(*os.File); ok && term.IsTerminal(int(f.Fd())) {
		fmt.Fprintf(out, "\nherd generated an admin key. It is shown only this once:\n\n    %s\n\n"+
			"Only its hash is stored. A copy readable only by you is in %s, which the herd CLI on this machine uses.\n"+
			"Elsewhere, set HERD_TOKEN to it.\n\n", key, path)
		return nil
	}
	fmt.Fprintf(out, "\nherd generated an admin key and stored only its hash. The key itself is in %s (readable only by you),\n"+
		"which the herd CLI on this machine uses: `herd token create` there prints a new admin key (in a container:\n"+
		"docker exec NAME herd token create, kubectl exec POD -- herd token create). It is not printed here because\n"+
		"this output is not a terminal and may be kept as a log.\n\n", path)
	return nil
}

// checkAdminToken refuses an --admin-token too short to be a secret.
func checkAdminToken(token string) error {
	if len(token) < 16 {
		return errors.New("the admin token must be at least 16 characters")
	}
	return nil
}

// installAdminToken makes the key --admin-token (HERD_ADMIN_TOKEN) gives a
// live admin key, and retires the key an earlier, different token set: a
// token is rotated by restarting with the new one. A token whose key an
// admin revoked stays revoked.
func installAdminToken(ctx context.Context, st adminKeys, token string, now time.Time, log *slog.Logger) error {
	if err := checkAdminToken(token); err != nil {
		return err
	}
	h := apikey.Hash(token)
	k, err := st.KeyByHash(ctx, h)
	if errors.Is(err, job.ErrNotFound) {
		k = store.Key{ID: job.NewID("k"), Kind: "admin", Name: api.AdminTokenKeyName, Hash: h, CreatedAt: now}
		if err = st.CreateKey(ctx, k); err != nil {
			// Another replica, started with the same token, may have stored it first.
			var gerr error
			if k, gerr = st.KeyByHash(ctx, h); gerr != nil {
				return fmt.Errorf("install the admin token: %w", err)
			}
			err = nil
		}
	}
	switch {
	case err != nil:
		return fmt.Errorf("install the admin token: %w", err)
	case k.Kind != "admin":
		return errors.New("--admin-token (HERD_ADMIN_TOKEN) is a herd key of another kind; set a new random token of at least 16 characters")
	case k.Revoked:
		// Keys it would retire stay: they may be the only ones that work.
		log.Warn("the admin key --admin-token (HERD_ADMIN_TOKEN) sets was revoked and stays revoked; set a new token to have a working one, or use another admin key (herd token list)", "key_id", k.ID)
		return nil
	}
	keys, err := st.ListKeys(ctx)
	if err != nil {
		return fmt.Errorf("install the admin token: %w", err)
	}
	for _, old := range keys {
		if old.Kind != "admin" || old.Name != api.AdminTokenKeyName || old.ID == k.ID || old.Revoked {
			continue
		}
		if _, err := st.RevokeKey(ctx, old.ID); err != nil {
			return fmt.Errorf("retire the previous admin token: %w", err)
		}
		log.Info("retired the admin key an earlier --admin-token set (its browser sessions end with it)", "key_id", old.ID)
	}
	return nil
}
