package media

import (
	"cmp"
	"flag"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/herdhq/herd/internal/job"
	"github.com/herdhq/herd/internal/profile"
)

var update = flag.Bool("update", false, "rewrite testdata/golden/*.args")

// goldenSources are representative probes for the golden argv tests.
func goldenSources() map[string]*Info {
	return map[string]*Info{
		"1080p": src(1920, 1080, 25),
		"phone-vfr-rotated": src(1920, 1080, 29.6, func(i *Info) {
			i.Video.Rotation, i.Video.RFPS, i.Video.VFR = 90, 120, true
		}),
		"dvd": src(720, 480, 29.97, func(i *Info) {
			i.Demuxer, i.FormatName = "mpeg", "mpeg"
			i.Video.Codec, i.Video.Interlaced, i.Video.SARNum, i.Video.SARDen = "mpeg2video", true, 32, 27
			i.Audio = []AudioStream{
				{Index: 1, Codec: "ac3", Channels: 6, Default: true, Loudness: &job.Loudness{Integrated: -27, Range: 12, TruePeak: -4, Threshold: -37},
					StereoLoudness: &job.Loudness{Integrated: -29.3, Range: 11, TruePeak: -6.5, Threshold: -39.3}},
				{Index: 2, Codec: "ac3", Channels: 2, Language: "fre"}, // not measured
			}
			i.Subtitles = []SubtitleStream{{Index: 3, Codec: "dvd_subtitle"}}
		}),
		"hdr-mkv": src(3840, 2160, 23.976, func(i *Info) {
			i.Demuxer, i.FormatName = "matroska", "matroska,webm"
			i.Video.Codec, i.Video.PixFmt, i.Video.BitDepth = "hevc", "yuv420p10le", 10
			i.Video.HDR, i.Video.ColorTransfer, i.Video.ColorPrimaries, i.Video.ColorSpace = true, "smpte2084", "bt2020", "bt2020nc"
			i.Subtitles = []SubtitleStream{{Index: 2, Codec: "subrip", Text: true, Language: "eng", Default: true}}
		}),
		"tiny-silent": src(161, 91, 25, func(i *Info) { i.Audio = nil }),
	}
}

func TestEncodeArgsGolden(t *testing.T) {
	t.Parallel()
	for _, p := range []string{"web-hls", "web-cmaf-av1", "mp4-library", "archive-hevc"} {
		for name, info := range goldenSources() {
			t.Run(p+"/"+name, func(t *testing.T) {
				t.Parallel()
				pl, err := NewPlan(info, builtin(t, p))
				require.NoError(t, err)
				args := pl.EncodeArgs("/in/source file.bin", "/out/job")
				if pl.Thumbs.Poster {
					args = append(append(args, "# poster"), pl.PosterArgs("/in/source file.bin", "/out/job")...)
				}
				if pl.Thumbs.Sprite {
					args = append(append(args, "# sprite"), pl.SpriteArgs("/in/source file.bin", "/out/job")...)
				}
				got := strings.Join(args, "\n") + "\n"
				path := filepath.Join("testdata", "golden", p+"_"+name+".args")
				if *update {
					require.NoError(t, os.MkdirAll(filepath.Dir(path), 0o755))
					require.NoError(t, os.WriteFile(path, []byte(got), 0o644))
				}
				want, err := os.ReadFile(path)
				require.NoError(t, err, "run with -update to create the golden file")
				require.Equal(t, string(want), got)

				// Properties every argv must have, whatever the golden file says.
				require.Equal(t, []string{"-nostdin", "-hide_banner", "-nostats", "-progress", "pipe:1", "-y",
					"-protocol_whitelist", "file,pipe", "-f", info.Demuxer, "-i", "file:/in/source file.bin"}, args[:12])
				for _, a := range args {
					require.NotContains(t, a, "/etc/")
				}
			})
		}
	}
}

