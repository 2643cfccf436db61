package pack

import (
	"bytes"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"

	"github.com/Eyevinn/mp4ff/aac"
	"github.com/Eyevinn/mp4ff/avc"
	"github.com/Eyevinn/mp4ff/hevc"
	"github.com/Eyevinn/mp4ff/mp4"
)

// Track is what an init segment says about its one track.
type Track struct {
	Kind       string // "video" or "audio"
	Codec      string // RFC 6381 codecs parameter: avc1.64001F, hvc1.2.4.L120.B0, av01.0.08M.10, mp4a.40.2
	Timescale  uint32
	Width      int // video: coded picture size from the sample entry
	Height     int
	Channels   int // audio
	SampleRate int // audio, Hz
	trex       *mp4.TrexBox
	desc       []byte // the stsd box, encoded: what must match for streams to play as one
}

// Segment is one media segment: its size and timing, and where its first
// sample ends, which makes the I-frame playlist's byte range.
type Segment struct {
	Name     string // file name inside the output folder
	Size     int64  // bytes
	Start    uint64 // decode time of the first sample, in the track's timescale
	Duration uint64 // sum of its samples' durations, in the track's timescale
	// Moof is the byte offset of the first moof box; KeyEnd the offset just
	// past the first sample's data. [Moof, KeyEnd) is the first frame with
	// the box that describes it.
	Moof, KeyEnd int64
	Samples      int // how many samples its fragments hold
}

// Stream is one rendition read from disk: an init segment and its media
// segments in order.
type Stream struct {
	Track
	Init     string
	InitSize int64
	Segments []Segment
}

// Seconds is the stream's total duration.
func (s *Stream) Seconds() float64 {
	var d uint64
	for _, g := range s.Segments {
		d += g.Duration
	}
	return float64(d) / float64(s.Timescale)
}

// SegmentSeconds is the duration of segment i.
func (s *Stream) SegmentSeconds(i int) float64 {
	return float64(s.Segments[i].Duration) / float64(s.Timescale)
}

// Bytes is the size of the init and media segments together.
func (s *Stream) Bytes() int64 {
	n := s.InitSize
	for _, g := range s.Segments {
		n += g.Size
	}
	return n
}

// ReadStream reads dir/init and every dir/segment (base names) and checks
// what a player relies on: one track, sample timing that runs on without a
// gap or overlap from one segment to the next, and for video a first sample
// in every segment that is a sync sample and, for AVC and HEVC, an IDR
// picture (a closed GOP starts every segment).
func ReadStream(dir, init string, segments []string) (*Stream, error) {
	if len(segments) == 0 {
		return nil, fmt.Errorf("%s: no media segments", init)
	}
	tr, size, err := readInit(filepath.Join(dir, init))
	if err != nil {
		return nil, fmt.Errorf("init segment %s: %w", init, err)
	}
	s := &Stream{Track: tr, Init: init, InitSize: size}
	for i, name := range segments {
		g, err := readSegment(filepath.Join(dir, name), &s.Track)
		if err != nil {
			return nil, fmt.Errorf("segment %s: %w", name, err)
		}
		g.Name = name
		if i > 0 {
			prev := s.Segments[i-1]
			if want := prev.Start + prev.Duration; g.Start != want {
				return nil, fmt.Errorf("segment %s starts at %d, want %d (where %s ends; timescale %d)", name, g.Start, want, prev.Name, tr.Timescale)
			}
		}
		s.Segments = append(s.Segments, g)
	}
	return s, nil
}

func readInit(path string) (Track, int64, error) {
	f, err := os.Open(path)
	if err != nil {
		return Track{}, 0, err
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return Track{}, 0, err
	}
	mf, err := mp4.DecodeFile(f)
	if err != nil {
		return Track{}, 0, fmt.Errorf("not an MP4 init segment: %w", err)
	}
	tr, err := initTrack(mf)
	return tr, fi.Size(), err
}

