// Package shorttest runs short, late-starting and odd sources through the
// built-in profiles on a real herd serve (in-process, real ffmpeg): each
// must finish with a poster and a sprite of however many tiles it has.
// Its own package, so its jobs have their own test timeout.
package shorttest

import (
	"context"
	"fmt"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/herdhq/herd/internal/client"
	"github.com/herdhq/herd/internal/job"
	"github.com/herdhq/herd/internal/server"
	"github.com/herdhq/herd/internal/server/servertest"
	"github.com/herdhq/herd/internal/testenv"
)

const token = "short-sources-admin-token-0123456789"

// A source shorter than the sprite's interval, or whose video starts
// after its audio (DVD and broadcast captures), or of a single frame,
// finishes like any other: a poster, a sprite of one tile (at least one),
// its outputs verified, in MP4, MPEG-PS and MPEG-TS, through web-hls and
// mp4-library, and one of them through each other built-in profile.
func TestShortAndLateSources(t *testing.T) {
	testenv.NeedFFmpeg(t)
	dir := t.TempDir()
	pic := []string{"-f", "lavfi", "-i", "testsrc2=size=320x240:rate=25"}
	tone := []string{"-f", "lavfi", "-i", "sine=frequency=440:sample_rate=48000"}
	h264 := []string{"-c:v", "libx264", "-preset", "ultrafast", "-pix_fmt", "yuv420p"}
	// Audio for 0.9 s; video of 0.4 s from 0.5 s on.
	late := slices.Concat([]string{"-f", "lavfi", "-i", "sine=frequency=440:sample_rate=48000:duration=0.9"},
		[]string{"-f", "lavfi", "-i", "testsrc2=size=320x240:rate=25:duration=0.4"},
		[]string{"-filter_complex", "[1:v]setpts=PTS+0.5/TB[v]", "-map", "0:a", "-map", "[v]"})
	sources := []struct {
		name, file string
		args       []string
	}{
		{"0.3 s MP4", "short.mp4", slices.Concat(pic, tone, []string{"-t", "0.3"}, h264, []string{"-c:a", "aac"})},
		{"0.3 s MPEG-TS", "short.ts", slices.Concat(pic, tone, []string{"-t", "0.3"}, h264, []string{"-c:a", "mp2", "-f", "mpegts"})},
		{"a single frame MP4", "one.mp4", slices.Concat(pic, []string{"-frames:v", "1"}, h264)},
		{"late video MPEG-TS", "late.ts", slices.Concat(late, []string{"-c:v", "mpeg2video", "-c:a", "mp2", "-f", "mpegts"})},
		{"late video MPEG-PS", "late.mpg", slices.Concat(late, []string{"-c:v", "mpeg2video", "-c:a", "mp2", "-f", "vob"})},
		{"audio before video MP4", "early.mp4", slices.Concat([]string{"-itsoffset", "0.48"}, pic, tone,
			[]string{"-t", "0.9", "-map", "0:v", "-map", "1:a"}, h264, []string{"-c:a", "aac"})},
		// 3 s of video with its one keyframe at the start (a poster's seek
		// lands after it), audio from 1 s on.
		{"late audio MPEG-TS with one keyframe", "lateaudio.ts", slices.Concat([]string{"-f", "lavfi", "-i", "testsrc2=size=320x240:rate=25:duration=3"},
			[]string{"-f", "lavfi", "-i", "sine=frequency=440:sample_rate=48000:duration=2"},
			[]string{"-filter_complex", "[1:a]asetpts=PTS+1/TB[a]", "-map", "0:v", "-map", "[a]"}, h264, []string{"-c:a", "mp2", "-f", "mpegts"})},
	}
	for _, s := range sources {
		require.NoError(t, testenv.FFmpeg(append(s.args, filepath.Join(dir, s.file))...), s.name)
	}

	ctx := t.Context()
	addr := servertest.Start(t, server.Config{Data: t.TempDir(), Addr: "127.0.0.1:0", LocalWorkers: 2, Grace: time.Second, AdminToken: token})
	c := client.New("http://"+addr, token)

	type run struct{ source, profile, id string }
	var runs []run
	submit := func(file, name, profile string) {
		j, _, err := c.Submit(ctx, filepath.Join(dir, file), profile, client.SubmitOptions{}, nil)
		require.NoError(t, err, "%s through %s", name, profile)
		runs = append(runs, run{name, profile, j.ID})
	}
	for _, s := range sources {
		submit(s.file, s.name, "web-hls")
		submit(s.file, s.name, "mp4-library")
	}
	for _, p := range []string{"web-hls-auto", "web-cmaf-av1", "archive-hevc"} {
		submit("late.ts", "late video MPEG-TS", p)
	}

	for _, r := range runs {
		wctx, wcancel := context.WithTimeout(ctx, 3*time.Minute)
		j, err := c.Wait(wctx, r.id, 100*time.Millisecond, nil)
		wcancel()
		require.NoError(t, err, "%s through %s", r.source, r.profile)
		require.Equal(t, job.Succeeded, j.State, "%s through %s: %s", r.source, r.profile, j.Error)
		kinds := map[string]int{}
		for _, o := range j.Outputs {
			kinds[o.Kind]++
			if o.SSIM > 0 {
				// Each frame in its place: video that starts late is held
				// back as far as it starts after the source (a frame off
				// scores far lower on this moving pattern).
				require.Greater(t, o.SSIM, 0.95, "%s through %s: %s", r.source, r.profile, o.Name)
			}
			if o.Kind == "sprite" {
				// One tile of 160 × 120 (two for the 3 s source): the
				// source is shorter than the interval, and its first tile
				// is its first frame.
				want := [2]int{160, 120}
				if j.Source.Duration > 2 {
					want[0] = 320
				}
				require.Equal(t, want, [2]int{o.Width, o.Height}, "%s through %s: the sprite sheet", r.source, r.profile)
			}
			if o.Kind == "hls" && o.Name == "audio" {
				// Audio that starts after the video is held back by
				// silence, not played from the video's start.
				require.InDelta(t, j.Source.Duration, o.Duration, 0.1, "%s through %s: the audio lasts as the source does", r.source, r.profile)
			}
		}
		if r.profile != "archive-hevc" { // the one built-in without pictures
			require.Equal(t, 1, kinds["poster"], "%s through %s: %v", r.source, r.profile, kinds)
		}
		if r.profile != "mp4-library" && r.profile != "archive-hevc" {
			require.Equal(t, 1, kinds["sprite"], "%s through %s: %v", r.source, r.profile, kinds)
			require.Equal(t, 1, kinds["thumbnails_vtt"], "%s through %s: %v", r.source, r.profile, kinds)
		}
		for _, tk := range j.Tasks {
			require.Equal(t, 1, tk.Attempt, fmt.Sprintf("%s through %s: task %s needed no second attempt", r.source, r.profile, tk.Kind))
		}
	}
}
