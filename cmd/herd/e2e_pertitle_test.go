package main_test

import (
	"encoding/json"
	"fmt"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
	"github.com/stretchr/testify/require"

	"github.com/herdhq/herd/internal/profile"
	"github.com/herdhq/herd/internal/testenv"
)

// searchJSON is a job's per-title plan as the API gives it (plan.quality).
type searchJSON struct {
	Plan struct {
		Quality *struct {
			Target struct {
				Metric   string
				Target   float64
				Fallback float64
			}
			Search *struct {
				Metric  string
				Samples [][2]float64
				Rungs   []struct {
					Name    string
					Probes  []struct{ CRF int }
					Target  float64
					CRF     int
					Score   float64
					Bitrate int64
					Fixed   int64
					Dropped string
				}
			}
		}
	}
}

// A per-title job (web-hls-auto) on a server whose ffmpeg measures no
// VMAF: a search task runs between the probe and the encode, measures SSIM
// (the target's fallback), and each rung it keeps comes out at its target
// within the tolerance. The job page shows the search: a chart of the
// probes with each kept rung's chosen point, a row a rung, and it passes
// axe-core's audit.
func TestPerTitleSearchOnTheJobPage(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	s := startServer(t, filepath.Join(dir, "data"))
	src := clip(t, dir, 2, "320x180")

	stdout, stderr, code := s.herd("submit", src, "--profile", "web-hls-auto", "--wait")
	require.Equal(t, 0, code, stderr)
	id := strings.TrimSpace(stdout)
	j := s.job(id)
	require.Equal(t, "succeeded", j.State, j.Error)
	searched := false
	for _, task := range j.Tasks {
		if task.Kind == "search" {
			require.Equal(t, "succeeded", task.State)
			searched = true
		}
	}
	require.True(t, searched, "a per-title job has a search task")

	plan := getJSON[searchJSON](s, "/api/v1/jobs/"+id).Plan
	require.NotNil(t, plan.Quality, "plan.quality")
	q := plan.Quality.Search
	require.NotNil(t, q, "plan.quality.search once the search task succeeded")
	require.Equal(t, "ssim", q.Metric, "no VMAF here: the search steers by the fallback")
	require.NotEmpty(t, q.Samples)
	require.NotEmpty(t, q.Rungs)
	ssim := map[string]float64{}
	for _, o := range j.Outputs {
		if o.Kind == "hls" {
			ssim[o.Name] = o.SSIM
		}
	}
	kept := 0
	for _, r := range q.Rungs {
		require.NotEmpty(t, r.Probes, r.Name)
		require.Positive(t, r.Fixed, "%s: an hls rung has the fixed ladder's bitrate", r.Name)
		if r.Dropped != "" {
			continue
		}
		kept++
		require.Positive(t, r.CRF, r.Name)
		got, ok := ssim[r.Name]
		require.True(t, ok, "an output for the kept rung %s", r.Name)
		require.GreaterOrEqual(t, got, r.Target-profile.DefaultSSIMTolerance, "%s: SSIM %.4f against a target of %.4f", r.Name, got, r.Target)
		t.Logf("%s: CRF %d, predicted SSIM %.4f at %d b/s (fixed %d b/s); made SSIM %.4f", r.Name, r.CRF, r.Score, r.Bitrate, r.Fixed, got)
	}
	require.Positive(t, kept, "a rung is kept")
	out, stderr, code := s.herd("job", id)
	require.Equal(t, 0, code, stderr)
	require.Regexp(t, `SEARCH \(SSIM, \d+ samples?; target VMAF 93\): \d+ kb/s against the fixed ladder's \d+ kb/s`, out)
	require.Contains(t, out, "RUNG  TARGET  CRF")
	out, _, _ = s.herd("profiles")
	require.Contains(t, out, "VMAF 93, -8 per halving (SSIM 0.98 without VMAF)")

	// The job page shows the search.
	ctx := browser(t)
	signIn(t, ctx, s, s.token())
	testenv.WaitJS(t, ctx, "the dashboard", `location.pathname === "/"`, 15*time.Second)
	require.NoError(t, chromedp.Run(ctx, chromedp.Navigate(s.url+"/jobs/"+id)))
	testenv.WaitJS(t, ctx, "the search section", `(() => { const b = document.querySelector("#j-search");
		return b && !b.hidden && b.checkVisibility() && document.querySelector("#j-search-chart svg[role=img]"); })()`, 20*time.Second)
	summary := evalJS[string](t, ctx, `document.querySelector("#j-search-summary").textContent`)
	require.Contains(t, summary, "Target VMAF 93")
	require.Contains(t, summary, "The search measured SSIM")
	require.Contains(t, summary, fmt.Sprintf("%d sample", len(q.Samples)))
	require.Regexp(t, `Against the fixed ladder: \d+% (fewer|more) bytes \(\d+ kb/s made`, summary)
	require.GreaterOrEqual(t, evalJS[int](t, ctx, `document.querySelectorAll("#j-search-chart svg circle").length`), kept, "a point a kept rung")
	require.Equal(t, kept, evalJS[int](t, ctx, `document.querySelectorAll("#j-search-chart svg circle.chosen").length`), "the chosen point of each kept rung")
	require.NotEmpty(t, evalJS[string](t, ctx, `document.querySelector("#j-search-chart svg").getAttribute("aria-label")`))
	require.Equal(t, len(q.Rungs), evalJS[int](t, ctx, `document.querySelectorAll("#j-search-rungs tr[data-rung]").length`), "a row a rung")
	for _, r := range q.Rungs {
		row := evalJS[string](t, ctx, fmt.Sprintf(`document.querySelector('#j-search-rungs tr[data-rung=%q]').innerText`, r.Name))
		if r.Dropped == "" {
			require.Contains(t, row, "kept")
			require.Contains(t, row, fmt.Sprint(r.CRF))
		} else {
			require.Contains(t, row, "dropped")
		}
	}
	require.True(t, evalJS[bool](t, ctx, `document.querySelector("#j-search-status").hidden`), "no 'searching' once it has searched")
	shot(t, ctx, "job-pertitle")
	axeAudit(t, ctx, "the job page of a per-title job")

	// The states one short clip does not reach, drawn by the page's own
	// showSearch from made-up views of a job: searching; ended without a
	// search; a VMAF search of an mp4 profile's three rungs (no fixed
	// ladder: no savings) with one dropped; no quality target at all.
	type drawn struct {
		Hidden, StatusHidden, ChartHidden bool
		Status, Summary                   string
		Rows, Chosen                      int
		Dropped                           string
	}
	draw := func(view string) drawn {
		return evalJS[drawn](t, ctx, `(() => { showSearch(`+view+`, []);
			const q = (s) => document.querySelector(s);
			return {hidden: q("#j-search").hidden, statusHidden: q("#j-search-status").hidden, chartHidden: q("#j-search-chart").hidden,
				status: q("#j-search-status").textContent, summary: q("#j-search-summary").textContent,
				rows: document.querySelectorAll("#j-search-rungs tr[data-rung]").length,
				chosen: document.querySelectorAll("#j-search-chart circle.chosen").length,
				dropped: q('#j-search-rungs tr[data-rung="360p"]')?.innerText || ""}; })()`)
	}
	target := `{metric: "vmaf", target: 93, fallback: 0.98}`
	got := draw(`{state: "running", plan: {quality: {target: ` + target + `}}}`)
	require.Equal(t, drawn{StatusHidden: false, ChartHidden: true, Status: "Searching for this title's settings…",
		Summary: "Target VMAF 93 (SSIM 0.98 where VMAF cannot be measured)."}, got)
	got = draw(`{state: "failed", plan: {quality: {target: ` + target + `}}}`)
	require.True(t, got.StatusHidden && got.ChartHidden && !got.Hidden && got.Rows == 0, "%+v", got)
	got = draw(`{state: "succeeded", plan: {quality: {target: ` + target + `, search: {metric: "vmaf", samples: [[10, 12], [40, 42], [70, 72]], rungs: [
		{name: "1080p", probes: [{crf: 24, bitrate: 4100000, score: 96.2}, {crf: 30, bitrate: 2300000, score: 93.9}, {crf: 33, bitrate: 1700000, score: 91.8}], target: 93, crf: 30, score: 93.9, bitrate: 2300000, reached: true},
		{name: "720p", probes: [{crf: 24, bitrate: 2000000, score: 89.5}, {crf: 27, bitrate: 1500000, score: 87.1}], target: 85, crf: 27, score: 87.1, bitrate: 1500000, reached: true},
		{name: "360p", probes: [{crf: 24, bitrate: 1300000, score: 80.2}], target: 77, crf: 24, score: 80.2, bitrate: 1300000, reached: true, dropped: "its bitrate is within 15% of the rung above"}]}}}}`)
	require.False(t, got.Hidden || got.ChartHidden, "%+v", got)
	require.Equal(t, 3, got.Rows)
	require.Equal(t, 3, got.Chosen, "a chosen point a rung, the dropped one's too")
	require.Contains(t, got.Summary, "The search measured VMAF on 3 samples of 2.0 s, at 0:10, 0:40, 1:10.")
	require.NotContains(t, got.Summary, "fixed ladder", "an mp4 profile's rungs have no fixed bitrate")
	require.Contains(t, got.Dropped, "dropped: its bitrate is within 15% of the rung above")
	shot(t, ctx, "job-pertitle-three-rungs")
	axeAudit(t, ctx, "the job page with a made-up search of three rungs")
	require.True(t, draw(`{state: "succeeded", plan: {}}`).Hidden, "no quality target, no section")
}

