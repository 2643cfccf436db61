package pipeline

import (
	"context"
	"encoding/json"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/herdhq/herd/internal/job"
	"github.com/herdhq/herd/internal/media"
	"github.com/herdhq/herd/internal/profile"
)

// kindsAndDeps lists an expansion's tasks by kind, with what each waits for
// (by kind; "probe" for the reporting task).
func kindsAndDeps(x *job.Expansion, probeID string) (kinds []job.Kind, deps map[job.Kind][]job.Kind) {
	byID := map[string]job.Kind{probeID: job.KindProbe}
	for _, t := range x.Tasks {
		byID[t.ID] = t.Kind
	}
	deps = map[job.Kind][]job.Kind{}
	for _, t := range x.Tasks {
		kinds = append(kinds, t.Kind)
		for _, d := range t.DependsOn {
			deps[t.Kind] = append(deps[t.Kind], byID[d])
		}
	}
	return kinds, deps
}

// A per-title job searches after its probe and before what encodes; its
// audio task does not wait for the search.
func TestDerivePutsTheSearchBeforeTheEncode(t *testing.T) {
	t.Parallel()
	auto, ok := profile.Builtin().Get("web-hls-auto")
	require.True(t, ok)
	info := func(seconds float64) *media.Info {
		return &media.Info{Demuxer: "mov", Duration: seconds, Audio: []media.AudioStream{{Index: 1, Codec: "aac", Channels: 2}},
			Video: &media.VideoStream{Codec: "h264", Width: 640, Height: 360, FPS: 25, RFPS: 25}}
	}
	c := &job.Claimed{Task: job.Task{ID: "t-probe", Kind: job.KindProbe}, Job: job.Job{ID: "j", Profile: auto.Name, ProfileVersion: auto.Version}}

	res, err := derive(auto, c, info(10))
	require.NoError(t, err)
	kinds, deps := kindsAndDeps(res.Expand, "t-probe")
	require.Equal(t, []job.Kind{job.KindSearch, job.KindAudio, job.KindEncode}, kinds)
	require.Equal(t, []job.Kind{job.KindProbe}, deps[job.KindSearch])
	require.Equal(t, []job.Kind{job.KindProbe}, deps[job.KindAudio])
	require.Equal(t, []job.Kind{job.KindSearch}, deps[job.KindEncode], "the encode runs beside the audio")
	require.Len(t, res.Expand.Ends(), 2, "what waited for the encode waits for both")
	require.Empty(t, res.Expand.Tasks[0].Needs, "a VMAF target with a fallback: any worker searches")
	var plan media.Plan
	require.NoError(t, json.Unmarshal(res.Plan, &plan))
	require.NotNil(t, plan.Quality)
	require.False(t, plan.Searched())

	// Split: the split waits for the search, the chunks follow the split.
	res, err = derive(auto, c, info(200))
	require.NoError(t, err)
	kinds, deps = kindsAndDeps(res.Expand, "t-probe")
	require.Equal(t, job.KindSearch, kinds[0])
	require.Equal(t, []job.Kind{job.KindSearch}, deps[job.KindSplit])
	require.Equal(t, []job.Kind{job.KindProbe}, deps[job.KindAudio])

	// An mp4 with a VMAF target and no fallback: its search needs VMAF.
	lib, err := profile.Parse([]byte("name: lib\nversion: 1\nformat: mp4\nvideo: {codec: h264, quality: {metric: vmaf, target: 95}}\n"))
	require.NoError(t, err)
	c.Job.Profile, c.Job.ProfileVersion = lib.Name, lib.Version
	res, err = derive(lib, c, info(10))
	require.NoError(t, err)
	kinds, deps = kindsAndDeps(res.Expand, "t-probe")
	require.Equal(t, []job.Kind{job.KindSearch, job.KindEncode}, kinds)
	require.Equal(t, []job.Kind{job.KindSearch}, deps[job.KindEncode])
	require.Equal(t, []string{job.CapVMAF}, res.Expand.Tasks[0].Needs)
	require.Equal(t, []string{job.CapVMAF}, VerifyNeeds(lib), "and so does its gate")
}

type oneProfile struct{ p *profile.Profile }

func (o oneProfile) At(context.Context, string, int) (*profile.Profile, error) { return o.p, nil }

