package media

import (
	"encoding/json"
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/require"
)

func TestCombineQuality(t *testing.T) {
	t.Parallel()
	pl := &Plan{Rungs: []RungPlan{{Name: "720p"}, {Name: "360p"}}}
	write := func(q any) string {
		dir := t.TempDir()
		b, err := json.Marshal(q)
		require.NoError(t, err)
		require.NoError(t, os.WriteFile(filepath.Join(dir, QualityName), b, 0o644))
		return dir
	}
	// 30 dB is a mean squared error of 1e-3 of the peak's square, 40 dB
	// 1e-4: three times as many frames at the second give 3.25e-4, 34.88 dB.
	a := write(ChunkQuality{Frames: 100, SSIM: []float64{0.9, 0.8}, PSNR: []float64{30, 20}})
	b := write(ChunkQuality{Frames: 300, SSIM: []float64{0.98, 0.9}, PSNR: []float64{40, 100}})
	out := t.TempDir()
	require.NoError(t, pl.CombineQuality([]string{a, b}, out))
	q, err := readQuality(out, 2)
	require.NoError(t, err)
	require.InDelta(t, 400, q.Frames, 1e-9)
	require.InDelta(t, 0.96, q.SSIM[0], 1e-9)
	require.InDelta(t, 0.875, q.SSIM[1], 1e-9)
	require.InDelta(t, 34.881, q.PSNR[0], 1e-3)
	require.InDelta(t, 26.02, q.PSNR[1], 1e-2, "identical frames (100 dB) barely lower the error")

	// A chunk without measures, or with nonsense, leaves the whole to Verify.
	for _, bad := range []string{t.TempDir(), write(ChunkQuality{Frames: 1, SSIM: []float64{0.9}, PSNR: []float64{30}}),
		write(ChunkQuality{Frames: 1, SSIM: []float64{2, 0.9}, PSNR: []float64{30, 30}})} {
		out := t.TempDir()
		require.NoError(t, pl.CombineQuality([]string{a, bad}, out))
		_, err := os.Stat(filepath.Join(out, QualityName))
		require.ErrorIs(t, err, os.ErrNotExist)
	}
}

func TestFirstSegmentFrames(t *testing.T) {
	t.Parallel()
	pal := &Plan{FPS: 25, SegmentSeconds: 4, Chunks: []ChunkPlan{{First: 0, End: 1500}, {First: 1500}}}
	require.EqualValues(t, 100, pal.firstSegmentFrames(0))
	require.EqualValues(t, 100, pal.firstSegmentFrames(1))
	// 29.97 fps in 2 s segments: the chunk at frame 1799 (60.027 s) runs
	// to frame 1859, the first at or after 62 s.
	ntsc := &Plan{FPS: 30000.0 / 1001, SegmentSeconds: 2, Chunks: []ChunkPlan{{First: 0, End: 1799}, {First: 1799}}}
	require.EqualValues(t, 60, ntsc.firstSegmentFrames(0))
	require.EqualValues(t, 60, ntsc.firstSegmentFrames(1))
}
