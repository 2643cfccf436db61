package media

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/Eyevinn/dash-mpd/mpd"
	"github.com/Eyevinn/hls-m3u8/m3u8"
	"github.com/stretchr/testify/require"

	"github.com/herdhq/herd/internal/profile"
	"github.com/herdhq/herd/internal/testenv"
)

func TestLanguageTag(t *testing.T) {
	t.Parallel()
	for in, want := range map[string]string{
		"fre": "fr", "fra": "fr", "ger": "de", "deu": "de", "eng": "en", "en": "en", "jpn": "ja", "chi": "zh",
		"pt-BR": "pt-BR", "": "", "und": "", "mul": "", "zxx": "", "qaa": "", "xx": "", "not a tag": "",
	} {
		require.Equal(t, want, LanguageTag(in), in)
	}
	require.Equal(t, "Français", languageName("fr"))
	require.Equal(t, "Deutsch", languageName("de"))
	require.Empty(t, languageName(""))
}

func TestTitleIsALabel(t *testing.T) {
	t.Parallel()
	for in, want := range map[string]string{
		"Director's commentary": "Director's commentary",
		"  two\tspaces\n":       "two spaces",
		`say "hi"`:              "say hi",
		"bidi\u202eevil":        "bidi evil",
		"\xff\xfeBroken":        "Broken",
		string(make([]byte, 0)): "",
		"ééééééééééééééééééééééééééééééééééééééé": "éééééééééééééééééééééééééééééééé", // 64 bytes, whole characters
	} {
		got := title(in)
		require.Equal(t, want, got, "%q", in)
		require.NoError(t, label("t", got))
	}
	require.Error(t, label("t", `a "quoted" name`))
	require.Equal(t, 64, len(cutName(title("ééééééééééééééééééééééééééééééééééééééé"), " 5.1")))
}

// The plan of an hls profile keeps every audio stream: languages as BCP
// 47 or none, names from titles and languages, the default from the
// source, a 5.1 rendition beside the stereo one where the source has it.
func TestPlanAudioRenditions(t *testing.T) {
	t.Parallel()
	info := src(1280, 720, 25, func(i *Info) {
		i.Audio = []AudioStream{
			{Index: 1, Codec: "ac3", Channels: 6, Language: "fre"},
			{Index: 2, Codec: "aac", Channels: 2, Language: "eng", Default: true},
			{Index: 3, Codec: "aac", Channels: 1, Language: "und"},
			{Index: 4, Codec: "aac", Channels: 2, Language: "eng", Commentary: true, Default: true},
			{Index: 5, Codec: "aac", Channels: 2, Title: "Director's cut"},
		}
	})
	pl, err := NewPlan(info, builtin(t, "web-hls"))
	require.NoError(t, err)
	require.NoError(t, pl.Validate())
	type r struct {
		in, ch       int
		lang, name   string
		def, comment bool
	}
	var got []r
	for _, a := range pl.Audio {
		require.Equal(t, "aac", a.Codec)
		got = append(got, r{a.Input, a.Channels, a.Language, a.Name, a.Default, a.Commentary})
	}
	require.Equal(t, []r{
		{1, 2, "fr", "Français", false, false},
		{1, 6, "fr", "Français 5.1", false, false},
		{2, 2, "en", "English", true, false},
		{3, 1, "", "Audio 3", false, false},
		{4, 2, "en", "English (commentary)", false, true},
		{5, 2, "", "Director's cut", false, false},
	}, got)
	require.Equal(t, int64(384_000), pl.Audio[1].Bitrate)

	// No surround_bitrate: stereo only.
	p := *builtin(t, "web-hls")
	p.Audio.SurroundBitrate = 0
	pl, err = NewPlan(info, &p)
	require.NoError(t, err)
	require.Len(t, pl.Audio, 5)
}

