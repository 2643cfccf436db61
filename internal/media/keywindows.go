package media

import (
	"context"
	"fmt"
	"math"
	"slices"
	"strings"
)

// Windows on the source's keyframes: sampled verification compares each
// output with the source on a few windows of its sampled segments
// (QualityWindows, VMAFWindows) and reads the source for each from the
// keyframe before it (rangeSource). Placed without regard to the source's
// keyframes, a window also costs the decode of up to a whole keyframe
// interval before it (x264's default is 10 s, many cameras' more): most of
// what sampled verification spent on the source. Where a sampled segment
// holds a source keyframe with room for the window after it, the window
// moves there, and the source is read from that keyframe.

// windowLead is how much source rangeSource reads before a window: enough
// for the frame rate filter to pick the frames the encode picked. A
// deinterlaced source's filter looks at the fields around each frame too:
// it gets ChunkPreroll, as a chunk does.
func (pl *Plan) windowLead() float64 {
	if pl.Deinterlace {
		return ChunkPreroll
	}
	return 0.1
}

// keyframesIn lists the keyframes (output time) of the source's video in
// ranges (output time, each from windowLead before it), by demuxing alone,
// and the argv it ran.
func (t Tools) keyframesIn(ctx context.Context, pl *Plan, input string, ranges [][2]float64) ([]float64, []string, error) {
	iv := make([]string, len(ranges))
	for i, r := range ranges {
		iv[i] = ftoa(pl.Start+max(0, r[0]-pl.windowLead())) + "%" + ftoa(pl.Start+r[1])
	}
	args := packetArgs(pl.Demuxer, input, pl.VideoIndex, strings.Join(iv, ","))
	ran := argv(t.ffprobe(), args)
	var l keyframeList
	if _, err := t.exec(ctx, t.ffprobe(), args, nil, &l, stderrTailBytes); err != nil {
		return nil, ran, fmt.Errorf("list the source's keyframes: %w", err)
	}
	l.flush(l.line)
	keys := make([]float64, len(l.times))
	for i, k := range l.times {
		keys[i] = k - pl.Start
	}
	return keys, ran, nil
}

// seekSlack is how far before the point asked ffmpeg itself seeks in the
// source: 3/23 s for a demuxer that seeks by decode time (Matroska) when
// the video has B-frames (a delay), none for one that seeks by
// presentation time (MP4/MOV, AVFMT_SEEK_TO_PTS). Counted for every
// Matroska source: the probe does not say whether its video has B-frames.
func (pl *Plan) seekSlack() float64 {
	if pl.Demuxer == "mov" {
		return 0
	}
	return 3.0 / 23
}

// keyedWindows moves each of windows (output time, each within one of
// ranges) to start windowLead, seekSlack and half a frame or more after a
// source keyframe of keys (output time) in the same range, on the frame
// grid: after the keyframe nearest its place among those that leave room
// for the whole window in the range. The half frame makes rangeSource's
// seek, at windowLead before the window, land on that keyframe whatever
// the rounding. A window with no such keyframe stays where it is.
func (pl *Plan) keyedWindows(windows, ranges [][2]float64, keys []float64) [][2]float64 {
	fps := pl.FPS
	if !(fps > 0) {
		return windows
	}
	lead := pl.windowLead() + pl.seekSlack()
	out := slices.Clone(windows)
	for i, w := range windows {
		j := slices.IndexFunc(ranges, func(r [2]float64) bool { return w[0] >= r[0]-1e-6 && w[1] <= r[1]+1e-6 })
		if j < 0 {
			continue
		}
		r, frames := ranges[j], math.Round((w[1]-w[0])*fps)
		best := math.Inf(1)
		for _, k := range keys {
			from := math.Ceil((k+lead)*fps+0.5) / fps
			to := from + frames/fps
			if from < r[0]-1e-6 || to > r[1]+1e-6 {
				continue
			}
			if d := math.Abs(from - w[0]); d < best {
				best, out[i] = d, [2]float64{round6(from), round6(to)}
			}
		}
	}
	return out
}
