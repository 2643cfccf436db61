package pipeline

import (
	"encoding/json"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/herdhq/herd/internal/job"
	"github.com/herdhq/herd/internal/media"
	"github.com/herdhq/herd/internal/profile"
)

// An mp4 or mkv job is split at the source keyframes its probe listed, and
// always gets an audio task (its other tracks, metadata and chapters);
// without keyframes it is encoded whole.
func TestDeriveSplitsFilePlansAtKeyframes(t *testing.T) {
	t.Parallel()
	var keyframes []float64
	for s := 0.0; s < 200; s += 2 {
		keyframes = append(keyframes, s)
	}
	for _, name := range []string{"mp4-library", "archive-hevc"} {
		p, ok := profile.Builtin().Get(name)
		require.True(t, ok)
		sixty := 60.0
		c := &job.Claimed{Task: job.Task{ID: "t-probe", Kind: job.KindProbe},
			Job: job.Job{ID: "j", Profile: name, ProfileVersion: p.Version, ChunkSeconds: &sixty}}
		info := &media.Info{Demuxer: "mov", Duration: 200, Keyframes: keyframes,
			Video: &media.VideoStream{Codec: "h264", Width: 640, Height: 360, FPS: 25, RFPS: 25}}

		res, err := derive(p, c, info)
		require.NoError(t, err, name)
		var plan media.Plan
		require.NoError(t, json.Unmarshal(res.Plan, &plan))
		require.Equal(t, []media.ChunkPlan{{}, {Time: 60}, {Time: 120}}, plan.Chunks, name)
		require.NotNil(t, res.Expand, name)
		var kinds []job.Kind
		for _, task := range res.Expand.Tasks {
			kinds = append(kinds, task.Kind)
		}
		require.Equal(t, []job.Kind{job.KindSplit, job.KindChunk, job.KindChunk, job.KindChunk, job.KindAudio, job.KindStitch}, kinds,
			"%s: a source without audio still has an audio task", name)
		require.InDelta(t, 80.0, res.Expand.Tasks[3].Seconds, 1e-9, "the last chunk runs to the end")

		info.Keyframes = nil
		res, err = derive(p, c, info)
		require.NoError(t, err, name)
		require.Nil(t, res.Expand, "%s: no keyframes, no split", name)
	}
}

// An unsplit web job's audio and encode both follow the probe, the audio
// first (claimed first by a one-slot worker: the live playlists need it),
// and what waited for the encode (verify) waits for both: the encode does
// not wait for the audio.
func TestDeriveRunsTheEncodeBesideTheAudio(t *testing.T) {
	t.Parallel()
	p, ok := profile.Builtin().Get("web-hls")
	require.True(t, ok)
	c := &job.Claimed{Task: job.Task{ID: "t-probe", Kind: job.KindProbe}, Job: job.Job{ID: "j", Profile: p.Name, ProfileVersion: p.Version}}
	info := &media.Info{Demuxer: "mov", Duration: 10, Audio: []media.AudioStream{{Index: 1, Codec: "aac", Channels: 2}},
		Video: &media.VideoStream{Codec: "h264", Width: 640, Height: 360, FPS: 25, RFPS: 25}}
	res, err := derive(p, c, info)
	require.NoError(t, err)
	var plan media.Plan
	require.NoError(t, json.Unmarshal(res.Plan, &plan))
	require.True(t, plan.AudioStep)
	kinds, deps := kindsAndDeps(res.Expand, "t-probe")
	require.Equal(t, []job.Kind{job.KindAudio, job.KindEncode}, kinds)
	require.Equal(t, []job.Kind{job.KindProbe}, deps[job.KindEncode])
	require.Equal(t, []job.Kind{job.KindProbe}, deps[job.KindAudio])
	require.Equal(t, []string{res.Expand.Tasks[0].ID, res.Expand.Tasks[1].ID}, res.Expand.Ends())
}
