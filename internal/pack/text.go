package pack

import (
	"errors"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/Eyevinn/hls-m3u8/m3u8"
	"github.com/asticode/go-astisub"

	"github.com/herdhq/herd/internal/safefs"
)

// TextRendition is a subtitle rendition: one whole WebVTT file that Write
// cuts into segments on the video's segment grid (each cue in every
// segment it overlaps, as RFC 8216bis 3.1.4 asks) with its own playlist;
// DASH serves the whole file.
type TextRendition struct {
	ID       string // DASH Representation@id
	File     string // the whole WebVTT file, e.g. subs_0.vtt
	Playlist string // HLS media playlist to write, e.g. subs_0.m3u8
	Prefix   string // its segments are Prefix00001.vtt, Prefix00002.vtt, ...
	Language string // BCP 47, "" if unknown
	Name     string
	Default  bool
	Forced   bool
	// HearingImpaired: subtitles for the deaf and hard of hearing (SDH),
	// which describe sounds and music too.
	HearingImpaired bool
}

// TextStream is what Write made of a TextRendition.
type TextStream struct {
	Segments  []string  // in order
	Durations []float64 // seconds, the video's
	Cues      int       // in the whole file
}

// timestampMap is every segment's X-TIMESTAMP-MAP: cue times are the
// outputs' own presentation times, whose zero is the video's first
// picture (MPEG-TS time 0 at local time 0).
var timestampMap = &astisub.WebVTTTimestampMap{Local: 0, MpegTS: 0}

// maxCues bounds the cues read from one file (a long film has a few
// thousand).
const maxCues = 200_000

// writeText cuts r's file in dir into segments on the grid (the video's
// segment durations) and writes them and r's media playlist.
func writeText(root *os.Root, dir string, r TextRendition, grid []float64, target int) (*TextStream, error) {
	f, err := root.Open(r.File)
	if err != nil {
		return nil, fmt.Errorf("subtitles %s: %w", r.File, err)
	}
	subs, err := astisub.ReadFromWebVTT(f)
	_ = f.Close()
	if err != nil {
		return nil, fmt.Errorf("subtitles %s: %w", r.File, err)
	}
	if len(subs.Items) > maxCues {
		return nil, fmt.Errorf("subtitles %s: %d cues, more than %d", r.File, len(subs.Items), maxCues)
	}
	st := &TextStream{Cues: len(subs.Items)}
	p, err := m3u8.NewMediaPlaylist(0, uint(len(grid)))
	if err != nil {
		return nil, err
	}
	p.SetWritePrecision(floatPrecision)
	p.MediaType = m3u8.VOD
	p.SetTargetDuration(uint(target))
	var from float64
	for i, d := range grid {
		to := from + d
		if i == len(grid)-1 {
			to = math.Inf(1) // cues past the video's end still show at its end
		}
		seg := &astisub.Subtitles{Metadata: &astisub.Metadata{WebVTTTimestampMap: timestampMap}}
		var ids []int // each cue's number in the whole file
		for k, it := range subs.Items {
			if it.EndAt > it.StartAt && seconds(it.StartAt) < to && seconds(it.EndAt) > from {
				seg.Items = append(seg.Items, it)
				ids = append(ids, k+1)
			}
		}
		name := fmt.Sprintf("%s%05d.vtt", r.Prefix, i+1)
		var b strings.Builder
		if len(seg.Items) == 0 {
			b.WriteString("WEBVTT\n" + timestampMap.String() + "\n\n")
		} else if err := seg.WriteToWebVTT(&b); err != nil {
			return nil, fmt.Errorf("subtitles %s: %w", name, err)
		}
		if err := safefs.WriteFile(root, name, []byte(fileIDs(b.String(), ids)), 0o644); err != nil {
			return nil, fmt.Errorf("package: write %s: %w", name, err)
		}
		if err := p.AppendSegment(&m3u8.MediaSegment{URI: name, Duration: d}); err != nil {
			return nil, err
		}
		st.Segments = append(st.Segments, name)
		st.Durations = append(st.Durations, d)
		from = to
	}
	p.Close()
	v, _ := p.CalcMinVersion()
	p.SetVersion(max(v, 6))
	if err := safefs.WriteFile(root, r.Playlist, p.Encode().Bytes(), 0o644); err != nil {
		return nil, fmt.Errorf("package: write %s: %w", r.Playlist, err)
	}
	return st, nil
}

func seconds(d time.Duration) float64 { return d.Seconds() }

// fileIDs gives a segment's cues their numbers in the whole file (ids, in
// order) in place of the 1, 2, ... the writer numbers each segment's
// with: a cue repeated in the next segment keeps its identifier, and no
// two cues share one, so players that merge the segments' cues by
// identifier (hls.js) keep each cue once and drop none.
func fileIDs(vtt string, ids []int) string {
	lines := strings.Split(vtt, "\n")
	k := 0
	for i := 0; i+1 < len(lines) && k < len(ids); i++ {
		if lines[i] == strconv.Itoa(k+1) && strings.Contains(lines[i+1], "-->") {
			lines[i] = strconv.Itoa(ids[k])
			k++
		}
	}
	return strings.Join(lines, "\n")
}

// segmentGrid is the video's segment durations in seconds: every
// rendition's segments line up with them.
func segmentGrid(s *Stream) []float64 {
	grid := make([]float64, len(s.Segments))
	for i := range s.Segments {
		grid[i] = s.SegmentSeconds(i)
	}
	return grid
}

// ReadText reads a WebVTT segment or file for verification: it must
// parse, and say how many cues it holds.
func ReadText(path string) (int, error) {
	f, err := os.Open(filepath.Clean(path))
	if err != nil {
		return 0, err
	}
	defer f.Close()
	subs, err := astisub.ReadFromWebVTT(f)
	if err != nil {
		return 0, err
	}
	if len(subs.Items) > maxCues {
		return 0, errors.New("too many cues")
	}
	return len(subs.Items), nil
}