// TestEncodeArgsLadders: a ladder of several codecs names each rung's
// encoder and options by its output stream, with the keyframe cadence of
// every stream; a plan of one codec keeps naming one encoder for all.
func TestEncodeArgsLadders(t *testing.T) {
	t.Parallel()
	ladder := func(l string) *Plan {
		p, err := profile.Parse([]byte("name: x\nversion: 1\nformat: hls\nsegment_seconds: 2\nvideo: {codec: h264, rungs: [{height: 720, bitrate: 2M}, {height: 360, bitrate: 800k}], ladders: [" + l + "]}\n"))
		require.NoError(t, err)
		pl, err := NewPlan(src(1280, 720, 25), p)
		require.NoError(t, err)
		require.NoError(t, pl.Validate())
		require.True(t, pl.MultiCodec())
		return pl
	}
	hevc := ladder("{codec: hevc, rungs: [{height: 720, bitrate: 1500k}]}")
	require.Equal(t, []string{"720p", "360p", "720p-hevc"}, []string{hevc.Rungs[0].Name, hevc.Rungs[1].Name, hevc.Rungs[2].Name})
	require.Equal(t, []string{"h264", "hevc"}, hevc.Codecs())
	pl := ladder("{codec: av1, preset: fast, rungs: [{height: 720, bitrate: 1200k}, {height: 360, bitrate: 400k}]}")
	require.Equal(t, []string{"h264", "av1"}, pl.Codecs())
	got := " " + strings.Join(hevc.EncodeArgs("/in/x", "/out"), " ") + " " + strings.Join(pl.EncodeArgs("/in/x", "/out"), " ") + " "
	for _, want := range []string{
		" -c:v:0 libx264 -preset:v:0 veryfast -profile:v:0 high ",
		" -c:v:1 libx264 -preset:v:1 veryfast -profile:v:1 high ",
		" -c:v:2 libx265 -forced-idr:v:2 1 -preset:v:2 veryfast -x265-params:v:2 log-level=error:open-gop=0 -tag:v:2 hvc1 ",
		" -c:v:3 libsvtav1 -preset:v:3 8 -svtav1-params:v:3 irefresh-type=2 ",
		" -g 50 -keyint_min 50 -sc_threshold 0 -force_key_frames ",
		" -b:v:2 1500000 ", " -b:v:3 400000 ",
	} {
		require.Contains(t, got, want)
	}
	require.NotContains(t, got, " -c:v ", "no encoder for every stream")

	_, err := pl.WithHardware(HWNVENC)
	require.ErrorContains(t, err, "a ladder of h264 and av1 is encoded in software")

	// A stored plan whose rung names another encoder, format or picture is refused.
	for _, tc := range []struct {
		name string
		set  func(v *VideoPlan)
		want string
	}{
		{"encoder", func(v *VideoPlan) { v.Encoder = "libx264" }, "plan.video.encoder"},
		{"codec", func(v *VideoPlan) { v.Codec = "vp9" }, "plan.video.codec"},
		{"pixel format", func(v *VideoPlan) { v.PixFmt = "yuv420p10le" }, "pix_fmt"},
	} {
		bad := *pl
		bad.Rungs = slices.Clone(pl.Rungs)
		v := *bad.Rungs[3].Video
		tc.set(&v)
		bad.Rungs[3].Video = &v
		require.ErrorContains(t, bad.Validate(), tc.want, tc.name)
	}
	mp4 := *pl
	mp4.Format, mp4.SegmentSeconds = profile.FormatMP4, 0
	require.ErrorContains(t, mp4.Validate(), "plan.rungs[2].video")
	split := *pl
	split.FPSFilter, split.Chunks = true, []ChunkPlan{{First: 0, End: 100}, {First: 100}}
	require.ErrorContains(t, split.Validate(), "encoded whole", "a ladder of two codecs is never split")
}

func TestFpsArg(t *testing.T) {
	t.Parallel()
	for in, want := range map[float64]string{29.97: "30000/1001", 23.976: "24000/1001", 59.94: "60000/1001", 25: "25", 12.5: "12.5"} {
		require.Equal(t, want, fpsArg(in), "%v", in)
	}
}

func av1Profile(t *testing.T) *profile.Profile {
	t.Helper()
	p, err := profile.Parse([]byte("name: archive-av1\nversion: 1\nformat: mkv\nvideo: {codec: av1, crf: 30, preset: fast}\naudio: {codec: copy, keep_all: true}\nsubtitles: copy\n"))
	require.NoError(t, err)
	return p
}

