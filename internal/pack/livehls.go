package pack

import (
	"bytes"

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
	p := newMedia(len(segs), target, m3u8.EVENT)
	for _, s := range segs {
		if err := p.AppendSegment(&m3u8.MediaSegment{URI: s.URI, Duration: s.Duration, Map: &m3u8.Map{URI: s.Init}}); err != nil {
			panic(err) // the capacity is the number of segments
		}
	}
	if ended {
		p.Close()
	}
	// Players start a playlist without EXT-X-ENDLIST near its end, as they
	// would a live broadcast; this one is a title being made, watched from
	// its start: EXT-X-START says so (hls.js, Safari, ExoPlayer, VLC). The
	// playlist library writes the tag only for an offset other than 0.
	return bytes.Replace(encodeMedia(p), []byte(eventTag), []byte(eventTag+"#EXT-X-START:TIME-OFFSET=0\n"), 1)
}

// eventTag is an EVENT playlist's type line.
const eventTag = "#EXT-X-PLAYLIST-TYPE:EVENT\n"

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
	m := newMaster()
	alts := make([]audioAlt, len(audio))
	for i, a := range audio {
		alts[i] = audioAlt{Rendition: Rendition{Playlist: a.Playlist, Language: a.Language, Name: a.Name, Default: a.Default, Commentary: a.Commentary},
			codec: a.Codec, channels: a.Channels, peak: a.Bandwidth}
	}
	groups := groupAudio(alts)
	if len(groups) == 0 {
		groups = []*audioSet{{}} // video only
	}
	for _, g := range groups {
		for _, v := range video {
			params := variantParams(v.Codec, v.Width, v.Height, fps, videoRange, g)
			params.Bandwidth = clampRate(v.Bandwidth + g.peak)
			m.Append(v.Playlist, nil, params)
		}
	}
	return encodeMaster(m)
}
