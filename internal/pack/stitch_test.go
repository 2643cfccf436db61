package pack

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/herdhq/herd/internal/testenv"
)

const (
	initTmpl  = "init-$RepresentationID$.m4s"
	mediaTmpl = "chunk-$RepresentationID$-$Number%05d$.m4s"
)

// chunked encodes src (at 30000/1001 fps) once whole and once as chunks of
// chunkFrames frames, each from a stream-copied piece with a second of
// pre-roll, its frames trimmed after the fps filter and timestamps kept
// absolute, the way herd splits a job. It returns the whole encode's folder
// and the pieces. opts are extra encoder options for chunk k.
func chunked(t *testing.T, src string, chunkFrames, chunks int, opts func(k int) []string) (string, []Piece) {
	t.Helper()
	const seg = 2.0
	kf := fmt.Sprintf("expr:if(isnan(prev_forced_t),1,gte(floor(t/%g+1e-9),floor(prev_forced_t/%g+1e-9)+1))", seg, seg)
	enc := []string{"-c:v", "libx264", "-preset", "veryfast", "-x264-params", "stitchable=1", "-g", "60", "-keyint_min", "60",
		"-sc_threshold", "0", "-force_key_frames", kf, "-f", "dash", "-seg_duration", "2", "-use_template", "1", "-use_timeline", "1",
		"-dash_segment_type", "mp4", "-init_seg_name", initTmpl, "-media_seg_name", mediaTmpl}
	whole := t.TempDir()
	require.NoError(t, testenv.FFmpeg(append([]string{"-i", src, "-filter_complex", "[0:v]fps=30000/1001[v]", "-map", "[v]"},
		append(enc, filepath.Join(whole, "ffmpeg.mpd"))...)...))
	var pieces []Piece
	for k := range chunks {
		s, e := k*chunkFrames, (k+1)*chunkFrames
		b, end := float64(s)*1001/30000, float64(e)*1001/30000
		dir := t.TempDir()
		piece := filepath.Join(dir, "piece.mkv")
		cut := []string{"-ss", strconv.FormatFloat(max(0, b-1), 'f', -1, 64)}
		if k < chunks-1 {
			cut = append(cut, "-to", strconv.FormatFloat(end+1, 'f', -1, 64))
		} else {
			e = 1 << 40 // the last chunk runs to the end of the stream
		}
		require.NoError(t, testenv.FFmpeg(append(cut, "-copyts", "-i", src, "-map", "0:v", "-c", "copy", piece)...))
		args := []string{"-copyts", "-i", piece, "-filter_complex", fmt.Sprintf("[0:v]fps=30000/1001,trim=start_pts=%d:end_pts=%d[v]", s, e), "-map", "[v]"}
		args = append(args, enc...)
		if opts != nil {
			args = append(args, opts(k)...)
		}
		require.NoError(t, testenv.FFmpeg(append(args, filepath.Join(dir, "ffmpeg.mpd"))...))
		segs, err := filepath.Glob(filepath.Join(dir, "chunk-0-*.m4s"))
		require.NoError(t, err)
		for i := range segs {
			segs[i] = filepath.Base(segs[i])
		}
		pieces = append(pieces, Piece{Dir: dir, Init: "init-0.m4s", Segments: segs, Start: b})
	}
	return whole, pieces
}

// packets lists a rendition's video packets as "pts,dts,flags".
func packets(t *testing.T, dir, init string, segs []string) []string {
	t.Helper()
	joined := filepath.Join(t.TempDir(), "joined.mp4")
	f, err := os.Create(joined)
	require.NoError(t, err)
	for _, name := range append([]string{init}, segs...) {
		b, err := os.ReadFile(filepath.Join(dir, name))
		require.NoError(t, err)
		_, err = f.Write(b)
		require.NoError(t, err)
	}
	require.NoError(t, f.Close())
	out, err := exec.Command("ffprobe", "-v", "error", "-select_streams", "v:0", "-show_entries", "packet=pts,dts,flags", "-of", "csv=p=0", joined).Output()
	require.NoError(t, err)
	return strings.Fields(string(out))
}

func TestStitchIsFrameExact(t *testing.T) {
	if _, err := exec.LookPath("ffmpeg"); err != nil {
		t.Skip("ffmpeg not found")
	}
	t.Parallel()
	// 29.97 fps with sparse source keyframes (every 150 frames), so the
	// pieces' pre-roll starts well before their boundaries.
	src := filepath.Join(t.TempDir(), "src.mp4")
	require.NoError(t, testenv.FFmpeg("-f", "lavfi", "-i", "testsrc2=size=160x90:rate=30000/1001:duration=10",
		"-c:v", "libx264", "-preset", "ultrafast", "-g", "150", src))
	whole, pieces := chunked(t, src, 120, 3, nil)
	out := t.TempDir()
	r, err := Stitch(out, "0", initTmpl, mediaTmpl, pieces)
	require.NoError(t, err)
	require.Len(t, r.Segments, 5, "chunks of 4 s and a 2 s tail in 2 s segments")
	require.Equal(t, "chunk-0-00005.m4s", r.Segments[4])

	// The stitched stream reads as one: its timing runs on (ReadStream
	// checks every segment's start against the one before) ...
	s, err := ReadStream(out, r.Init, r.Segments)
	require.NoError(t, err)
	for i, g := range s.Segments {
		require.EqualValues(t, i*60060, g.Start, "segment %d", i+1)
	}
	// ... and every packet has the timestamps and key flag of the unsplit
	// encode: no frame lost, doubled or moved, keyframes on the same grid.
	wholeSegs, err := filepath.Glob(filepath.Join(whole, "chunk-0-*.m4s"))
	require.NoError(t, err)
	for i := range wholeSegs {
		wholeSegs[i] = filepath.Base(wholeSegs[i])
	}
	want := packets(t, whole, "init-0.m4s", wholeSegs)
	require.Len(t, want, 300)
	require.Equal(t, want, packets(t, out, r.Init, r.Segments))
}

func TestStitchRefuses(t *testing.T) {
	if _, err := exec.LookPath("ffmpeg"); err != nil {
		t.Skip("ffmpeg not found")
	}
	t.Parallel()
	src := filepath.Join(t.TempDir(), "src.mp4")
	require.NoError(t, testenv.FFmpeg("-f", "lavfi", "-i", "testsrc2=size=160x90:rate=30000/1001:duration=6",
		"-c:v", "libx264", "-preset", "ultrafast", src))

	t.Run("a chunk encoded with other settings", func(t *testing.T) {
		_, pieces := chunked(t, src, 60, 3, func(k int) []string {
			if k == 2 {
				return []string{"-profile:v", "main"} // another SPS
			}
			return nil
		})
		_, err := Stitch(t.TempDir(), "0", initTmpl, mediaTmpl, pieces)
		require.ErrorContains(t, err, "chunk 3 was encoded with a different codec configuration")
	})
	t.Run("a frame lost at a boundary", func(t *testing.T) {
		_, pieces := chunked(t, src, 60, 3, nil)
		pieces[1].Start -= 1001.0 / 30000 // chunk 2 claims to start a frame before chunk 1 ends
		_, err := Stitch(t.TempDir(), "0", initTmpl, mediaTmpl, pieces)
		require.ErrorContains(t, err, "chunk 2 starts at")
		_, pieces = chunked(t, src, 60, 3, nil)
		pieces[2].Start += 1001.0 / 30000 // chunk 3 claims to start a frame after chunk 2 ends
		_, err = Stitch(t.TempDir(), "0", initTmpl, mediaTmpl, pieces)
		require.ErrorContains(t, err, "chunk 3 starts at")
	})
}
