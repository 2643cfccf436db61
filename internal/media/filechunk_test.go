package media

import (
	"context"
	"errors"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/herdhq/herd/internal/profile"
)

// every returns keyframes every step seconds from from up to (not including) to.
func every(from, to, step float64) []float64 {
	var out []float64
	for t := from; t < to-1e-9; t += step {
		out = append(out, math.Round(t*1e6)/1e6)
	}
	return out
}

func TestPlanKeyframeChunks(t *testing.T) {
	t.Parallel()
	file := func(format string, duration, start float64) *Plan {
		return &Plan{Format: format, Duration: duration, Start: start, FPS: 25, Demuxer: "mov"}
	}
	starts := func(ts ...float64) []ChunkPlan {
		out := []ChunkPlan{{}}
		for _, t := range ts {
			out = append(out, ChunkPlan{Time: t})
		}
		return out
	}
	for _, tc := range []struct {
		name      string
		pl        *Plan
		seconds   float64
		keyframes []float64
		want      []ChunkPlan
	}{
		{"no keyframes listed", file(profile.FormatMP4, 600, 0), 60, nil, nil},
		{"off", file(profile.FormatMP4, 600, 0), 0, every(0, 600, 2), nil},
		{"a single keyframe", file(profile.FormatMKV, 600, 0), 60, []float64{0}, nil},
		// The only boundary would leave a 20 s tail, under half a chunk.
		{"under two chunks", file(profile.FormatMP4, 80, 0), 60, every(0, 80, 2), nil},
		{"two chunks", file(profile.FormatMP4, 90, 0), 60, every(0, 90, 2), starts(60)},
		// 120 s would leave a 10 s tail: it joins the second chunk.
		{"the tail joins the last chunk", file(profile.FormatMP4, 130, 0), 60, every(0, 130, 2), starts(60)},
		{"three chunks", file(profile.FormatMKV, 180, 0), 60, every(0, 180, 2), starts(60, 120)},
		// Keyframes every 7.5 s: the first at or after 20, 40, 60 and 80 s.
		{"the first keyframe at or after the boundary", file(profile.FormatMKV, 100, 0), 20, every(0, 100, 7.5), starts(22.5, 45, 60, 82.5)},
		// Nothing between 0 and 130 s: the first chunk is long, and the
		// next boundary is the next multiple after it (180 s).
		{"sparse keyframes", file(profile.FormatMP4, 300, 0), 60, []float64{0, 130, 135, 170, 250}, starts(130, 250)},
		// 119.9 s is the first keyframe after 60 s; 121 s would make a
		// chunk of 1.1 s, so the next is at least 30 s later.
		{"no chunk under half the length", file(profile.FormatMP4, 300, 0), 60, []float64{0, 59, 119.9, 121, 200}, starts(119.9, 200)},
		// A VFR source that starts at 1.4 s: boundaries in output time.
		{"variable frame rate, late start", file(profile.FormatMKV, 200, 1.4), 60, []float64{1.4, 30, 61.5, 62, 125.3, 180}, starts(60.1, 123.9)},
		{"keyframes before the start are skipped", file(profile.FormatMKV, 200, 5), 60, []float64{4, 5, 66, 130}, starts(61, 125)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			tc.pl.PlanChunks(tc.seconds, tc.keyframes)
			require.Equal(t, tc.want, tc.pl.Chunks)
			if tc.want == nil {
				return
			}
			require.False(t, tc.pl.FPSFilter, "a split mp4 or mkv plan keeps the source's frame rate")
			require.NoError(t, tc.pl.validateChunks())
			var total float64
			for k := range tc.pl.Chunks {
				require.GreaterOrEqual(t, tc.pl.ChunkSeconds(k), tc.seconds/2, "chunk %d", k+1)
				total += tc.pl.ChunkSeconds(k)
				if k > 0 {
					require.Equal(t, tc.pl.ChunkStart(k), tc.pl.ChunkEnd(k-1))
				}
			}
			require.Zero(t, tc.pl.ChunkEnd(len(tc.pl.Chunks)-1), "the last chunk runs to the end")
			require.InDelta(t, tc.pl.Duration, total, 1e-6)
		})
	}
}

