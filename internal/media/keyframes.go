package media

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"math"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
)

// Keyframes: an mp4 or mkv plan has no keyframe grid of its own (x265 puts
// its keyframes where it likes), so its chunks start on the source's
// keyframes, where a stream copy can cut. The probe lists them, only when
// the job may be split (ProbeKeyframes), by demuxing alone: ffprobe reads
// the packets' key flags and decodes nothing.

// MaxKeyframes bounds Info.Keyframes. A source with more (a long one, or a
// hostile one with every frame a keyframe) keeps every second one, then
// every fourth, ... so the list stays small and spread over the whole
// source: chunks of at least 10 s need nothing finer.
const MaxKeyframes = 10_000

// keyframeList collects keyframe timestamps from ffprobe's csv lines
// ("pts_time,flags"), in bounded memory whatever the input.
type keyframeList struct {
	times []float64
	// stride: only every stride-th keyframe is kept; it doubles whenever
	// the list would outgrow MaxKeyframes.
	stride, seen int
	lines
	bad int // lines that were not "time,flags"
}

func (l *keyframeList) Write(p []byte) (int, error) {
	l.bad += l.split(p, l.line)
	return len(p), nil
}

// lines splits what ffprobe writes into lines, holding an unfinished one
// (partial) of at most 256 bytes.
type lines struct {
	partial []byte
}

// flush hands take the last line, the one ffprobe ended without a line
// break (if any).
func (b *lines) flush(take func(string)) { take(string(b.partial)) }

// split hands take every line p finishes; it returns how many overlong
// unfinished lines (not lines ffprobe writes) it dropped.
func (b *lines) split(p []byte, take func(string)) (dropped int) {
	for len(p) > 0 {
		i := bytes.IndexByte(p, '\n')
		if i < 0 {
			if len(b.partial)+len(p) > 256 {
				b.partial = b.partial[:0]
				dropped++
			} else {
				b.partial = append(b.partial, p...)
			}
			return dropped
		}
		line := p[:i]
		if len(b.partial) > 0 {
			line = append(b.partial, line...)
			b.partial = b.partial[:0]
		}
		take(string(line))
		p = p[i+1:]
	}
	return dropped
}

// line takes one "pts_time,flags" line.
func (l *keyframeList) line(s string) {
	ts, flags, ok := strings.Cut(strings.TrimSpace(s), ",")
	if !ok {
		if s != "" {
			l.bad++
		}
		return
	}
	if !strings.HasPrefix(flags, "K") || strings.Contains(flags, "D") {
		return // not a keyframe, or one the demuxer discards (before an edit list's start)
	}
	t, err := strconv.ParseFloat(ts, 64)
	if err != nil || !finite(t) {
		return // a keyframe without a timestamp ("N/A") cannot be cut at
	}
	if n := len(l.times); n > 0 && t <= l.times[n-1] {
		return // out of order or repeated: not a place to cut
	}
	l.stride = max(l.stride, 1)
	l.seen++
	if (l.seen-1)%l.stride != 0 {
		return
	}
	if len(l.times) == MaxKeyframes {
		// Keep every second one and from now on every 2×stride-th.
		kept := l.times[:0]
		for i := 0; i < len(l.times); i += 2 {
			kept = append(kept, l.times[i])
		}
		l.times = kept
		l.stride *= 2
		if (l.seen-1)%l.stride != 0 {
			return
		}
	}
	l.times = append(l.times, t)
}

// ProbeKeyframes fills info.Keyframes with the timestamps (source time, in
// seconds) of the keyframes of input's video stream. Admit does not, so
// that a job that will not be split pays nothing for them. It sets
// info.VideoEnd too, from the same packets: a job that needs the one
// needs the other, and reading the packets once does for both.
func (t Tools) ProbeKeyframes(ctx context.Context, input string, info *Info) error {
	if info == nil || info.Video == nil {
		return nil
	}
	abs, err := filepath.Abs(input)
	if err != nil {
		return fmt.Errorf("list keyframes: %w", err)
	}
	var l keyframeList
	var end videoEndScan
	if _, err := t.exec(ctx, t.ffprobe(), PacketArgs(info.Demuxer, abs, info.Video.Index, 0), nil, io.MultiWriter(&l, &end), stderrTailBytes); err != nil {
		return fmt.Errorf("list keyframes: run ffprobe: %w", err)
	}
	l.flush(l.line)
	// Keep the keyframes within the source as the probe measured it: a
	// file whose timestamps jump, or whose duration was estimated short,
	// is split where it is known, never refused.
	info.Keyframes = nil
	for _, k := range l.times {
		if k >= info.Start && k <= info.Start+info.Duration {
			info.Keyframes = append(info.Keyframes, k)
		}
	}
	end.flush(end.line)
	info.setVideoEnd(&end)
	return nil
}

// validateKeyframes checks a reported keyframe list: bounded, increasing,
// and within the source.
func (info *Info) validateKeyframes() error {
	if err := inRange("info.keyframes", len(info.Keyframes), 0, MaxKeyframes); err != nil {
		return err
	}
	prev := math.Inf(-1)
	for i, k := range info.Keyframes {
		if !finite(k) || k < info.Start-1 || k > info.Start+info.Duration+1 {
			return bad("info.keyframes", "keyframe %d at %v s is outside the source (%v s from %v s)", i, k, info.Duration, info.Start)
		}
		if k <= prev {
			return bad("info.keyframes", "keyframe %d at %v s does not come after the one before it", i, k)
		}
		prev = k
	}
	return nil
}

