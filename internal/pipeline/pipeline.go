// Package pipeline turns a claimed task into media work: admit and plan
// (probe), encode, thumbnails, verify and finalize. It owns where each step
// reads and writes in the blob store, so that every output becomes visible
// only after it was verified, with one rename. It does not schedule anything:
// the worker pool calls Execute with a lease already held.
package pipeline

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"slices"

	"github.com/herdhq/herd/internal/job"
	"github.com/herdhq/herd/internal/media"
	"github.com/herdhq/herd/internal/profile"
)

// Files is where a task's bytes come from and go to: the blob store itself
// for in-process workers, the server's worker API for remote ones.
type Files interface {
	// Source returns a local path of the job's source file.
	Source(ctx context.Context, c *job.Claimed) (string, error)
	// Subtitle returns a local path of the subtitle file id given with
	// the job's source (job.SourceSubtitle).
	Subtitle(ctx context.Context, c *job.Claimed, id string) (string, error)
	// Scratch returns a fresh, empty local folder for a step's output.
	Scratch(step string) (string, error)
	// Staged puts the committed files of an earlier step of the job into dir
	// (links or downloads); false when that step staged nothing.
	Staged(ctx context.Context, c *job.Claimed, step, dir string) (bool, error)
	// Commit makes dir, which it consumes, the staged result of step.
	Commit(ctx context.Context, c *job.Claimed, step, dir string) error
	// Discard removes a scratch folder that will not be committed.
	Discard(dir string)
	// Publish makes the verified files the job's outputs, atomically and idempotently.
	Finalize(ctx context.Context, c *job.Claimed) error
}

// Executor runs tasks.
type Executor struct {
	media    media.Tools
	files    Files
	profiles Profiles
	limits   media.Limits
	log      *slog.Logger
	gpu      *GPU
	live     LiveSink // nil: no live playlists
	// libraries are the folders of the libraries this executor reads in
	// place (health checks), by name.
	libraries map[string]string
}

// Profiles finds the profile a job was submitted with, at its version: a
// *profile.Set knows the current ones, a *profile.Versions every one.
type Profiles interface {
	At(ctx context.Context, name string, version int) (*profile.Profile, error)
}

// WithGPU lets the executor encode on a GPU family within its session budget.
func (e *Executor) WithGPU(g *GPU) *Executor {
	e.gpu = g
	return e
}

// New returns an Executor.
func New(tools media.Tools, files Files, profiles Profiles, limits media.Limits, log *slog.Logger) *Executor {
	return &Executor{media: tools, files: files, profiles: profiles, limits: limits, log: log.With("component", "pipeline")}
}

// Tasks returns the task graph of a new job for profile p.
func Tasks(p *profile.Profile, maxAttempts int) []job.Task {
	t := func(k job.Kind, deps ...string) job.Task {
		return job.Task{ID: job.NewID("t"), Kind: k, MaxAttempts: maxAttempts, DependsOn: deps}
	}
	probe := t(job.KindProbe)
	encode := t(job.KindEncode, probe.ID)
	encode.Needs = TaskNeeds(p)
	tasks := []job.Task{probe, encode}
	verifyDeps := []string{encode.ID}
	// An hls encode makes the sprite's tiles from its own decode; the
	// thumbnails task makes the poster, and the sprite of other formats.
	if p.Thumbnails.Poster || (p.Thumbnails.Sprite && p.Format != profile.FormatHLS) {
		thumbs := t(job.KindThumbnails, probe.ID)
		tasks = append(tasks, thumbs)
		verifyDeps = append(verifyDeps, thumbs.ID)
	}
	verify := t(job.KindVerify, verifyDeps...)
	verify.Needs = VerifyNeeds(p) // only a worker that measures VMAF can hold a VMAF floor
	return append(tasks, verify, t(job.KindFinalize, verify.ID))
}

// Output is a published output, as the API shows it.
type Output struct {
	media.Output
	URL string `json:"url"`
}

