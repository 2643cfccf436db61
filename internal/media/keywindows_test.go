package media

import (
	"context"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/herdhq/herd/internal/testenv"
)

func TestKeyedWindows(t *testing.T) {
	t.Parallel()
	ranges := [][2]float64{{0, 4}, {8, 12}, {16, 20}, {24, 28}}
	pl := &Plan{FPS: 25, Demuxer: "mov"}
	for _, tc := range []struct {
		name    string
		windows [][2]float64
		keys    []float64
		want    [][2]float64
	}{
		{"a keyframe in the range: the window starts a lead and half a frame or more after it",
			[][2]float64{{8, 10}}, []float64{0, 9}, [][2]float64{{9.12, 11.12}}},
		{"the keyframe nearest the window's place among those with room",
			[][2]float64{{16, 18}}, []float64{16.2, 17.5, 19}, [][2]float64{{16.32, 18.32}}},
		{"no room after the range's keyframe: the window stays",
			[][2]float64{{8, 10}}, []float64{10.5}, [][2]float64{{8, 10}}},
		{"a keyframe just before the range, within the lead",
			[][2]float64{{24, 26}}, []float64{23.95}, [][2]float64{{24.08, 26.08}}},
		{"a keyframe of another range moves nothing",
			[][2]float64{{0, 2}, {24, 26}}, []float64{9, 17}, [][2]float64{{0, 2}, {24, 26}}},
		{"no keyframe listed", [][2]float64{{8, 10}}, nil, [][2]float64{{8, 10}}},
		{"a shorter window keeps its length",
			[][2]float64{{0, 1}}, []float64{2}, [][2]float64{{2.12, 3.12}}},
	} {
		require.Equal(t, tc.want, pl.keyedWindows(tc.windows, ranges, tc.keys), tc.name)
	}
	// A deinterlaced source is read ChunkPreroll before its window.
	require.Equal(t, [][2]float64{{9.04, 11.04}}, (&Plan{FPS: 25, Demuxer: "mov", Deinterlace: true}).keyedWindows([][2]float64{{8, 10}}, ranges, []float64{8}))
	// Matroska is sought 3/23 s early when its video has B-frames.
	require.Equal(t, [][2]float64{{9.28, 11.28}}, (&Plan{FPS: 25, Demuxer: "matroska"}).keyedWindows([][2]float64{{8, 10}}, ranges, []float64{9}))
	require.Equal(t, [][2]float64{{8, 10}}, (&Plan{}).keyedWindows([][2]float64{{8, 10}}, ranges, []float64{8}), "no frame rate, no grid: stays")
}

// A window whose sampled segment holds a source keyframe with room after
// it moves there, and the source is read for it from that keyframe (ffmpeg
// seeks a Matroska source with B-frames 3/23 s before the point asked);
// what it measures is what decoding the whole source gives for the same
// frames.
func TestWindowsMoveOntoSourceKeyframes(t *testing.T) {
	t.Parallel()
	tools := needFFmpeg(t)
	p := seekProfile(t, 3)
	for _, tc := range []struct {
		name, file string
		x264       []string
	}{
		{"MP4 without B-frames", "gop6.mp4", []string{"-preset", "ultrafast"}},
		{"Matroska with B-frames", "gop6.mkv", []string{"-preset", "veryfast", "-bf", "3"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			ctx := context.Background()
			// Keyframes every 6 s: at 0, 6, 12, 18, 24 and 30.
			src := filepath.Join(t.TempDir(), tc.file)
			require.NoError(t, testenv.FFmpeg(slices.Concat([]string{"-f", "lavfi", "-i", "testsrc2=size=320x180:rate=25", "-t", "36", "-c:v", "libx264"},
				tc.x264, []string{"-g", "150", "-keyint_min", "150", "-sc_threshold", "0", "-pix_fmt", "yuv420p", src})...))
			pl := admitted(t, src, p)
			dir := t.TempDir()
			_, err := tools.Encode(ctx, pl, src, dir, nil)
			require.NoError(t, err)

			// Twelve segments: 0, 4, 7 and 11 decoded ([0,3], [12,15],
			// [21,24], [33,36]); SSIM on the windows of [12,15] and
			// [21,24], the two between the first and the last. The
			// first moves after the keyframe at 12 and is read from it;
			// the second has no keyframe in its segment, stays at 21 and
			// is read from 20.9, from the keyframe at 18.
			_, seeks, _, _ := measureBoth(t, tools, pl, src, dir)
			require.Len(t, seeks, 2)
			require.Greater(t, seeks[0], 12.0)
			require.InDelta(t, 20.9, seeks[1], 1e-6)
			require.InDelta(t, 12, firstDecoded(t, pl, src, seeks[0]), 0.01, "read from the keyframe at 12")
			require.InDelta(t, 18, firstDecoded(t, pl, src, seeks[1]), 0.01, "read from the keyframe at 18")
		})
	}
}

// firstDecoded is the time (output time) of the first frame ffmpeg decodes
// from src when it seeks to seek as rangeSource asks it to.
func firstDecoded(t *testing.T, pl *Plan, src string, seek float64) float64 {
	t.Helper()
	args := slices.Concat([]string{"-nostdin", "-hide_banner", "-copyts"}, pl.sourceInput(src, seek, false),
		[]string{"-map", "0:v:0", "-frames:v", "1", "-vf", "showinfo", "-f", "null", "-"})
	out, err := exec.Command("ffmpeg", args...).CombinedOutput()
	require.NoError(t, err, string(out))
	m := regexp.MustCompile(`pts_time:([0-9.]+)`).FindSubmatch(out)
	require.NotNil(t, m, string(out))
	f, err := strconv.ParseFloat(string(m[1]), 64)
	require.NoError(t, err)
	return f - pl.Start
}