// A per-title job split into chunks on a remote worker that measures
// VMAF (the server measures none): the worker reports its probes, the
// server chooses the settings from them and writes the plan, which the
// chunks encode with; since the probes measured VMAF, the verify task
// asks for a worker that measures it, and that worker's verification
// measures VMAF against the source (the chunks measured SSIM only) for
// the gate.
func TestPerTitleOnARemoteWorker(t *testing.T) {
	t.Parallel()
	ffmpeg, _ := testenv.VMAF(t)
	dir := t.TempDir()
	s := startServer(t, filepath.Join(dir, "data"), "--local-workers", "0")
	s.startWorker(t, "box-1", "--measure-ffmpeg", ffmpeg)
	src := clip(t, dir, 9, "256x144")
	stdout, stderr, code := s.herd("submit", src, "--profile", "web-hls-auto", "--chunk-seconds", "4", "--wait")
	require.Equal(t, 0, code, stderr)
	id := strings.TrimSpace(stdout)
	j := s.job(id)
	require.Equal(t, "succeeded", j.State, j.Error)
	for _, task := range j.Tasks {
		require.Equal(t, "box-1", task.Worker, "task %s ran on the remote worker", task.Kind)
	}
	require.Equal(t, []string{"probe", "search", "split", "chunk 1", "chunk 2", "audio", "stitch", "thumbnails", "verify", "finalize"}, kinds(j))
	var sj searchJSON
	_, body := s.get("/api/v1/jobs/"+id, nil)
	require.NoError(t, json.Unmarshal(body, &sj))
	q := sj.Plan.Quality
	require.NotNil(t, q)
	require.NotNil(t, q.Search)
	require.Equal(t, "vmaf", q.Search.Metric, "the worker measures VMAF")
	for _, o := range j.Outputs {
		if o.Kind == "hls" && o.Width > 0 {
			require.NotNil(t, o.VMAF, "%s: the gate's metric is recorded", o.Name)
		}
	}
	out, _, code := s.herd("job", id)
	require.Equal(t, 0, code)
	require.Contains(t, out, "SEARCH (VMAF")
}