// initTrack reads an init segment's one track.
func initTrack(mf *mp4.File) (Track, error) {
	if mf.Init == nil || mf.Init.Moov == nil || len(mf.Init.Moov.Traks) != 1 {
		return Track{}, errors.New("want a moov box with exactly one track")
	}
	trak := mf.Init.Moov.Traks[0]
	if trak.Mdia == nil || trak.Mdia.Mdhd == nil || trak.Mdia.Minf == nil || trak.Mdia.Minf.Stbl == nil || trak.Mdia.Minf.Stbl.Stsd == nil {
		return Track{}, errors.New("track has no media header or sample description")
	}
	tr := Track{Timescale: trak.Mdia.Mdhd.Timescale}
	if tr.Timescale == 0 {
		return Track{}, errors.New("track timescale is 0")
	}
	if mvex := mf.Init.Moov.Mvex; mvex != nil {
		for _, t := range mvex.Trexs {
			if t.TrackID == trak.Tkhd.TrackID {
				tr.trex = t
			}
		}
	}
	if err := describe(&tr, trak.Mdia.Minf.Stbl.Stsd); err != nil {
		return Track{}, err
	}
	var desc bytes.Buffer
	if err := trak.Mdia.Minf.Stbl.Stsd.Encode(&desc); err != nil {
		return Track{}, fmt.Errorf("sample description: %w", err)
	}
	tr.desc = desc.Bytes()
	return tr, nil
}

// describe fills the kind, size and codecs string from the sample entry.
func describe(tr *Track, stsd *mp4.StsdBox) error {
	video := func(e *mp4.VisualSampleEntryBox) {
		tr.Kind, tr.Width, tr.Height = "video", int(e.Width), int(e.Height)
	}
	switch {
	case stsd.AvcX != nil && stsd.AvcX.AvcC != nil && len(stsd.AvcX.AvcC.SPSnalus) > 0:
		video(stsd.AvcX)
		sps, err := avc.ParseSPSNALUnit(stsd.AvcX.AvcC.SPSnalus[0], false)
		if err != nil {
			return fmt.Errorf("avcC: %w", err)
		}
		tr.Codec = avc.CodecString(stsd.AvcX.Type(), sps)
	case stsd.HvcX != nil && stsd.HvcX.HvcC != nil:
		video(stsd.HvcX)
		spss := stsd.HvcX.HvcC.GetNalusForType(hevc.NALU_SPS)
		if len(spss) == 0 {
			return errors.New("hvcC has no SPS")
		}
		sps, err := hevc.ParseSPSNALUnit(spss[0])
		if err != nil {
			return fmt.Errorf("hvcC: %w", err)
		}
		tr.Codec = hevc.CodecString(stsd.HvcX.Type(), sps)
	case stsd.Av01 != nil && stsd.Av01.Av1C != nil:
		video(stsd.Av01)
		tr.Codec = av1Codec(stsd.Av01.Av1C)
	case stsd.Mp4a != nil:
		e := stsd.Mp4a
		tr.Kind, tr.Channels, tr.SampleRate = "audio", int(e.ChannelCount), int(e.SampleRate)
		codec, channels, err := mp4aCodec(e)
		if err != nil {
			return err
		}
		tr.Codec = codec
		if channels > 0 {
			tr.Channels = channels
		}
	default:
		return errors.New("sample entry is none of avc1/avc3, hvc1/hev1, av01, mp4a")
	}
	return nil
}

// av1Codec is the codecs string of AV1-ISOBMFF §5: av01.P.LLT.DD.
func av1Codec(c *mp4.Av1CBox) string {
	tier := "M"
	if c.SeqTier0 != 0 {
		tier = "H"
	}
	depth := 8
	switch {
	case c.HighBitdepth != 0 && c.TwelveBit != 0:
		depth = 12
	case c.HighBitdepth != 0:
		depth = 10
	}
	return fmt.Sprintf("av01.%d.%02d%s.%02d", c.SeqProfile, c.SeqLevelIdx0, tier, depth)
}