func TestValidateKeyframeChunks(t *testing.T) {
	t.Parallel()
	pl := &Plan{Format: profile.FormatMP4, Duration: 180, FPS: 25, Demuxer: "mov"}
	pl.PlanChunks(60, every(0, 180, 2))
	require.Len(t, pl.Chunks, 3)
	require.NoError(t, pl.validateChunks())
	bad := func(mod func(*Plan)) error {
		c := *pl
		c.Chunks = append([]ChunkPlan(nil), pl.Chunks...)
		mod(&c)
		return c.validateChunks()
	}
	require.ErrorContains(t, bad(func(p *Plan) { p.Chunks[0].Time = 1 }), "start at 0 s")
	require.ErrorContains(t, bad(func(p *Plan) { p.Chunks[2].Time = 50 }), "does not run on")
	require.ErrorContains(t, bad(func(p *Plan) { p.Chunks[2].Time = 60.2 }), "does not run on")
	require.ErrorContains(t, bad(func(p *Plan) { p.Chunks[2].Time = 181 }), "does not run on")
	require.ErrorContains(t, bad(func(p *Plan) { p.Chunks[1].Time = math.NaN() }), "does not run on")
	require.ErrorContains(t, bad(func(p *Plan) { p.Chunks[1].End = 7 }), "does not run on")
	require.ErrorContains(t, bad(func(p *Plan) { p.Chunks = p.Chunks[:1] }), "plan.chunks")
	// An hls plan's chunks are frames, never times.
	h := &Plan{Format: profile.FormatHLS, Duration: 180, FPS: 25, SegmentSeconds: 4, Demuxer: "mov"}
	h.PlanChunks(60, nil)
	h.Chunks[1].Time = 60
	require.ErrorContains(t, h.validateChunks(), "does not run on")
}

