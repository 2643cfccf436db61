package media

import (
	"context"
	"encoding/json"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/herdhq/herd/internal/profile"
)

func builtin(t *testing.T, name string) *profile.Profile {
	t.Helper()
	p, ok := profile.Builtin().Get(name)
	require.True(t, ok, "built-in profile %s", name)
	return p
}

// admitted admits input and plans it with p, as the probe task would.
func admitted(t *testing.T, input string, p *profile.Profile) *Plan {
	t.Helper()
	info, err := (Tools{}).Admit(context.Background(), input, Limits{})
	require.NoError(t, err)
	pl, err := NewPlan(info, p)
	require.NoError(t, err)
	return pl
}

// src makes a probed source for plan tests.
func src(w, h int, fps float64, mod ...func(*Info)) *Info {
	info := &Info{
		Demuxer: "mov", FormatName: "mov,mp4,m4a,3gp,3g2,mj2", Duration: 60, Size: 1 << 20, BitRate: 4_000_000,
		Video: &VideoStream{Index: 0, Codec: "h264", PixFmt: "yuv420p", Width: w, Height: h, FPS: fps, RFPS: fps, BitDepth: 8},
		Audio: []AudioStream{{Index: 1, Codec: "aac", Channels: 2, SampleRate: 48000, Default: true}},
	}
	for _, m := range mod {
		m(info)
	}
	return info
}

type rung struct{ w, h int }