// mp4aCodec is mp4a.40.<audio object type> for AAC (from the decoder
// specific info), or mp4a.<object type indication> for other MPEG-4 audio.
func mp4aCodec(e *mp4.AudioSampleEntryBox) (string, int, error) {
	if e.Esds == nil || e.Esds.DecConfigDescriptor == nil {
		return "", 0, errors.New("mp4a sample entry has no esds decoder configuration")
	}
	dc := e.Esds.DecConfigDescriptor
	if dc.ObjectType != 0x40 {
		return fmt.Sprintf("mp4a.%02X", dc.ObjectType), 0, nil
	}
	if dc.DecSpecificInfo == nil || len(dc.DecSpecificInfo.DecConfig) == 0 {
		return "", 0, errors.New("AAC esds has no AudioSpecificConfig")
	}
	asc, err := aac.DecodeAudioSpecificConfig(bytes.NewReader(dc.DecSpecificInfo.DecConfig))
	if err != nil {
		return "", 0, fmt.Errorf("AudioSpecificConfig: %w", err)
	}
	return fmt.Sprintf("mp4a.40.%d", asc.ObjectType), int(asc.ChannelConfiguration), nil
}

// readSegment reads one media segment's boxes (not its sample data, but for
// the first sample of a video segment, which is checked to be an IDR).
func readSegment(path string, tr *Track) (Segment, error) {
	f, err := os.Open(path)
	if errors.Is(err, fs.ErrNotExist) {
		return Segment{}, errors.New("missing")
	}
	if err != nil {
		return Segment{}, fmt.Errorf("open: %w", errors.Unwrap(err)) // no server path in the message
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return Segment{}, err
	}
	mf, err := mp4.DecodeFile(f, mp4.WithDecodeMode(mp4.DecModeLazyMdat))
	if err != nil {
		return Segment{}, fmt.Errorf("not an MP4 media segment: %w", err)
	}
	var frags []*mp4.Fragment
	for _, s := range mf.Segments {
		frags = append(frags, s.Fragments...)
	}
	if len(frags) == 0 {
		return Segment{}, errors.New("no moof/mdat fragment")
	}
	g := Segment{Size: fi.Size()}
	if err := checkLayout(mf, frags, g.Size); err != nil {
		return Segment{}, err
	}
	for i, fr := range frags {
		if fr.Moof == nil || len(fr.Moof.Trafs) != 1 {
			return Segment{}, fmt.Errorf("fragment %d: want one track fragment", i+1)
		}
		traf := fr.Moof.Traf
		if traf.Tfdt == nil {
			return Segment{}, fmt.Errorf("fragment %d: no tfdt (base media decode time)", i+1)
		}
		if i == 0 {
			g.Start = traf.Tfdt.BaseMediaDecodeTime()
		} else if traf.Tfdt.BaseMediaDecodeTime() != g.Start+g.Duration {
			return Segment{}, fmt.Errorf("fragment %d: decode time %d does not follow %d", i+1, traf.Tfdt.BaseMediaDecodeTime(), g.Start+g.Duration)
		}
		for _, trun := range traf.Truns {
			g.Duration += trun.AddSampleDefaultValues(traf.Tfhd, tr.trex)
			g.Samples += len(trun.Samples)
		}
		if err := checkSamples(i, fr); err != nil {
			return Segment{}, err
		}
		if i > 0 {
			continue
		}
		if len(traf.Truns) == 0 || len(traf.Truns[0].Samples) == 0 {
			return Segment{}, errors.New("first fragment has no samples")
		}
		trun := traf.Truns[0]
		first := trun.Samples[0]
		base := fr.Moof.StartPos
		if traf.Tfhd.HasBaseDataOffset() {
			base = traf.Tfhd.BaseDataOffset
		}
		if !trun.HasDataOffset() {
			return Segment{}, errors.New("first track run has no data offset")
		}
		// Offsets in a file on disk: far below 2^63, and checked against its size.
		off := int64(base) + int64(trun.DataOffset)                       //nolint:gosec // G115: see above
		g.Moof, g.KeyEnd = int64(fr.Moof.StartPos), off+int64(first.Size) //nolint:gosec // G115: see above
		if g.KeyEnd > g.Size || off < g.Moof {
			return Segment{}, fmt.Errorf("first sample [%d, %d) lies outside the file (%d bytes)", off, g.KeyEnd, g.Size)
		}
		if tr.Kind != "video" {
			continue
		}
		if !first.IsSync() {
			return Segment{}, errors.New("does not start with a sync sample (every segment must start with a keyframe)")
		}
		data := make([]byte, first.Size)
		if _, err := f.ReadAt(data, off); err != nil {
			return Segment{}, fmt.Errorf("read first sample: %w", err)
		}
		if err := checkIDR(tr.Codec, data); err != nil {
			return Segment{}, err
		}
	}
	if g.Duration == 0 {
		return Segment{}, errors.New("segment has no duration")
	}
	return g, nil
}