// A source with a French 5.1 stream, an untagged stereo one (the default)
// and an English commentary comes out of web-hls as four AAC renditions
// in one group, each named and tagged as the plan says, with CHANNELS and
// a DASH adaptation set a language and role; verification checks them.
func TestAudioRenditionsEndToEnd(t *testing.T) {
	t.Parallel()
	testenv.NeedFFmpeg(t)
	input := multiAudio(t, 3, []string{"sine=frequency=440", "sine=frequency=660", "sine=frequency=880"},
		"-c:a", "aac", "-ac:a:0", "6", "-ac:a:1", "2", "-ac:a:2", "2",
		"-metadata:s:a:0", "language=fre", "-metadata:s:a:2", "language=eng", "-metadata:s:a:2", "title=Commentary with the director",
		"-disposition:a:0", "0", "-disposition:a:1", "default", "-disposition:a:2", "comment")
	pl := admitted(t, input, webAudio(t, 1))
	require.Len(t, pl.Audio, 4)
	// The audio task's way (the one every new web job takes, split or
	// not): the same outputs as the encode making the audio itself (a
	// plan made before), to the byte in the master playlist.
	encoded := func(step bool) ([]Output, string) {
		tools, dir, p := Tools{}, t.TempDir(), *pl
		p.AudioStep = step
		require.NoError(t, p.Validate())
		if step {
			audio := filepath.Join(t.TempDir(), "audio")
			_, err := tools.EncodeAudio(t.Context(), &p, input, audio, nil)
			require.NoError(t, err)
			_, err = tools.Encode(t.Context(), &p, input, dir, nil)
			require.NoError(t, err)
			require.NoFileExists(t, filepath.Join(dir, MasterName), "the encode of an AudioStep plan makes the video alone")
			require.True(t, p.JoinsAudio(dir))
			require.NoError(t, p.JoinAudio(audio, dir))
			require.False(t, p.JoinsAudio(dir), "joined (or a version 7 worker's encode): left as it is")
		} else {
			_, err := tools.Encode(t.Context(), &p, input, dir, nil)
			require.NoError(t, err)
		}
		outs, _, err := tools.Verify(t.Context(), &p, input, dir)
		require.NoError(t, err)
		return outs, dir
	}
	before, inEncode := encoded(false)
	outputs, out := encoded(true)
	loud := map[string]float64{}
	for _, o := range before {
		if o.Loudness != nil {
			loud[o.Name] = o.Loudness.Integrated
		}
	}
	for _, o := range outputs {
		if o.Loudness != nil {
			require.InDelta(t, loud[o.Name], o.Loudness.Integrated, 0.05, "%s: the same loudness either way", o.Name)
			delete(loud, o.Name)
		}
	}
	require.Empty(t, loud, "every audio output measured either way")
	want, err := os.ReadFile(filepath.Join(inEncode, MasterName))
	require.NoError(t, err)
	got, err := os.ReadFile(filepath.Join(out, MasterName))
	require.NoError(t, err)
	// The rungs' measured rates aside: x264's rate control over threads
	// is not the same to the bit from one run to the next.
	rates := regexp.MustCompile(`BANDWIDTH=[0-9]+`)
	require.Equal(t, rates.ReplaceAllString(string(want), "BANDWIDTH=n"), rates.ReplaceAllString(string(got), "BANDWIDTH=n"), "the master playlist, either way")
	require.NotContains(t, strings.Join(func() []string { p := *pl; p.AudioStep = true; return p.EncodeArgs("/in.mkv", "/out") }(), " "), "0:1",
		"with an audio task, the encode reads no audio")
	var names []string
	for _, o := range outputs {
		if o.Kind == "hls" && len(o.Name) >= 5 && o.Name[:5] == "audio" {
			names = append(names, o.Name)
		}
	}
	slices.Sort(names)
	require.Equal(t, []string{"audio", "audio-en", "audio-fr", "audio-fr-5.1"}, names)

	b, err := os.ReadFile(filepath.Join(out, MasterName))
	require.NoError(t, err)
	pls, kind, err := m3u8.DecodeFrom(bytes.NewReader(b), true)
	require.NoError(t, err)
	require.Equal(t, m3u8.MASTER, kind)
	master := pls.(*m3u8.MasterPlaylist)
	type alt struct {
		lang, name, group string
		ch                int
		def, auto         bool
	}
	var alts []alt
	for _, a := range master.GetAllAlternatives() {
		alts = append(alts, alt{a.Language, a.Name, a.GroupId, a.Channels.Amount, a.Default, a.Autoselect})
	}
	slices.SortFunc(alts, func(a, b alt) int { return strings.Compare(a.name, b.name) })
	require.Equal(t, []alt{
		{"", "Audio 2", "aac", 2, true, true},
		{"en", "Commentary with the director", "aac", 2, false, false},
		{"fr", "Français", "aac", 2, false, true},
		{"fr", "Français 5.1", "aac", 6, false, true},
	}, alts)
	for _, v := range master.Variants {
		if !v.Iframe {
			require.Equal(t, "aac", v.Audio)
			require.Contains(t, v.Codecs, "mp4a.40.2")
		}
	}
	require.NotContains(t, string(b), `LANGUAGE="und"`)

	b, err = os.ReadFile(filepath.Join(out, ManifestName))
	require.NoError(t, err)
	m, err := mpd.ReadFromString(string(b))
	require.NoError(t, err)
	type set struct {
		lang, role string
		channels   []string
	}
	var sets []set
	for _, as := range m.Periods[0].AdaptationSets {
		if as.ContentType != "audio" {
			continue
		}
		s := set{lang: as.Lang, role: as.Roles[0].Value}
		for _, r := range as.Representations {
			s.channels = append(s.channels, r.AudioChannelConfigurations[0].Value)
		}
		sets = append(sets, s)
	}
	require.ElementsMatch(t, []set{
		{"fr", "alternate", []string{"2", "6"}},
		{"", "main", []string{"2"}},
		{"en", "commentary", []string{"2"}},
	}, sets)
}

// multiAudio writes a Matroska clip of seconds: a 256x144 test pattern and
// one audio stream a lavfi source in sources (48 kHz, as long as the
// video), with the further output options in extra (codecs, tags).
func multiAudio(t *testing.T, seconds int, sources []string, extra ...string) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "audio.mkv")
	args := []string{"-f", "lavfi", "-i", fmt.Sprintf("testsrc2=size=256x144:rate=25:duration=%d", seconds)}
	for _, s := range sources {
		args = append(args, "-f", "lavfi", "-i", fmt.Sprintf("%s:sample_rate=48000:duration=%d", s, seconds))
	}
	for k := range len(sources) + 1 {
		args = append(args, "-map", strconv.Itoa(k))
	}
	args = append(append(args, "-c:v", "libx264", "-preset", "ultrafast"), extra...)
	require.NoError(t, testenv.FFmpeg(append(args, path)...))
	return path
}

// webAudio is web-hls with segments of seg seconds and no pictures beside
// the video: for tests of its audio.
func webAudio(t *testing.T, seg float64) *profile.Profile {
	t.Helper()
	p := *builtin(t, "web-hls")
	p.SegmentSeconds = seg
	p.Thumbnails.Sprite, p.Thumbnails.Poster = false, false
	return &p
}
