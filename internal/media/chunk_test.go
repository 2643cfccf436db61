package media

import (
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/herdhq/herd/internal/profile"
)

func TestPlanChunks(t *testing.T) {
	hls := func(duration, fps, seg float64) *Plan {
		return &Plan{Format: profile.FormatHLS, Demuxer: "mov", Duration: duration, FPS: fps, SegmentSeconds: seg}
	}
	for _, tc := range []struct {
		name    string
		pl      *Plan
		seconds float64
		want    []ChunkPlan
	}{
		{"off", hls(600, 25, 4), 0, nil},
		{"negative", hls(600, 25, 4), -60, nil},
		{"not an hls plan", &Plan{Format: profile.FormatMP4, Duration: 600, FPS: 25}, 60, nil},
		{"just under two chunks", hls(119.9, 25, 4), 60, nil},
		{"two chunks", hls(120, 25, 4), 60, []ChunkPlan{{First: 0, End: 1500}, {First: 1500, End: 0}}},
		// 60 s is 15 segments of 4 s; the 59 s tail joins the last chunk.
		{"the tail joins the last chunk", hls(179, 25, 4), 60, []ChunkPlan{{First: 0, End: 1500}, {First: 1500, End: 0}}},
		{"three chunks", hls(180, 25, 4), 60, []ChunkPlan{{First: 0, End: 1500}, {First: 1500, End: 3000}, {First: 3000, End: 0}}},
		// 50 s rounds to 13 segments of 4 s = 52 s.
		{"rounded to whole segments", hls(110, 25, 4), 50, []ChunkPlan{{First: 0, End: 1300}, {First: 1300, End: 0}}},
		{"at least one segment", hls(20, 25, 4), 1, []ChunkPlan{{First: 0, End: 100}, {First: 100, End: 200}, {First: 200, End: 300}, {First: 300, End: 400}, {First: 400, End: 0}}},
		// The first frame at or after 60 s and 120 s: frame 1439 is at
		// 59.993 s, 1440 at 60.06 s.
		{"23.976 fps", hls(130, 24000.0/1001, 4), 60, []ChunkPlan{{First: 0, End: 1439}, {First: 1439, End: 0}}},
		{"29.97 fps", hls(180, 30000.0/1001, 2), 60, []ChunkPlan{{First: 0, End: 1799}, {First: 1799, End: 3597}, {First: 3597, End: 0}}},
		{"50 fps", hls(125, 50, 4), 60, []ChunkPlan{{First: 0, End: 3000}, {First: 3000, End: 0}}},
		{"59.94 fps", hls(125, 60000.0/1001, 4), 60, []ChunkPlan{{First: 0, End: 3597}, {First: 3597, End: 0}}},
		{"variable frame rate (NewPlan set the fps filter)", func() *Plan { p := hls(130, 30, 4); p.FPSFilter = true; return p }(), 60, []ChunkPlan{{First: 0, End: 1800}, {First: 1800, End: 0}}},
		{"more chunks than MaxChunks: encoded whole, without the fps filter", hls(1+2*MaxChunks, 25, 1), 1, nil},
		{"an avi source is not split", func() *Plan { p := hls(600, 25, 4); p.Demuxer = "avi"; return p }(), 60, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tc.pl.PlanChunks(tc.seconds, nil)
			require.Equal(t, tc.want, tc.pl.Chunks)
			if tc.want != nil {
				require.True(t, tc.pl.FPSFilter, "a split plan runs the fps filter")
				require.NoError(t, tc.pl.validateChunks())
			} else if !strings.HasPrefix(tc.name, "variable") {
				require.False(t, tc.pl.FPSFilter, "a plan that is not split is as NewPlan made it")
			}
		})
	}
}

func TestChunkBoundariesAreGridKeyframes(t *testing.T) {
	// Every boundary is the frame keyframeExpr forces: the first frame at or
	// after a multiple of the segment length.
	for _, fps := range []float64{24000.0 / 1001, 25, 30000.0 / 1001, 50, 60000.0 / 1001} {
		pl := &Plan{Format: profile.FormatHLS, Demuxer: "matroska", Duration: 3600, FPS: fps, SegmentSeconds: 4}
		pl.PlanChunks(60, nil)
		require.Len(t, pl.Chunks, 60)
		for k, c := range pl.Chunks[1:] {
			at := float64(c.First) / fps
			before := float64(c.First-1) / fps
			require.GreaterOrEqual(t, at+1e-9, float64(k+1)*60, "fps %g chunk %d", fps, k+2)
			require.Less(t, before, float64(k+1)*60, "fps %g chunk %d", fps, k+2)
		}
	}
}

func TestValidateChunks(t *testing.T) {
	pl := &Plan{Format: profile.FormatHLS, Demuxer: "mov", Duration: 180, FPS: 25, SegmentSeconds: 4}
	pl.PlanChunks(60, nil)
	require.NoError(t, pl.validateChunks())
	bad := func(mod func(*Plan)) error {
		c := *pl
		c.Chunks = append([]ChunkPlan(nil), pl.Chunks...)
		mod(&c)
		return c.validateChunks()
	}
	require.ErrorContains(t, bad(func(p *Plan) { p.Chunks[1].First++ }), "does not run on")
	require.ErrorContains(t, bad(func(p *Plan) { p.Chunks[2].End = 9000 }), "does not run on")
	require.ErrorContains(t, bad(func(p *Plan) { p.Chunks[0].First = 5 }), "frame 0")
	require.ErrorContains(t, bad(func(p *Plan) { p.Chunks = p.Chunks[:1] }), "plan.chunks")
	require.ErrorContains(t, bad(func(p *Plan) { p.FPSFilter = false }), "constant frame rate")
}