// checkIDR holds AVC and HEVC segments to an IDR picture at their start,
// and AV1 segments to a shown KEY_FRAME: an open-GOP I picture (HEVC CRA,
// an AV1 forward key frame) is a sync sample too, but the frames after it
// may reference the previous segment.
func checkIDR(codec string, sample []byte) error {
	switch codec[:4] {
	case "avc1", "avc3":
		if !avc.IsIDRSample(sample) {
			return errors.New("first picture is not an IDR (want a closed GOP at every segment start)")
		}
	case "hvc1", "hev1":
		if !hevc.IsIDRSample(sample) {
			return errors.New("first picture is not an IDR (want a closed GOP at every segment start)")
		}
	case "av01":
		return av1KeyFrame(sample)
	}
	return nil
}

// checkLayout holds a segment file to its boxes: their sizes add up to the
// file's (a truncated file, or bytes after the last box, fail), and every
// fragment is a moof followed by its mdat.
func checkLayout(mf *mp4.File, frags []*mp4.Fragment, size int64) error {
	var sum uint64
	for _, b := range mf.Children {
		sum += b.Size()
	}
	for _, fr := range frags {
		if fr.Mdat == nil {
			return errors.New("a fragment has no mdat box")
		}
	}
	if sum != uint64(size) { //nolint:gosec // G115: a file size is never negative
		return fmt.Errorf("its boxes add up to %d bytes but the file holds %d (truncated or padded)", sum, size)
	}
	return nil
}

// checkSamples holds fragment i's track runs to its mdat: the runs' sample
// data lies inside the mdat payload, run after run, and fills it exactly, so
// a sample of the wrong size or a cut mdat is found without reading it.
func checkSamples(i int, fr *mp4.Fragment) error {
	traf, mdat := fr.Moof.Traf, fr.Mdat
	payload := mdat.PayloadAbsoluteOffset()
	end := mdat.StartPos + mdat.Size()
	base := fr.Moof.StartPos
	if traf.Tfhd.HasBaseDataOffset() {
		base = traf.Tfhd.BaseDataOffset
	}
	next := payload
	for j, trun := range traf.Truns {
		start := next
		if trun.HasDataOffset() {
			start = uint64(int64(base) + int64(trun.DataOffset)) //nolint:gosec // G115: checked against the mdat just below
		} else if j == 0 {
			return fmt.Errorf("fragment %d: track run has no data offset", i+1)
		}
		if start != next {
			return fmt.Errorf("fragment %d: track run %d's data starts at byte %d, want %d (the mdat payload or the end of the previous run)", i+1, j+1, start, next)
		}
		var n uint64
		for _, smp := range trun.Samples {
			n += uint64(smp.Size)
		}
		next = start + n
		if next > end {
			return fmt.Errorf("fragment %d: samples need %d bytes past byte %d, but the mdat ends at %d", i+1, n, start, end)
		}
	}
	if next != end {
		return fmt.Errorf("fragment %d: samples fill %d of the mdat's %d payload bytes", i+1, next-payload, end-payload)
	}
	return nil
}
