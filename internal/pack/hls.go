package pack

import (
	"cmp"
	"fmt"
	"slices"
	"strconv"
	"strings"

	"github.com/Eyevinn/hls-m3u8/m3u8"
)

// audioGroup is the GROUP-ID of the audio renditions in a codec: "aac"
// for mp4a.40.2, "ec-3" for E-AC-3.
func audioGroup(codec string) string {
	if fam := codecFamily(codec); fam != "mp4a" {
		return fam
	}
	return "aac"
}

// floatPrecision is the decimals of EXTINF and FRAME-RATE: microseconds, as
// ffmpeg writes them, so that the durations add up to the stream's.
const floatPrecision = 6

// mediaPlaylist is a VOD media playlist of s, or its I-frame playlist: one
// entry a segment, a byte range from the segment's moof through its first
// sample, lasting until the next segment's I-frame.
func mediaPlaylist(s *Stream, target int, iframes bool) []byte {
	p := newMedia(len(s.Segments), target, m3u8.VOD)
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
	return encodeMedia(p)
}

// newMedia is an empty media playlist of kind for n segments, every
// one independent, with target as its EXT-X-TARGETDURATION.
func newMedia(n, target int, kind m3u8.MediaType) *m3u8.MediaPlaylist {
	p, err := m3u8.NewMediaPlaylist(0, uint(max(n, 1)))
	if err != nil {
		panic(err) // only for a window larger than the capacity
	}
	p.SetWritePrecision(floatPrecision)
	p.MediaType = kind
	p.SetIndependentSegments(true)
	p.SetTargetDuration(uint(target))
	return p
}

// encodeMedia writes a media playlist out. Version 6 at least: from it on
// EXTINF is compared with the target duration rounded to the nearest
// second (before, rounded up), which is how the target is chosen.
func encodeMedia(p *m3u8.MediaPlaylist) []byte {
	v, _ := p.CalcMinVersion()
	p.SetVersion(max(v, 6))
	return p.Encode().Bytes()
}

// audioSet is one audio GROUP-ID: the renditions in one codec, and the
// most any of them adds to a variant's bit rates.
type audioSet struct {
	id        string
	codec     string
	alts      []*m3u8.Alternative
	peak, avg int64
}

// audioSets groups the ladder's audio renditions by codec, in the order
// they first appear. Within a group every NAME differs (uniqueName) and
// one rendition is DEFAULT: the one the plan marks, else the group's first.
func audioSets(l Ladder, p *Packed) []*audioSet {
	target := float64(p.Target)
	alts := make([]audioAlt, len(l.Audio))
	for i, r := range l.Audio {
		s := p.Audio[i]
		alts[i] = audioAlt{Rendition: r, codec: s.Codec, channels: s.Channels, peak: s.Peak(target, false), avg: s.Average(false)}
	}
	return groupAudio(alts)
}

// audioAlt is one audio rendition of a master playlist: what the plan
// says of it, and what its stream measures (or was held to).
type audioAlt struct {
	Rendition
	codec     string
	channels  int
	peak, avg int64
}

// groupAudio groups audio renditions by codec: see audioSets.
func groupAudio(alts []audioAlt) []*audioSet {
	var sets []*audioSet
	for _, a := range alts {
		id := audioGroup(a.codec)
		k := slices.IndexFunc(sets, func(g *audioSet) bool { return g.id == id })
		if k < 0 {
			k = len(sets)
			sets = append(sets, &audioSet{id: id, codec: a.codec})
		}
		g := sets[k]
		g.alts = append(g.alts, &m3u8.Alternative{
			Type: "AUDIO", GroupId: id, Name: uniqueName(g.alts, cmp.Or(a.Name, a.Language, "Audio")), Language: a.Language,
			Default: a.Default, Autoselect: !a.Commentary,
			Channels: &m3u8.Channels{Amount: a.channels}, URI: a.Playlist,
		})
		g.peak = max(g.peak, a.peak)
		g.avg = max(g.avg, a.avg)
	}
	for _, g := range sets {
		if !slices.ContainsFunc(g.alts, func(a *m3u8.Alternative) bool { return a.Default }) {
			g.alts[0].Default = true
		}
	}
	return sets
}

