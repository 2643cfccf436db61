package pack

import (
	"bytes"
	"errors"
	"fmt"
	"math"
	"os"
	"path/filepath"

	"github.com/Eyevinn/mp4ff/mp4"

	"github.com/herdhq/herd/internal/safefs"
)

// Piece is one chunk's encode of one rendition: an init segment and its
// media segments in a folder, and where in the source the chunk starts.
type Piece struct {
	Dir      string
	Init     string
	Segments []string
	Start    float64 // seconds from the source's start to the chunk's first frame
}

// Stitch joins pieces, in order, into one rendition in dir named by
// initTmpl and mediaTmpl with id: the first piece's init segment, and every
// piece's media segments numbered on from 1, their decode times moved so
// that each piece continues exactly where the one before it ends. Nothing is
// encoded again; only the tfdt and sidx times of each segment change.
//
// It refuses pieces that cannot play as one stream: a sample description
// (codec configuration, picture size, channels) or timescale that differs
// from the first piece's, or a piece that does not start where the pieces
// before it end (a frame lost or doubled at a boundary), within half a
// sample (see continues for the first boundary). Its errors name the piece.
func Stitch(dir, id, initTmpl, mediaTmpl string, pieces []Piece) (Rendition, error) {
	r := Rendition{ID: id, Init: expand(initTmpl, id, 0)}
	if len(pieces) == 0 {
		return r, errors.New("stitch: no pieces")
	}
	root, err := os.OpenRoot(dir)
	if err != nil {
		return r, fmt.Errorf("stitch: %w", err)
	}
	defer root.Close()

	var track Track
	var next uint64 // where the next piece must start, in the timescale
	var sampleDur uint64
	var start1 uint64 // where the second piece starts
	for k, p := range pieces {
		tr, _, err := readInit(filepath.Join(p.Dir, p.Init))
		if err != nil {
			return r, fmt.Errorf("stitch: chunk %d: init segment: %w", k+1, err)
		}
		if k == 0 {
			track = tr
			data, err := os.ReadFile(filepath.Join(p.Dir, p.Init))
			if err != nil {
				return r, fmt.Errorf("stitch: chunk 1: %w", err)
			}
			if err := safefs.WriteFile(root, r.Init, data, 0o644); err != nil {
				return r, fmt.Errorf("stitch: write %s: %w", r.Init, err)
			}
		} else if tr.Timescale != track.Timescale || !bytes.Equal(tr.desc, track.desc) {
			return r, fmt.Errorf("stitch: chunk %d was encoded with a different codec configuration than chunk 1 (its sample description or timescale differs), so the two cannot play as one stream; encode it again with the same settings", k+1)
		}
		if len(p.Segments) == 0 {
			return r, fmt.Errorf("stitch: chunk %d has no media segments", k+1)
		}
		if k > 0 {
			if err := continues(pieces, k, next, sampleDur, start1, track.Timescale); err != nil {
				return r, err
			}
			if k == 1 {
				start1 = next
			}
		}
		var shift int64 // added to this piece's decode times
		for i, name := range p.Segments {
			f, err := readSegmentFile(filepath.Join(p.Dir, name))
			if err != nil {
				return r, fmt.Errorf("stitch: chunk %d: segment %s: %w", k+1, name, err)
			}
			if i == 0 {
				shift = int64(next) - int64(baseTime(f)) //nolint:gosec // G115: decode times far below 2^63
			}
			dur, last, err := retime(f, shift, tr.trex)
			if err != nil {
				return r, fmt.Errorf("stitch: chunk %d: segment %s: %w", k+1, name, err)
			}
			next, sampleDur = baseTime(f)+dur, last
			var buf bytes.Buffer
			if err := f.Encode(&buf); err != nil {
				return r, fmt.Errorf("stitch: chunk %d: segment %s: %w", k+1, name, err)
			}
			out := expand(mediaTmpl, id, len(r.Segments)+1)
			if err := safefs.WriteFile(root, out, buf.Bytes(), 0o644); err != nil {
				return r, fmt.Errorf("stitch: write %s: %w", out, err)
			}
			r.Segments = append(r.Segments, out)
		}
	}
	return r, nil
}