func TestFileChunkArgs(t *testing.T) {
	t.Parallel()
	pl := &Plan{Format: profile.FormatMP4, Duration: 180, Start: 0.5, FPS: 25, Demuxer: "mov", VideoIndex: 0,
		Video:  VideoPlan{Codec: "h264", Encoder: "libx264", Preset: "fast", CRF: 22, PixFmt: "yuv420p"},
		Rungs:  []RungPlan{{Name: "180p", Width: 320, Height: 180}},
		Audio:  []AudioPlan{{Input: 1, Codec: "aac", Channels: 2, Bitrate: 160_000, Default: true}, {Input: 2, Codec: "copy"}},
		Chunks: []ChunkPlan{{}, {Time: 60.04}, {Time: 120}}}
	args := strings.Join(pl.ChunkArgs("/w/piece.mkv", 1, "/w/out"), " ")
	require.Contains(t, args, "-copyts -f matroska -i file:/w/piece.mkv")
	// An MP4 is constant-rate: each chunk puts its frames on the grid
	// (the first from 0, padding late video as the MP4 muxer does), and
	// trims a quarter frame (10 ms) before either boundary.
	require.Contains(t, args, "[0:0]setpts=PTS-0.5/TB,fps=25,trim=start=60.030000:end=119.990000,scale=320:180")
	require.Contains(t, args, "-x264-params stitchable=1")
	require.True(t, strings.HasSuffix(args, "-map_metadata -1 -map_chapters -1 -movie_timescale 1000000000 -f mp4 file:/w/out/video.mp4"), args)
	require.NotContains(t, args, "-map 0:1", "a chunk is video only")
	first := strings.Join(pl.ChunkArgs("/w/piece.mkv", 0, "/w/out"), " ")
	require.Contains(t, first, ",fps=25:start_time=0,trim=end=60.030000,")
	// A keyframe off the grid is where the fps filter puts it: the nearest slot.
	off := *pl
	off.Chunks = []ChunkPlan{{}, {Time: 60.052}, {Time: 120}}
	require.Contains(t, strings.Join(off.ChunkArgs("/w/piece.mkv", 1, "/w/out"), " "), ",fps=25,trim=start=60.030000:end=119.990000,")
	// An MKV keeps its frames' own times (without the fps filter): no
	// grid, and the boundaries are the keyframes' times.
	vfr := off
	vfr.Format = profile.FormatMKV
	require.Contains(t, strings.Join(vfr.ChunkArgs("/w/piece.mkv", 1, "/w/out"), " "), "[0:0]setpts=PTS-0.5/TB,trim=start=60.042000:end=119.990000,scale=320:180")
	vfr.FPSFilter = true
	require.Contains(t, strings.Join(vfr.ChunkArgs("/w/piece.mkv", 0, "/w/out"), " "), "[0:0]setpts=PTS-0.5/TB,fps=25,trim=end=60.030000,scale=320:180")
	last := strings.Join(pl.ChunkArgs("/w/piece.mkv", 2, "/w/out"), " ")
	require.Contains(t, last, ",trim=start=119.990000,")

	// The pieces are the hls ones: a second of pre-roll either side.
	require.Equal(t, []string{"-ss", "59.04", "-to", "121"}, pl.SplitArgs("/w/src.mp4", 1, "/w/piece.mkv", ChunkPreroll)[8:12])

	audio := strings.Join(pl.AudioArgs("/w/src.mp4", "/w/audio"), " ")
	require.Contains(t, audio, "-map 0:1 -map 0:2 -c:a:0 aac -b:a:0 160000 -ac:a:0 2 -disposition:a:0 default -c:a:1 copy -disposition:a:1 0 -map_chapters -1 -max_muxing_queue_size 1024 -f mp4 file:/w/audio/tracks.mp4")
	require.True(t, strings.HasSuffix(audio, "-map_metadata 0 -map_chapters 0 -f ffmetadata file:/w/audio/metadata.txt"), audio)
	require.True(t, pl.AudioTask())

	require.Equal(t, []string{"-nostdin", "-hide_banner", "-nostats", "-progress", "pipe:1", "-y", "-copyts",
		"-safe", "0", "-protocol_whitelist", "file,pipe", "-f", "concat", "-i", "file:/tmp/list",
		"-protocol_whitelist", "file,pipe", "-f", "mov", "-i", "file:/w/audio/tracks.mp4",
		"-protocol_whitelist", "file,pipe", "-f", "ffmetadata", "-i", "file:/w/audio/metadata.txt",
		"-map", "0:v:0", "-map", "1", "-c", "copy", "-map_metadata", "2", "-map_chapters", "2",
		"-disposition:a:0", "default", "-disposition:a:1", "0", "-max_muxing_queue_size", "1024",
		"-movflags", "+faststart", "-f", "mp4", "file:/w/out/video.mp4"},
		pl.StitchArgs("/tmp/list", "/w/audio/tracks.mp4", "/w/audio/metadata.txt", "/w/out"))

	// An mkv plan without audio or subtitles: only the metadata.
	mkv := *pl
	mkv.Format, mkv.Audio = profile.FormatMKV, nil
	mkv.Video = VideoPlan{Codec: "hevc", Encoder: "libx265", Preset: "fast", CRF: 24, PixFmt: "yuv420p"}
	audio = strings.Join(mkv.AudioArgs("/w/src.mp4", "/w/audio"), " ")
	require.NotContains(t, audio, "tracks.mkv")
	require.True(t, mkv.AudioTask(), "an mkv plan's audio task carries its metadata")
	require.Contains(t, strings.Join(mkv.ChunkArgs("/w/piece.mkv", 1, "/w/out"), " "), "-x265-params log-level=error:info=0",
		"no options SEI: it names the worker's thread count, which would make chunks from different workers unstitchable")
	require.True(t, strings.HasSuffix(strings.Join(mkv.ChunkArgs("/w/piece.mkv", 1, "/w/out"), " "), "-map_metadata -1 -map_chapters -1 -f matroska file:/w/out/video.mkv"))
	stitch := strings.Join(mkv.StitchArgs("/tmp/list", "", "/w/audio/metadata.txt", "/w/out"), " ")
	require.Contains(t, stitch, "-f ffmetadata -i file:/w/audio/metadata.txt -map 0:v:0 -c copy -map_metadata 1 -map_chapters 1 -max_muxing_queue_size 1024 -f matroska file:/w/out/video.mkv")

	// An mkv plan from mkv, without audio or subtitles: its attachments
	// travel in tracks.mkv with one packet of the source's video (ffmpeg
	// 5.1 cannot read back a Matroska file of attachments alone), which
	// the stitch leaves out.
	mkv.Demuxer, mkv.Attachments = "matroska", true
	audio = strings.Join(mkv.AudioArgs("/w/src.mkv", "/w/audio"), " ")
	require.Contains(t, audio, "-map 0:0 -c:v copy -frames:v 1 -map 0:t? -c:t copy -map_chapters -1 -max_muxing_queue_size 1024 -f matroska file:/w/audio/tracks.mkv")
	require.True(t, strings.HasSuffix(audio, "-map_metadata 0 -map_chapters 0 -f ffmetadata file:/w/audio/metadata.txt"), audio)
	stitch = strings.Join(mkv.StitchArgs("/tmp/list", "/w/audio/tracks.mkv", "/w/audio/metadata.txt", "/w/out"), " ")
	require.Contains(t, stitch, "-f matroska -i file:/w/audio/tracks.mkv -protocol_whitelist file,pipe -f ffmetadata -i file:/w/audio/metadata.txt -map 0:v:0 -map 1:t? -c copy -map_metadata 2 -map_chapters 2 ")
	// With audio, the attachments come with the audio tracks as before.
	mkv.Audio = pl.Audio
	require.NotContains(t, strings.Join(mkv.AudioArgs("/w/src.mkv", "/w/audio"), " "), "-frames:v")
	require.Contains(t, strings.Join(mkv.StitchArgs("/tmp/list", "/w/audio/tracks.mkv", "/w/audio/metadata.txt", "/w/out"), " "), "-map 0:v:0 -map 1 -c copy")
}