func TestNewPlan(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name        string
		profile     string
		info        *Info
		wantW       int
		wantH       int
		wantRungs   []rung
		wantFPS     float64
		wantGOP     int
		wantFPSFilt bool
		wantDeint   bool
		wantTone    bool
		check       func(t *testing.T, pl *Plan)
	}{
		{name: "4k", profile: "web-hls", info: src(3840, 2160, 30), wantW: 3840, wantH: 2160,
			wantRungs: []rung{{1920, 1080}, {1280, 720}, {960, 540}, {640, 360}, {426, 240}}, wantFPS: 30, wantGOP: 120},
		{name: "1080p", profile: "web-hls", info: src(1920, 1080, 25), wantW: 1920, wantH: 1080,
			wantRungs: []rung{{1920, 1080}, {1280, 720}, {960, 540}, {640, 360}, {426, 240}}, wantFPS: 25, wantGOP: 100},
		{name: "720x405 keeps 16:9 rungs", profile: "web-hls", info: src(720, 405, 25), wantW: 720, wantH: 404,
			wantRungs: []rung{{640, 360}, {426, 240}}, wantFPS: 25, wantGOP: 100},
		{name: "smaller than every rung", profile: "web-hls", info: src(161, 91, 25), wantW: 160, wantH: 90,
			wantRungs: []rung{{160, 90}}, wantFPS: 25, wantGOP: 100,
			check: func(t *testing.T, pl *Plan) {
				require.Equal(t, "90p", pl.Rungs[0].Name)
				require.GreaterOrEqual(t, pl.Rungs[0].Bitrate, int64(minRungBitrate))
			}},
		{name: "rotated portrait phone", profile: "web-hls", info: src(1920, 1080, 30, func(i *Info) { i.Video.Rotation = 90 }),
			wantW: 1080, wantH: 1920,
			wantRungs: []rung{{1080, 1920}, {720, 1280}, {540, 960}, {360, 640}, {240, 426}}, wantFPS: 30, wantGOP: 120,
			check: func(t *testing.T, pl *Plan) {
				require.Equal(t, "1080p", pl.Rungs[0].Name)
				require.Equal(t, 160, pl.Thumbs.TileWidth)
				require.Equal(t, 284, pl.Thumbs.TileHeight)
			}},
		{name: "5 fps", profile: "web-hls", info: src(640, 360, 5), wantW: 640, wantH: 360,
			wantRungs: []rung{{640, 360}, {426, 240}}, wantFPS: 5, wantGOP: 20},
		{name: "skewed average rate uses the nominal one", profile: "web-hls", info: src(1280, 720, 2500.0/83, func(i *Info) { i.Video.RFPS = 30 }),
			wantW: 1280, wantH: 720, wantRungs: []rung{{1280, 720}, {960, 540}, {640, 360}, {426, 240}}, wantFPS: 30, wantGOP: 120},
		{name: "120 fps capped at 60", profile: "web-hls", info: src(1280, 720, 120), wantW: 1280, wantH: 720,
			wantRungs: []rung{{1280, 720}, {960, 540}, {640, 360}, {426, 240}}, wantFPS: 60, wantGOP: 240, wantFPSFilt: true},
		{name: "59.94 to 29.97 for mp4", profile: "mp4-library", info: src(1920, 1080, 60000.0/1001), wantW: 1920, wantH: 1080,
			wantRungs: []rung{{1920, 1080}}, wantFPS: 29.97, wantFPSFilt: true},
		{name: "anamorphic DVD", profile: "web-hls", info: src(720, 480, 29.97, func(i *Info) { i.Video.SARNum, i.Video.SARDen = 32, 27 }),
			wantW: 852, wantH: 480, wantRungs: []rung{{640, 360}, {426, 240}}, wantFPS: 29.97, wantGOP: 120},
		{name: "anamorphic DVD to mp4", profile: "mp4-library", info: src(720, 480, 25, func(i *Info) { i.Video.SARNum, i.Video.SARDen = 32, 27 }),
			wantW: 852, wantH: 480, wantRungs: []rung{{852, 480}}, wantFPS: 25},
		{name: "vfr", profile: "web-hls", info: src(1280, 720, 29.5, func(i *Info) { i.Video.RFPS, i.Video.VFR = 90000, true }),
			wantW: 1280, wantH: 720, wantRungs: []rung{{1280, 720}, {960, 540}, {640, 360}, {426, 240}}, wantFPS: 29.5, wantGOP: 118, wantFPSFilt: true},
		{name: "interlaced", profile: "web-hls", info: src(1920, 1080, 25, func(i *Info) { i.Video.Interlaced = true }),
			wantW: 1920, wantH: 1080, wantRungs: []rung{{1920, 1080}, {1280, 720}, {960, 540}, {640, 360}, {426, 240}},
			wantFPS: 25, wantGOP: 100, wantDeint: true},
		{name: "hdr tone mapped for h264", profile: "mp4-library", info: src(3840, 2160, 24, func(i *Info) {
			i.Video.HDR, i.Video.ColorTransfer, i.Video.PixFmt, i.Video.BitDepth = true, "smpte2084", "yuv420p10le", 10
		}), wantW: 3840, wantH: 2160, wantRungs: []rung{{1920, 1080}}, wantFPS: 24, wantTone: true,
			check: func(t *testing.T, pl *Plan) { require.Equal(t, "yuv420p", pl.Video.PixFmt) }},
		{name: "hdr kept for hevc archive", profile: "archive-hevc", info: src(3840, 2160, 24, func(i *Info) {
			i.Video.HDR, i.Video.ColorTransfer, i.Video.PixFmt, i.Video.BitDepth = true, "smpte2084", "yuv420p10le", 10
		}), wantW: 3840, wantH: 2160, wantRungs: []rung{{3840, 2160}}, wantFPS: 24,
			check: func(t *testing.T, pl *Plan) {
				require.Equal(t, "yuv420p10le", pl.Video.PixFmt)
				require.Equal(t, "smpte2084", pl.Video.ColorTransfer)
			}},
		{name: "5.1 audio downmixed plus ac3 passthrough", profile: "mp4-library", info: src(1280, 720, 25, func(i *Info) {
			i.Audio = []AudioStream{{Index: 1, Codec: "ac3", Channels: 6, Default: true, Language: "eng"}, {Index: 2, Codec: "aac", Channels: 2}}
			i.Subtitles = []SubtitleStream{{Index: 3, Codec: "subrip", Text: true}, {Index: 4, Codec: "hdmv_pgs_subtitle"}}
		}), wantW: 1280, wantH: 720, wantRungs: []rung{{1280, 720}}, wantFPS: 25,
			check: func(t *testing.T, pl *Plan) {
				require.Equal(t, []AudioPlan{
					{Input: 1, SourceCodec: "ac3", Codec: "aac", Channels: 2, Bitrate: 160_000, Language: "eng", Default: true},
					{Input: 1, SourceCodec: "ac3", Codec: "copy", Language: "eng"},
				}, pl.Audio)
				require.Equal(t, []SubtitlePlan{{Input: 3, Codec: "mov_text"}}, pl.Subtitles, "picture subtitles never go to mp4")
			}},
		{name: "archive keeps every track", profile: "archive-hevc", info: src(1280, 720, 25, func(i *Info) {
			i.Demuxer = "matroska"
			i.Audio = append(i.Audio, AudioStream{Index: 2, Codec: "dts", Channels: 6})
			i.Subtitles = []SubtitleStream{{Index: 3, Codec: "hdmv_pgs_subtitle"}, {Index: 4, Codec: "mov_text", Text: true}}
		}), wantW: 1280, wantH: 720, wantRungs: []rung{{1280, 720}}, wantFPS: 25,
			check: func(t *testing.T, pl *Plan) {
				require.Len(t, pl.Audio, 2)
				require.Equal(t, "copy", pl.Audio[1].Codec)
				require.Equal(t, []SubtitlePlan{{Input: 3, Codec: "copy"}, {Input: 4, Codec: "srt"}}, pl.Subtitles)
				require.True(t, pl.Attachments)
				require.Equal(t, "libx265", pl.Video.Encoder)
				require.Equal(t, 24, pl.Video.CRF)
			}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			pl, err := NewPlan(tc.info, builtin(t, tc.profile))
			require.NoError(t, err)
			require.Equal(t, tc.wantW, pl.Width, "width")
			require.Equal(t, tc.wantH, pl.Height, "height")
			var got []rung
			for _, r := range pl.Rungs {
				got = append(got, rung{r.Width, r.Height})
				require.Zero(t, r.Width%2, "odd width %d", r.Width)
				require.Zero(t, r.Height%2, "odd height %d", r.Height)
				require.LessOrEqual(t, r.Width, pl.Width, "rung wider than the source")
				require.LessOrEqual(t, r.Height, pl.Height, "rung taller than the source")
				if pl.Format == profile.FormatHLS {
					require.Positive(t, r.Bitrate)
					require.InDelta(t, 1.07, float64(r.MaxRate)/float64(r.Bitrate), 0.01)
					require.InDelta(t, 1.5, float64(r.BufSize)/float64(r.Bitrate), 0.01)
				}
			}
			require.Equal(t, tc.wantRungs, got)
			require.InDelta(t, tc.wantFPS, pl.FPS, 0.001)
			require.Equal(t, tc.wantGOP, pl.GOP)
			require.Equal(t, tc.wantFPSFilt, pl.FPSFilter, "fps filter")
			require.Equal(t, tc.wantDeint, pl.Deinterlace, "deinterlace")
			require.Equal(t, tc.wantTone, pl.ToneMap, "tone map")
			if tc.check != nil {
				tc.check(t, pl)
			}
			// The plan is stored on the job: it must survive JSON.
			data, err := json.Marshal(pl)
			require.NoError(t, err)
			var back Plan
			require.NoError(t, json.Unmarshal(data, &back))
			require.Equal(t, *pl, back)
		})
	}
}

