package pack

import (
	"fmt"
	"slices"
	"strconv"
	"strings"

	"github.com/Eyevinn/hls-m3u8/m3u8"
)

// audioGroup is the GROUP-ID of the audio renditions.
const audioGroup = "audio"

// floatPrecision is the decimals of EXTINF and FRAME-RATE: microseconds, as
// ffmpeg writes them, so that the durations add up to the stream's.
const floatPrecision = 6

// mediaPlaylist is a VOD media playlist of s, or its I-frame playlist: one
// entry a segment, a byte range from the segment's moof through its first
// sample, lasting until the next segment's I-frame.
func mediaPlaylist(s *Stream, target int, iframes bool) []byte {
	p, err := m3u8.NewMediaPlaylist(0, uint(len(s.Segments)))
	if err != nil {
		panic(err) // only for a window larger than the capacity
	}
	p.SetWritePrecision(floatPrecision)
	p.MediaType = m3u8.VOD
	p.SetIndependentSegments(true)
	p.SetTargetDuration(uint(target))
	p.SetDefaultMap(s.Init, 0, 0)
	if iframes {
		p.SetIframeOnly()
	}
	for i, g := range s.Segments {
		seg := &m3u8.MediaSegment{URI: g.Name, Duration: s.SegmentSeconds(i)}
		if iframes {
			seg.Offset, seg.Limit = g.Moof, g.KeyEnd-g.Moof
		}
		if err := p.AppendSegment(seg); err != nil {
			panic(err) // the capacity is the number of segments
		}
	}
	p.Close()
	// Version 6 at least: from it on EXTINF is compared with the target
	// duration rounded to the nearest second (before, rounded up), which is
	// how the target was chosen.
	v, _ := p.CalcMinVersion()
	p.SetVersion(max(v, 6))
	return p.Encode().Bytes()
}

// masterPlaylist lists every video rendition with its audio group, then its
// I-frame playlist.
func masterPlaylist(l Ladder, p *Packed) []byte {
	m := m3u8.NewMasterPlaylist()
	m.SetWritePrecision(3)
	m.SetIndependentSegments(true)
	target := float64(p.Target)
	var alts []*m3u8.Alternative
	var audioPeak, audioAvg int64
	var audioCodecs []string
	for i, r := range l.Audio {
		s := p.Audio[i]
		name := r.Name
		if name == "" {
			name = r.Language
		}
		if name == "" || slices.ContainsFunc(alts, func(a *m3u8.Alternative) bool { return a.Name == name }) {
			name = fmt.Sprintf("audio %d", i+1)
		}
		alts = append(alts, &m3u8.Alternative{
			Type: "AUDIO", GroupId: audioGroup, Name: name, Language: r.Language,
			Default: r.Default || (i == 0 && !anyDefault(l.Audio)), Autoselect: true,
			Channels: &m3u8.Channels{Amount: s.Channels}, URI: r.Playlist,
		})
		audioPeak = max(audioPeak, s.Peak(target, false))
		audioAvg = max(audioAvg, s.Average(false))
		if !slices.Contains(audioCodecs, s.Codec) {
			audioCodecs = append(audioCodecs, s.Codec)
		}
	}
	for i, r := range l.Video {
		s := p.Video[i]
		params := m3u8.VariantParams{
			Bandwidth:        clampRate(s.Peak(target, false) + audioPeak),
			AverageBandwidth: clampRate(s.Average(false) + audioAvg),
			Codecs:           strings.Join(append([]string{s.Codec}, audioCodecs...), ","),
			Resolution:       strconv.Itoa(s.Width) + "x" + strconv.Itoa(s.Height),
			FrameRate:        frameRate(l.FrameRate),
			VideoRange:       l.VideoRange,
			Alternatives:     alts,
		}
		if len(alts) > 0 {
			params.Audio = audioGroup
		}
		m.Append(r.Playlist, nil, params)
	}
	for i, r := range l.Video {
		s := p.Video[i]
		m.Append(r.IFrames, nil, m3u8.VariantParams{
			Iframe:           true,
			Bandwidth:        clampRate(s.Peak(target, true)),
			AverageBandwidth: clampRate(s.Average(true)),
			Codecs:           s.Codec,
			Resolution:       strconv.Itoa(s.Width) + "x" + strconv.Itoa(s.Height),
			VideoRange:       l.VideoRange,
		})
	}
	v, _ := m.CalcMinVersion()
	m.SetVersion(v)
	return m.Encode().Bytes()
}

func anyDefault(rs []Rendition) bool {
	return slices.ContainsFunc(rs, func(r Rendition) bool { return r.Default })
}

// clampRate fits a bit rate into the playlist attribute's 32 bits.
func clampRate(r int64) uint32 { return uint32(min(max(r, 0), 1<<32-1)) }

// frameRate reads "30000/1001" or "25" as frames per second.
func frameRate(s string) float64 {
	num, den, ok := strings.Cut(s, "/")
	n, err := strconv.ParseFloat(num, 64)
	if err != nil {
		return 0
	}
	if !ok {
		return n
	}
	d, err := strconv.ParseFloat(den, 64)
	if err != nil || d == 0 {
		return 0
	}
	return n / d
}
