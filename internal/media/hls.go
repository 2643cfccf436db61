package media

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"math"
	"os"
	"path/filepath"
	"strconv"
	"strings"
)

// mediaPlaylist is an HLS media playlist as ffmpeg's dash muxer writes it.
type mediaPlaylist struct {
	Init     string // #EXT-X-MAP URI
	Target   int    // #EXT-X-TARGETDURATION
	Segments []segment
	Ended    bool // #EXT-X-ENDLIST
}

type segment struct {
	URI      string
	Duration float64
}

// parseMediaPlaylist reads a media playlist.
func parseMediaPlaylist(r io.Reader) (*mediaPlaylist, error) {
	sc := bufio.NewScanner(r)
	var pl mediaPlaylist
	var dur float64
	haveDur, first := false, true
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if first {
			if line != "#EXTM3U" {
				return nil, errors.New("parse media playlist: no #EXTM3U header")
			}
			first = false
			continue
		}
		switch {
		case line == "":
		case strings.HasPrefix(line, "#EXT-X-MAP:"):
			pl.Init = parseAttrs(strings.TrimPrefix(line, "#EXT-X-MAP:"))["URI"]
		case strings.HasPrefix(line, "#EXT-X-TARGETDURATION:"):
			pl.Target, _ = strconv.Atoi(strings.TrimPrefix(line, "#EXT-X-TARGETDURATION:"))
		case strings.HasPrefix(line, "#EXTINF:"):
			v, _, _ := strings.Cut(strings.TrimPrefix(line, "#EXTINF:"), ",")
			d, err := strconv.ParseFloat(v, 64)
			if err != nil || d < 0 {
				return nil, fmt.Errorf("parse media playlist: bad EXTINF %q", line)
			}
			dur, haveDur = d, true
		case line == "#EXT-X-ENDLIST":
			pl.Ended = true
		case strings.HasPrefix(line, "#"):
		default:
			if !haveDur {
				return nil, fmt.Errorf("parse media playlist: segment %q without EXTINF", line)
			}
			pl.Segments = append(pl.Segments, segment{URI: line, Duration: dur})
			haveDur = false
		}
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("parse media playlist: %w", err)
	}
	if first {
		return nil, errors.New("parse media playlist: empty")
	}
	return &pl, nil
}

// masterPlaylist is an HLS multivariant playlist.
type masterPlaylist struct {
	Version  int
	Media    []map[string]string // #EXT-X-MEDIA attributes
	Variants []variant
}

type variant struct {
	Attrs map[string]string // #EXT-X-STREAM-INF attributes
	URI   string
}

// parseMasterPlaylist reads a multivariant playlist.
func parseMasterPlaylist(r io.Reader) (*masterPlaylist, error) {
	sc := bufio.NewScanner(r)
	var m masterPlaylist
	var pending map[string]string
	first := true
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if first {
			if line != "#EXTM3U" {
				return nil, errors.New("parse master playlist: no #EXTM3U header")
			}
			first = false
			continue
		}
		switch {
		case line == "":
		case strings.HasPrefix(line, "#EXT-X-VERSION:"):
			m.Version, _ = strconv.Atoi(strings.TrimPrefix(line, "#EXT-X-VERSION:"))
		case strings.HasPrefix(line, "#EXT-X-MEDIA:"):
			m.Media = append(m.Media, parseAttrs(strings.TrimPrefix(line, "#EXT-X-MEDIA:")))
		case strings.HasPrefix(line, "#EXT-X-STREAM-INF:"):
			pending = parseAttrs(strings.TrimPrefix(line, "#EXT-X-STREAM-INF:"))
		case strings.HasPrefix(line, "#"):
		default:
			if pending == nil {
				return nil, fmt.Errorf("parse master playlist: URI %q without EXT-X-STREAM-INF", line)
			}
			m.Variants = append(m.Variants, variant{Attrs: pending, URI: line})
			pending = nil
		}
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("parse master playlist: %w", err)
	}
	if first {
		return nil, errors.New("parse master playlist: empty")
	}
	return &m, nil
}

// parseAttrs parses an HLS attribute list: KEY=value,KEY="quoted, value".
// Quotes are removed from quoted values.
func parseAttrs(s string) map[string]string {
	attrs := map[string]string{}
	for s != "" {
		key, rest, ok := strings.Cut(s, "=")
		if !ok {
			break
		}
		var val string
		if strings.HasPrefix(rest, `"`) {
			end := strings.IndexByte(rest[1:], '"')
			if end < 0 {
				val, rest = rest[1:], ""
			} else {
				val, rest = rest[1:end+1], rest[end+2:]
			}
			rest = strings.TrimPrefix(rest, ",")
		} else {
			val, rest, _ = strings.Cut(rest, ",")
		}
		attrs[strings.TrimSpace(key)] = val
		s = rest
	}
	return attrs
}

