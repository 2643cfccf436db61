package pack

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/herdhq/herd/internal/testenv"
)

func TestPeakRate(t *testing.T) {
	for _, tc := range []struct {
		name   string
		sizes  []int64
		secs   []float64
		target float64
		want   int64
	}{
		// 4 s segments of 1 MB then a 0.5 s tail of 0.2 MB: alone the tail
		// is 3.2 Mb/s, but it is shorter than half the target, so it only
		// counts with its neighbour: (1 + 0.2) MB over 4.5 s.
		{"short tail counts with its neighbour", []int64{1e6, 1e6, 2e5}, []float64{4, 4, 0.5}, 4, 2_133_334},
		{"even segments", []int64{5e5, 5e5, 5e5}, []float64{4, 4, 4}, 4, 1_000_000},
		// A 2 s segment of 1 MB is between 0.5 and 1.5 targets: 4 Mb/s.
		{"a dense short segment counts alone", []int64{1e5, 1e6, 1e5}, []float64{4, 2, 4}, 4, 4_000_000},
		// Two segments together may still be within 1.5 targets.
		{"pairs within 1.5 targets", []int64{3e5, 3e5}, []float64{2.5, 2.5}, 4, 960_000},
		{"shorter than half a target: the whole stream", []int64{1e5}, []float64{1.2}, 4, 666_667},
	} {
		t.Run(tc.name, func(t *testing.T) {
			require.Equal(t, tc.want, PeakRate(tc.sizes, tc.secs, tc.target))
		})
	}
	require.EqualValues(t, 1_200_000, AverageRate([]int64{1e6, 5e5}, []float64{4, 6}))
}

func TestExpand(t *testing.T) {
	require.Equal(t, "chunk-3-00012.m4s", expand("chunk-$RepresentationID$-$Number%05d$.m4s", "3", 12))
	require.Equal(t, "chunk-3-123456.m4s", expand("chunk-$RepresentationID$-$Number%05d$.m4s", "3", 123456))
	require.Equal(t, "seg-7.m4s", expand("seg-$Number$.m4s", "0", 7))
	require.Equal(t, "init-2.m4s", expand("init-$RepresentationID$.m4s", "2", 0))
}

// dashOut runs ffmpeg's dash muxer the way herd does, with extra video
// encoder options, and returns the folder and the ladder of its one video
// rendition (representation 0).
func dashOut(t *testing.T, videoOpts ...string) (string, Ladder) {
	t.Helper()
	if _, err := exec.LookPath("ffmpeg"); err != nil {
		t.Skip("ffmpeg not found")
	}
	dir := t.TempDir()
	args := []string{"-f", "lavfi", "-i", "testsrc2=size=160x90:rate=25:duration=4", "-c:v", "libx264", "-preset", "ultrafast"}
	args = append(args, videoOpts...)
	args = append(args, "-f", "dash", "-seg_duration", "1", "-use_template", "1", "-use_timeline", "1",
		"-dash_segment_type", "mp4", "-init_seg_name", "init-$RepresentationID$.m4s",
		"-media_seg_name", "chunk-$RepresentationID$-$Number%05d$.m4s", filepath.Join(dir, "ffmpeg.mpd"))
	require.NoError(t, testenv.FFmpeg(args...))
	segs, err := filepath.Glob(filepath.Join(dir, "chunk-0-*.m4s"))
	require.NoError(t, err)
	for i := range segs {
		segs[i] = filepath.Base(segs[i])
	}
	return dir, Ladder{
		Master: "master.m3u8", Manifest: "manifest.mpd", FrameRate: "25", VideoRange: "SDR",
		InitTemplate: "init-$RepresentationID$.m4s", MediaTemplate: "chunk-$RepresentationID$-$Number%05d$.m4s",
		Video: []Rendition{{ID: "0", Playlist: "media_0.m3u8", IFrames: "iframe_0.m3u8", Init: "init-0.m4s", Segments: segs}},
	}
}

func TestWriteRefuses(t *testing.T) {
	t.Parallel()
	t.Run("a segment that starts with an open-GOP I frame", func(t *testing.T) {
		// x264's open GOPs start each GOP after the first with a non-IDR
		// I frame whose leading pictures reference the GOP before.
		dir, l := dashOut(t, "-g", "25", "-keyint_min", "25", "-sc_threshold", "0", "-bf", "2", "-x264-params", "open-gop=1")
		_, err := Write(dir, l)
		require.ErrorContains(t, err, "is not an IDR")
	})
	t.Run("segments not numbered from 1 without gaps", func(t *testing.T) {
		dir, l := dashOut(t, "-g", "25", "-keyint_min", "25", "-sc_threshold", "0")
		require.Greater(t, len(l.Video[0].Segments), 2)
		l.Video[0].Segments = append(l.Video[0].Segments[:1], l.Video[0].Segments[2:]...)
		_, err := Write(dir, l)
		require.ErrorContains(t, err, "numbered from 1 without gaps")
	})
	t.Run("a missing segment breaks the timeline", func(t *testing.T) {
		dir, l := dashOut(t, "-g", "25", "-keyint_min", "25", "-sc_threshold", "0")
		segs := l.Video[0].Segments
		last := segs[len(segs)-1]
		// Rename the last segment into the place of the one before it.
		require.NoError(t, os.Rename(filepath.Join(dir, last), filepath.Join(dir, segs[len(segs)-2])))
		l.Video[0].Segments = segs[:len(segs)-1]
		_, err := Write(dir, l)
		require.ErrorContains(t, err, "starts at")
	})
	t.Run("renditions whose segments are not aligned", func(t *testing.T) {
		dir, l := dashOut(t, "-g", "25", "-keyint_min", "25", "-sc_threshold", "0")
		// Representation 1: the same frames cut every 2 s, copied in.
		d2, l2 := dashOut(t, "-g", "50", "-keyint_min", "50", "-sc_threshold", "0")
		r := Rendition{ID: "1", Playlist: "media_1.m3u8", IFrames: "iframe_1.m3u8", Init: "init-1.m4s"}
		require.NoError(t, copyFile(filepath.Join(d2, "init-0.m4s"), filepath.Join(dir, "init-1.m4s")))
		for _, s := range l2.Video[0].Segments {
			name := strings.Replace(s, "chunk-0-", "chunk-1-", 1)
			require.NoError(t, copyFile(filepath.Join(d2, s), filepath.Join(dir, name)))
			r.Segments = append(r.Segments, name)
		}
		l.Video = append(l.Video, r)
		_, err := Write(dir, l)
		require.ErrorContains(t, err, "not aligned")
	})
}

func copyFile(from, to string) error {
	b, err := os.ReadFile(from)
	if err != nil {
		return err
	}
	return os.WriteFile(to, b, 0o644)
}
