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

// An interior sampled segment with no source keyframe moves to a segment
// near it that holds one with room after it, and its window moves onto
// that keyframe, where the source is read from; a sample with no such
// segment near it stays, and is read from the keyframe before it (ffmpeg
// seeks a Matroska source with B-frames 3/23 s before the point asked).
// What either measures is what decoding the whole source gives for the
// same frames.
func TestWindowsMoveOntoSourceKeyframes(t *testing.T) {
	t.Parallel()
	tools := needFFmpeg(t)
	p := seekProfile(t, 3)
	for _, tc := range []struct {
		name, file string
		x264       []string
	}{
		{"MP4 without B-frames", "keys.mp4", []string{"-preset", "ultrafast"}},
		{"Matroska with B-frames", "keys.mkv", []string{"-preset", "veryfast", "-bf", "3"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			ctx := context.Background()
			// Keyframes at 0, 9.6 and 30 only.
			src := filepath.Join(t.TempDir(), tc.file)
			require.NoError(t, testenv.FFmpeg(slices.Concat([]string{"-f", "lavfi", "-i", "testsrc2=size=320x180:rate=25", "-t", "36", "-c:v", "libx264"},
				tc.x264, []string{"-g", "900", "-sc_threshold", "0", "-force_key_frames", "0,9.6,30", "-pix_fmt", "yuv420p", src})...))
			pl := admitted(t, src, p)
			dir := t.TempDir()
			_, err := tools.Encode(ctx, pl, src, dir, nil)
			require.NoError(t, err)

			// Twelve segments; sampled: 0, 4, 7 and 11. Segment 4
			// ([12,15]) holds no keyframe, segment 3 ([9,12]) holds 9.6
			// with room for a 2 s window: it is decoded instead, and its
			// window starts after 9.6. Segments 6 to 8 hold none: 7
			// stays, its window at 21, read from 20.9, from 9.6.
			seeked, seeks, _, _ := measureBoth(t, tools, pl, src, dir)
			require.Len(t, seeks, 2)
			require.Greater(t, seeks[0], 9.6)
			require.Less(t, seeks[0], 9.8)
			require.InDelta(t, 20.9, seeks[1], 1e-6)
			require.InDelta(t, 9.6, firstDecoded(t, pl, src, seeks[0]), 0.01, "read from the keyframe at 9.6")
			require.InDelta(t, 9.6, firstDecoded(t, pl, src, seeks[1]), 0.01, "read from the keyframe at 9.6")
			for _, o := range seeked {
				if o.SSIM > 0 {
					require.Equal(t, 4, o.Decoded, o.Name)
				}
			}
		})
	}
}

func TestKeyedSamples(t *testing.T) {
	t.Parallel()
	pl := &Plan{FPS: 25, Demuxer: "mov"}
	segments := func(n int) [][2]float64 { // 4 s each
		segs := make([][2]float64, n)
		for i := range segs {
			segs[i] = [2]float64{float64(4 * i), float64(4*i + 4)}
		}
		return segs
	}
	segs := segments(15)
	picked := []int{0, 4, 7, 10, 14}
	for _, tc := range []struct {
		name string
		keys []float64
		want []int
	}{
		{"no keyframes: nothing moves", nil, picked},
		{"keyframes in every sampled segment: nothing moves", []float64{0, 16, 28, 40, 56}, picked},
		{"a keyframe one segment before", []float64{0, 12.5}, []int{0, 3, 7, 10, 14}},
		{"one segment after", []float64{0, 20.5}, []int{0, 5, 7, 10, 14}},
		{"the nearer of two", []float64{0, 12.5, 24.5}, []int{0, 3, 6, 10, 14}},
		{"before is taken over after at the same distance", []float64{0, 24.5, 32.5}, []int{0, 4, 6, 10, 14}},
		{"no room after the keyframe for a window", []float64{0, 14.5}, picked},
		{"not as far as half way to the next sample", []float64{0, 8.5}, picked},
		{"the first and the last never move", []float64{4.5, 52.5}, picked},
	} {
		require.Equal(t, tc.want, pl.keyedSamples(picked, segs, tc.keys), tc.name)
	}
	require.Equal(t, picked, (&Plan{}).keyedSamples(picked, segs, []float64{12.5}), "no frame rate: nothing moves")
	wide := []int{0, 20, 40}
	segs = segments(41)
	require.Equal(t, []int{0, 17, 40}, pl.keyedSamples(wide, segs, []float64{68.5}), "keyedReach segments away")
	require.Equal(t, wide, pl.keyedSamples(wide, segs, []float64{64.5}), "no further")
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