// streamStats are measured from one media playlist and the files it names.
type streamStats struct {
	Playlist string // name of the media playlist
	Init     string
	Bytes    int64 // init + segments + playlist
	Duration float64
	Peak     int64 // highest segment bitrate, bits/s
	Average  int64 // bits/s over the whole stream
	Codec    string
	Segments []segment
}

// measureStream reads dir/name and sizes its init and segments.
func measureStream(dir, name string) (*streamStats, error) {
	data, err := os.ReadFile(filepath.Join(dir, name))
	if err != nil {
		return nil, fmt.Errorf("read media playlist: %w", err)
	}
	mp, err := parseMediaPlaylist(bytes.NewReader(data))
	if err != nil {
		return nil, fmt.Errorf("%s: %w", name, err)
	}
	if mp.Init == "" || len(mp.Segments) == 0 {
		return nil, fmt.Errorf("%s: no init segment or no media segments", name)
	}
	st := &streamStats{Playlist: name, Init: mp.Init, Bytes: int64(len(data)), Segments: mp.Segments}
	init, err := os.ReadFile(filepath.Join(dir, localName(mp.Init)))
	if err != nil {
		return nil, fmt.Errorf("read init segment: %w", err)
	}
	st.Bytes += int64(len(init))
	st.Codec = codecString(init)
	var payload int64
	for _, s := range mp.Segments {
		fi, err := os.Stat(filepath.Join(dir, localName(s.URI)))
		if err != nil {
			return nil, fmt.Errorf("stat segment: %w", err)
		}
		payload += fi.Size()
		st.Duration += s.Duration
		if s.Duration > 0 {
			st.Peak = max(st.Peak, int64(math.Ceil(float64(fi.Size())*8/s.Duration)))
		}
	}
	st.Bytes += payload
	if st.Duration > 0 {
		st.Average = int64(math.Ceil(float64(payload) * 8 / st.Duration))
	}
	return st, nil
}

// localName keeps a playlist URI inside its directory: only a base name.
func localName(uri string) string { return filepath.Base(filepath.FromSlash(uri)) }

// writeMaster (re)writes dir/master.m3u8 from the media playlists that ffmpeg's
// dash muxer wrote (media_<output stream>.m3u8: the rungs, then audio), with
// BANDWIDTH and AVERAGE-BANDWIDTH measured from the segments on disk and
// CODECS read from the init segments.
func (pl *Plan) writeMaster(dir string) error {
	var audio *streamStats
	if len(pl.Audio) > 0 {
		var err error
		if audio, err = measureStream(dir, fmt.Sprintf("media_%d.m3u8", len(pl.Rungs))); err != nil {
			return fmt.Errorf("measure audio: %w", err)
		}
	}
	var b strings.Builder
	b.WriteString("#EXTM3U\n#EXT-X-VERSION:7\n#EXT-X-INDEPENDENT-SEGMENTS\n")
	if audio != nil {
		a := pl.Audio[0]
		lang := ""
		if a.Language != "" {
			lang = fmt.Sprintf(`LANGUAGE="%s",`, hlsQuoted(a.Language))
		}
		fmt.Fprintf(&b, "#EXT-X-MEDIA:TYPE=AUDIO,GROUP-ID=\"audio\",NAME=\"audio\",%sDEFAULT=YES,AUTOSELECT=YES,CHANNELS=\"%d\",URI=\"%s\"\n",
			lang, a.Channels, audio.Playlist)
	}
	for i, r := range pl.Rungs {
		v, err := measureStream(dir, fmt.Sprintf("media_%d.m3u8", i))
		if err != nil {
			return fmt.Errorf("measure rung %s: %w", r.Name, err)
		}
		peak, avg, codecs := v.Peak, v.Average, v.Codec
		if audio != nil {
			peak += audio.Peak
			avg += audio.Average
			codecs += "," + audio.Codec
		}
		fmt.Fprintf(&b, "#EXT-X-STREAM-INF:BANDWIDTH=%d,AVERAGE-BANDWIDTH=%d,RESOLUTION=%dx%d,CODECS=\"%s\",FRAME-RATE=%.3f",
			peak, avg, r.Width, r.Height, codecs, pl.FPS)
		if audio != nil {
			b.WriteString(`,AUDIO="audio"`)
		}
		fmt.Fprintf(&b, "\n%s\n", v.Playlist)
	}
	return writeFileAtomic(filepath.Join(dir, MasterName), []byte(b.String()))
}

