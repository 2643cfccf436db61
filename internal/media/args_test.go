package media

import (
	"flag"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
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
