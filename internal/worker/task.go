package worker

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"slices"
	"strings"

	"github.com/herdhq/herd/internal/job"
	"github.com/herdhq/herd/internal/media"
	"github.com/herdhq/herd/internal/pipeline"
	"github.com/herdhq/herd/internal/profile"
	"github.com/herdhq/herd/internal/remote"
)

// TaskConfig is everything `herd run-task` can be told: one task, leased
// for this process by the Kubernetes dispatcher.
type TaskConfig struct {
	DaemonConfig
	Lease job.Lease
}

// RunTask runs the one task named by cfg.Lease and reports on it, as a
// worker slot would, then says how it ended (an Outcome). It is what each
// Kubernetes Job's pod runs; the server owns retries, so it never loops.
func RunTask(ctx context.Context, cfg TaskConfig, log *slog.Logger) (string, error) {
	if cfg.Server == "" {
		return "", errors.New("no server: pass --server URL or set HERD_SERVER")
	}
	if cfg.Token == "" {
		return "", errors.New("no worker key: set HERD_WORKER_TOKEN (the dispatcher's pods get it from a Secret)")
	}
	if cfg.Lease.TaskID == "" || cfg.Lease.Owner == "" || cfg.Lease.Fence <= 0 {
		return "", errors.New("no lease: pass --task, --lease-owner and --fence (the dispatcher writes them into each Job)")
	}
	tools, err := media.Locate(cfg.FFmpeg, cfg.FFprobe, log)
	if err != nil {
		return "", err
	}
	rc, err := remote.New(remote.Config{Server: cfg.Server, Key: cfg.Token, Slots: 1, Work: cfg.Data}, log)
	if err != nil {
		return "", err
	}
	c, err := rc.Fetch(ctx, cfg.Lease)
	if errors.Is(err, job.ErrLeaseLost) {
		log.Warn("the task is no longer leased to this pod (canceled, or taken over); nothing to do", "task_id", cfg.Lease.TaskID)
		return OutcomeLeaseLost, nil
	}
	if err != nil {
		return "", fmt.Errorf("fetch task %s: %w", cfg.Lease.TaskID, err)
	}
	if c.Task.Kind == job.KindVerify || c.Task.Kind == job.KindSearch {
		// Both measure quality: VMAF where the pod has a measuring ffmpeg.
		if tools.VMAF, err = cfg.setupVMAF(ctx, tools, log); err != nil {
			return "", err
		}
	}
	name := strings.TrimPrefix(cfg.Lease.Owner, "worker/")
	exec := pipeline.New(tools, rc, profile.Builtin(), media.Limits{}, log).WithLive(rc)
	poolCfg := Config{Name: name, Slots: 1, Heartbeat: cfg.Heartbeat, Grace: cfg.Grace, StallAfter: cfg.StallAfter}
	// Only an encode or chunk task uses a GPU: one that needs it (its pod
	// proves that one encoder, nothing else), or an encode task of engine
	// auto in a pod that was given one (its pod proves the GPU's encoders;
	// software is always there to fall back on). Other tasks, chunks of
	// engine auto included, prove nothing and start at once.
	hardware := func(cap string) bool { return strings.Contains(cap, ":") }
	var want func(string) bool
	switch {
	case c.Task.Kind.Encodes() && slices.ContainsFunc(c.Task.Needs, hardware):
		want = func(cap string) bool { return slices.Contains(c.Task.Needs, cap) }
	case c.Task.Kind == job.KindEncode && (fileExists("/dev/nvidiactl") || fileExists("/dev/dri/renderD128")):
		want = hardware
	}
	if want != nil {
		caps := Caps(DetectCaps(ctx, tools.FFmpeg, want))
		if gpu := pickGPU(caps, cmp.Or(cfg.GPUSessions, DefaultGPUSessions)); gpu != nil {
			exec.WithGPU(gpu)
			log.Info("GPU encoding enabled", "kind", gpu.Kind, "sessions", gpu.Sessions)
		}
	}
	pool := NewPool(rc, exec, poolCfg, log, nil)
	return pool.RunOne(ctx, c), nil
}

func fileExists(p string) bool { _, err := os.Stat(p); return err == nil }
