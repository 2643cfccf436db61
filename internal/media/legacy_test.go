package media

import (
	"context"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/require"
)

// TestAwkwardInputsEncode runs the whole pipeline (admit, plan, encode,
// thumbnails, verify) on inputs that real libraries are full of.
func TestAwkwardInputsEncode(t *testing.T) {
	t.Parallel()
	needFFmpeg(t)
	dir := t.TempDir()
	lavfi := func(size, seconds string) []string {
		return []string{"-f", "lavfi", "-i", "testsrc2=size=" + size + ":rate=25:duration=" + seconds,
			"-f", "lavfi", "-i", "sine=frequency=330:sample_rate=44100:duration=" + seconds}
	}
	gen := func(name string, args ...string) string {
		p := filepath.Join(dir, name)
		generate(t, append(args, p)...)
		return p
	}
	cases := []struct {
		name    string
		input   func() string
		profile string
		check   func(t *testing.T, pl *Plan)
	}{
		{"vp9 in avi at 187 fps", func() string { return filepath.Join("testdata", "balle1-vp9.avi") }, "web-hls",
			func(t *testing.T, pl *Plan) {
				require.Equal(t, "avi", pl.Demuxer)
				require.LessOrEqual(t, pl.FPS, 60.0, "capped")
				require.True(t, pl.FPSFilter)
			}},
		{"cinepak in avi", func() string {
			return gen("cinepak.avi", append(lavfi("160x120", "1"), "-c:v", "cinepak", "-c:a", "pcm_s16le", "-shortest")...)
		}, "mp4-library", nil},
		{"theora and vorbis in ogg", func() string {
			return gen("theora.ogv", append(lavfi("176x144", "1.5"), "-c:v", "libtheora", "-q:v", "5", "-c:a", "libvorbis", "-shortest")...)
		}, "web-hls", func(t *testing.T, pl *Plan) { require.Equal(t, "ogg", pl.Demuxer) }},
		{"interlaced mpeg-2", func() string {
			return gen("interlaced.mpg", append(lavfi("352x288", "1.5"), "-c:v", "mpeg2video", "-flags", "+ilme+ildct", "-top", "1",
				"-c:a", "mp2", "-shortest")...)
		}, "web-hls", func(t *testing.T, pl *Plan) { require.True(t, pl.Deinterlace) }},
		{"variable frame rate", func() string {
			return gen("vfr.mp4", "-f", "lavfi", "-i", "testsrc2=size=320x180:rate=30:duration=2",
				"-vf", "select='not(eq(mod(n\\,5)\\,1))*not(eq(mod(n\\,7)\\,3))'", "-fps_mode", "vfr",
				"-c:v", "libx264", "-preset", "ultrafast", "-pix_fmt", "yuv420p")
		}, "mp4-library", func(t *testing.T, pl *Plan) { require.True(t, pl.FPSFilter, "constant frame rate out") }},
		{"odd size", func() string {
			return gen("odd.mkv", append(lavfi("161x91", "1"), "-c:v", "libx264", "-preset", "ultrafast", "-pix_fmt", "yuv444p", "-c:a", "flac", "-shortest")...)
		}, "web-hls", func(t *testing.T, pl *Plan) {
			require.Equal(t, 160, pl.Rungs[0].Width)
			require.Equal(t, 90, pl.Rungs[0].Height)
		}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			pl, outs, _ := pipeline(t, tc.input(), tc.profile)
			require.NotEmpty(t, outs)
			for _, o := range outs {
				if o.SSIM > 0 {
					require.Greater(t, o.SSIM, 0.5, o.Name)
				}
			}
			if tc.check != nil {
				tc.check(t, pl)
			}
		})
	}
}

// TestSoftwareAV1 encodes with SVT-AV1 into Matroska and verifies the result.
func TestSoftwareAV1(t *testing.T) {
	t.Parallel()
	tools := needFFmpeg(t)
	ctx := context.Background()
	input := clip(t, "av1-src.mp4", "256x144", "1")
	pl := admitted(t, input, av1Profile(t))
	require.Equal(t, "libsvtav1", pl.Video.Encoder)
	out := t.TempDir()
	_, err := tools.Encode(ctx, pl, input, out, nil)
	require.NoError(t, err)
	outs, _, err := tools.Verify(ctx, pl, input, out)
	require.NoError(t, err)
	v := outputNamed(t, outs, "video")
	require.Equal(t, "av1", v.Codec)
	require.Greater(t, v.SSIM, 0.8)
}
