package media

import (
	"context"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/herdhq/herd/internal/profile"
	"github.com/herdhq/herd/internal/testenv"
)

// Sampled verification of an MP4 or Matroska source reads the source only
// around the windows of the sampled segments it measures (WindowQualityArgs). What it measures must be
// exactly what decoding the whole source gives, for every kind of source
// whose frames the filters move or pick: 29.97 fps, variable frame rate,
// interlaced, video that starts after the audio, rotated, HDR tone-mapped.
// A range whose frames came out shifted by one would compare every frame
// with its neighbour, and its SSIM drop far below.
func TestSampledQualitySeeksTheSource(t *testing.T) {
	t.Parallel()
	tools := needFFmpeg(t)
	p, err := profile.Parse([]byte(`name: seek-test
version: 1
format: hls
segment_seconds: 1
video:
  codec: h264
  preset: veryfast
  rungs:
    - {height: 180, bitrate: 400k}
    - {height: 90, bitrate: 200k}
audio:
  codec: aac
  bitrate: 64k
thumbnails:
  poster: false
  sprite: false
`))
	require.NoError(t, err)
	x264 := []string{"-c:v", "libx264", "-preset", "ultrafast", "-g", "25", "-pix_fmt", "yuv420p"}
	for _, tc := range []struct {
		name string
		file string
		args []string
	}{
		{"29.97 fps MP4", "ntsc.mp4", slices.Concat([]string{"-f", "lavfi", "-i", "testsrc2=size=320x180:rate=30000/1001",
			"-f", "lavfi", "-i", "sine=frequency=300:sample_rate=48000", "-t", "8"}, x264, []string{"-c:a", "aac"})},
		{"variable frame rate MKV", "vfr.mkv", slices.Concat([]string{"-f", "lavfi", "-i", "testsrc2=size=320x180:rate=25",
			"-f", "lavfi", "-i", "sine=frequency=310:sample_rate=48000", "-t", "8",
			"-vf", `select='lt(mod(n\,7)\,5)'`, "-fps_mode", "vfr"}, x264, []string{"-c:a", "aac"})},
		{"interlaced MKV", "tff.mkv", slices.Concat([]string{"-f", "lavfi", "-i", "testsrc2=size=320x180:rate=50",
			"-f", "lavfi", "-i", "sine=frequency=320:sample_rate=48000", "-t", "8",
			"-vf", "tinterlace=interleave_top,setfield=tff", "-flags", "+ildct+ilme"}, x264, []string{"-c:a", "aac"})},
		{"MP4 whose video starts half a second after its audio", "late.mp4", slices.Concat([]string{"-itsoffset", "0.48",
			"-f", "lavfi", "-i", "testsrc2=size=320x180:rate=25", "-f", "lavfi", "-i", "sine=frequency=330:sample_rate=48000",
			"-t", "8", "-map", "0:v", "-map", "1:a"}, x264, []string{"-c:a", "aac"})},
		{"MP4 shot on its side", "side.mp4", slices.Concat([]string{"-f", "lavfi", "-i", "testsrc2=size=320x180:rate=25",
			"-f", "lavfi", "-i", "sine=frequency=340:sample_rate=48000", "-t", "8"}, x264,
			[]string{"-c:a", "aac", "-metadata:s:v:0", "rotate=90"})},
		{"HDR10 HEVC MP4 (tone-mapped)", "hdr.mp4", []string{"-f", "lavfi", "-i", "testsrc2=size=320x180:rate=25",
			"-f", "lavfi", "-i", "sine=frequency=350:sample_rate=48000", "-t", "8",
			"-pix_fmt", "yuv420p10le", "-c:v", "libx265", "-preset", "ultrafast",
			"-x265-params", "log-level=error:keyint=25:colorprim=bt2020:transfer=smpte2084:colormatrix=bt2020nc",
			"-color_primaries", "bt2020", "-color_trc", "smpte2084", "-colorspace", "bt2020nc", "-c:a", "aac"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			ctx := context.Background()
			src := filepath.Join(t.TempDir(), tc.file)
			require.NoError(t, testenv.FFmpeg(append(tc.args, src)...))
			pl := admitted(t, src, p)
			dir := t.TempDir()
			_, err := tools.Encode(ctx, pl, src, dir, nil)
			require.NoError(t, err)

			measure := func(seek bool) ([]Output, [][]string) {
				v := &verifier{t: tools, pl: pl, in: src, out: dir, tmp: t.TempDir(), seek: seek}
				outs, err := v.hls(ctx)
				require.NoError(t, err)
				return outs, v.ran
			}
			seeked, ran := measure(true)
			whole, ranWhole := measure(false)
			seeks := func(ran [][]string) int {
				n := 0
				for _, a := range ran {
					n += strings.Count(strings.Join(a, " "), "-noaccurate_seek -ss ")
				}
				return n
			}
			require.Equal(t, 2, seeks(ran), "8 segments: 0, 2, 4, 5 and 7 decoded; SSIM measured on 2 and 5, each read from a keyframe before it")
			require.Zero(t, seeks(ranWhole))
			require.Len(t, seeked, len(whole))
			rungs := 0
			for i, o := range seeked {
				if o.SSIM == 0 {
					continue // master, manifest, audio
				}
				rungs++
				require.Equal(t, 5, o.Decoded, o.Name)
				require.Greater(t, o.SSIM, 0.9, o.Name)
				require.InDelta(t, whole[i].SSIM, o.SSIM, 1e-4, "%s: SSIM from the sampled ranges of the source, and from all of it", o.Name)
				require.InDelta(t, whole[i].PSNR, o.PSNR, 0.01, "%s: PSNR", o.Name)
			}
			require.Equal(t, 2, rungs)
		})
	}
}
