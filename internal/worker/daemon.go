package worker

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"golang.org/x/sync/errgroup"

	"github.com/herdhq/herd/internal/blob"
	"github.com/herdhq/herd/internal/job"
	"github.com/herdhq/herd/internal/media"
	"github.com/herdhq/herd/internal/metrics"
	"github.com/herdhq/herd/internal/pipeline"
	"github.com/herdhq/herd/internal/profile"
	"github.com/herdhq/herd/internal/protocol"
	"github.com/herdhq/herd/internal/remote"
)

// DaemonConfig is everything `herd worker` can be told.
type DaemonConfig struct {
	Server            string
	Token             string // worker key
	TokenFrom         string // where Token came from, for messages: "--token" or "HERD_WORKER_TOKEN"
	RegistrationToken string // traded for a key on first start
	Name              string
	Data              string // key file, source cache, scratch; "" → DefaultData
	HealthAddr        string // "" → DefaultHealthAddr
	MaxTasks          int
	GPUSessions       int64 // encode sessions the GPU allows at once; 0 → DefaultGPUSessions
	Grace             time.Duration
	StallAfter        time.Duration
	Heartbeat         time.Duration
	FFmpeg, FFprobe   string
	// MeasureFFmpeg is the ffmpeg that measures VMAF (--measure-ffmpeg;
	// "" the encoding one, where it has libvmaf); VMAFModel the model file
	// a libvmaf 1.x reads (--vmaf-model; "" herd's own copy).
	MeasureFFmpeg, VMAFModel string
	// VMAF4KModel is the 4K model file a libvmaf 1.x reads for sources
	// taller than 1440 lines (--vmaf-4k-model; "": none).
	VMAF4KModel string
	// Libraries are the server's libraries this machine mounts, by name →
	// folder here: the worker runs their health checks, reading the files
	// in place.
	Libraries map[string]string
}

// setupVMAF finds the ffmpeg that measures VMAF on this machine (see
// media.SetupVMAF); a model of herd's own goes in the work folder.
func (cfg DaemonConfig) setupVMAF(ctx context.Context, tools media.Tools, log *slog.Logger) (*media.VMAF, error) {
	return media.SetupVMAF(ctx, media.VMAFConfig{Measure: cfg.MeasureFFmpeg, Model: cfg.VMAFModel, Model4K: cfg.VMAF4KModel, ModelDir: filepath.Join(cmp.Or(cfg.Data, DefaultData), "vmaf")},
		tools.FFmpeg, log)
}

// KeyFile is where a registered worker keeps its key.
const KeyFile = "worker.key"

// Defaults of DaemonConfig, which herd worker's flags show.
const (
	DefaultData        = "herd-worker"
	DefaultHealthAddr  = ":8081"
	DefaultGPUSessions = 5 // consumer NVIDIA cards allow 5 at once
)

