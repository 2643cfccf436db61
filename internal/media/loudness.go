package media

import (
	"context"
	"fmt"
	"math"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"

	"github.com/herdhq/herd/internal/job"
)

// Loudness: every job measures the EBU R128 loudness of each audio stream
// of its source when it is probed (MeasureLoudness), and a profile with a
// loudness target brings each rendition to it by one linear gain
// (AudioPlan.Gain) found from that measurement, never by a dynamic
// compressor. Verification measures the renditions made.

// loudnessSummaryBytes bounds what is kept of ffmpeg's stderr: the
// summaries it prints at the end, about 500 bytes a measurement.
const loudnessSummaryBytes = 256 << 10

// maxMeasured bounds the audio streams measured: a file with more keeps
// its later streams unmeasured (their renditions are not normalized).
const maxMeasured = 32

// MeasureLoudness measures every audio stream of input with one ffmpeg
// that decodes only the audio, and sets each stream's Loudness; a stream
// of more than two channels is measured as its stereo downmix too
// (StereoLoudness), which is what a stereo rendition of it carries.
func (t Tools) MeasureLoudness(ctx context.Context, input string, info *Info) error {
	if info == nil || len(info.Audio) == 0 {
		return nil
	}
	_, err := t.measureLoudness(ctx, info.Demuxer, input, info.Audio)
	return err
}

// measureLoudness measures streams of input and sets their Loudness and
// StereoLoudness; it returns the command it ran.
func (t Tools) measureLoudness(ctx context.Context, demuxer, input string, streams []AudioStream) ([]string, error) {
	abs, err := filepath.Abs(input)
	if err != nil {
		return nil, fmt.Errorf("measure loudness: %w", err)
	}
	args, slots := LoudnessArgs(demuxer, abs, streams)
	stderr, err := t.exec(ctx, t.ffmpeg(), args, nil, nil, loudnessSummaryBytes)
	if err != nil {
		return nil, fmt.Errorf("measure loudness: %w", err)
	}
	found := parseLoudness(stderr)
	for _, s := range slots {
		l, ok := found[s.filter]
		if !ok {
			continue
		}
		if s.stereo {
			streams[s.stream].StereoLoudness = &l
		} else {
			streams[s.stream].Loudness = &l
		}
	}
	return argv(t.ffmpeg(), args), nil
}

// loudnessSlot says what an ebur128 filter of LoudnessArgs measures: audio
// stream number stream, as it is or downmixed to stereo. filter is its
// place among all the graph's filters, which names it in ffmpeg's log
// (Parsed_ebur128_<filter>).
type loudnessSlot struct {
	stream int
	stereo bool
	filter int
}

// LoudnessArgs is the argv (without the binary) that measures streams of
// input (its demuxer forced): an ebur128 filter a measurement, each into a
// null output, and what each filter measures, in filter order.
func LoudnessArgs(demuxer, input string, streams []AudioStream) ([]string, []loudnessSlot) {
	args := []string{"-nostdin", "-hide_banner", "-nostats", "-y", "-protocol_whitelist", "file,pipe",
		"-f", demuxer, "-i", "file:" + filepath.Clean(input)}
	var graph []string
	var slots []loudnessSlot
	filters := 0 // filters in the graph so far
	for i, a := range streams[:min(len(streams), maxMeasured)] {
		k := len(slots)
		if a.Channels > 2 {
			// asplit, ebur128; aformat, ebur128.
			graph = append(graph, fmt.Sprintf("[0:%d]asplit=2[s%d][d%d];[s%d]ebur128=peak=true[l%d];[d%d]aformat=channel_layouts=stereo,ebur128=peak=true[l%d]",
				a.Index, i, i, i, k, i, k+1))
			slots = append(slots, loudnessSlot{i, false, filters + 1}, loudnessSlot{i, true, filters + 3})
			filters += 4
			continue
		}
		graph = append(graph, fmt.Sprintf("[0:%d]ebur128=peak=true[l%d]", a.Index, k))
		slots = append(slots, loudnessSlot{i, false, filters})
		filters++
	}
	args = append(args, "-filter_complex", strings.Join(graph, ";"))
	for k := range slots {
		args = append(args, "-map", fmt.Sprintf("[l%d]", k), "-f", "null", "-")
	}
	return args, slots
}

var (
	summaryRe = regexp.MustCompile(`\[Parsed_ebur128_(\d+) @ [^\]]*\] Summary:`)
	valueRe   = regexp.MustCompile(`(?m)^\s*(I|LRA|Threshold|Peak):\s*(-?inf|-?[0-9]+(?:\.[0-9]+)?)\s*(LUFS|LU|dBFS)\s*$`)
)

// parseLoudness reads the summaries ebur128 filters print when they end,
// keyed by the filter's place in the graph.
func parseLoudness(stderr string) map[int]job.Loudness {
	out := map[int]job.Loudness{}
	marks := summaryRe.FindAllStringSubmatchIndex(stderr, -1)
	for k, m := range marks {
		n, err := strconv.Atoi(stderr[m[2]:m[3]])
		if err != nil {
			continue
		}
		end := len(stderr)
		if k+1 < len(marks) {
			end = marks[k+1][0]
		}
		var l job.Loudness
		seen, thresholds := 0, 0
		for _, v := range valueRe.FindAllStringSubmatch(stderr[m[1]:end], -1) {
			f, err := strconv.ParseFloat(v[2], 64)
			if err != nil {
				continue
			}
			if math.IsInf(f, -1) {
				f = -200 // digital silence
			}
			switch v[1] {
			case "I":
				l.Integrated, seen = f, seen|1
			case "LRA":
				l.Range, seen = f, seen|2
			case "Peak":
				l.TruePeak, seen = f, seen|4
			case "Threshold":
				// The first is integrated loudness's gate, the second the
				// loudness range's.
				if thresholds == 0 {
					l.Threshold, seen = f, seen|8
				}
				thresholds++
			}
		}
		if seen == 15 && l.Valid() {
			out[n] = l
		}
	}
	return out
}
