package pipeline

import (
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"strings"
	"sync/atomic"

	"golang.org/x/sync/semaphore"

	"github.com/herdhq/herd/internal/job"
	"github.com/herdhq/herd/internal/media"
	"github.com/herdhq/herd/internal/profile"
)

// GPU is a worker's hardware encoder family and its encode-session budget:
// an ffmpeg process encoding a ladder on NVENC opens one session per rung,
// and consumer NVIDIA cards allow 5 at once per machine.
type GPU struct {
	Kind     string   // media.HWNVENC, HWVAAPI or HWQSV
	Caps     []string // the kind's proven capabilities, e.g. nvenc:h264
	Sessions int64
	sem      *semaphore.Weighted
	used     atomic.Int64 // sessions in use, for ClaimCaps
}

// NewGPU returns a budget of sessions encode sessions for kind.
func NewGPU(kind string, caps []string, sessions int64) *GPU {
	g := &GPU{Kind: kind, Sessions: sessions, sem: semaphore.NewWeighted(sessions)}
	for _, c := range caps {
		if strings.HasPrefix(c, kind+":") {
			g.Caps = append(g.Caps, c)
		}
	}
	return g
}

// InUse is the number of encode sessions taken.
func (g *GPU) InUse() int64 { return g.used.Load() }

// ClaimCaps drops the GPU capabilities while every session is taken, so the
// worker claims no task that must wait for one.
func (g *GPU) ClaimCaps(caps []string) []string {
	if g == nil || g.InUse() < g.Sessions {
		return caps
	}
	return slices.DeleteFunc(slices.Clone(caps), func(c string) bool { return slices.Contains(g.Caps, c) })
}

func (g *GPU) acquire(n int64) bool {
	if !g.sem.TryAcquire(n) {
		return false
	}
	g.used.Add(n)
	return true
}

func (g *GPU) release(n int64) {
	g.used.Add(-n)
	g.sem.Release(n)
}

// TaskNeeds is what an encode task for profile p requires of its worker: a
// profile that names a hardware engine runs only where that encoder was
// proven, and one that encodes HEVC or AV1 in software (engine software or
// auto, which falls back on it) only where the trial encode with libx265 or
// libsvtav1 succeeded. H.264 needs nothing: every ffmpeg herd runs with has
// libx264. A task asks for one capability (the store matches one), so a
// profile encodes at most one codec besides H.264 (profile.Validate).
func TaskNeeds(p *profile.Profile) []string {
	switch p.Engine {
	case profile.EngineNVENC, profile.EngineVAAPI, profile.EngineQSV:
		return []string{media.HWCap(p.Engine, p.Video.Codec)}
	}
	var needs []string
	for _, c := range p.Codecs() {
		if c != "h264" {
			needs = append(needs, media.SoftwareCap(c))
		}
	}
	return needs
}

// VerifyNeeds are the capabilities a verify task of profile p needs: VMAF
// where the profile sets a VMAF floor or a VMAF target without a fallback
// (a search that measured VMAF asks for it too: searched).
func VerifyNeeds(p *profile.Profile) []string {
	if q := p.Video.MinQuality; q != nil && q.VMAF > 0 {
		return []string{job.CapVMAF}
	}
	if p.Video.Quality.NeedsVMAF() {
		return []string{job.CapVMAF} // its quality gate measures what the search steered by
	}
	return nil
}

// hardwarePlan picks the encoder for an encode or chunk task: the one the
// task needs, or with engine auto (encode tasks only) this worker's GPU when enough sessions are free. It
// returns the plan to run and a release func for the sessions it took.
func (e *Executor) hardwarePlan(ctx context.Context, c *job.Claimed, plan *media.Plan) (*media.Plan, func(), error) {
	none := func() {}
	need := ""
	for _, n := range c.Task.Needs {
		if strings.Contains(n, ":") {
			need = n
		}
	}
	auto := false
	// Chunks of one job must all come from the same encoder to stitch, so
	// engine auto never moves a chunk onto whatever GPU its worker has.
	if p, _ := e.profileFor(ctx, c); p != nil && p.Engine == profile.EngineAuto && c.Task.Kind != job.KindChunk {
		auto = true
	}
	g := e.gpu
	want := media.HWCap("", plan.Video.Codec)
	if g != nil {
		want = media.HWCap(g.Kind, plan.Video.Codec)
	}
	switch {
	// A ladder of several codecs is encoded in software (profile.Validate
	// refuses it a hardware engine): auto leaves it there.
	case need == "" && (!auto || g == nil || !slices.Contains(g.Caps, want) || plan.MultiCodec()):
		return plan, none, nil
	case need != "" && (g == nil || need != want):
		return nil, none, job.Userf(nil, "this task needs the %s encoder, which this worker lacks; it will be retried on another", need)
	}
	n := int64(max(len(plan.Rungs), 1))
	if n > g.Sessions {
		if need == "" {
			return plan, none, nil // too big for this GPU: encode in software
		}
		return nil, none, job.Permanent("gpu_sessions", job.Userf(nil, "the ladder needs %d %s encode sessions but the GPU allows %d (--gpu-sessions); use fewer rungs or engine auto", n, g.Kind, g.Sessions))
	}
	if !g.acquire(n) {
		if need == "" {
			return plan, none, nil
		}
		return nil, none, fmt.Errorf("all %d %s encode sessions are in use: %w", g.Sessions, g.Kind, job.ErrRequeue)
	}
	hw, err := plan.WithHardware(g.Kind)
	if err != nil {
		g.release(n)
		return nil, none, job.Permanent("no_encoder", job.Userf(err, "%v", err))
	}
	return hw, func() { g.release(n) }, nil
}

// profileFor is the job's profile at the version it was submitted with:
// as the server sent it, or from this executor's own profiles; nil when
// neither has it.
func (e *Executor) profileFor(ctx context.Context, c *job.Claimed) (*profile.Profile, error) {
	if len(c.Profile) > 0 {
		var p profile.Profile
		if err := json.Unmarshal(c.Profile, &p); err == nil {
			return &p, nil
		}
	}
	return e.profiles.At(ctx, c.Job.Profile, c.Job.ProfileVersion)
}