// RunDaemon registers (when asked), proves its encoders, and runs tasks from
// the server until ctx ends. It never exits on a transient server error; a
// key the server refuses (unknown, revoked, expired, of another kind) ends
// it at once with a *KeyRefusedError, running tasks stopped: nothing they
// did could be reported, and retrying would never help.
func RunDaemon(ctx context.Context, cfg DaemonConfig, log *slog.Logger, out io.Writer) error {
	host, _ := os.Hostname()
	cfg.Name = cmp.Or(cfg.Name, host, "worker")
	cfg.Data = cmp.Or(cfg.Data, DefaultData)
	cfg.MaxTasks = max(cfg.MaxTasks, 1)
	if cfg.Server == "" {
		return errors.New("no server: pass --server URL or set HERD_SERVER")
	}
	if err := os.MkdirAll(cfg.Data, 0o700); err != nil {
		return fmt.Errorf("create worker data folder: %w", err)
	}
	tools, err := media.Locate(cfg.FFmpeg, cfg.FFprobe, log)
	if err != nil {
		return err
	}
	key, from, err := workerKey(ctx, cfg, out)
	if err != nil {
		return err
	}
	trials := Detect(ctx, tools.FFmpeg)
	caps := Caps(trials)
	log.Info("encoders proven by trial encodes", "capabilities", caps)
	if tools.VMAF, err = cfg.setupVMAF(ctx, tools, log); err != nil {
		return err
	}
	if tools.VMAF != nil {
		caps = append(caps, job.CapVMAF)
	}
	for _, name := range slices.Sorted(maps.Keys(cfg.Libraries)) {
		caps = append(caps, job.LibraryNeed(name))
		log.Info("health checks of a library run here", "library", name, "path", cfg.Libraries[name])
	}

	refusedCtx, refuse := context.WithCancelCause(context.Background())
	defer refuse(nil)
	rc, err := remote.New(remote.Config{Server: cfg.Server, Key: key, Slots: cfg.MaxTasks, Work: cfg.Data,
		OnKeyRefused: func(err error) { refuse(&KeyRefusedError{From: from, Err: err}) }}, log)
	if err != nil {
		return err
	}
	if left, err := rc.CleanScratch(); err != nil {
		return err
	} else if len(left) > 0 {
		log.Warn(blob.ScratchLeft, "left", left)
	}
	reg, m := metrics.NewRegistry()

	// Profiles come with each job's plan; the set is only needed for probing,
	// which checks the profile version the job asked for.
	exec := pipeline.New(tools, rc, profile.Builtin(), media.Limits{}, log).WithLibraries(cfg.Libraries).WithLive(rc)
	poolCfg := Config{
		Name: cfg.Name, OwnerPrefix: "worker/" + cfg.Name + "/", Slots: cfg.MaxTasks, Caps: caps,
		Heartbeat: cfg.Heartbeat, Grace: cfg.Grace, StallAfter: cfg.StallAfter,
	}
	if gpu := pickGPU(caps, cmp.Or(cfg.GPUSessions, DefaultGPUSessions)); gpu != nil {
		// Advertise only the family the executor will use, besides software.
		poolCfg.Caps = slices.DeleteFunc(slices.Clone(caps), func(c string) bool {
			return strings.Contains(c, ":") && !slices.Contains(gpu.Caps, c)
		})
		exec.WithGPU(gpu)
		poolCfg.ClaimCaps = gpu.ClaimCaps
		log.Info("GPU encoding enabled", "kind", gpu.Kind, "sessions", gpu.Sessions)
	}
	pool := NewPool(rc, untilRefused{exec, refusedCtx}, poolCfg, log, m)

	health := &http.Server{Handler: healthMux(rc, tools, trials, reg), ReadHeaderTimeout: 10 * time.Second}
	ln, err := net.Listen("tcp", cmp.Or(cfg.HealthAddr, DefaultHealthAddr))
	if err != nil {
		return fmt.Errorf("health server: %w (pass --health-addr to choose another)", err)
	}
	g, gctx := errgroup.WithContext(ctx)
	g.Go(func() error {
		if err := health.Serve(ln); !errors.Is(err, http.ErrServerClosed) {
			return err
		}
		return nil
	})
	g.Go(func() error { // a refused key ends the worker: the pool stops with gctx
		select {
		case <-refusedCtx.Done():
			return context.Cause(refusedCtx)
		case <-gctx.Done():
			return nil
		}
	})
	g.Go(func() error {
		err := pool.Run(gctx)
		sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
		defer cancel()
		_ = health.Shutdown(sctx)
		return err
	})
	fmt.Fprintf(out, "herd worker %s is running %d task slot(s) for %s (health on http://%s)\n", cfg.Name, cfg.MaxTasks, cfg.Server, ln.Addr())
	return g.Wait()
}

