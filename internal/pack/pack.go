// Package pack writes the HLS playlists and the DASH manifest of a ladder of
// fragmented-MP4 renditions from what the segments on disk say, and reads
// them back for verification.
//
// ffmpeg writes the init and media segments; everything a player reads
// about them comes from here, measured from the boxes (mp4ff), never from
// the encoder's settings: one target duration shared by every playlist,
// BANDWIDTH as RFC 8216bis defines the peak segment bit rate,
// AVERAGE-BANDWIDTH, CODECS from each init segment, I-frame playlists whose
// byte ranges point into the existing segments, and a static isoff-live MPD
// with a SegmentTimeline over the same files. Playlists are written with
// Eyevinn's hls-m3u8 and the manifest with Eyevinn's dash-mpd.
package pack

import (
	"errors"
	"fmt"
	"math"
	"os"
	"strconv"
	"strings"

	"github.com/herdhq/herd/internal/safefs"
)

// Rendition names one rendition's files and says what the encoder's plan
// knows that the files do not (names, languages).
type Rendition struct {
	ID       string // DASH Representation@id, the $RepresentationID$ in the templates
	Playlist string // HLS media playlist to write, e.g. media_0.m3u8
	IFrames  string // video: HLS I-frame playlist to write, e.g. iframe_0.m3u8
	Init     string
	Segments []string // in order, named by Ladder.MediaTemplate from number 1
	// Audio only.
	Language string // RFC 5646 / ISO 639 code, "" if unknown
	Name     string // human-readable, e.g. "English"; defaults to the language or "audio"
	Default  bool
	// Commentary is a rendition a player should not pick by itself: HLS
	// AUTOSELECT=NO, DASH role "commentary".
	Commentary bool
}

// Ladder is one output folder's renditions and the names of its manifests.
type Ladder struct {
	Master   string // e.g. master.m3u8
	Manifest string // e.g. manifest.mpd
	// InitTemplate and MediaTemplate are DASH SegmentTemplate patterns with
	// $RepresentationID$ and $Number%05d$ (or $Number$); every rendition's
	// files must be named by them.
	InitTemplate, MediaTemplate string
	Video                       []Rendition // best first
	Audio                       []Rendition
	Subtitles                   []TextRendition
	FrameRate                   string // exact, e.g. 30000/1001 or 25
	VideoRange                  string // SDR, PQ or HLG
}

// Packed is what Write measured.
type Packed struct {
	Target    int // EXT-X-TARGETDURATION of every playlist, seconds
	Video     []*Stream
	Audio     []*Stream
	Subtitles []*TextStream
}

// Write reads every rendition's segments in dir and writes its media and
// I-frame playlists, the master playlist and the DASH manifest, each
// atomically.
func Write(dir string, l Ladder) (*Packed, error) {
	if len(l.Video) == 0 {
		return nil, errors.New("package: no video rendition")
	}
	p := &Packed{}
	var err error
	if p.Video, err = readAll(dir, l, l.Video, "video"); err != nil {
		return nil, err
	}
	if p.Audio, err = readAll(dir, l, l.Audio, "audio"); err != nil {
		return nil, err
	}
	if err := aligned(l.Video, p.Video); err != nil {
		return nil, err
	}
	p.Target = targetDuration(append(append([]*Stream{}, p.Video...), p.Audio...))

	root, err := os.OpenRoot(dir)
	if err != nil {
		return nil, fmt.Errorf("package: %w", err)
	}
	defer root.Close()
	write := func(name string, data []byte) error {
		if err := safefs.WriteFile(root, name, data, 0o644); err != nil {
			return fmt.Errorf("package: write %s: %w", name, err)
		}
		return nil
	}
	for i, r := range l.Video {
		if err := write(r.Playlist, mediaPlaylist(p.Video[i], p.Target, false)); err != nil {
			return nil, err
		}
		if err := write(r.IFrames, mediaPlaylist(p.Video[i], p.Target, true)); err != nil {
			return nil, err
		}
	}
	for i, r := range l.Audio {
		if err := write(r.Playlist, mediaPlaylist(p.Audio[i], p.Target, false)); err != nil {
			return nil, err
		}
	}
	for _, r := range l.Subtitles {
		st, err := writeText(root, dir, r, segmentGrid(p.Video[0]), p.Target)
		if err != nil {
			return nil, fmt.Errorf("package: %w", err)
		}
		p.Subtitles = append(p.Subtitles, st)
	}
	if err := write(l.Master, masterPlaylist(l, p)); err != nil {
		return nil, err
	}
	mpd, err := manifest(l, p)
	if err != nil {
		return nil, fmt.Errorf("package: %w", err)
	}
	if err := write(l.Manifest, mpd); err != nil {
		return nil, err
	}
	return p, nil
}