func hlsQuoted(s string) string {
	return strings.Map(func(r rune) rune {
		if r == '"' || r == '\n' || r == '\r' {
			return -1
		}
		return r
	}, s)
}

// writeFileAtomic writes data to a temporary name beside path and renames it.
func writeFileAtomic(path string, data []byte) error {
	f, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".*")
	if err != nil {
		return fmt.Errorf("write %s: %w", filepath.Base(path), err)
	}
	_, werr := f.Write(data)
	cerr := f.Close()
	if err := errors.Join(werr, cerr); err != nil {
		_ = os.Remove(f.Name())
		return fmt.Errorf("write %s: %w", filepath.Base(path), err)
	}
	if err := os.Chmod(f.Name(), 0o644); err != nil {
		_ = os.Remove(f.Name())
		return fmt.Errorf("write %s: %w", filepath.Base(path), err)
	}
	if err := os.Rename(f.Name(), path); err != nil {
		_ = os.Remove(f.Name())
		return fmt.Errorf("write %s: %w", filepath.Base(path), err)
	}
	return nil
}

// codecString returns the RFC 6381 codec of an init segment: avc1.PPCCLL from
// its avcC box, hvc1 from hvcC, or mp4a.40.N from its esds box; "" if unknown.
func codecString(init []byte) string {
	if i := bytes.Index(init, []byte("avcC")); i >= 0 && len(init) >= i+8 {
		c := init[i+4:]
		return fmt.Sprintf("avc1.%02x%02x%02x", c[1], c[2], c[3])
	}
	if bytes.Contains(init, []byte("hvcC")) {
		return "hvc1"
	}
	if i := bytes.Index(init, []byte("esds")); i >= 0 {
		if aot, oti, ok := parseESDS(init[i+4:]); ok {
			if oti == 0x40 {
				return fmt.Sprintf("mp4a.40.%d", aot)
			}
			return fmt.Sprintf("mp4a.%02x", oti)
		}
	}
	return ""
}

// parseESDS reads the audio object type and object type indication from the
// body of an esds box (after its type).
func parseESDS(b []byte) (aot int, oti byte, ok bool) {
	if len(b) < 4 {
		return 0, 0, false
	}
	b = b[4:] // version and flags
	desc := func(b []byte) (tag byte, body, rest []byte, ok bool) {
		if len(b) < 2 {
			return 0, nil, nil, false
		}
		tag, b = b[0], b[1:]
		n := 0
		for i := 0; i < 4; i++ {
			if len(b) == 0 {
				return 0, nil, nil, false
			}
			c := b[0]
			b = b[1:]
			n = n<<7 | int(c&0x7f)
			if c&0x80 == 0 {
				break
			}
		}
		if n > len(b) {
			n = len(b) // tolerate a length past the end of a truncated box
		}
		return tag, b[:n], b[n:], true
	}
	tag, es, _, ok := desc(b)
	if !ok || tag != 0x03 || len(es) < 3 {
		return 0, 0, false
	}
	flags := es[2]
	es = es[3:]
	if flags&0x80 != 0 {
		if len(es) < 2 {
			return 0, 0, false
		}
		es = es[2:]
	}
	if flags&0x40 != 0 {
		if len(es) < 1 || len(es) < 1+int(es[0]) {
			return 0, 0, false
		}
		es = es[1+int(es[0]):]
	}
	if flags&0x20 != 0 {
		if len(es) < 2 {
			return 0, 0, false
		}
		es = es[2:]
	}
	tag, dc, _, ok := desc(es)
	if !ok || tag != 0x04 || len(dc) < 13 {
		return 0, 0, false
	}
	oti = dc[0]
	tag, dsi, _, ok := desc(dc[13:])
	if !ok || tag != 0x05 || len(dsi) < 1 {
		return 0, oti, oti != 0x40
	}
	aot = int(dsi[0] >> 3)
	if aot == 31 && len(dsi) >= 2 {
		aot = 32 + int(binary.BigEndian.Uint16(dsi[:2])>>5&0x3f)
	}
	return aot, oti, true
}
