package media

import (
	"bytes"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/Eyevinn/dash-mpd/mpd"
	"github.com/Eyevinn/hls-m3u8/m3u8"
	"github.com/asticode/go-astisub"
	"github.com/stretchr/testify/require"

	"github.com/herdhq/herd/internal/job"
	"github.com/herdhq/herd/internal/testenv"
)

const (
	englishSRT = `1
00:00:00,500 --> 00:00:01,750
Hello there.

2
00:00:01,800 --> 00:00:02,600
A cue across the boundary at 2 s.

3
00:00:04,040 --> 00:00:05,500
The last one.
`
	sdhSRT = `1
00:00:00,500 --> 00:00:01,750
[DOOR CREAKS]

2
00:00:03,000 --> 00:00:04,000
[MUSIC PLAYING]
`
	frenchASS = `[Script Info]
ScriptType: v4.00+
PlayResX: 384
PlayResY: 288

[V4+ Styles]
Format: Name, Fontname, Fontsize, PrimaryColour, SecondaryColour, OutlineColour, BackColour, Bold, Italic, Underline, StrikeOut, ScaleX, ScaleY, Spacing, Angle, BorderStyle, Outline, Shadow, Alignment, MarginL, MarginR, MarginV, Encoding
Style: Default,Arial,16,&Hffffff,&Hffffff,&H0,&H0,0,0,0,0,100,100,0,0,1,1,0,2,10,10,10,0

[Events]
Format: Layer, Start, End, Style, Name, MarginL, MarginR, MarginV, Effect, Text
Dialogue: 0,0:00:01.00,0:00:02.00,Default,,0,0,0,,{\i1}Bonjour{\i0} à tous.
Dialogue: 0,0:00:03.20,0:00:03.90,Default,,0,0,0,,{\b1}Attention !{\b0}
`
)

// subtitledClip muxes a 6 s clip with an English SRT (the default), a
// forced French ASS with styling, an English SDH SRT and, when latin1 is
// set, a fourth SRT whose text is not UTF-8, copied as it is.
func subtitledClip(t *testing.T, latin1 bool) string {
	t.Helper()
	dir := t.TempDir()
	write := func(name, body string) string {
		p := filepath.Join(dir, name)
		require.NoError(t, os.WriteFile(p, []byte(body), 0o644))
		return p
	}
	args := []string{"-f", "lavfi", "-i", "testsrc2=size=256x144:rate=25:duration=6", "-f", "lavfi", "-i", "sine=frequency=440:sample_rate=48000:duration=6",
		"-i", write("en.srt", englishSRT), "-i", write("fr.ass", frenchASS), "-i", write("sdh.srt", sdhSRT)}
	if latin1 {
		args = append(args, "-i", write("latin1.srt", "1\n00:00:01,000 --> 00:00:02,500\nCaf\xe9 cr\xe8me\n"))
	}
	for k := range 5 + map[bool]int{true: 1}[latin1] {
		args = append(args, "-map", strconv.Itoa(k))
	}
	args = append(args, "-c:v", "libx264", "-preset", "ultrafast", "-c:a", "aac", "-c:s", "copy",
		"-metadata:s:s:0", "language=eng", "-disposition:s:0", "default",
		"-metadata:s:s:1", "language=fre", "-disposition:s:1", "forced",
		"-metadata:s:s:2", "language=eng", "-disposition:s:2", "hearing_impaired")
	out := filepath.Join(dir, "subs.mkv")
	require.NoError(t, testenv.FFmpeg(append(args, out)...))
	return out
}