// TestEncodeArgsHardwareGolden pins the argv of every hardware family for
// h264, hevc and av1 (and the software av1 encoder).
func TestEncodeArgsHardwareGolden(t *testing.T) {
	t.Parallel()
	profiles := map[string]*profile.Profile{
		"web-hls": builtin(t, "web-hls"), "mp4-library": builtin(t, "mp4-library"),
		"archive-hevc": builtin(t, "archive-hevc"), "archive-av1": av1Profile(t),
	}
	for _, kind := range []string{HWNone, HWNVENC, HWVAAPI, HWQSV} {
		for name, p := range profiles {
			if kind == HWNone && name != "archive-av1" {
				continue // the software argv of the built-ins is pinned by TestEncodeArgsGolden
			}
			t.Run(cmp.Or(kind, "software")+"/"+name, func(t *testing.T) {
				t.Parallel()
				base, err := NewPlan(src(1920, 1080, 25), p)
				require.NoError(t, err)
				pl, err := base.WithHardware(kind)
				require.NoError(t, err)
				args := pl.EncodeArgs("/in/source.bin", "/out/job")
				got := strings.Join(args, "\n") + "\n"
				path := filepath.Join("testdata", "golden", "hw_"+cmp.Or(kind, "software")+"_"+name+".args")
				if *update {
					require.NoError(t, os.WriteFile(path, []byte(got), 0o644))
				}
				want, err := os.ReadFile(path)
				require.NoError(t, err, "run with -update to create the golden file")
				require.Equal(t, string(want), got)

				require.Contains(t, args, pl.Video.Encoder)
				require.Equal(t, "", base.Hardware, "the original plan is unchanged")
				in := indexOf(args, "-i")
				switch kind {
				case HWVAAPI:
					require.Less(t, indexOf(args, "-vaapi_device"), in, "the device is opened before the input")
					require.Contains(t, got, "hwupload")
				case HWQSV:
					require.Less(t, indexOf(args, "-init_hw_device"), in)
					require.Contains(t, got, "hwupload=extra_hw_frames")
				case HWNVENC:
					require.NotContains(t, got, "hwupload")
				}
				if p.Format == profile.FormatHLS {
					require.Contains(t, args, "-force_key_frames", "keyframes stay aligned across rungs")
				}
			})
		}
	}
	_, err := (&Plan{Video: VideoPlan{Codec: "vp9"}}).WithHardware(HWNVENC)
	require.Error(t, err)
}

func indexOf(args []string, s string) int {
	for i, a := range args {
		if a == s {
			return i
		}
	}
	return -1
}

// The runs of an hls job that read the video alone and the audio alone
// each count time from the source's start, not from their own stream's
// first packet: both keep the source's timestamps and move them back by
// its start; the video is held from 0 on the grid, the audio preceded by
// silence, the WebVTT cues moved by the same offset. A copied audio track
// cannot be moved, and a run that reads both streams needs none of it.
func TestAloneRunsCountFromTheSourcesStart(t *testing.T) {
	t.Parallel()
	info := src(720, 576, 25, func(i *Info) {
		i.Demuxer, i.FormatName, i.Start = "mpegts", "mpegts", 1.4
		i.Audio[0].Loudness = &job.Loudness{Integrated: -20, Range: 5, TruePeak: -3, Threshold: -30}
		i.Subtitles = []SubtitleStream{{Index: 2, Codec: "subrip", Text: true, Language: "eng"}}
	})
	pl, err := NewPlan(info, builtin(t, "web-hls"))
	require.NoError(t, err)
	pl.PlanAudioStep()
	require.True(t, pl.AudioStep)
	enc := strings.Join(pl.EncodeArgs("/in/s.ts", "/out"), " ")
	require.Contains(t, enc, "-copyts -f mpegts -i file:/in/s.ts")
	require.Contains(t, enc, "[0:0]setpts=PTS-1.4/TB,fps=25:start_time=0,split=")
	audio := strings.Join(pl.AudioArgs("/in/s.ts", "/out"), " ")
	require.Contains(t, audio, "-copyts -f mpegts -i file:/in/s.ts")
	require.Regexp(t, `-filter:a:0 asetpts=PTS-1\.4/TB,volume=[-0-9.]+dB,aresample=48000:first_pts=0 `, audio)
	require.Contains(t, audio, "-c:s webvtt -output_ts_offset -1.4 -f webvtt")

	copied := *pl
	copied.Audio = append([]AudioPlan(nil), pl.Audio...)
	copied.Audio[0].Codec = "copy"
	audio = strings.Join(copied.AudioArgs("/in/s.ts", "/out"), " ")
	require.NotContains(t, audio, "-copyts")
	require.NotContains(t, audio, "output_ts_offset")

	both := *pl
	both.AudioStep = false
	enc = strings.Join(both.EncodeArgs("/in/s.ts", "/out"), " ")
	require.NotContains(t, enc, "-copyts")
	require.NotContains(t, enc, "setpts=PTS-1.4/TB")
	require.NotContains(t, enc, "asetpts")
	require.Contains(t, enc, "[0:0]fps=25:start_time=0,split=", "held from 0 still")
}
