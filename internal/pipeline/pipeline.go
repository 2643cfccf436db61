// Package pipeline turns a claimed task into media work: admit and plan
// (probe), encode, thumbnails, verify and publish. It owns where each step
// reads and writes in the blob store, so that every output becomes visible
// only after it was verified, with one rename. It does not schedule anything:
// the worker pool calls Execute with a lease already held.
package pipeline

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"

	"github.com/herdhq/herd/internal/blob"
	"github.com/herdhq/herd/internal/job"
	"github.com/herdhq/herd/internal/media"
	"github.com/herdhq/herd/internal/profile"
	"github.com/herdhq/herd/internal/store"
)

// Executor runs tasks against a local blob store.
type Executor struct {
	media    media.Tools
	blobs    *blob.Local
	profiles *profile.Set
	limits   media.Limits
	log      *slog.Logger
}

// New returns an Executor.
func New(tools media.Tools, blobs *blob.Local, profiles *profile.Set, limits media.Limits, log *slog.Logger) *Executor {
	return &Executor{media: tools, blobs: blobs, profiles: profiles, limits: limits, log: log.With("component", "pipeline")}
}

// Tasks returns the task graph of a new job for profile p.
func Tasks(p *profile.Profile, maxAttempts int) []job.Task {
	t := func(k job.Kind, deps ...string) job.Task {
		return job.Task{ID: job.NewID("t"), Kind: k, MaxAttempts: maxAttempts, DependsOn: deps}
	}
	probe := t(job.KindProbe)
	encode := t(job.KindEncode, probe.ID)
	tasks := []job.Task{probe, encode}
	verifyDeps := []string{encode.ID}
	if p.Thumbnails.Poster || p.Thumbnails.Sprite {
		thumbs := t(job.KindThumbnails, probe.ID)
		tasks = append(tasks, thumbs)
		verifyDeps = append(verifyDeps, thumbs.ID)
	}
	verify := t(job.KindVerify, verifyDeps...)
	return append(tasks, verify, t(job.KindPublish, verify.ID))
}

// Blob keys of a job's files.
func stageKey(jobID, step string) string { return "jobs/" + jobID + "/stage/" + step }

// OutputsKey is where a job's published outputs live.
func OutputsKey(jobID string) string { return "jobs/" + jobID + "/out" }

// Output is a published output, as the API shows it.
type Output struct {
	media.Output
	URL string `json:"url"`
}

type probeResult struct {
	Info *media.Info `json:"info"`
}

// Execute runs one task.
func (e *Executor) Execute(ctx context.Context, c *job.Claimed, report func(store.Progress)) (store.Result, error) {
	src, err := e.blobs.Path(c.Job.AssetKey)
	if err != nil {
		return store.Result{}, err
	}
	if _, err := os.Stat(src); err != nil {
		return store.Result{}, job.Permanent("source_missing", job.Userf(err, "the uploaded source file is missing from storage; submit it again"))
	}
	if c.Task.Kind == job.KindProbe {
		return e.probe(ctx, c, src)
	}
	var plan media.Plan
	if err := json.Unmarshal(c.Job.Plan, &plan); err != nil {
		return store.Result{}, fmt.Errorf("decode plan: %w", err)
	}
	switch c.Task.Kind {
	case job.KindEncode:
		return e.encode(ctx, c, &plan, src, report)
	case job.KindThumbnails:
		return e.thumbnails(ctx, c, &plan, src)
	case job.KindVerify:
		return e.verify(ctx, c, &plan, src)
	case job.KindPublish:
		return e.publish(c)
	}
	return store.Result{}, job.Permanent("internal", fmt.Errorf("unknown task kind %q", c.Task.Kind))
}