// Text subtitles of three kinds come out of web-hls as WebVTT renditions:
// named and tagged from the source, FORCED and SDH marked, cut into
// segments on the video's grid with X-TIMESTAMP-MAP, every cue at its
// source time (a cue over a segment boundary in both segments), the ASS
// styling kept as WebVTT tags; DASH lists each as a text set; a stream
// that does not convert is left out with a note and the job goes on.
func TestSubtitleRenditions(t *testing.T) {
	t.Parallel()
	testenv.NeedFFmpeg(t)
	input := subtitledClip(t, true)
	tools := Tools{}
	info, err := tools.Admit(t.Context(), input, Limits{})
	require.NoError(t, err)
	require.Len(t, info.Subtitles, 4)
	require.NoError(t, tools.CheckSubtitles(t.Context(), input, info))
	require.Empty(t, info.Subtitles[0].Unconvertible)
	require.NotEmpty(t, info.Subtitles[3].Unconvertible, "the Latin-1 stream does not convert")
	pl, err := NewPlan(info, webAudio(t, 2))
	require.NoError(t, err)
	require.NoError(t, pl.Validate())
	require.Len(t, pl.Subtitles, 3)
	require.Len(t, pl.Notes, 1)
	require.Contains(t, pl.Notes[0], "subtitle stream 5 (subrip) could not be converted to WebVTT")

	out := t.TempDir()
	_, err = tools.Encode(t.Context(), pl, input, out, nil)
	require.NoError(t, err)
	outs, _, err := tools.Verify(t.Context(), pl, input, out)
	require.NoError(t, err)
	var names []string
	for _, o := range outs {
		if o.Codec == "webvtt" {
			names = append(names, o.Name)
		}
	}
	require.ElementsMatch(t, []string{"subtitles-en", "subtitles-fr", "subtitles-en-2"}, names)

	b, err := os.ReadFile(filepath.Join(out, MasterName))
	require.NoError(t, err)
	p, _, err := m3u8.DecodeFrom(bytes.NewReader(b), true)
	require.NoError(t, err)
	master := p.(*m3u8.MasterPlaylist)
	type alt struct {
		lang, name      string
		def, forced     bool
		characteristics string
	}
	var got []alt
	for _, a := range master.GetAllAlternatives() {
		if a.Type == "SUBTITLES" {
			got = append(got, alt{a.Language, a.Name, a.Default, a.Forced, a.Characteristics})
		}
	}
	require.ElementsMatch(t, []alt{
		{"en", "English", true, false, ""},
		{"fr", "Français (forced)", false, true, ""},
		{"en", "English (SDH)", false, false, "public.accessibility.describes-spoken-dialog,public.accessibility.describes-music-and-sound"},
	}, got)
	for _, v := range master.Variants {
		if !v.Iframe {
			require.Equal(t, "subs", v.Subtitles)
		}
	}

	// The English cues, read back from the segments, at the source's
	// times (within a frame), the one over the 2 s boundary in both.
	segs, cues := segmentCues(t, out, SubtitlePlaylistName(0))
	video, _ := segmentCues(t, out, MediaPlaylistName(0))
	require.Len(t, segs, len(video), "the video's segments")
	require.Equal(t, []string{"Hello there.", "A cue across the boundary at 2 s."}, segs[0])
	require.Equal(t, []string{"A cue across the boundary at 2 s."}, segs[1])
	require.Equal(t, []string{"The last one."}, segs[2])
	for _, s := range segs[3:] {
		require.Empty(t, s)
	}
	for text, want := range map[string][2]float64{"Hello there.": {0.5, 1.75}, "A cue across the boundary at 2 s.": {1.8, 2.6}, "The last one.": {4.04, 5.5}} {
		require.InDelta(t, want[0], cues[text][0], 0.04, text)
		require.InDelta(t, want[1], cues[text][1], 0.04, text)
	}
	fr, err := os.ReadFile(filepath.Join(out, "subs_1_00001.vtt"))
	require.NoError(t, err)
	require.Contains(t, string(fr), "X-TIMESTAMP-MAP=")
	require.Contains(t, string(fr), "<i>Bonjour</i>", "the ASS italics as a WebVTT tag")

	b, err = os.ReadFile(filepath.Join(out, ManifestName))
	require.NoError(t, err)
	m, err := mpd.ReadFromString(string(b))
	require.NoError(t, err)
	var sets []string
	for _, as := range m.Periods[0].AdaptationSets {
		if as.ContentType == "text" {
			sets = append(sets, as.Lang+" "+as.Roles[0].Value+" "+string(as.Representations[0].BaseURLs[0].Value))
		}
	}
	require.ElementsMatch(t, []string{"en subtitle subs_0.vtt", "fr forced-subtitle subs_1.vtt", "en caption subs_2.vtt"}, sets)
}

// segmentCues reads a subtitle playlist's segments: the cue texts of each
// segment, and every cue's start and end in seconds. Of another playlist
// it lists only the segments.
func segmentCues(t *testing.T, dir, playlist string) ([][]string, map[string][2]float64) {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(dir, playlist))
	require.NoError(t, err)
	p, _, err := m3u8.DecodeFrom(bytes.NewReader(b), true)
	require.NoError(t, err)
	var segs [][]string
	cues := map[string][2]float64{}
	for _, s := range p.(*m3u8.MediaPlaylist).GetAllSegments() {
		if !strings.HasSuffix(s.URI, ".vtt") {
			segs = append(segs, nil)
			continue
		}
		f, err := os.Open(filepath.Join(dir, s.URI))
		require.NoError(t, err)
		subs, err := astisub.ReadFromWebVTT(f)
		_ = f.Close()
		require.NoError(t, err)
		var texts []string
		for _, it := range subs.Items {
			text := strings.TrimSpace(it.String())
			texts = append(texts, text)
			cues[text] = [2]float64{it.StartAt.Seconds(), it.EndAt.Seconds()}
		}
		segs = append(segs, texts)
	}
	return segs, cues
}

// Pictures (PGS, DVD) cannot be WebVTT: left out with a note; MP4 leaves
// them out with a note too; archive-hevc keeps them.
func TestPictureSubtitlesNoted(t *testing.T) {
	t.Parallel()
	info := src(1280, 720, 25, func(i *Info) {
		i.Subtitles = []SubtitleStream{{Index: 2, Codec: "hdmv_pgs_subtitle", Language: "ger"}, {Index: 3, Codec: "subrip", Text: true}}
	})
	for _, tc := range []struct {
		profile string
		subs    int
		note    bool
	}{{"web-hls", 1, true}, {"mp4-library", 1, true}, {"archive-hevc", 2, false}} {
		pl, err := NewPlan(info, builtin(t, tc.profile))
		require.NoError(t, err)
		require.Len(t, pl.Subtitles, tc.subs, tc.profile)
		if tc.note {
			require.Equal(t, []string{"subtitle stream 2 (hdmv_pgs_subtitle, de) is pictures, which " +
				map[string]string{"web-hls": "WebVTT", "mp4-library": "MP4"}[tc.profile] + " cannot carry: left out (archive-hevc keeps it)"}, pl.Notes, tc.profile)
		} else {
			require.Empty(t, pl.Notes)
		}
	}
}