type probeResult struct {
	Info *media.Info `json:"info"`
}

// Execute runs one task.
func (e *Executor) Execute(ctx context.Context, c *job.Claimed, report func(job.Progress)) (job.Result, error) {
	switch c.Task.Kind {
	case job.KindFinalize:
		return e.finalize(ctx, c)
	case job.KindCheck:
		return e.check(ctx, c, report)
	}
	// A chunk reads only its piece of the source, a stitch only the chunks,
	// and a verify the source only when it must (verify fetches it then).
	var src string
	if c.Task.Kind != job.KindChunk && c.Task.Kind != job.KindStitch && c.Task.Kind != job.KindVerify {
		var err error
		if src, err = e.files.Source(ctx, c); err != nil {
			return job.Result{}, err
		}
	}
	if c.Task.Kind == job.KindProbe {
		return e.probe(ctx, c, src)
	}
	plan, err := readPlan(c.Job.Plan)
	if err != nil {
		return job.Result{}, err
	}
	// Nothing reaches an argv from a plan that is not one NewPlan could make.
	if err := plan.Validate(); err != nil {
		return job.Result{}, job.Permanent("bad_plan", job.Userf(err, "the job's plan is not valid (%v); submit the file again", err))
	}
	if (c.Task.Kind == job.KindEncode && !plan.AudioStep) || c.Task.Kind == job.KindAudio {
		if err := e.sidecars(ctx, c, plan); err != nil {
			return job.Result{}, err
		}
	}
	if !plan.Searched() && (c.Task.Kind.Encodes() || c.Task.Kind == job.KindSplit) {
		// Unsearched, a per-title plan has no setting to encode with.
		return job.Result{}, job.Permanent("bad_plan", job.Userf(nil, "the job's plan has no searched settings to encode with; retry the job"))
	}
	switch c.Task.Kind {
	case job.KindSearch:
		return e.search(ctx, c, plan, src, report)
	case job.KindEncode:
		return e.encode(ctx, c, plan, src, report)
	case job.KindThumbnails:
		return e.thumbnails(ctx, c, plan, src)
	case job.KindVerify:
		return e.verify(ctx, c, plan)
	case job.KindSplit:
		return e.split(ctx, c, plan, src, report)
	case job.KindChunk:
		return e.chunk(ctx, c, plan, report)
	case job.KindAudio:
		return e.audio(ctx, c, plan, src, report)
	case job.KindStitch:
		return e.stitch(ctx, c, plan)
	}
	return job.Result{}, job.Permanent("internal", fmt.Errorf("unknown task kind %q", c.Task.Kind))
}

// sidecars fetches the subtitle files given with the source that the
// plan's renditions are made from (the encode writes them, or a split
// job's audio task).
func (e *Executor) sidecars(ctx context.Context, c *job.Claimed, plan *media.Plan) error {
	ids := plan.Sidecars()
	if len(ids) == 0 {
		return nil
	}
	paths := make(map[string]string, len(ids))
	for _, id := range ids {
		if !slices.ContainsFunc(c.Job.Source.Subtitles, func(s job.SourceSubtitle) bool { return s.ID == id }) {
			return job.Permanent("bad_plan", job.Userf(nil, "the job's plan names a subtitle file its source was not given with; submit the file again"))
		}
		p, err := e.files.Subtitle(ctx, c, id)
		if err != nil {
			return err
		}
		paths[id] = p
	}
	plan.UseSidecars(paths)
	return nil
}

