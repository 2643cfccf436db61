package media

import (
	"errors"
	"math"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/herdhq/herd/internal/job"
	"github.com/herdhq/herd/internal/profile"
)

// Every plan NewPlan makes, for every built-in profile and a spread of
// sources, passes Validate: the validation refuses only what NewPlan never
// makes.
func TestNewPlansValidate(t *testing.T) {
	t.Parallel()
	sources := map[string]*Info{
		"1080p":    src(1920, 1080, 25),
		"portrait": src(720, 1280, 30, func(i *Info) { i.Video.Rotation = 90 }),
		"tiny":     src(16, 16, 25, func(i *Info) { i.Duration = 0.04 }),
		"hdr": src(3840, 2160, 59.94, func(i *Info) {
			i.Video.HDR, i.Video.BitDepth, i.Video.ColorTransfer, i.Video.ColorPrimaries, i.Video.ColorSpace = true, 10, "smpte2084", "bt2020", "bt2020nc"
		}),
		"long":     src(1280, 720, 25, func(i *Info) { i.Duration = 40 * 3600 }),
		"no audio": src(640, 480, 24, func(i *Info) { i.Audio = nil }),
		"subs": src(640, 480, 24, func(i *Info) {
			i.Subtitles = []SubtitleStream{{Index: 2, Codec: "subrip", Text: true, Language: "eng"}, {Index: 3, Codec: "mov_text", Text: true}, {Index: 4, Codec: "hdmv_pgs_subtitle"}}
		}),
	}
	for _, p := range profile.Builtin().All() {
		for name, info := range sources {
			pl, err := NewPlan(info, p)
			require.NoError(t, err, "%s/%s", p.Name, name)
			require.NoError(t, pl.Validate(), "%s/%s", p.Name, name)
			for _, hw := range []string{HWNVENC, HWVAAPI, HWQSV} {
				hp, err := pl.WithHardware(hw)
				if pl.MultiCodec() {
					require.Error(t, err, "a ladder of several codecs is encoded in software")
					continue
				}
				require.NoError(t, err)
				require.NoError(t, hp.Validate(), "%s/%s/%s", p.Name, name, hw)
			}
		}
	}
}

