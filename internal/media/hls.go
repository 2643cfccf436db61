package media

import (
	"fmt"
	"os"
	"slices"
	"strconv"
	"strings"

	"github.com/herdhq/herd/internal/pack"
)

// The segment names ffmpeg's dash muxer writes for an hls plan, as DASH
// SegmentTemplate patterns: representations are the rungs in order, then the
// audio renditions.
const (
	initTemplate  = "init-$RepresentationID$.m4s"
	mediaTemplate = "chunk-$RepresentationID$-$Number%05d$.m4s"
)

// MediaPlaylistName and IFramePlaylistName name representation i's HLS
// playlists.
func MediaPlaylistName(i int) string  { return fmt.Sprintf("media_%d.m3u8", i) }
func IFramePlaylistName(i int) string { return fmt.Sprintf("iframe_%d.m3u8", i) }

// PackageHLS writes the HLS playlists (media, I-frame and master) and the DASH
// manifest over the segments ffmpeg wrote into dir, from what the segments
// themselves say.
func (pl *Plan) PackageHLS(dir string) (*pack.Packed, error) {
	l, err := pl.ladder(dir)
	if err != nil {
		return nil, err
	}
	return pack.Write(dir, l)
}

// ladder lists dir's renditions for pack.Write.
func (pl *Plan) ladder(dir string) (pack.Ladder, error) {
	l := pack.Ladder{
		Master: MasterName, Manifest: ManifestName,
		InitTemplate: initTemplate, MediaTemplate: mediaTemplate,
		FrameRate: pl.FrameRate(), VideoRange: pl.VideoRange(),
	}
	files, err := os.ReadDir(dir)
	if err != nil {
		return l, fmt.Errorf("package: %w", err)
	}
	rendition := func(i int) (pack.Rendition, error) {
		id := strconv.Itoa(i)
		segs, err := segmentNames(files, id)
		if err != nil {
			return pack.Rendition{}, err
		}
		return pack.Rendition{ID: id, Playlist: MediaPlaylistName(i), Init: "init-" + id + ".m4s", Segments: segs}, nil
	}
	for i := range pl.Rungs {
		r, err := rendition(i)
		if err != nil {
			return l, err
		}
		r.IFrames = IFramePlaylistName(i)
		l.Video = append(l.Video, r)
	}
	for i, a := range pl.Audio {
		r, err := rendition(len(pl.Rungs) + i)
		if err != nil {
			return l, err
		}
		r.Language, r.Name, r.Default, r.Commentary = LanguageTag(a.Language), a.Name, a.Default, a.Commentary
		l.Audio = append(l.Audio, r)
	}
	for k, s := range pl.Subtitles {
		if !s.rendition() {
			continue
		}
		l.Subtitles = append(l.Subtitles, pack.TextRendition{
			ID: "subs_" + strconv.Itoa(k), File: SubtitleFile(k), Playlist: SubtitlePlaylistName(k), Prefix: "subs_" + strconv.Itoa(k) + "_",
			Language: s.Language, Name: s.Name, Default: s.Default, Forced: s.Forced, HearingImpaired: s.HearingImpaired,
		})
	}
	return l, nil
}

// segmentNames lists representation id's media segments in number order.
func segmentNames(files []os.DirEntry, id string) ([]string, error) {
	prefix := "chunk-" + id + "-"
	type seg struct {
		n    int
		name string
	}
	var segs []seg
	for _, f := range files {
		num, ok := strings.CutPrefix(f.Name(), prefix)
		if !ok {
			continue
		}
		num, ok = strings.CutSuffix(num, ".m4s")
		n, err := strconv.Atoi(num)
		if !ok || err != nil || n < 1 {
			return nil, fmt.Errorf("package: unexpected file %s", f.Name())
		}
		segs = append(segs, seg{n, f.Name()})
	}
	if len(segs) == 0 {
		return nil, fmt.Errorf("package: ffmpeg wrote no segments for representation %s", id)
	}
	slices.SortFunc(segs, func(a, b seg) int { return a.n - b.n })
	names := make([]string, len(segs))
	for i, s := range segs {
		names[i] = s.name
	}
	return names, nil
}

// VideoRange is the HLS VIDEO-RANGE of the plan's output picture.
func (pl *Plan) VideoRange() string {
	switch pl.Video.ColorTransfer {
	case "smpte2084":
		return "PQ"
	case "arib-std-b67":
		return "HLG"
	}
	return "SDR"
}

// FrameRate is the HLS FRAME-RATE of the plan's output, exact: 25, or
// 30000/1001.
func (pl *Plan) FrameRate() string { return fpsArg(pl.FPS) }
