package media_test

import (
	"strings"
	"testing"

	"github.com/asticode/go-astisub"
	"github.com/stretchr/testify/require"
	"golang.org/x/text/encoding/unicode"

	"github.com/herdhq/herd/internal/media"
)

// cueTimes reads WebVTT and returns each cue's text and times in seconds.
func cueTimes(t *testing.T, vtt []byte) map[string][2]float64 {
	t.Helper()
	subs, err := astisub.ReadFromWebVTT(strings.NewReader(string(vtt)))
	require.NoError(t, err, string(vtt))
	out := map[string][2]float64{}
	for _, it := range subs.Items {
		var text []string
		for _, l := range it.Lines {
			text = append(text, l.String())
		}
		out[strings.Join(text, "\n")] = [2]float64{it.StartAt.Seconds(), it.EndAt.Seconds()}
	}
	return out
}

func TestReadSidecarFormats(t *testing.T) {
	t.Parallel()
	want := map[string][2]float64{"Bonjour.": {1, 2.5}, "Au revoir.": {3.25, 4}}
	for _, tc := range []struct {
		name, format, text string
	}{
		{"srt", media.SidecarSRT, "1\r\n00:00:01,000 --> 00:00:02,500\r\nBonjour.\r\n\r\n2\r\n00:00:03,250 --> 00:00:04,000\r\nAu revoir.\r\n"},
		{"srt with a byte order mark", media.SidecarSRT, "\ufeff1\n00:00:01,000 --> 00:00:02,500\nBonjour.\n\n2\n00:00:03,250 --> 00:00:04,000\nAu revoir.\n"},
		{"webvtt", media.SidecarWebVTT, "WEBVTT\n\n00:01.000 --> 00:02.500\nBonjour.\n\n00:03.250 --> 00:04.000\nAu revoir.\n"},
		{"ass with styling", media.SidecarSSA, `[Script Info]
ScriptType: v4.00+

[V4+ Styles]
Format: Name, Fontname, Fontsize, PrimaryColour, SecondaryColour, OutlineColour, BackColour, Bold, Italic, Underline, StrikeOut, ScaleX, ScaleY, Spacing, Angle, BorderStyle, Outline, Shadow, Alignment, MarginL, MarginR, MarginV, Encoding
Style: Default,Arial,20,&H00FFFFFF,&H000000FF,&H00000000,&H00000000,0,0,0,0,100,100,0,0,1,2,2,2,10,10,10,1
Style: Loud,Arial,28,&H0000FFFF,&H000000FF,&H00000000,&H00000000,-1,-1,0,0,100,100,0,0,1,2,2,8,10,10,10,1

[Events]
Format: Layer, Start, End, Style, Name, MarginL, MarginR, MarginV, Effect, Text
Dialogue: 0,0:00:01.00,0:00:02.50,Loud,,0,0,0,,{\i1}Bonjour.{\i0}
Dialogue: 0,0:00:03.25,0:00:04.00,Default,,0,0,0,,Au revoir.
`},
		{"ttml", media.SidecarTTML, `<?xml version="1.0" encoding="UTF-8"?>
<tt xmlns="http://www.w3.org/ns/ttml" xml:lang="fr"><body><div>
<p begin="00:00:01.000" end="00:00:02.500">Bonjour.</p>
<p begin="00:00:03.250" end="00:00:04.000">Au revoir.</p>
</div></body></tt>`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			sc, err := media.ReadSidecar([]byte(tc.text))
			require.NoError(t, err)
			require.Equal(t, tc.format, sc.Format)
			require.Equal(t, 2, sc.Cues)
			require.True(t, strings.HasPrefix(string(sc.WebVTT), "WEBVTT"), string(sc.WebVTT))
			got := cueTimes(t, sc.WebVTT)
			require.Len(t, got, 2, string(sc.WebVTT))
			for text, times := range want {
				have, ok := got[text]
				require.True(t, ok, "%q in\n%s", text, sc.WebVTT)
				require.InDeltaSlice(t, times[:], have[:], 0.001, "%q in\n%s", text, sc.WebVTT)
			}
		})
	}
	t.Run("utf-16 with a byte order mark", func(t *testing.T) {
		t.Parallel()
		b, err := unicode.UTF16(unicode.LittleEndian, unicode.UseBOM).NewEncoder().Bytes([]byte("1\n00:00:01,000 --> 00:00:02,500\nÇa va ?\n"))
		require.NoError(t, err)
		sc, err := media.ReadSidecar(b)
		require.NoError(t, err)
		require.Contains(t, cueTimes(t, sc.WebVTT), "Ça va ?")
	})
}

