package pack

import (
	"cmp"
	"slices"
	"strconv"
	"strings"

	"github.com/Eyevinn/hls-m3u8/m3u8"
)

// LiveSegment is one entry of a live media playlist.
type LiveSegment struct {
	URI      string
	Init     string // its init segment's URI: EXT-X-MAP is written where it changes
	Duration float64
}

// LiveMedia is an EVENT media playlist of segs, which only ever grows:
// RFC 8216 lets an EVENT playlist append segments and, with ended,
// EXT-X-ENDLIST, and nothing else. target must not change while it grows.
func LiveMedia(target int, segs []LiveSegment, ended bool) []byte {
	p, err := m3u8.NewMediaPlaylist(0, uint(max(len(segs), 1)))
	if err != nil {
		panic(err) // only for a window larger than the capacity
	}
	p.SetWritePrecision(floatPrecision)
	p.MediaType = m3u8.EVENT
	p.SetIndependentSegments(true)
	p.SetTargetDuration(uint(target))
	for _, s := range segs {
		if err := p.AppendSegment(&m3u8.MediaSegment{URI: s.URI, Duration: s.Duration, Map: &m3u8.Map{URI: s.Init}}); err != nil {
			panic(err) // the capacity is the number of segments
		}
	}
	if ended {
		p.Close()
	}
	v, _ := p.CalcMinVersion()
	p.SetVersion(max(v, 6))
	return p.Encode().Bytes()
}

// LiveRendition is one rendition of a live master playlist: what the plan
// says of it (its rate, size and names) and the codec its first init
// segment says.
type LiveRendition struct {
	Playlist  string
	Codec     string
	Bandwidth int64 // video: the rung's maxrate; audio: its bit rate
	// Video.
	Width, Height int
	// Audio.
	Language, Name      string
	Default, Commentary bool
	Channels            int
}

// LiveMaster is the master playlist of a live ladder. A live playlist's
// segments are not all there to measure, so BANDWIDTH is what the encoder
// was held to: each rung's maxrate plus its audio group's highest rate.
func LiveMaster(video, audio []LiveRendition, fps, videoRange string) []byte {
	m := m3u8.NewMasterPlaylist()
	m.SetWritePrecision(3)
	m.SetIndependentSegments(true)
	type group struct {
		id, codec string
		alts      []*m3u8.Alternative
		rate      int64
	}
	var groups []*group
	for _, a := range audio {
		id := audioGroup(a.Codec)
		k := slices.IndexFunc(groups, func(g *group) bool { return g.id == id })
		if k < 0 {
			k = len(groups)
			groups = append(groups, &group{id: id, codec: a.Codec})
		}
		g := groups[k]
		g.alts = append(g.alts, &m3u8.Alternative{
			Type: "AUDIO", GroupId: id, Name: uniqueName(g.alts, cmp.Or(a.Name, a.Language, "Audio")), Language: a.Language,
			Default: a.Default, Autoselect: !a.Commentary, Channels: &m3u8.Channels{Amount: a.Channels}, URI: a.Playlist,
		})
		g.rate = max(g.rate, a.Bandwidth)
	}
	for _, g := range groups {
		if !slices.ContainsFunc(g.alts, func(a *m3u8.Alternative) bool { return a.Default }) {
			g.alts[0].Default = true
		}
	}
	if len(groups) == 0 {
		groups = []*group{{}} // video only
	}
	for _, g := range groups {
		for _, v := range video {
			m.Append(v.Playlist, nil, m3u8.VariantParams{
				Bandwidth:    clampRate(v.Bandwidth + g.rate),
				Codecs:       strings.Join(slices.DeleteFunc([]string{v.Codec, g.codec}, func(c string) bool { return c == "" }), ","),
				Resolution:   strconv.Itoa(v.Width) + "x" + strconv.Itoa(v.Height),
				FrameRate:    frameRate(fps),
				VideoRange:   videoRange,
				Alternatives: slices.Clip(g.alts),
				Audio:        g.id,
			})
		}
	}
	v, _ := m.CalcMinVersion()
	m.SetVersion(v)
	return m.Encode().Bytes()
}