func (e *Executor) probe(ctx context.Context, c *job.Claimed, src string) (job.Result, error) {
	info, err := e.media.Admit(ctx, src, e.limits)
	if err != nil {
		return job.Result{}, classify(err, "could not read the source file")
	}
	p, err := e.profileFor(ctx, c)
	if err != nil {
		return job.Result{}, err
	}
	// Every job records its source's loudness; a profile with a loudness
	// target plans its gain from it.
	if err := e.media.MeasureLoudness(ctx, src, info); err != nil {
		if ctx.Err() != nil {
			return job.Result{}, ctx.Err()
		}
		// The source probed, and its audio can be encoded as it is: the
		// plan says on each track that it was not normalized.
		e.log.Warn("could not measure the source's loudness; its levels are left as they are", "job_id", c.Job.ID, "err", err)
	}
	if p != nil && p.Subtitles == profile.SubsWebVTT {
		// A text stream that will not convert is left out of the plan
		// (with a note), rather than failing the encode on every try.
		if err := e.media.CheckSubtitles(ctx, src, info); err != nil {
			return job.Result{}, classify(err, "could not check the source's subtitles")
		}
	}
	maySplit := p != nil && chunkSeconds(p, c.Job) > 0 && info.Duration >= 1.5*chunkSeconds(p, c.Job)
	if maySplit && p.Format != profile.FormatHLS {
		// An mp4 or mkv plan's chunks start on source keyframes: listed
		// only for a job that may be split (two chunks, the last at least
		// half as long as the first: planKeyframeChunks).
		if err := e.media.ProbeKeyframes(ctx, src, info); err != nil {
			if ctx.Err() != nil {
				return job.Result{}, ctx.Err()
			}
			// The source probed and can be encoded whole: that is what a
			// source whose packets ffprobe cannot list gets.
			e.log.Warn("could not list the source's keyframes; the job is not split", "job_id", c.Job.ID, "err", err)
			info.Keyframes = nil
		}
	}
	if maySplit && p.Format == profile.FormatHLS {
		// A split job's last chunk drops the frames an MP4's edit list
		// hides at the end of its video, as the unsplit encode does
		// (ProbeKeyframes found them for the other formats).
		if err := e.media.ProbeVideoEnd(ctx, src, info); err != nil {
			if ctx.Err() != nil {
				return job.Result{}, ctx.Err()
			}
			e.log.Warn("could not find where the source's video ends; a split job may keep frames its edit list hides", "job_id", c.Job.ID, "err", err)
			info.VideoEnd = 0
		}
	}
	return derive(p, c, info)
}

// classify turns a media error into a permanent or retryable task error with a message for users.
func classify(err error, what string) error {
	var rej *media.RejectedError
	if errors.As(err, &rej) {
		return job.Permanent(rej.Code, job.Userf(err, "%s", rej.Reason))
	}
	if errors.Is(err, context.Canceled) {
		return err
	}
	if bad, ok := errors.AsType[*media.OutputError](err); ok {
		// The same plan and source make the same files: retrying cannot help.
		return job.Permanent(cmp.Or(bad.Code, "bad_output"), job.Userf(err, "%s: %s %s", what, bad.Output, bad.Problem))
	}
	var exit *media.ExitError
	if errors.As(err, &exit) {
		if media.IsPermanent(err) {
			return job.Permanent("corrupt_input", job.Userf(err, "%s: ffmpeg reports the input is damaged or not valid media (check the file plays, or re-export it)", what))
		}
		if exit.Signal != "" {
			return job.Userf(err, "%s: ffmpeg was killed (%s), possibly out of memory; it will be retried", what, exit.Signal)
		}
		return job.Userf(err, "%s: ffmpeg exited with code %d", what, exit.Code)
	}
	return job.Userf(err, "%s", what)
}

// scratch runs fn in a fresh scratch folder and commits the folder as the
// job's step when fn succeeds.
func (e *Executor) scratch(ctx context.Context, c *job.Claimed, step string, fn func(dir string) ([][]string, error)) ([][]string, error) {
	dir, err := e.files.Scratch(step)
	if err != nil {
		return nil, err
	}
	cmds, err := fn(dir)
	if err != nil {
		e.files.Discard(dir)
		return cmds, err
	}
	if err := e.files.Commit(ctx, c, step, dir); err != nil {
		e.files.Discard(dir)
		return cmds, job.Userf(err, "could not store the %s results (is the disk full?)", step)
	}
	return cmds, nil
}

