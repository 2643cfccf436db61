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
// source keyframe of keys (output time) in the same range (keyedWindow).
// A window with no such keyframe stays where it is.
func (pl *Plan) keyedWindows(windows, ranges [][2]float64, keys []float64) [][2]float64 {
	if !(pl.FPS > 0) {
		return windows
	}
	out := slices.Clone(windows)
	for i, w := range windows {
		j := slices.IndexFunc(ranges, func(r [2]float64) bool { return w[0] >= r[0]-1e-6 && w[1] <= r[1]+1e-6 })
		if j < 0 {
			continue
		}
		if k, ok := pl.keyedWindow(ranges[j], math.Round((w[1]-w[0])*pl.FPS), w[0], keys); ok {
			out[i] = k
		}
	}
	return out
}

// keyedWindow is a window of frames frames in r, on the frame grid, that
// starts windowLead, seekSlack and half a frame or more after a keyframe
// of keys: after the keyframe whose window starts nearest near, among
// those that leave room for the whole window in r. The half frame makes
// rangeSource's seek, at windowLead before the window, land on that
// keyframe whatever the rounding. ok is false when no keyframe leaves
// room (or the plan has no frame rate).
func (pl *Plan) keyedWindow(r [2]float64, frames, near float64, keys []float64) (w [2]float64, ok bool) {
	fps := pl.FPS
	if !(fps > 0) {
		return w, false
	}
	lead := pl.windowLead() + pl.seekSlack()
	best := math.Inf(1)
	for _, k := range keys {
		from := math.Ceil((k+lead)*fps+0.5) / fps
		to := from + frames/fps
		if from < r[0]-1e-6 || to > r[1]+1e-6 {
			continue
		}
		if d := math.Abs(from - near); d < best {
			best, w, ok = d, [2]float64{round6(from), round6(to)}, true
		}
	}
	return w, ok
}

// keyedReach is how many segments either side sampled verification looks
// for one to decode in place of an interior sample that holds no source
// keyframe (keyedSamples): three 4 s segments reach past x264's default
// keyframe interval of 10 s.
const keyedReach = 3

// sampleReach is how far picked[j] may move (keyedSamples): keyedReach at
// most, and less than half way to the samples either side, so that the
// samples stay apart, in order and spread over the output.
func sampleReach(picked []int, j int) int {
	return max(0, min(keyedReach, (min(picked[j]-picked[j-1], picked[j+1]-picked[j])-1)/2))
}

// keyedSamples moves each sample of picked (indices into segs, every
// segment's range in output time) but the first and the last to the
// nearest segment within sampleReach that holds a source keyframe of keys
// with room after it for a quality window (keyedWindow); a sample with no
// such segment near it stays. Its windows then move onto that keyframe
// (keyedWindows) and the source is read from there, instead of from a
// keyframe up to a whole interval before them: on a 1080p title, seconds
// of decoding saved for every window.
func (pl *Plan) keyedSamples(picked []int, segs [][2]float64, keys []float64) []int {
	out := slices.Clone(picked)
	roomy := func(i int) bool {
		r := segs[i]
		frames := math.Floor(math.Min(r[1]-r[0], max(qualityWindow, vmafWindow))*pl.FPS + 1e-6)
		_, ok := pl.keyedWindow(r, frames, r[0], keys)
		return frames >= 1 && ok
	}
	for j := 1; j < len(picked)-1; j++ {
		reach := sampleReach(picked, j)
	search:
		for d := 0; d <= reach; d++ {
			for _, i := range []int{picked[j] - d, picked[j] + d} {
				if roomy(i) {
					out[j] = i
					break search
				}
			}
		}
	}
	return out
}