func TestConcatList(t *testing.T) {
	t.Parallel()
	_, err := writeConcatList([]string{"/w/chunk-1/video.mp4", "/w/a\nfile '/etc/passwd'/video.mp4"}, []int64{0, 1})
	require.ErrorContains(t, err, "line break")
	list, err := writeConcatList([]string{"/w/chunk-1/video.mp4", "/w/it's/video.mp4", "/w/chunk-3/video.mp4"},
		[]int64{21_000, 2_502_500, 4_170_833})
	require.NoError(t, err)
	t.Cleanup(func() { _ = os.Remove(list) })
	b, err := os.ReadFile(list)
	require.NoError(t, err)
	require.Equal(t, `ffconcat version 1.0
file 'file:/w/chunk-1/video.mp4'
inpoint 0.000000
duration 2.502500
file 'file:/w/it'\''s/video.mp4'
inpoint 2.502500
duration 1.668333
file 'file:/w/chunk-3/video.mp4'
inpoint 4.170833
`, string(b))
}

func TestChunkParamsDiffer(t *testing.T) {
	t.Parallel()
	a := chunkParams{stream: chunkStream{CodecName: "hevc", Profile: "Main", Level: 90, Width: 320, Height: 180, PixFmt: "yuv420p", TimeBase: "1/1000", ExtradataHash: "SHA256:aa"}}
	require.Empty(t, a.differs(a))
	for want, mod := range map[string]func(*chunkStream){
		"codec":                      func(s *chunkStream) { s.CodecName = "h264" },
		"profile":                    func(s *chunkStream) { s.Profile = "Main 10" },
		"level":                      func(s *chunkStream) { s.Level = 93 },
		"picture size":               func(s *chunkStream) { s.Height = 182 },
		"pixel format":               func(s *chunkStream) { s.PixFmt = "yuv420p10le" },
		"time base":                  func(s *chunkStream) { s.TimeBase = "1/25" },
		"parameter sets (extradata)": func(s *chunkStream) { s.ExtradataHash = "SHA256:bb" },
	} {
		b := a
		mod(&b.stream)
		require.Equal(t, want, a.differs(b))
	}
}