// A remote worker's search report: the server checks it, chooses from its
// probes itself, writes the plan, and when it measured VMAF has the verify
// task ask for VMAF.
func TestAcceptSearchReport(t *testing.T) {
	t.Parallel()
	auto, _ := profile.Builtin().Get("web-hls-auto")
	info := &media.Info{Demuxer: "mov", Duration: 10, Video: &media.VideoStream{Codec: "h264", Width: 640, Height: 360, FPS: 25, RFPS: 25}}
	plan, err := media.NewPlan(info, auto)
	require.NoError(t, err)
	planJSON, err := json.Marshal(plan)
	require.NoError(t, err)
	c := &job.Claimed{Task: job.Task{ID: "t-s", Kind: job.KindSearch}, Job: job.Job{ID: "j", Profile: auto.Name, ProfileVersion: auto.Version, Plan: planJSON}}
	a := NewAcceptor(oneProfile{auto}, media.Limits{}, nil)
	report := func(s media.Search) job.Result {
		b, err := json.Marshal(s)
		require.NoError(t, err)
		return job.Result{Data: b}
	}
	rungs := func(metric string) media.Search {
		s := media.Search{Metric: metric, Samples: [][2]float64{{4, 6}}}
		for i, r := range plan.Rungs {
			score := 95.0 - float64(i)*10
			if metric == profile.MetricSSIM {
				score = 0.99
			}
			s.Rungs = append(s.Rungs, media.RungSearch{Name: r.Name, Probes: []media.Probe{{CRF: 26, Bitrate: 400_000 / int64(i+1), Score: score}}, CRF: 14})
		}
		return s
	}

	_, err = a.Accept(context.Background(), c, report(media.Search{Metric: "psnr"}))
	require.ErrorContains(t, err, "search.metric")
	bad := rungs(profile.MetricVMAF)
	bad.Rungs[0].Probes[0].Score = 120
	_, err = a.Accept(context.Background(), c, report(bad))
	require.ErrorContains(t, err, "search.rungs[0].probes[0].score")
	_, err = a.Accept(context.Background(), c, job.Result{Data: []byte(`{"metric":"ssim","extra":1}`)})
	require.ErrorContains(t, err, "not a search result")

	res, err := a.Accept(context.Background(), c, report(rungs(profile.MetricVMAF)))
	require.NoError(t, err)
	var got media.Plan
	require.NoError(t, json.Unmarshal(res.Plan, &got))
	require.True(t, got.Searched())
	require.Equal(t, 26, got.Rungs[0].CRF, "the server's choice, not the report's")
	require.NotNil(t, res.Expand, "VMAF measured: the gate needs it")
	require.Equal(t, job.KindVerify, res.Expand.Replace)
	require.Equal(t, []string{job.InheritDeps}, res.Expand.Tasks[0].DependsOn)
	require.Equal(t, []string{job.CapVMAF}, res.Expand.Tasks[0].Needs)
	var s media.Search
	require.NoError(t, json.Unmarshal(res.Data, &s))
	require.Equal(t, 26, s.Rungs[0].CRF)

	res, err = a.Accept(context.Background(), c, report(rungs(profile.MetricSSIM)))
	require.NoError(t, err)
	require.Nil(t, res.Expand, "SSIM: any worker verifies")
}

// The quality gate over verified outputs: a rung below its bar has the
// plan re-encode it once at a stricter CRF (an encode, a verify and the
// finalize replace the finalize); below again, the job fails with what
// was measured.
func TestGatedReencodesOnce(t *testing.T) {
	t.Parallel()
	auto, _ := profile.Builtin().Get("web-hls-auto")
	info := &media.Info{Demuxer: "mov", Duration: 10, Video: &media.VideoStream{Codec: "h264", Width: 640, Height: 360, FPS: 25, RFPS: 25}}
	plan, err := media.NewPlan(info, auto)
	require.NoError(t, err)
	s := media.Search{Metric: profile.MetricSSIM, Samples: [][2]float64{{4, 6}}}
	for i, r := range plan.Rungs {
		s.Rungs = append(s.Rungs, media.RungSearch{Name: r.Name, Probes: []media.Probe{{CRF: 30, Bitrate: 400_000 / int64(i*3+1), Score: 0.99}}})
	}
	require.NoError(t, plan.ApplySearch(s))
	outs := func(ssim float64) []media.Output {
		var o []media.Output
		for _, r := range plan.Rungs {
			o = append(o, media.Output{Name: r.Name, Kind: "hls", Path: "media_0.m3u8", Width: r.Width, Height: r.Height, Codec: "h264", SSIM: ssim})
		}
		return append(o, media.Output{Name: "poster", Kind: "poster", Path: "poster.jpg", Width: 640, Height: 360, Codec: "mjpeg"})
	}

	res, err := gated(plan, outs(0.99), auto, job.Result{Data: []byte("[]")})
	require.NoError(t, err)
	require.Nil(t, res.Expand, "at the target: nothing more")

	res, err = gated(plan, outs(0.9), auto, job.Result{Data: []byte("[]")})
	require.NoError(t, err, "below: encoded again, not failed")
	require.NotNil(t, res.Expand)
	require.Equal(t, job.KindFinalize, res.Expand.Replace)
	kinds, deps := kindsAndDeps(res.Expand, "t-verify")
	require.Equal(t, []job.Kind{job.KindEncode, job.KindVerify, job.KindFinalize}, kinds)
	require.Equal(t, []string{job.InheritDeps}, res.Expand.Tasks[0].DependsOn, "after the verify that gated it")
	require.Equal(t, []job.Kind{job.KindEncode}, deps[job.KindVerify])
	var again media.Plan
	require.NoError(t, json.Unmarshal(res.Plan, &again))
	require.True(t, again.Quality.Reencoded)
	require.Equal(t, 30-media.ReencodeStep, again.Rungs[0].CRF)

	_, err = gated(&again, outs(0.9), auto, job.Result{Data: []byte("[]")})
	code, permanent := job.IsPermanent(err)
	require.True(t, permanent)
	require.Equal(t, media.CodeQualityTarget, code)
	require.Contains(t, err.Error(), "SSIM 0.9000 is below its target of 0.9800")
	require.Contains(t, err.Error(), "after one re-encode at a stricter CRF")
}
