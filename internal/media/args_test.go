package media

import (
	"cmp"
	"flag"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

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
			i.Audio = []AudioStream{{Index: 1, Codec: "ac3", Channels: 6, Default: true}, {Index: 2, Codec: "ac3", Channels: 2, Language: "fre"}}
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
	for _, p := range []string{"web-hls", "mp4-library", "archive-hevc"} {
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