// A subtitle file given with the source becomes a WebVTT rendition after
// the source's own, named from its language, its cues at their times in
// the segments; made by an unsplit encode, or by a split job's audio task
// (which runs no ffmpeg when the file is all it has to write).
func TestSidecarRenditions(t *testing.T) {
	t.Parallel()
	testenv.NeedFFmpeg(t)
	input := subtitledClip(t, false)
	tools := Tools{}
	info, err := tools.Admit(t.Context(), input, Limits{})
	require.NoError(t, err)
	sc, err := ReadSidecar([]byte("1\n00:00:00,700 --> 00:00:02,300\nLes portes grincent.\n\n2\n00:00:04,100 --> 00:00:05,000\nFin.\n"))
	require.NoError(t, err)
	file := filepath.Join(t.TempDir(), "sidecar.vtt")
	require.NoError(t, os.WriteFile(file, sc.WebVTT, 0o644))
	id := strings.Repeat("ab", 32)

	web := webAudio(t, 2)
	pl, err := NewPlan(info, web)
	require.NoError(t, err)
	pl.AddSidecars(web, []job.SourceSubtitle{{ID: id, Language: "fre", HearingImpaired: true}})
	require.NoError(t, pl.Validate())
	require.Len(t, pl.Subtitles, 4)
	require.Equal(t, SubtitlePlan{Codec: "webvtt", Language: "fr", Name: "Français (SDH)", HearingImpaired: true, Sidecar: id}, pl.Subtitles[3])
	require.Equal(t, []string{id}, pl.Sidecars())
	require.NotContains(t, strings.Join(pl.EncodeArgs("/in.mkv", "/out"), " "), SubtitleFile(3), "ffmpeg does not write it")

	out := t.TempDir()
	_, err = tools.Encode(t.Context(), pl, input, out, nil)
	require.ErrorContains(t, err, "was not fetched", "without the file, the encode fails rather than leave the rendition out")
	pl.UseSidecars(map[string]string{id: file})
	out = t.TempDir()
	_, err = tools.Encode(t.Context(), pl, input, out, nil)
	require.NoError(t, err)
	b, err := os.ReadFile(filepath.Join(out, MasterName))
	require.NoError(t, err)
	require.Contains(t, string(b), `TYPE=SUBTITLES,GROUP-ID="subs",NAME="Français (SDH)",LANGUAGE="fr"`)
	segs, cues := segmentCues(t, out, SubtitlePlaylistName(3))
	require.Equal(t, []string{"Les portes grincent."}, segs[0])
	require.Equal(t, []string{"Les portes grincent."}, segs[1], "the cue over the 2 s boundary is in both segments")
	for text, want := range map[string][2]float64{"Les portes grincent.": {0.7, 2.3}, "Fin.": {4.1, 5}} {
		require.InDelta(t, want[0], cues[text][0], 0.04, text)
		require.InDelta(t, want[1], cues[text][1], 0.04, text)
	}

	// A split job whose source has nothing but the picture: its audio task
	// only writes the file.
	bare := src(256, 144, 25, func(i *Info) { i.Audio, i.Subtitles = nil, nil })
	pl, err = NewPlan(bare, web)
	require.NoError(t, err)
	pl.AddSidecars(web, []job.SourceSubtitle{{ID: id}})
	require.True(t, pl.AudioTask())
	pl.UseSidecars(map[string]string{id: file})
	audio := filepath.Join(t.TempDir(), "audio")
	ran, err := Tools{FFmpeg: "/nonexistent/ffmpeg"}.EncodeAudio(t.Context(), pl, "/nonexistent/in.mkv", audio, nil)
	require.NoError(t, err)
	require.Empty(t, ran, "no ffmpeg ran")
	got, err := os.ReadFile(filepath.Join(audio, SubtitleFile(0)))
	require.NoError(t, err)
	require.Equal(t, sc.WebVTT, got)
	require.Equal(t, "Subtitles 1", pl.Subtitles[0].Name, "a file with no language is named by its number")

	// A profile that keeps the source's own streams leaves the file out, with a note.
	lib := builtin(t, "mp4-library")
	pl, err = NewPlan(info, lib)
	require.NoError(t, err)
	n := len(pl.Subtitles)
	pl.AddSidecars(lib, []job.SourceSubtitle{{ID: id, Language: "fr"}})
	require.Len(t, pl.Subtitles, n)
	require.Contains(t, pl.Notes, "subtitle file 1 is left out: profile mp4-library does not make WebVTT renditions")
}