// subtitleGroup is the GROUP-ID of the subtitle renditions.
const subtitleGroup = "subs"

// subtitleAlternatives are the EXT-X-MEDIA TYPE=SUBTITLES of the ladder:
// forced subtitles are FORCED and picked by players for a matching audio
// language only; SDH carries Apple's characteristics for them; names
// differ within the group (uniqueName).
func subtitleAlternatives(l Ladder) []*m3u8.Alternative {
	var alts []*m3u8.Alternative
	for _, r := range l.Subtitles {
		a := &m3u8.Alternative{Type: "SUBTITLES", GroupId: subtitleGroup, Name: uniqueName(alts, cmp.Or(r.Name, r.Language, "Subtitles")), Language: r.Language,
			Default: r.Default && !r.Forced, Autoselect: true, Forced: r.Forced, URI: r.Playlist}
		if r.HearingImpaired {
			a.Characteristics = "public.accessibility.describes-spoken-dialog,public.accessibility.describes-music-and-sound"
		}
		alts = append(alts, a)
	}
	return alts
}

// uniqueName is name, or "name (2)", "name (3)", ... where a rendition of
// the group has it already: names differ within a group (RFC 8216bis
// 4.4.6.1.1).
func uniqueName(group []*m3u8.Alternative, name string) string {
	taken := func(n string) bool {
		return slices.ContainsFunc(group, func(a *m3u8.Alternative) bool { return a.Name == n })
	}
	unique := name
	for n := 2; taken(unique); n++ {
		unique = fmt.Sprintf("%s (%d)", name, n)
	}
	return unique
}

// newMaster is an empty master playlist of independent segments, its
// rates to the millisecond.
func newMaster() *m3u8.MasterPlaylist {
	m := m3u8.NewMasterPlaylist()
	m.SetWritePrecision(3)
	m.SetIndependentSegments(true)
	return m
}

// variantParams is what a video variant of codec and size says of itself
// with audio group g (its renditions, and its codec beside the video's);
// the bit rates are the caller's.
func variantParams(codec string, width, height int, fps, videoRange string, g *audioSet) m3u8.VariantParams {
	return m3u8.VariantParams{
		Codecs:       strings.Join(slices.DeleteFunc([]string{codec, g.codec}, func(c string) bool { return c == "" }), ","),
		Resolution:   strconv.Itoa(width) + "x" + strconv.Itoa(height),
		FrameRate:    frameRate(fps),
		VideoRange:   videoRange,
		Alternatives: slices.Clip(g.alts),
		Audio:        g.id,
	}
}

// encodeMaster writes a master playlist out at the least version it needs.
func encodeMaster(m *m3u8.MasterPlaylist) []byte {
	v, _ := m.CalcMinVersion()
	m.SetVersion(v)
	return m.Encode().Bytes()
}

// masterPlaylist lists every video rendition once per audio group (with
// that group's codec and bit rate), then the I-frame playlists.
func masterPlaylist(l Ladder, p *Packed) []byte {
	m := newMaster()
	target := float64(p.Target)
	sets := audioSets(l, p)
	if len(sets) == 0 {
		sets = []*audioSet{{}} // video only
	}
	subs := subtitleAlternatives(l)
	for _, g := range sets {
		for i, r := range l.Video {
			s := p.Video[i]
			params := variantParams(s.Codec, s.Width, s.Height, l.FrameRate, l.VideoRange, g)
			params.Bandwidth = clampRate(s.Peak(target, false) + g.peak)
			params.AverageBandwidth = clampRate(s.Average(false) + g.avg)
			params.Alternatives = append(params.Alternatives, subs...)
			if len(subs) > 0 {
				params.Subtitles = subtitleGroup
			}
			m.Append(r.Playlist, nil, params)
		}
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
	return encodeMaster(m)
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
