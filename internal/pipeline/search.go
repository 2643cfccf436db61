package pipeline

import (
	"context"
	"encoding/json"
	"fmt"
	"slices"

	"github.com/herdhq/herd/internal/job"
	"github.com/herdhq/herd/internal/media"
	"github.com/herdhq/herd/internal/profile"
)

// Per-title encoding as a task. A probe whose plan has a quality target
// (media.Plan.Quality) puts a search task between itself and the tasks
// that encode (the encode, or a chunked job's split); the audio task does
// not wait for it. The search task's worker probe-encodes samples of the
// source and reports the probes (media.Search); the server (ApplySearch,
// here for an in-process worker and in the Acceptor for a remote one)
// chooses the settings from them and writes them into the job's plan,
// which every later task reads.

// SearchNeeds are the capabilities a search task of profile p needs: the
// encode's own (its probes use the same encoder), and VMAF when its target
// is VMAF with no SSIM fallback.
func SearchNeeds(p *profile.Profile) []string {
	needs := TaskNeeds(p)
	if p.Video.Quality.NeedsVMAF() {
		needs = append(needs, job.CapVMAF)
	}
	return needs
}

// withSearch puts a search task after the probe and before the tasks of x
// that encode (x may be nil: the job's one encode task).
func withSearch(x *job.Expansion, probeID string, p *profile.Profile) *job.Expansion {
	search := job.Task{ID: job.NewID("t"), Kind: job.KindSearch, DependsOn: []string{probeID}, Needs: SearchNeeds(p)}
	if x == nil {
		enc := job.Task{ID: job.NewID("t"), Kind: job.KindEncode, DependsOn: []string{search.ID}, Needs: TaskNeeds(p)}
		return &job.Expansion{Replace: job.KindEncode, Tasks: []job.Task{search, enc}}
	}
	for i := range x.Tasks {
		t := &x.Tasks[i]
		if t.Kind != job.KindEncode && t.Kind != job.KindSplit {
			continue
		}
		t.DependsOn = slices.Clone(t.DependsOn)
		if k := slices.Index(t.DependsOn, probeID); k >= 0 {
			t.DependsOn[k] = search.ID
		} else {
			t.DependsOn = append(t.DependsOn, search.ID)
		}
	}
	return &job.Expansion{Replace: x.Replace, Tasks: append([]job.Task{search}, x.Tasks...)}
}

// verifyNeedsOf is VerifyNeeds of a profile that may be gone (nil).
func verifyNeedsOf(p *profile.Profile) []string {
	if p == nil {
		return nil
	}
	return VerifyNeeds(p)
}

// searched is a search task's result: the job's plan with the settings
// chosen from the report s, the search (with its choices) as the task's
// data, and, when the probes measured VMAF and the job's verify task does
// not ask for it, a verify task that does (its quality gate measures what
// the search steered by).
func searched(plan *media.Plan, s media.Search, verifyNeeds []string) (job.Result, error) {
	if err := plan.ApplySearch(s); err != nil {
		return job.Result{}, err
	}
	if err := plan.Validate(); err != nil {
		return job.Result{}, job.Permanent("bad_plan", job.Userf(err, "the searched plan is not valid (%v); retry the job", err))
	}
	planJSON, err := json.Marshal(plan)
	if err != nil {
		return job.Result{}, fmt.Errorf("encode plan: %w", err)
	}
	data, err := json.Marshal(plan.Quality.Search)
	if err != nil {
		return job.Result{}, fmt.Errorf("encode search: %w", err)
	}
	res := job.Result{Data: data, Plan: planJSON}
	if s.Metric == profile.MetricVMAF && !slices.Contains(verifyNeeds, job.CapVMAF) {
		res.Expand = &job.Expansion{Replace: job.KindVerify, Tasks: []job.Task{{
			ID: job.NewID("t"), Kind: job.KindVerify, DependsOn: []string{job.InheritDeps}, Needs: append(slices.Clone(verifyNeeds), job.CapVMAF),
		}}}
	}
	return res, nil
}

// gated puts a per-title plan's verified outputs through its quality gate
// (media.Plan.Gate): with no rung below its bar, res (the verify task's
// result) stands; with some, once, the plan gets stricter CRFs for them
// (media.Plan.Reencode), and the job's finalize task is replaced by an
// encode and a verify of that plan before it; after that, or where a
// re-encode cannot help, the job fails with what was measured.
func gated(plan *media.Plan, outs []media.Output, p *profile.Profile, res job.Result) (job.Result, error) {
	below, err := plan.Gate(outs)
	if err != nil {
		return job.Result{Commands: res.Commands}, err // retried: another try (or worker) measures it
	}
	if len(below) == 0 {
		return res, nil
	}
	again := plan.Quality.Reencoded
	if !plan.Reencode(below) {
		if again {
			below[0].Problem += " (after one re-encode at a stricter CRF)"
		}
		return job.Result{Commands: res.Commands}, classify(below[0], "verifying the outputs failed")
	}
	planJSON, err := json.Marshal(plan)
	if err != nil {
		return job.Result{}, fmt.Errorf("encode plan: %w", err)
	}
	needs := verifyNeedsOf(p)
	if plan.Quality.Search.Metric == profile.MetricVMAF && !slices.Contains(needs, job.CapVMAF) {
		needs = append(needs, job.CapVMAF)
	}
	var encNeeds []string
	if p != nil {
		encNeeds = TaskNeeds(p)
	}
	enc := job.Task{ID: job.NewID("t"), Kind: job.KindEncode, DependsOn: []string{job.InheritDeps}, Needs: encNeeds}
	ver := job.Task{ID: job.NewID("t"), Kind: job.KindVerify, DependsOn: []string{enc.ID}, Needs: needs}
	fin := job.Task{ID: job.NewID("t"), Kind: job.KindFinalize, DependsOn: []string{ver.ID}}
	res.Plan = planJSON
	res.Expand = &job.Expansion{Replace: job.KindFinalize, Tasks: []job.Task{enc, ver, fin}}
	return res, nil
}

// search runs a search task: the probes on this worker, the choice as the
// server makes it.
func (e *Executor) search(ctx context.Context, c *job.Claimed, plan *media.Plan, src string, report func(job.Progress)) (job.Result, error) {
	if plan.Quality == nil {
		return job.Result{}, job.Permanent("bad_plan", job.Userf(nil, "the job's plan has no quality target to search for; submit the file again"))
	}
	if plan.Searched() {
		return job.Result{}, job.Permanent("bad_plan", job.Userf(nil, "the job's plan was searched already; retry the job"))
	}
	metric := plan.SearchMetric(e.media.VMAF)
	if metric == "" {
		// The task asked for a worker with VMAF (SearchNeeds): this one
		// was misconfigured, another can run it.
		return job.Result{}, job.Userf(nil, "this worker cannot measure VMAF, which the profile's target needs (start it with --measure-ffmpeg)")
	}
	dir, err := e.files.Scratch("search") // probes, removed once measured
	if err != nil {
		return job.Result{}, err
	}
	defer e.files.Discard(dir)
	s, cmds, err := e.media.Search(ctx, plan, src, dir, metric, func(f float64) { report(job.Progress{Progress: f}) })
	if err != nil {
		return job.Result{Commands: lastCommands(cmds)}, classify(err, "the search for the title's settings failed")
	}
	p, err := e.profileFor(ctx, c)
	if err != nil {
		return job.Result{}, err
	}
	res, err := searched(plan, *s, verifyNeedsOf(p))
	if err != nil {
		return job.Result{Commands: lastCommands(cmds)}, err
	}
	res.Commands = lastCommands(cmds)
	return res, nil
}