// A sidecar that cannot be packaged is refused with the line it failed on.
func TestReadSidecarRefuses(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name, text string
		line       int
		msg        string
	}{
		{"a cue that ends before it starts", "1\n00:00:01,000 --> 00:00:02,000\nOne.\n\n2\n00:00:05,000 --> 00:00:04,000\nTwo.\n", 6, "ends (0:00:04.000) before it starts (0:00:05.000)"},
		{"a timestamp that is not one", "1\n00:00:01,000 --> 00:00:02,000\nOne.\n\n2\n00:00:0x,000 --> 00:00:04,000\nTwo.\n", 6, "parsing srt duration"},
		{"webvtt with a broken timestamp", "WEBVTT\n\n00:01.000 --> 00:02.000\nOne.\n\n00:03.000 --> 00:0z.000\nTwo.\n", 6, "parsing webvtt duration"},
		{"ass dialogue that ends before it starts", "[Script Info]\nScriptType: v4.00+\n\n[Events]\nFormat: Layer, Start, End, Style, Name, MarginL, MarginR, MarginV, Effect, Text\nDialogue: 0,0:00:03.00,0:00:01.00,Default,,0,0,0,,Back.\n", 6, "before it starts"},
		{"text that is not UTF-8", "1\n00:00:01,000 --> 00:00:02,000\nCaf\xe9.\n", 3, "not UTF-8"},
		{"a binary file", "\x00\x00\x00\x18ftypmp42", 1, "NUL"},
		{"no known format", "Just some notes\nabout the film.\n", 0, "not a subtitle format herd reads"},
		{"no cues", "WEBVTT\n\nNOTE nothing here\n", 0, "no cues"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			_, err := media.ReadSidecar([]byte(tc.text))
			require.Error(t, err)
			se, ok := err.(*media.SidecarError)
			require.True(t, ok, "%T %v", err, err)
			require.Equal(t, tc.line, se.Line, err.Error())
			require.Contains(t, err.Error(), tc.msg)
		})
	}
	_, err := media.ReadSidecar(make([]byte, media.MaxSidecarBytes+1))
	require.ErrorContains(t, err, "a subtitle file may have")
}

// Files the parser trips over are refused, not a crash.
func TestReadSidecarMalformed(t *testing.T) {
	t.Parallel()
	for _, text := range []string{
		"1\n00:00:01,000 -->\nhi\n",
		`<?xml version="1.0"?><tt xmlns="http://www.w3.org/ns/ttml"><body><div><p begin="00:00:01.000">hi</p></div></body></tt>`,
	} {
		_, err := media.ReadSidecar([]byte(text))
		require.Error(t, err, text)
		_, ok := err.(*media.SidecarError)
		require.True(t, ok, "%T %v", err, err)
	}
}

func FuzzReadSidecar(f *testing.F) {
	for _, s := range []string{
		"1\n00:00:01,000 --> 00:00:02,500\nBonjour.\n",
		"WEBVTT\n\n00:01.000 --> 00:02.500\nBonjour.\n",
		"[Script Info]\nScriptType: v4.00+\n\n[Events]\nFormat: Layer, Start, End, Style, Name, MarginL, MarginR, MarginV, Effect, Text\nDialogue: 0,0:00:01.00,0:00:02.50,Default,,0,0,0,,Hi\n",
		`<?xml version="1.0"?><tt xmlns="http://www.w3.org/ns/ttml"><body><div><p begin="00:00:01.000" end="00:00:02.000">hi</p></div></body></tt>`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		sc, err := media.ReadSidecar(data)
		if err != nil {
			if _, ok := err.(*media.SidecarError); !ok {
				t.Fatalf("%T %v", err, err)
			}
			return
		}
		if !strings.HasPrefix(string(sc.WebVTT), "WEBVTT") || sc.Cues == 0 {
			t.Fatalf("not WebVTT with cues: %q", sc.WebVTT)
		}
	})
}