func (e *Executor) encode(ctx context.Context, c *job.Claimed, plan *media.Plan, src string, report func(job.Progress)) (job.Result, error) {
	plan, done, err := e.hardwarePlan(ctx, c, plan)
	if err != nil {
		return job.Result{}, err
	}
	defer done()
	cmds, err := e.scratch(ctx, c, StepEncode, func(dir string) ([][]string, error) {
		var speed float64
		ran, err := e.handingOver(ctx, c, plan, StepEncode, dir, func() ([][]string, error) {
			return e.media.Encode(ctx, plan, src, dir, func(p media.Progress) {
				frac := 0.0
				if plan.Duration > 0 {
					frac = min(p.OutTime.Seconds()/plan.Duration, 1)
				}
				speed = p.Speed
				report(job.Progress{Progress: frac, Speed: p.Speed})
			})
		})
		if err == nil {
			report(job.Progress{Progress: 1, Speed: speed}) // ffmpeg is done; storing the files follows
		}
		return ran, err
	})
	if err != nil {
		return job.Result{Commands: cmds}, classify(err, "encoding failed")
	}
	return job.Result{Commands: cmds}, nil
}

func (e *Executor) thumbnails(ctx context.Context, c *job.Claimed, plan *media.Plan, src string) (job.Result, error) {
	cmds, err := e.scratch(ctx, c, StepThumbs, func(dir string) ([][]string, error) {
		return e.media.Thumbnails(ctx, plan, src, dir)
	})
	if err != nil {
		return job.Result{Commands: cmds}, classify(err, "making thumbnails failed")
	}
	return job.Result{Commands: cmds}, nil
}

// verify assembles the staged outputs in one folder, checks them, and stages
// the verified set for the finalize step.
func (e *Executor) verify(ctx context.Context, c *job.Claimed, plan *media.Plan) (job.Result, error) {
	var outputs []media.Output
	cmds, err := e.scratch(ctx, c, StepVerified, func(dir string) ([][]string, error) {
		for _, step := range []string{StepEncode, StepThumbs} {
			ok, err := e.files.Staged(ctx, c, step, dir)
			if err != nil {
				return nil, err
			}
			if !ok && step == StepEncode {
				return nil, errors.New("the encoded files are missing")
			}
		}
		if plan.JoinsAudio(dir) {
			// The encode ran beside the audio task: their files are
			// joined here, the first task after both.
			audioDir, err := e.files.Scratch("audio")
			if err != nil {
				return nil, err
			}
			defer e.files.Discard(audioDir)
			if err := e.staged(ctx, c, StepAudio, audioDir, "the encoded audio"); err != nil {
				return nil, err
			}
			if err := plan.JoinAudio(audioDir, dir); err != nil {
				return nil, err
			}
		}
		var (
			src string
			ran [][]string
			err error
		)
		if plan.VerifyReadsSource(dir) {
			if src, err = e.files.Source(ctx, c); err != nil {
				return nil, err
			}
		}
		outputs, ran, err = e.media.Verify(ctx, plan, src, dir)
		return ran, err
	})
	if err != nil {
		return job.Result{Commands: cmds}, classify(err, "verifying the outputs failed")
	}
	data, err := json.Marshal(outputs)
	if err != nil {
		return job.Result{}, fmt.Errorf("encode outputs: %w", err)
	}
	p, err := e.profileFor(ctx, c)
	if err != nil {
		return job.Result{}, err
	}
	return gated(plan, outputs, p, job.Result{Data: data, Commands: cmds})
}

// finalize makes the verified outputs visible and records them on the job.
func (e *Executor) finalize(ctx context.Context, c *job.Claimed) (job.Result, error) {
	if err := e.files.Finalize(ctx, c); err != nil {
		return job.Result{}, err
	}
	data, err := PublishedOutputs(c.Job.ID, c.Deps[job.KindVerify])
	if err != nil {
		return job.Result{}, err
	}
	return job.Result{Data: data, Outputs: data}, nil
}
