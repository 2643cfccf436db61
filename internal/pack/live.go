package pack

import (
	"bytes"
	"errors"
	"fmt"
	"os"

	"github.com/Eyevinn/mp4ff/mp4"
)

// Timing is what a media segment's boxes say of it, read against its init
// segment.
type Timing struct {
	Codec     string // the init segment's RFC 6381 codecs parameter
	Timescale uint32
	Start     uint64 // decode time of its first sample
	Duration  uint64 // sum of its samples' durations
}

// MeasureSegment reads the media segment at segPath with the init segment
// at initPath: a segment handed over for a live playlist is listed with
// what its own boxes say, never with what a worker reports.
func MeasureSegment(initPath, segPath string) (Timing, error) {
	tr, _, err := readInit(initPath)
	if err != nil {
		return Timing{}, fmt.Errorf("init segment: %w", err)
	}
	// Its samples are not read: only the boxes that say their times.
	in, err := os.Open(segPath)
	if err != nil {
		return Timing{}, err
	}
	defer in.Close()
	f, err := mp4.DecodeFile(in, mp4.WithDecodeMode(mp4.DecModeLazyMdat))
	if err != nil {
		return Timing{}, fmt.Errorf("not an MP4 media segment: %w", err)
	}
	if len(f.Segments) == 0 || len(f.Segments[0].Fragments) == 0 {
		return Timing{}, errors.New("no moof/mdat fragment")
	}
	dur, _, err := retime(f, 0, tr.trex)
	if err != nil {
		return Timing{}, err
	}
	if dur == 0 {
		return Timing{}, errors.New("the segment holds no sample time")
	}
	return Timing{Codec: tr.Codec, Timescale: tr.Timescale, Start: baseTime(f), Duration: dur}, nil
}

// Retime returns the media segment seg, whose init segment is init, with
// every decode time moved by shift (in its timescale): how a live playlist
// puts the segments of a job's chunks, or of a retried attempt, on one
// timeline. The sample data is not touched.
func Retime(init, seg []byte, shift int64) ([]byte, error) {
	mf, err := mp4.DecodeFile(bytes.NewReader(init))
	if err != nil {
		return nil, fmt.Errorf("not an MP4 init segment: %w", err)
	}
	tr, err := initTrack(mf)
	if err != nil {
		return nil, err
	}
	f, err := decodeSegment(seg)
	if err != nil {
		return nil, err
	}
	if _, _, err := retime(f, shift, tr.trex); err != nil {
		return nil, err
	}
	var buf bytes.Buffer
	buf.Grow(len(seg))
	if err := f.Encode(&buf); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}