// A plan that did not come from NewPlan — stored, or sent by a worker — is
// refused, naming the field, when a string that reaches ffmpeg's argv or
// filter graph is not one herd makes or a number would make a builder
// divide by zero or ask for absurd work.
func TestPlanValidateRefuses(t *testing.T) {
	t.Parallel()
	tests := []struct {
		field string
		mod   func(pl *Plan)
	}{
		{"plan.demuxer", func(pl *Plan) { pl.Demuxer = "hls" }},
		{"plan.demuxer", func(pl *Plan) { pl.Demuxer = "lavfi" }},
		{"plan.format", func(pl *Plan) { pl.Format = "mp4 -i /etc/passwd" }},
		{"plan.video.preset", func(pl *Plan) { pl.Video.Preset = "veryfast -vf drawtext=textfile=/etc/passwd" }},
		{"plan.video.pix_fmt", func(pl *Plan) { pl.Video.PixFmt = "yuv420p,drawtext=textfile=/etc/passwd" }},
		{"plan.video.encoder", func(pl *Plan) { pl.Video.Encoder = "libx264rgb" }},
		{"plan.video.encoder", func(pl *Plan) { pl.Video.Encoder = "h264_nvenc" }}, // hardware named without the family
		{"plan.video.codec", func(pl *Plan) { pl.Video.Codec = "prores" }},
		{"plan.video.color_transfer", func(pl *Plan) {
			pl.Video.ColorTransfer, pl.Video.ColorPrimaries, pl.Video.ColorSpace = "smpte2084:x=1", "bt2020", "bt2020nc"
		}},
		{"plan.source_transfer", func(pl *Plan) { pl.SourceTransfer = "linear[x];movie=/etc/passwd" }},
		{"plan.rotation", func(pl *Plan) { pl.Rotation = 45 }},
		{"plan.hardware", func(pl *Plan) { pl.Hardware = "cuda" }},
		{"plan.rungs", func(pl *Plan) { pl.Rungs = nil }},
		{"plan.rungs", func(pl *Plan) { pl.Rungs = make([]RungPlan, 1000) }},
		{"plan.rungs[0].width", func(pl *Plan) { pl.Rungs[0].Width = 0 }},
		{"plan.rungs[0].height", func(pl *Plan) { pl.Rungs[0].Height = 100000 }},
		{"plan.rungs[0]", func(pl *Plan) { pl.Rungs[0].Width = 641 }},
		{"plan.rungs[0].name", func(pl *Plan) { pl.Rungs[0].Name = "../x" }},
		{"plan.rungs[0].bitrate", func(pl *Plan) { pl.Rungs[0].Bitrate = -1 }},
		{"plan.rungs[0].bitrate", func(pl *Plan) { pl.Rungs[0].Bitrate = 0 }},
		{"plan.fps", func(pl *Plan) { pl.FPS = 0 }},
		{"plan.fps", func(pl *Plan) { pl.FPS = math.Inf(1) }},
		{"plan.aspect", func(pl *Plan) { pl.Aspect = 0 }},
		{"plan.duration", func(pl *Plan) { pl.Duration = math.NaN() }},
		{"plan.segment_seconds", func(pl *Plan) { pl.SegmentSeconds = 0 }},
		{"plan.gop", func(pl *Plan) { pl.GOP = 0 }},
		{"plan.video_index", func(pl *Plan) { pl.VideoIndex = -1 }},
		{"plan.audio[0].codec", func(pl *Plan) { pl.Audio[0].Codec = "libfdk_aac" }},
		{"plan.audio[0].channels", func(pl *Plan) { pl.Audio[0].Channels = 0 }},
		{"plan.audio[0].input", func(pl *Plan) { pl.Audio[0].Input = 1 << 20 }},
		{"plan.audio[0].name", func(pl *Plan) { pl.Audio[0].Name = "a\"b" }},
		{"plan.audio[0].loudness.gain", func(pl *Plan) { pl.Audio[0].Loudness = &LoudnessPlan{Target: -16, TruePeak: -1, Gain: math.Inf(1)} }},
		{"plan.subtitles[0].codec", func(pl *Plan) { pl.Subtitles = []SubtitlePlan{{Input: 2, Codec: "ass -f null"}} }},
		{"plan.thumbs.columns", func(pl *Plan) { pl.Thumbs.Columns = 0 }},
		{"plan.thumbs.count", func(pl *Plan) { pl.Thumbs.Count = 1 << 20 }},
		{"plan.thumbs.interval", func(pl *Plan) { pl.Thumbs.Interval = 0 }},
		{"plan.thumbs.tile_width", func(pl *Plan) { pl.Thumbs.TileWidth = 1 << 20 }},
		{"plan.thumbs.rows", func(pl *Plan) { pl.Thumbs.Rows = 1 }},
		{"plan.thumbs.poster_at", func(pl *Plan) { pl.Thumbs.PosterAt = -1 }},
	}
	for _, tc := range tests {
		pl, err := NewPlan(src(1920, 1080, 25), builtin(t, "web-hls"))
		require.NoError(t, err)
		require.NoError(t, pl.Validate())
		tc.mod(pl)
		err = pl.Validate()
		var fe *FieldError
		require.True(t, errors.As(err, &fe), "%s: want a field error, got %v", tc.field, err)
		require.Equal(t, tc.field, fe.Field, "%v", err)
	}
}