func TestKeyframeList(t *testing.T) {
	t.Parallel()
	var l keyframeList
	// Lines split anywhere, non-keyframes, a keyframe without a time, one
	// out of order and one the demuxer discards.
	for _, p := range []string{"0.000000,K_\n0.04", "0000,__\n1.001000,K_\nN/A,K_\n0.5,K_\n", "2.002000,K_", "\n2.5,KD\n3.0,K_\n"} {
		_, err := l.Write([]byte(p))
		require.NoError(t, err)
	}
	require.Equal(t, []float64{0, 1.001, 2.002, 3}, l.times)

	// Millions of keyframes: thinned out evenly, never more than MaxKeyframes.
	var h keyframeList
	n := 5*MaxKeyframes + 3
	for i := range n {
		fmt.Fprintf(&h, "%d.000000,K_\n", i)
		require.LessOrEqual(t, len(h.times), MaxKeyframes)
	}
	require.Greater(t, len(h.times), MaxKeyframes/4)
	require.Equal(t, 0.0, h.times[0])
	step := h.times[1] - h.times[0]
	for i := 1; i < len(h.times); i++ {
		require.Equal(t, step, h.times[i]-h.times[i-1], "evenly spread")
	}
	require.Greater(t, h.times[len(h.times)-1], float64(n)-step-1, "up to the end")
}

// An MP4 cut by stream copy keeps the GOP before its cut behind an edit
// list: those keyframes are discarded, never listed (the probe report
// would be refused as outside the source).
func TestProbeKeyframesOfAnEditList(t *testing.T) {
	t.Parallel()
	tools := needFFmpeg(t)
	ctx := context.Background()
	src := clip(t, "gop.mp4", "160x90", "6", "-g", "25")
	cut := filepath.Join(t.TempDir(), "cut.mp4")
	generate(t, "-ss", "2.5", "-i", src, "-c", "copy", cut)
	info, err := tools.Admit(ctx, cut, Limits{})
	require.NoError(t, err)
	require.NoError(t, tools.ProbeKeyframes(ctx, cut, info))
	require.NotEmpty(t, info.Keyframes)
	for _, k := range info.Keyframes {
		require.GreaterOrEqual(t, k, info.Start)
	}
	// The edit list hides frames before its start, none at the end.
	require.NoError(t, tools.ProbeVideoEnd(ctx, cut, info))
	require.Zero(t, info.VideoEnd)
	require.NoError(t, info.Validate(Limits{}))
}

// Whatever ffprobe prints, the video end found is none or a finite time,
// and the scan's memory stays bounded.
func FuzzVideoEndScan(f *testing.F) {
	f.Add([]byte("0.000000,K_\n0.120000,_D\n0.040000,__\n"))
	f.Add([]byte("N/A,_D\nnan,__\ninf,_D\n-1,K_\n1e308,_D\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		var s videoEndScan
		for len(data) > 0 {
			n := min(len(data), 7)
			_, err := s.Write(data[:n])
			require.NoError(t, err)
			data = data[n:]
		}
		s.line(string(s.partial))
		require.LessOrEqual(t, len(s.hidden), maxHiddenPackets)
		require.True(t, finite(s.end()))
		if e := s.end(); e != 0 {
			require.Greater(t, e, s.kept)
		}
	})
}

// Whatever ffprobe prints, the list stays bounded, increasing and finite,
// so that a local probe passes the checks a remote one must.
func FuzzKeyframeList(f *testing.F) {
	f.Add([]byte("0.000000,K_\n1.001000,K_\n1.5,__\n"))
	f.Add([]byte("N/A,K_\nnan,K_\ninf,K_\n-1,K_\n1e308,K_\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		var l keyframeList
		for len(data) > 0 {
			n := min(len(data), 7)
			_, err := l.Write(data[:n])
			require.NoError(t, err)
			data = data[n:]
		}
		l.line(string(l.partial))
		require.LessOrEqual(t, len(l.times), MaxKeyframes)
		for i, k := range l.times {
			require.True(t, finite(k))
			if i > 0 {
				require.Greater(t, k, l.times[i-1])
			}
		}
	})
}

func TestInfoKeyframesValidate(t *testing.T) {
	t.Parallel()
	info := func(kf ...float64) *Info {
		return &Info{Demuxer: "mov", Duration: 60, Start: 1, Keyframes: kf,
			Video: &VideoStream{Codec: "h264", Width: 320, Height: 180, FPS: 25}}
	}
	require.NoError(t, info(1, 3, 5.5, 60.9).Validate(Limits{}))
	require.NoError(t, info().Validate(Limits{}))
	for name, i := range map[string]*Info{
		"not increasing":      info(1, 3, 3),
		"decreasing":          info(1, 5, 3),
		"before the start":    info(-5, 3),
		"after the end":       info(1, 70),
		"not a number":        info(1, math.NaN()),
		"infinite":            info(1, math.Inf(1)),
		"more than the bound": info(every(0, float64(MaxKeyframes+1)/200, 0.005)...),
	} {
		err := i.Validate(Limits{})
		require.Error(t, err, name)
		fe, ok := errors.AsType[*FieldError](err)
		require.True(t, ok, name)
		require.Equal(t, "info.keyframes", fe.Field, name)
	}
}

