package media

import (
	"context"
	"fmt"
	"path/filepath"
	"slices"
	"strconv"
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
	p := seekProfile(t, 1)
	x264 := []string{"-c:v", "libx264", "-preset", "ultrafast", "-g", "25", "-pix_fmt", "yuv420p"}
	for _, tc := range []struct {
		name string
		file string
		args []string
	}{
		{"29.97 fps MP4", "ntsc.mp4", slices.Concat([]string{"-f", "lavfi", "-i", "testsrc2=size=320x180:rate=30000/1001",
			"-f", "lavfi", "-i", "sine=frequency=300:sample_rate=48000", "-t", "12"}, x264, []string{"-c:a", "aac"})},
		{"variable frame rate MKV", "vfr.mkv", slices.Concat([]string{"-f", "lavfi", "-i", "testsrc2=size=320x180:rate=25",
			"-f", "lavfi", "-i", "sine=frequency=310:sample_rate=48000", "-t", "12",
			"-vf", `select='lt(mod(n\,7)\,5)'`, "-fps_mode", "vfr"}, x264, []string{"-c:a", "aac"})},
		{"interlaced MKV", "tff.mkv", slices.Concat([]string{"-f", "lavfi", "-i", "testsrc2=size=320x180:rate=50",
			"-f", "lavfi", "-i", "sine=frequency=320:sample_rate=48000", "-t", "12",
			"-vf", "tinterlace=interleave_top,setfield=tff", "-flags", "+ildct+ilme"}, x264, []string{"-c:a", "aac"})},
		{"MP4 whose video starts half a second after its audio", "late.mp4", slices.Concat([]string{"-itsoffset", "0.48",
			"-f", "lavfi", "-i", "testsrc2=size=320x180:rate=25", "-f", "lavfi", "-i", "sine=frequency=330:sample_rate=48000",
			"-t", "12", "-map", "0:v", "-map", "1:a"}, x264, []string{"-c:a", "aac"})},
		{"MP4 shot on its side", "side.mp4", slices.Concat([]string{"-f", "lavfi", "-i", "testsrc2=size=320x180:rate=25",
			"-f", "lavfi", "-i", "sine=frequency=340:sample_rate=48000", "-t", "12"}, x264,
			[]string{"-c:a", "aac", "-metadata:s:v:0", "rotate=90"})},
		{"HDR10 HEVC MP4 (tone-mapped)", "hdr.mp4", []string{"-f", "lavfi", "-i", "testsrc2=size=320x180:rate=25",
			"-f", "lavfi", "-i", "sine=frequency=350:sample_rate=48000", "-t", "12",
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

			seeked, seeks, _, wholeSeeks := measureBoth(t, tools, pl, src, dir)
			require.Len(t, seeks, 2, "12 segments: 0, 4, 7 and 11 decoded; SSIM measured on 4 and 7, each read from a keyframe before it")
			require.Empty(t, wholeSeeks)
			for _, o := range seeked {
				if o.SSIM > 0 {
					require.Equal(t, 4, o.Decoded, o.Name)
				}
			}
		})
	}
}

// seekProfile is a two-rung hls profile (180p and 90p, with audio) of
// segments seconds long, without thumbnails.
func seekProfile(t *testing.T, seconds int) *profile.Profile {
	t.Helper()
	p, err := profile.Parse([]byte(fmt.Sprintf(`name: seek-test
version: 1
format: hls
segment_seconds: %d
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
`, seconds)))
	require.NoError(t, err)
	return p
}

// measureBoth verifies the outputs in dir of pl's encode of src twice,
// reading the source around the windows (seeked) and whole, and checks
// that both measure the same SSIM and PSNR on each rung (well above 0.9:
// a window shifted by a frame compares every frame with its neighbour).
// It returns each run's outputs and the -ss points its quality runs seek
// the source to.
func measureBoth(t *testing.T, tools Tools, pl *Plan, src, dir string) (seeked []Output, seeks []float64, whole []Output, wholeSeeks []float64) {
	t.Helper()
	measure := func(seek bool) ([]Output, []float64) {
		v := &verifier{t: tools, pl: pl, in: src, out: dir, tmp: t.TempDir(), seek: seek}
		outs, err := v.hls(context.Background())
		require.NoError(t, err)
		var at []float64
		for _, a := range v.ran {
			for i := range a {
				if i > 0 && a[i-1] == "-ss" && slices.Contains(a, "-filter_complex") {
					f, err := strconv.ParseFloat(a[i], 64)
					require.NoError(t, err)
					at = append(at, f)
				}
			}
		}
		return outs, at
	}
	seeked, seeks = measure(true)
	whole, wholeSeeks = measure(false)
	require.Len(t, seeked, len(whole))
	rungs := 0
	for i, o := range seeked {
		if o.SSIM == 0 {
			continue // master, manifest, audio
		}
		rungs++
		require.Greater(t, o.SSIM, 0.9, o.Name)
		require.InDelta(t, whole[i].SSIM, o.SSIM, 1e-4, "%s: SSIM from the windows of the source, and from all of it", o.Name)
		require.InDelta(t, whole[i].PSNR, o.PSNR, 0.01, "%s: PSNR", o.Name)
	}
	require.Equal(t, len(pl.Rungs), rungs)
	return seeked, seeks, whole, wholeSeeks
}
