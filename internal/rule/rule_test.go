package rule

import (
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

var movie = Facts{
	Container: "matroska", Size: 2 << 30, Duration: 5400, Bitrate: 3_000_000,
	Video:     Video{Codec: "h264", Profile: "High", BitDepth: 8, Width: 1920, Height: 1080, Bitrate: 2_600_000, FPS: 23.976},
	Audio:     []Audio{{Codec: "ac3", Channels: 6, Language: "eng"}, {Codec: "aac", Channels: 2, Language: "fre"}},
	Subtitles: []Subtitle{{Codec: "subrip", Language: "eng", Text: true}, {Codec: "hdmv_pgs_subtitle", Language: "ger"}},
	Path:      "Movies/Heat (1995)/Heat.mkv", Name: "Heat.mkv",
}

func TestRules(t *testing.T) {
	t.Parallel()
	for src, want := range map[string]bool{
		`video.codec != "hevc" && video.height >= 720`:                   true,
		`video.codec == "hevc"`:                                          false,
		`container == "matroska" && size > 1024 * 1024 * 1024`:           true,
		`duration > 3600.0 && bitrate < 4000000`:                         true,
		`video.bit_depth == 10 || video.hdr`:                             false,
		`audio.exists(a, a.channels >= 6 && a.codec == "ac3")`:           true,
		`audio.all(a, a.language != "ger")`:                              true,
		`subtitles.exists(s, !s.text)`:                                   true,
		`path.startsWith("Movies/") && name.endsWith(".mkv")`:            true,
		`name.lowerAscii().contains("sample")`:                           false,
		`video.fps > 24.0 || video.interlaced`:                           false,
		`size(audio) == 2 && audio[1].language == "fre"`:                 true,
		"video.codec in [\"h264\", \"mpeg4\"]\n  && video.width >= 1280": true,
	} {
		r, err := Compile(src)
		require.NoError(t, err, src)
		got, err := r.Match(movie)
		require.NoError(t, err, src)
		require.Equal(t, want, got, src)
	}
}

// A rule that cannot be a rule is refused where it is wrong, naming the
// unknown field or what else is amiss.
func TestRulesRefused(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		src          string
		line, column int
		msg          string
	}{
		{`video.codecc != "hevc"`, 1, 6, "undefined field 'codecc'"},
		{"video.codec != \"hevc\" &&\n  vido.height >= 720", 2, 3, "undeclared reference to 'vido'"},
		{`video.height`, 1, 1, "gives int, not true or false"},
		{`video.height >= "720"`, 1, 14, "no matching overload"},
		{`video.codec != `, 1, 16, "Syntax error"},
		{`   `, 1, 1, "the rule is empty"},
		{strings.Repeat("true && ", 600) + "true", 1, 1, "at most 4096"},
	} {
		_, err := Compile(tc.src)
		re, ok := err.(*RuleError)
		require.True(t, ok, "%q: %v", tc.src, err)
		require.Equal(t, tc.line, re.Line, "%q: %v", tc.src, err)
		require.Equal(t, tc.column, re.Column, "%q: %v", tc.src, err)
		require.Contains(t, re.Msg, tc.msg, tc.src)
	}
}

// An evaluation that fails says so rather than match or skip the file silently.
func TestRuleEvaluationErrors(t *testing.T) {
	t.Parallel()
	r, err := Compile(`audio[3].channels > 2`)
	require.NoError(t, err)
	_, err = r.Match(movie)
	require.ErrorContains(t, err, "cannot be evaluated on this file")
}

func FuzzCompile(f *testing.F) {
	for _, s := range []string{`video.codec != "hevc" && video.height >= 720`, `audio.exists(a, a.channels >= 6)`, `size(subtitles) > 0`, `name.matches("^S[0-9]+E")`, `[1,2,3].map(x, x * 2)[0] == 2`} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, src string) {
		r, err := Compile(src)
		if err != nil {
			if _, ok := err.(*RuleError); !ok {
				t.Fatalf("%q: %T %v", src, err, err)
			}
			return
		}
		_, _ = r.Match(movie) // never panics; the cost limit ends a runaway
	})
}
