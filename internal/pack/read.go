package pack

import (
	"fmt"
	"os"
	"path/filepath"

	"github.com/Eyevinn/dash-mpd/mpd"
	"github.com/Eyevinn/hls-m3u8/m3u8"
)

// ReadMaster parses a master (multivariant) playlist.
func ReadMaster(path string) (*m3u8.MasterPlaylist, error) {
	p, err := readPlaylist(path, m3u8.MASTER)
	if err != nil {
		return nil, err
	}
	return p.(*m3u8.MasterPlaylist), nil
}

// ReadMedia parses a media playlist.
func ReadMedia(path string) (*m3u8.MediaPlaylist, error) {
	p, err := readPlaylist(path, m3u8.MEDIA)
	if err != nil {
		return nil, err
	}
	return p.(*m3u8.MediaPlaylist), nil
}

func readPlaylist(path string, want m3u8.ListType) (m3u8.Playlist, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	p, kind, err := m3u8.DecodeFrom(f, true)
	if err != nil {
		return nil, fmt.Errorf("parse %s: %w", filepath.Base(path), err)
	}
	if kind != want {
		return nil, fmt.Errorf("parse %s: not a %s playlist", filepath.Base(path), map[m3u8.ListType]string{m3u8.MASTER: "master", m3u8.MEDIA: "media"}[want])
	}
	return p, nil
}

// Segments lists a media playlist's segments (a VOD playlist has no empty
// slots at its end).
func Segments(p *m3u8.MediaPlaylist) []*m3u8.MediaSegment {
	var out []*m3u8.MediaSegment
	for _, s := range p.Segments {
		if s != nil {
			out = append(out, s)
		}
	}
	return out
}

// ReadPlaylistStream reads a media playlist in dir and the stream it names.
// Only base names are followed: a playlist cannot lead outside dir.
func ReadPlaylistStream(dir, playlist string) (*Stream, *m3u8.MediaPlaylist, error) {
	p, err := ReadMedia(filepath.Join(dir, LocalName(playlist)))
	if err != nil {
		return nil, nil, err
	}
	if p.Map == nil || p.Map.URI == "" {
		return nil, nil, fmt.Errorf("%s: no EXT-X-MAP init segment", playlist)
	}
	segs := Segments(p)
	names := make([]string, len(segs))
	for i, s := range segs {
		names[i] = LocalName(s.URI)
	}
	s, err := ReadStream(dir, LocalName(p.Map.URI), names)
	if err != nil {
		return nil, nil, fmt.Errorf("%s: %w", playlist, err)
	}
	for i, g := range s.Segments {
		// EXTINF is written to the microsecond; a segment may differ from
		// it by at most one of its samples.
		got := s.SegmentSeconds(i)
		tol := got/float64(max(1, g.Samples)) + 1e-6
		if d := got - segs[i].Duration; d > tol || d < -tol {
			return nil, nil, fmt.Errorf("%s: segment %s lasts %.6f s, but EXTINF says %.6f s", playlist, g.Name, got, segs[i].Duration)
		}
	}
	return s, p, nil
}

// ReadManifest parses a DASH MPD.
func ReadManifest(path string) (*mpd.MPD, error) {
	m, err := mpd.ReadFromFile(path)
	if err != nil {
		return nil, fmt.Errorf("parse %s: %w", filepath.Base(path), err)
	}
	return m, nil
}

// LocalName keeps a playlist URI inside its folder: only its base name.
func LocalName(uri string) string { return filepath.Base(filepath.FromSlash(uri)) }