// continues checks that piece k starts where the pieces before it end: its
// Start, measured from the second piece's, equals the decode time the
// pieces before it reach. The first piece is only held to not running past
// the second's start: its first frame may come after its Start (a source
// whose video begins late), which its own decode times do not show.
func continues(pieces []Piece, k int, next, sampleDur, start1 uint64, timescale uint32) error {
	ts := float64(timescale)
	var want float64
	if k == 1 {
		want = math.Round((pieces[1].Start - pieces[0].Start) * ts)
		if float64(next) <= want+float64(sampleDur)/2 {
			return nil
		}
	} else {
		want = float64(start1) + math.Round((pieces[k].Start-pieces[1].Start)*ts)
		if math.Abs(want-float64(next)) <= float64(sampleDur)/2 {
			return nil
		}
	}
	return fmt.Errorf("stitch: chunk %d starts at %.6fs but the chunks before it end at %.6fs: a frame was lost or doubled at the boundary",
		k+1, want/ts, float64(next)/ts)
}

func readSegmentFile(path string) (*mp4.File, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	return decodeSegment(data)
}

// decodeSegment decodes a media segment whole (its samples too, to write
// it again).
func decodeSegment(data []byte) (*mp4.File, error) {
	f, err := mp4.DecodeFile(bytes.NewReader(data))
	if err != nil {
		return nil, fmt.Errorf("not an MP4 media segment: %w", err)
	}
	if len(f.Segments) == 0 || len(f.Segments[0].Fragments) == 0 {
		return nil, errors.New("no moof/mdat fragment")
	}
	return f, nil
}

// baseTime is the decode time of a segment's first sample.
func baseTime(f *mp4.File) uint64 {
	return f.Segments[0].Fragments[0].Moof.Traf.Tfdt.BaseMediaDecodeTime()
}

// retime adds shift to every fragment's decode time and every sidx's
// earliest presentation time, keeping each box's size (so that the sample
// data offsets stay right). It returns the segment's duration and its last
// sample's.
func retime(f *mp4.File, shift int64, trex *mp4.TrexBox) (dur, last uint64, err error) {
	add := func(v uint64) (uint64, error) {
		n := int64(v) + shift //nolint:gosec // G115: decode times far below 2^63
		if n < 0 {
			return 0, errors.New("a decode time would become negative")
		}
		return uint64(n), nil
	}
	for _, s := range f.Segments {
		for _, sx := range s.Sidxs {
			if sx.EarliestPresentationTime, err = add(sx.EarliestPresentationTime); err != nil {
				return 0, 0, err
			}
			if sx.Version == 0 && sx.EarliestPresentationTime > math.MaxUint32 {
				sx.Version = 1
			}
		}
		for _, fr := range s.Fragments {
			if fr.Moof == nil || len(fr.Moof.Trafs) != 1 || fr.Moof.Traf.Tfdt == nil {
				return 0, 0, errors.New("want one track fragment with a tfdt in every moof")
			}
			traf := fr.Moof.Traf
			t, err := add(traf.Tfdt.BaseMediaDecodeTime())
			if err != nil {
				return 0, 0, err
			}
			version := traf.Tfdt.Version
			if version == 0 && t > math.MaxUint32 {
				return 0, 0, errors.New("a decode time no longer fits the 32-bit tfdt ffmpeg wrote")
			}
			traf.Tfdt.SetBaseMediaDecodeTime(t)
			traf.Tfdt.Version = version
			for _, trun := range traf.Truns {
				dur += trun.AddSampleDefaultValues(traf.Tfhd, trex)
				if n := len(trun.Samples); n > 0 {
					last = uint64(trun.Samples[n-1].Dur)
				}
			}
		}
	}
	return dur, last, nil
}