// The hidden end of a video: an MP4 or MOV whose edit list ends before the
// video's last sample shows fewer frames than it stores. ffmpeg's mov
// demuxer flags the packets past the edit's end as discarded and the
// decoder drops their pictures, so the unsplit encode never sees them; a
// chunk's piece (Matroska, stream-copied) keeps the packets without the
// flag, so the last chunk would encode those frames too. ProbeVideoEnd
// finds where the hidden frames start, and the last chunk's encode trims
// them (chunkFilters).

// videoEndSeconds is how much of the end of the source ProbeVideoEnd reads.
const videoEndSeconds = 10

// maxHiddenPackets bounds the hidden packets videoEndScan keeps track of.
const maxHiddenPackets = 4096

// PacketArgs returns the ffprobe argv that lists the timestamps and flags
// of the packets of input's video stream index from the source time from
// (the whole stream when from is 0), without decoding.
func PacketArgs(demuxer, input string, index int, from float64) []string {
	intervals := ""
	if from > 0 {
		intervals = ftoa(from) + "%"
	}
	return packetArgs(demuxer, input, index, intervals)
}

// packetArgs is PacketArgs reading ffprobe's -read_intervals (all the
// stream when "").
func packetArgs(demuxer, input string, index int, intervals string) []string {
	args := []string{"-v", "error", "-hide_banner", "-protocol_whitelist", "file,pipe",
		"-f", demuxer, "-select_streams", strconv.Itoa(index)}
	if intervals != "" {
		args = append(args, "-read_intervals", intervals)
	}
	return append(args, "-show_entries", "packet=pts_time,flags", "-of", "csv=p=0",
		"-i", "file:"+filepath.Clean(input))
}

// videoEndScan reads ffprobe's "pts_time,flags" lines and finds the first
// timestamp of the packets the demuxer discards after the last one it
// keeps, in bounded memory whatever the input.
type videoEndScan struct {
	lines
	kept    float64 // the latest timestamp of a kept packet
	anyKept bool
	hidden  []float64 // discarded packets' timestamps after kept
	over    bool      // more hidden packets than maxHiddenPackets
}

func (s *videoEndScan) line(line string) {
	ts, flags, ok := strings.Cut(strings.TrimSpace(line), ",")
	if !ok {
		return
	}
	t, err := strconv.ParseFloat(ts, 64)
	if err != nil || !finite(t) {
		return
	}
	if !strings.Contains(flags, "D") {
		if !s.anyKept || t > s.kept {
			s.kept, s.anyKept = t, true
			s.hidden = slices.DeleteFunc(s.hidden, func(h float64) bool { return h <= t })
		}
		return
	}
	if s.anyKept && t <= s.kept {
		return // before the edit's end (or its start): not a hidden end
	}
	if len(s.hidden) == maxHiddenPackets {
		s.over = true
		return
	}
	s.hidden = append(s.hidden, t)
}

// end is the first hidden timestamp after the last kept packet; 0 when
// none is hidden, or when the scan cannot tell (no kept packet, or more
// hidden packets than it tracks).
func (s *videoEndScan) end() float64 {
	if !s.anyKept || s.over || len(s.hidden) == 0 {
		return 0
	}
	return slices.Min(s.hidden)
}

func (s *videoEndScan) Write(p []byte) (int, error) {
	s.split(p, s.line)
	return len(p), nil
}

// setVideoEnd sets info.VideoEnd from a finished scan: where the hidden
// end starts, when it is within the source and the demuxer is one that
// hides packets that way (mov: MP4 and MOV); else 0.
func (info *Info) setVideoEnd(s *videoEndScan) {
	info.VideoEnd = 0
	if e := s.end(); info.Demuxer == "mov" && e > info.Start && e <= info.Start+info.Duration {
		info.VideoEnd = e
	}
}

// ProbeVideoEnd sets info.VideoEnd: the source time of the first frame that
// an MP4 or MOV source's edit list hides at the end of its video (0 when
// none is). It reads the packets of the last videoEndSeconds only (all of
// them when those hold no packet the demuxer keeps). Other demuxers hide
// no video packet that way: it sets 0 for them. ProbeKeyframes does the
// same on its way: a job that lists keyframes needs no ProbeVideoEnd.
func (t Tools) ProbeVideoEnd(ctx context.Context, input string, info *Info) error {
	if info == nil || info.Video == nil {
		return nil
	}
	if info.Demuxer != "mov" {
		info.VideoEnd = 0
		return nil
	}
	abs, err := filepath.Abs(input)
	if err != nil {
		return fmt.Errorf("find the video's end: %w", err)
	}
	from := info.Start + info.Duration - videoEndSeconds
	for {
		var s videoEndScan
		if _, err := t.exec(ctx, t.ffprobe(), PacketArgs(info.Demuxer, abs, info.Video.Index, from), nil, &s, stderrTailBytes); err != nil {
			return fmt.Errorf("find the video's end: run ffprobe: %w", err)
		}
		s.flush(s.line)
		if !s.anyKept && from > 0 {
			from = 0 // the whole tail is hidden: read it all
			continue
		}
		info.setVideoEnd(&s)
		return nil
	}
}