// Chunks whose video differs cannot be joined by stream copy: the stitch
// refuses, naming the chunk, before it runs ffmpeg.
func TestStitchRefusesMismatchedChunks(t *testing.T) {
	t.Parallel()
	needFFmpeg(t)
	dir := t.TempDir()
	pl := &Plan{Format: profile.FormatMKV, Duration: 2, FPS: 25, Chunks: []ChunkPlan{{}, {Time: 1}}}
	mk := func(name, size string, from float64, extra ...string) string {
		d := filepath.Join(dir, name)
		require.NoError(t, os.MkdirAll(d, 0o755))
		args := []string{"-f", "lavfi", "-i", "testsrc2=size=" + size + ":rate=25", "-t", "1",
			"-c:v", "libx264", "-preset", "ultrafast", "-output_ts_offset", ftoa(from)}
		generate(t, append(append(args, extra...), "-f", "matroska", filepath.Join(d, "video.mkv"))...)
		return d
	}
	a := mk("a", "160x90", 0)
	b := mk("b", "160x96", 1)
	meta := filepath.Join(dir, "audio")
	require.NoError(t, os.MkdirAll(meta, 0o755))
	require.NoError(t, os.WriteFile(filepath.Join(meta, MetadataName), []byte(";FFMETADATA1\n"), 0o644))

	ran, err := Tools{}.Stitch(context.Background(), pl, []string{a, b}, meta, filepath.Join(dir, "out"))
	se, ok := errors.AsType[*StitchError](err)
	require.True(t, ok, "%v", err)
	require.Equal(t, 2, se.Chunk)
	require.ErrorContains(t, err, "chunk 2: its video's picture size differs from chunk 1's")
	require.Len(t, ran, 2, "two ffprobes, no ffmpeg")

	// Other x264 settings: other parameter sets.
	c := mk("c", "160x90", 1, "-x264-params", "ref=4")
	_, err = Tools{}.Stitch(context.Background(), pl, []string{a, c}, meta, filepath.Join(dir, "out"))
	require.ErrorContains(t, err, "chunk 2: its video's parameter sets (extradata) differ")

	// A chunk that does not start where the plan says.
	d := mk("d", "160x90", 1.5)
	_, err = Tools{}.Stitch(context.Background(), pl, []string{a, d}, meta, filepath.Join(dir, "out"))
	require.ErrorContains(t, err, "chunk 2: it starts at 1.500000 s, not at 1.000000 s")

	// A chunk that is not video: ffprobe fails, the chunk is named.
	require.NoError(t, os.WriteFile(filepath.Join(d, "video.mkv"), []byte("not a video"), 0o644))
	_, err = Tools{}.Stitch(context.Background(), pl, []string{a, d}, meta, filepath.Join(dir, "out"))
	se, ok = errors.AsType[*StitchError](err)
	require.True(t, ok, "%v", err)
	require.Equal(t, 2, se.Chunk)
	_, ok = errors.AsType[*ExitError](err)
	require.True(t, ok, "the ffprobe exit is kept: %v", err)

	// Matching chunks join; the metadata file missing is the audio task's fault.
	e := mk("e", "160x90", 1)
	_, err = Tools{}.Stitch(context.Background(), pl, []string{a, e}, dir, filepath.Join(dir, "out"))
	require.ErrorContains(t, err, "the audio task's metadata.txt is missing")
	_, err = Tools{}.Stitch(context.Background(), pl, []string{a, e}, meta, filepath.Join(dir, "out"))
	require.NoError(t, err)
	require.FileExists(t, filepath.Join(dir, "out", "video.mkv"))
}