// workerKey finds the worker's key: given, saved, or traded for a
// registration token; and says where it came from.
func workerKey(ctx context.Context, cfg DaemonConfig, out io.Writer) (key string, from KeySource, err error) {
	if cfg.Token != "" {
		return cfg.Token, KeySource{Given: cmp.Or(cfg.TokenFrom, "--token")}, nil
	}
	path := filepath.Join(cfg.Data, KeyFile)
	if b, err := os.ReadFile(path); err == nil {
		return strings.TrimSpace(string(b)), KeySource{File: path}, nil
	}
	if cfg.RegistrationToken == "" {
		return "", from, errors.New("no worker key: pass --token or set HERD_WORKER_TOKEN (a worker never uses HERD_TOKEN, the CLI's admin key), " +
			"or on first start pass --registration-token with a token from `herd token create --registration`")
	}
	key, err = remote.Register(ctx, cfg.Server, cfg.RegistrationToken, cfg.Name)
	if err != nil {
		return "", from, err
	}
	if err := os.WriteFile(path, []byte(key+"\n"), 0o600); err != nil {
		return "", from, fmt.Errorf("save worker key: %w", err)
	}
	fmt.Fprintf(out, "registered as %s; the worker key is saved in %s\n", cfg.Name, path)
	return key, KeySource{File: path}, nil
}

// KeySource is where a worker's key came from: a flag or environment
// variable (Given), or the key file a registration saved (File).
type KeySource struct {
	Given string // "--token" or "HERD_WORKER_TOKEN"
	File  string
}

func (s KeySource) String() string {
	if s.File != "" {
		return "saved in " + s.File
	}
	return "from " + s.Given
}

// KeyRefusedError ends a worker whose key the server refused: it says
// which key, why, and what to do.
type KeyRefusedError struct {
	From KeySource
	Err  error // wraps remote.ErrKeyRefused and the server's answer
}

func (e *KeyRefusedError) Error() string {
	why := e.Err.Error()
	if se, ok := errors.AsType[*protocol.Error](e.Err); ok {
		why = se.Message
	}
	fix := "Give the worker a valid worker key with --token or HERD_WORKER_TOKEN (HERD_TOKEN, the CLI's admin key, is never a worker's), " +
		"or remove that setting and start it once with --registration-token and a token from `herd token create --registration`."
	if e.From.File != "" {
		fix = fmt.Sprintf("Delete %s and start the worker again with --registration-token and a new token from `herd token create --registration`.", e.From.File)
	}
	return fmt.Sprintf("the server refused the worker key %s: %s. The worker stopped. %s", e.From, why, fix)
}

func (e *KeyRefusedError) Unwrap() error { return e.Err }

// untilRefused stops every running task at once when the server refuses the
// worker's key (refused ends): none of them could report anything.
type untilRefused struct {
	Executor
	refused context.Context
}

func (u untilRefused) Execute(ctx context.Context, c *job.Claimed, report func(job.Progress)) (job.Result, error) {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	defer context.AfterFunc(u.refused, cancel)()
	return u.Executor.Execute(ctx, c, report)
}

// healthMux serves /healthz, /readyz (ffmpeg present and the server answered
// recently) and /metrics.
func healthMux(rc *remote.Client, tools media.Tools, trials []Trial, reg *prometheus.Registry) http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		_, _ = io.WriteString(w, `{"status":"ok"}`+"\n")
	})
	mux.HandleFunc("GET /readyz", func(w http.ResponseWriter, r *http.Request) {
		checks := map[string]string{"ffmpeg": "ok", "server": "ok"}
		ok := true
		if err := tools.Check(r.Context()); err != nil {
			checks["ffmpeg"], ok = err.Error(), false
		}
		if last := rc.LastContact(); last.IsZero() || time.Since(last) > 90*time.Second {
			checks["server"], ok = "the server has not answered in the last 90 s", false
		}
		w.Header().Set("Content-Type", "application/json")
		if !ok {
			w.WriteHeader(http.StatusServiceUnavailable)
		}
		_ = json.NewEncoder(w).Encode(map[string]any{"ready": ok, "checks": checks, "encoders": trials})
	})
	mux.Handle("GET /metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{}))
	return mux
}

// pickGPU is the first hardware family whose trial encode worked, with its session budget.
func pickGPU(caps []string, sessions int64) *pipeline.GPU {
	for _, kind := range media.HWFamilies() {
		for _, c := range caps {
			if strings.HasPrefix(c, kind+":") {
				return pipeline.NewGPU(kind, caps, sessions)
			}
		}
	}
	return nil
}