func TestNewPlanFilters(t *testing.T) {
	t.Parallel()
	pl, err := NewPlan(src(1920, 1080, 50, func(i *Info) {
		i.Video.Interlaced, i.Video.HDR, i.Video.ColorTransfer = true, true, "arib-std-b67"
	}), builtin(t, "mp4-library"))
	require.NoError(t, err)
	g := pl.videoGraph()
	require.Equal(t, "[0:0]bwdif=mode=send_frame:parity=auto:deint=all,"+
		"zscale=tin=arib-std-b67:min=bt2020nc:pin=bt2020:t=linear:npl=100,format=gbrpf32le,zscale=p=bt709,"+
		"tonemap=tonemap=hable:desat=0,zscale=t=bt709:m=bt709:r=tv,fps=25,scale=1920:1080,setsar=1,format=yuv420p[v0]", g)
}

func TestNewPlanThumbs(t *testing.T) {
	t.Parallel()
	pl, err := NewPlan(src(1280, 720, 25, func(i *Info) { i.Duration = 25 }), builtin(t, "web-hls"))
	require.NoError(t, err)
	require.Equal(t, ThumbPlan{Poster: true, PosterAt: 2.5, PosterWidth: 1280, PosterHeight: 720,
		Sprite: true, Interval: 2, TileWidth: 160, TileHeight: 90, Columns: 10, Rows: 2, Count: 13}, pl.Thumbs)
	vtt := pl.ThumbnailsVTT()
	require.Contains(t, vtt, "WEBVTT\n\n00:00:00.000 --> 00:00:02.000\nsprite.jpg#xywh=0,0,160,90\n")
	require.Contains(t, vtt, "00:00:20.000 --> 00:00:22.000\nsprite.jpg#xywh=0,90,160,90\n")
	require.Contains(t, vtt, "00:00:24.000 --> 00:00:25.000\nsprite.jpg#xywh=320,90,160,90\n")

	long, err := NewPlan(src(1280, 720, 25, func(i *Info) { i.Duration = 3 * 3600 }), builtin(t, "web-hls"))
	require.NoError(t, err)
	require.LessOrEqual(t, long.Thumbs.Count, maxSpriteTiles)
	require.Equal(t, 11.0, long.Thumbs.Interval)
}

func TestNewPlanRefusesNonsense(t *testing.T) {
	t.Parallel()
	_, err := NewPlan(&Info{Duration: 3}, builtin(t, "web-hls"))
	require.Error(t, err)
	_, err = NewPlan(src(0, 0, 25), builtin(t, "web-hls"))
	require.Error(t, err)
	_, err = NewPlan(src(640, 360, 25), nil)
	require.Error(t, err)
}