// ProbeKeyframes lists a clip's keyframes; a file ffprobe cannot read fails
// with ffprobe's exit.
func TestProbeKeyframes(t *testing.T) {
	t.Parallel()
	needFFmpeg(t)
	src := clip(t, "k.mp4", "160x90", "3", "-g", "25")
	info, err := Tools{}.Admit(context.Background(), src, Limits{})
	require.NoError(t, err)
	require.NoError(t, Tools{}.ProbeKeyframes(context.Background(), src, info))
	require.Equal(t, []float64{0, 1, 2}, info.Keyframes)

	bad := filepath.Join(t.TempDir(), "bad.mp4")
	require.NoError(t, os.WriteFile(bad, []byte("not a video at all"), 0o644))
	err = Tools{}.ProbeKeyframes(context.Background(), bad, info)
	_, ok := errors.AsType[*ExitError](err)
	require.True(t, ok, "%v", err)
}

func TestVideoEndScan(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name  string
		lines string
		want  float64
	}{
		{"nothing hidden", "0.000000,K_\n0.080000,__\n0.040000,__\n", 0},
		{"the last frame hidden, in decode order before B-frames", "0.000000,K_\n0.120000,_D\n0.040000,__\n0.080000,__\n", 0.12},
		{"two hidden, the later first", "0.000000,K_\n0.160000,_D\n0.040000,__\n0.120000,_D\n0.080000,__\n", 0.12},
		{"hidden before an edit's start only", "0.000000,KD\n0.040000,_D\n0.080000,K_\n0.120000,__\n", 0},
		{"a line split across writes and garbage", "0.000000,K_\nN/A,_D\nnonsense\n0.04", 0},
		{"all hidden: cannot tell", "0.000000,KD\n0.040000,_D\n", 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			var s videoEndScan
			for _, p := range strings.SplitAfter(tc.lines, "\n") {
				_, err := s.Write([]byte(p))
				require.NoError(t, err)
			}
			s.line(string(s.partial))
			require.Equal(t, tc.want, s.end())
		})
	}
	// Hostile: a kept packet after ever more hidden ones keeps the list
	// bounded, and an overflow means "cannot tell".
	var s videoEndScan
	for i := range 3 * maxHiddenPackets {
		fmt.Fprintf(&s, "%d.5,_D\n", i+1)
		require.LessOrEqual(t, len(s.hidden), maxHiddenPackets)
	}
	fmt.Fprintf(&s, "0.000000,K_\n")
	require.Zero(t, s.end())
}

// The last chunk of a split plan whose source's edit list hides frames
// drops them before any other filter; the other chunks are as before.
func TestChunkArgsTrimHiddenEnd(t *testing.T) {
	t.Parallel()
	info := src(320, 180, 25, func(i *Info) { i.Duration, i.Start, i.VideoEnd = 9, 0.5, 9.44 })
	require.NoError(t, info.Validate(Limits{}))
	pl, err := NewPlan(info, builtin(t, "web-hls"))
	require.NoError(t, err)
	require.Equal(t, 8.94, pl.VideoEnd, "output time")
	pl.PlanChunks(4, nil)
	require.Len(t, pl.Chunks, 2)
	require.NoError(t, pl.Validate())
	last := strings.Join(pl.ChunkArgs("/w/piece.mkv", 1, "/w/out"), " ")
	require.Contains(t, last, "]setpts=PTS-0.5/TB,trim=end=8.939500,fps=25,trim=start_pts=100,")
	first := strings.Join(pl.ChunkArgs("/w/piece.mkv", 0, "/w/out"), " ")
	require.Contains(t, first, "]setpts=PTS-0.5/TB,fps=25:start_time=0,trim=start_pts=0:end_pts=100,")

	mp4, err := NewPlan(info, builtin(t, "mp4-library"))
	require.NoError(t, err)
	mp4.PlanChunks(4, []float64{0.5, 4.5})
	require.Len(t, mp4.Chunks, 2)
	require.Contains(t, strings.Join(mp4.ChunkArgs("/w/piece.mkv", 1, "/w/out"), " "), "]setpts=PTS-0.5/TB,trim=end=8.939500,fps=25,trim=start=3.990000")

	pl.VideoEnd = 10.5
	require.ErrorContains(t, pl.Validate(), "plan.video_end")
	info.VideoEnd = 0.2
	require.ErrorContains(t, info.Validate(Limits{}), "info.video_end")
}