func (e *Executor) probe(ctx context.Context, c *job.Claimed, src string) (store.Result, error) {
	info, err := e.media.Admit(ctx, src, e.limits)
	if err != nil {
		return store.Result{}, classify(err, "could not read the source file")
	}
	p, ok := e.profiles.Get(c.Job.Profile)
	if !ok {
		return store.Result{}, job.Permanent("profile_missing", job.Userf(nil, "profile %q no longer exists on this server; submit the file again with another profile", c.Job.Profile))
	}
	if p.Version != c.Job.ProfileVersion {
		return store.Result{}, job.Permanent("profile_changed", job.Userf(nil,
			"profile %q changed from version %d to %d after this job was submitted; submit the file again", p.Name, c.Job.ProfileVersion, p.Version))
	}
	plan, err := media.NewPlan(info, p)
	if err != nil {
		return store.Result{}, job.Permanent("unplannable", job.Userf(err, "profile %q cannot be applied to this file: %v", p.Name, err))
	}
	planJSON, err := json.Marshal(plan)
	if err != nil {
		return store.Result{}, fmt.Errorf("encode plan: %w", err)
	}
	data, err := json.Marshal(probeResult{Info: info})
	if err != nil {
		return store.Result{}, fmt.Errorf("encode probe: %w", err)
	}
	srcFacts := c.Job.Source
	srcFacts.Duration = info.Duration
	if v := info.Video; v != nil {
		srcFacts.Width, srcFacts.Height, srcFacts.VideoCodec = v.Width, v.Height, v.Codec
	}
	if len(info.Audio) > 0 {
		srcFacts.AudioChannels = info.Audio[0].Channels
	}
	return store.Result{Data: data, Plan: planJSON, Source: &srcFacts}, nil
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

// scratch runs fn in a fresh scratch folder and commits the folder to key when fn succeeds.
func (e *Executor) scratch(step, key string, fn func(dir string) ([][]string, error)) ([][]string, error) {
	dir, err := e.blobs.TempDir(step)
	if err != nil {
		return nil, err
	}
	cmds, err := fn(dir)
	if err != nil {
		_ = os.RemoveAll(dir)
		return cmds, err
	}
	if err := e.blobs.CommitDir(dir, key); err != nil {
		_ = os.RemoveAll(dir)
		return cmds, err
	}
	return cmds, nil
}

func (e *Executor) encode(ctx context.Context, c *job.Claimed, plan *media.Plan, src string, report func(store.Progress)) (store.Result, error) {
	cmds, err := e.scratch("encode", stageKey(c.Job.ID, "encode"), func(dir string) ([][]string, error) {
		return e.media.Encode(ctx, plan, src, dir, func(p media.Progress) {
			frac := 0.0
			if plan.Duration > 0 {
				frac = min(p.OutTime.Seconds()/plan.Duration, 1)
			}
			report(store.Progress{Progress: frac, Speed: p.Speed})
		})
	})
	if err != nil {
		return store.Result{Commands: cmds}, classify(err, "encoding failed")
	}
	return store.Result{Commands: cmds}, nil
}

func (e *Executor) thumbnails(ctx context.Context, c *job.Claimed, plan *media.Plan, src string) (store.Result, error) {
	cmds, err := e.scratch("thumbs", stageKey(c.Job.ID, "thumbs"), func(dir string) ([][]string, error) {
		return e.media.Thumbnails(ctx, plan, src, dir)
	})
	if err != nil {
		return store.Result{Commands: cmds}, classify(err, "making thumbnails failed")
	}
	return store.Result{Commands: cmds}, nil
}

// verify assembles the staged outputs in one folder, checks them, and stages
// the verified set for publishing.
func (e *Executor) verify(ctx context.Context, c *job.Claimed, plan *media.Plan, src string) (store.Result, error) {
	var outputs []media.Output
	cmds, err := e.scratch("verify", stageKey(c.Job.ID, "verified"), func(dir string) ([][]string, error) {
		for _, step := range []string{"encode", "thumbs"} {
			from, err := e.blobs.Path(stageKey(c.Job.ID, step))
			if err != nil {
				return nil, err
			}
			if _, err := os.Stat(from); errors.Is(err, fs.ErrNotExist) {
				if step == "encode" {
					return nil, errors.New("the encoded files are missing; the encode step will run again")
				}
				continue
			}
			if err := linkTree(from, dir); err != nil {
				return nil, err
			}
		}
		var (
			ran [][]string
			err error
		)
		outputs, ran, err = e.media.Verify(ctx, plan, src, dir)
		return ran, err
	})
	if err != nil {
		return store.Result{Commands: cmds}, classify(err, "verifying the outputs failed")
	}
	data, err := json.Marshal(outputs)
	if err != nil {
		return store.Result{}, fmt.Errorf("encode outputs: %w", err)
	}
	return store.Result{Data: data, Commands: cmds}, nil
}

// publish makes the verified outputs visible with one rename. It is
// idempotent: run again after a crash, it finds them already in place.
func (e *Executor) publish(c *job.Claimed) (store.Result, error) {
	var outputs []media.Output
	if err := json.Unmarshal(c.Deps[job.KindVerify], &outputs); err != nil {
		return store.Result{}, fmt.Errorf("decode verified outputs: %w", err)
	}
	verified, out := stageKey(c.Job.ID, "verified"), OutputsKey(c.Job.ID)
	switch {
	case e.blobs.Exists(verified):
		dir, err := e.blobs.Path(verified)
		if err != nil {
			return store.Result{}, err
		}
		if err := e.blobs.CommitDir(dir, out); err != nil {
			return store.Result{}, job.Userf(err, "could not move the outputs into place (is the disk full?)")
		}
	case e.blobs.Exists(out):
		e.log.Info("outputs were already published", "job_id", c.Job.ID)
	default:
		return store.Result{}, job.Userf(nil, "the verified outputs are missing from storage; retry the job")
	}
	if err := e.blobs.RemoveAll("jobs/" + c.Job.ID + "/stage"); err != nil {
		e.log.Warn("remove staged files", "job_id", c.Job.ID, "err", err)
	}
	pub := make([]Output, 0, len(outputs))
	for _, o := range outputs {
		pub = append(pub, Output{Output: o, URL: "/api/v1/jobs/" + c.Job.ID + "/outputs/" + o.Path})
	}
	data, err := json.Marshal(pub)
	if err != nil {
		return store.Result{}, fmt.Errorf("encode outputs: %w", err)
	}
	return store.Result{Data: data, Outputs: data}, nil
}

// linkTree hard-links every file under from into to (same file system), so
// assembling the verified set copies no bytes.
func linkTree(from, to string) error {
	return filepath.WalkDir(from, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, err := filepath.Rel(from, p)
		if err != nil {
			return err
		}
		dst := filepath.Join(to, rel)
		if d.IsDir() {
			return os.MkdirAll(dst, 0o755)
		}
		if err := os.Link(p, dst); err != nil {
			return fmt.Errorf("link staged file: %w", err)
		}
		return nil
	})
}