// A probe result from a remote worker is held to the same rules.
func TestInfoValidate(t *testing.T) {
	t.Parallel()
	require.NoError(t, src(1920, 1080, 25).Validate(Limits{}))
	tests := []struct {
		field string
		mod   func(*Info)
	}{
		{"info.demuxer", func(i *Info) { i.Demuxer = "concat" }},
		{"info.video.codec", func(i *Info) { i.Video.Codec = "h264,drawtext" }},
		{"info.video.pix_fmt", func(i *Info) { i.Video.PixFmt = "yuv420p:x" }},
		{"info.video.color_transfer", func(i *Info) { i.Video.ColorTransfer = "smpte2084,movie=/etc/passwd" }},
		{"info.video.color_space", func(i *Info) { i.Video.ColorSpace = "bt2020nc;x" }},
		{"info.video.rotation", func(i *Info) { i.Video.Rotation = 45 }},
		{"info.video.width", func(i *Info) { i.Video.Width = 1 << 20 }},
		{"info.duration", func(i *Info) { i.Duration = math.Inf(1) }},
		{"info.audio[0].index", func(i *Info) { i.Audio[0].Index = -3 }},
		{"info.audio[0].language", func(i *Info) { i.Audio[0].Language = "en\x1b[2J" }},
		// A title becomes a playlist's quoted NAME: a quote would end it.
		{"info.audio[0].title", func(i *Info) { i.Audio[0].Title = `x",URI="http://evil/` }},
		{"info.audio[0].title", func(i *Info) { i.Audio[0].Title = "two\nlines" }},
		// A loudness becomes a gain in an argv: only numbers ebur128 gives.
		{"info.audio[0].loudness", func(i *Info) { i.Audio[0].Loudness = &job.Loudness{Integrated: math.NaN()} }},
		{"info.audio[0].stereo_loudness", func(i *Info) { i.Audio[0].StereoLoudness = &job.Loudness{Integrated: -20, TruePeak: 1e9} }},
	}
	for _, tc := range tests {
		info := src(1920, 1080, 25)
		tc.mod(info)
		var fe *FieldError
		err := info.Validate(Limits{})
		require.True(t, errors.As(err, &fe), "%s: want a field error, got %v", tc.field, err)
		require.Equal(t, tc.field, fe.Field)
	}
	// Names ffmpeg does not know, and text with invalid bytes as ffprobe
	// may print it, are not refused: the names are dropped, as a local
	// probe drops them.
	odd := src(720, 576, 25, func(i *Info) {
		i.Video.ColorTransfer, i.Video.ColorPrimaries, i.Video.ColorSpace = "bt470bg", "reserved", "gbr"
		i.Audio[0].Language, i.Video.SARNum, i.Video.SARDen, i.BitRate = "fr\uFFFD", 100000, 99999, 3_000_000_000
	})
	require.NoError(t, odd.Validate(Limits{}))
	odd.Normalize()
	require.Equal(t, "bt470bg", odd.Video.ColorTransfer)
	require.Empty(t, odd.Video.ColorPrimaries)
	require.Equal(t, "gbr", odd.Video.ColorSpace)
	// Within the ranges but over this server's limits: refused as an upload would be.
	big := src(8192, 8192, 25)
	var rej *RejectedError
	require.ErrorAs(t, big.Validate(Limits{}), &rej)
	require.Equal(t, CodeTooLarge, rej.Code)
	require.ErrorAs(t, src(1920, 1080, 25).Validate(Limits{MaxPixels: 1000}), &rej)
}

// ffprobe's colour names outside ffmpeg's own sets are dropped when the
// probe is parsed, so they never reach a plan.
func TestProbeKeepsOnlyKnownColors(t *testing.T) {
	t.Parallel()
	out := []byte(`{"format": {"format_name": "mov", "duration": "2"}, "streams": [{"index": 0, "codec_type": "video", "codec_name": "hevc",
		"width": 64, "height": 64, "avg_frame_rate": "25/1", "r_frame_rate": "25/1", "pix_fmt": "yuv420p10le",
		"color_transfer": "smpte2084", "color_primaries": "reserved", "color_space": "bt2020nc"}]}`)
	info, err := parseProbe(out, "mov")
	require.NoError(t, err)
	require.Equal(t, "smpte2084", info.Video.ColorTransfer)
	require.Empty(t, info.Video.ColorPrimaries)
	require.Equal(t, "bt2020nc", info.Video.ColorSpace)
	require.NoError(t, info.Validate(Limits{}))
}