func readAll(dir string, l Ladder, rs []Rendition, kind string) ([]*Stream, error) {
	var out []*Stream
	for _, r := range rs {
		if r.Init != expand(l.InitTemplate, r.ID, 0) {
			return nil, fmt.Errorf("package: %s rendition %s: init segment %q is not named by %q", kind, r.ID, r.Init, l.InitTemplate)
		}
		for n, seg := range r.Segments {
			if want := expand(l.MediaTemplate, r.ID, n+1); seg != want {
				return nil, fmt.Errorf("package: %s rendition %s: segment %d is %q, want %q (numbered from 1 without gaps)", kind, r.ID, n+1, seg, want)
			}
		}
		s, err := ReadStream(dir, r.Init, r.Segments)
		if err != nil {
			return nil, fmt.Errorf("package: %s rendition %s: %w", kind, r.ID, err)
		}
		if s.Kind != kind {
			return nil, fmt.Errorf("package: %s rendition %s holds %s", kind, r.ID, s.Kind)
		}
		out = append(out, s)
	}
	return out, nil
}

// aligned checks that every video rendition's segments start at the same
// times, which the DASH manifest declares (segmentAlignment) and HLS players
// assume when they switch.
func aligned(rs []Rendition, ss []*Stream) error {
	first := ss[0]
	for i, s := range ss[1:] {
		if len(s.Segments) != len(first.Segments) {
			return fmt.Errorf("package: rendition %s has %d segments, rendition %s %d: the renditions' segments are not aligned", rs[i+1].ID, len(s.Segments), rs[0].ID, len(first.Segments))
		}
		for n := range s.Segments {
			a := float64(first.Segments[n].Start) / float64(first.Timescale)
			b := float64(s.Segments[n].Start) / float64(s.Timescale)
			if math.Abs(a-b) > 0.001 {
				return fmt.Errorf("package: segment %d starts at %.3fs in rendition %s and %.3fs in %s: the renditions' segments are not aligned", n+1, b, rs[i+1].ID, a, rs[0].ID)
			}
		}
	}
	return nil
}

// targetDuration is the one EXT-X-TARGETDURATION for all playlists: every
// segment's duration rounded to the nearest integer is at most it.
func targetDuration(ss []*Stream) int {
	t := 1
	for _, s := range ss {
		for i := range s.Segments {
			t = max(t, int(math.Round(s.SegmentSeconds(i))))
		}
	}
	return t
}

// expand fills a DASH template's $RepresentationID$ and $Number$ (with an
// optional printf width such as %05d); number 0 leaves $Number$ alone.
func expand(tmpl, id string, number int) string {
	s := strings.ReplaceAll(tmpl, "$RepresentationID$", id)
	if number == 0 {
		return s
	}
	for {
		i := strings.Index(s, "$Number")
		if i < 0 {
			return s
		}
		j := strings.Index(s[i+1:], "$")
		if j < 0 {
			return s
		}
		spec := s[i+len("$Number") : i+1+j]
		n := strconv.Itoa(number)
		if strings.HasPrefix(spec, "%0") && strings.HasSuffix(spec, "d") {
			if w, err := strconv.Atoi(spec[2 : len(spec)-1]); err == nil && w > len(n) {
				n = strings.Repeat("0", w-len(n)) + n
			}
		}
		s = s[:i] + n + s[i+2+j:]
	}
}
