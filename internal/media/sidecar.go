package media

import (
	"bytes"
	"fmt"
	"regexp"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/asticode/go-astisub"
	"golang.org/x/text/encoding/unicode"
)

// A sidecar is a subtitle file given with a source (movie.fr.srt beside
// movie.mkv). ReadSidecar reads it when it is submitted, so that a file
// that does not parse is refused then, with the line it failed on, and
// converts it to the WebVTT that a web plan's subtitle rendition is made
// from (SubtitlePlan.Sidecar).

// MaxSidecarBytes bounds a sidecar file: a feature film's SRT is 50 to 150 KB.
const MaxSidecarBytes = 4 << 20

// Sidecar formats ReadSidecar reads.
const (
	SidecarSRT    = "srt"
	SidecarWebVTT = "webvtt"
	SidecarSSA    = "ass" // ASS and SSA
	SidecarTTML   = "ttml"
)

// SidecarError says why a sidecar file was refused, and on which line
// (counted from 1; 0 when the error is not on one line).
type SidecarError struct {
	Line int
	Msg  string
}

func (e *SidecarError) Error() string {
	if e.Line > 0 {
		return fmt.Sprintf("line %d: %s", e.Line, e.Msg)
	}
	return e.Msg
}

// Sidecar is a sidecar file read and converted.
type Sidecar struct {
	Format string
	Cues   int
	WebVTT []byte
}

// astisubLine finds the line number astisub names in its errors.
var astisubLine = regexp.MustCompile(`^astisub: line (\d+):? ?(.*)$`)

// ReadSidecar reads a subtitle file in SRT, WebVTT, ASS/SSA or TTML, in
// UTF-8 (or UTF-16 with a byte order mark), and returns it as WebVTT. It
// refuses, with a *SidecarError, a file in another format or encoding,
// one that does not parse, one without cues, and one whose cue timing is
// broken (a cue that ends before it starts, or starts before zero).
func ReadSidecar(data []byte) (*Sidecar, error) {
	if len(data) > MaxSidecarBytes {
		return nil, &SidecarError{Msg: fmt.Sprintf("the file is %d bytes; a subtitle file may have %d", len(data), MaxSidecarBytes)}
	}
	text, err := sidecarText(data)
	if err != nil {
		return nil, err
	}
	format := sidecarFormat(text)
	if format == "" {
		return nil, &SidecarError{Msg: "not a subtitle format herd reads: send SRT, WebVTT, ASS/SSA or TTML"}
	}
	subs, err := parseSidecar(format, text)
	if err != nil {
		if m := astisubLine.FindStringSubmatch(err.Error()); m != nil {
			n, _ := strconv.Atoi(m[1])
			return nil, &SidecarError{Line: n, Msg: m[2]}
		}
		return nil, &SidecarError{Msg: fmt.Sprintf("not valid %s: %s", formatName(format), strings.TrimPrefix(err.Error(), "astisub: "))}
	}
	if len(subs.Items) == 0 {
		return nil, &SidecarError{Msg: fmt.Sprintf("no cues found in this %s file", formatName(format))}
	}
	if len(subs.Items) > maxCues {
		return nil, &SidecarError{Msg: fmt.Sprintf("%d cues; a subtitle file may have %d", len(subs.Items), maxCues)}
	}
	for i, it := range subs.Items {
		switch {
		case it.StartAt < 0:
			return nil, &SidecarError{Line: cueLine(text, format, i), Msg: "the cue starts before 0"}
		case it.EndAt <= it.StartAt:
			return nil, &SidecarError{Line: cueLine(text, format, i), Msg: fmt.Sprintf("the cue ends (%s) before it starts (%s)", clock(it.EndAt), clock(it.StartAt))}
		}
	}
	// Segments get their own timestamp map (package pack).
	if subs.Metadata != nil {
		subs.Metadata.WebVTTTimestampMap = nil
	}
	var buf bytes.Buffer
	if err := subs.WriteToWebVTT(&buf); err != nil {
		return nil, &SidecarError{Msg: "cannot be written as WebVTT: " + strings.TrimPrefix(err.Error(), "astisub: ")}
	}
	return &Sidecar{Format: format, Cues: len(subs.Items), WebVTT: buf.Bytes()}, nil
}

// parseSidecar parses text in format. A file the parser trips over
// (go-astisub panics on some malformed input) is refused like any other
// that does not parse.
func parseSidecar(format, text string) (subs *astisub.Subtitles, err error) {
	defer func() {
		if p := recover(); p != nil {
			subs, err = nil, fmt.Errorf("malformed (%v)", p)
		}
	}()
	r := strings.NewReader(text)
	switch format {
	case SidecarWebVTT:
		return astisub.ReadFromWebVTT(r)
	case SidecarSSA:
		return astisub.ReadFromSSA(r)
	case SidecarTTML:
		return astisub.ReadFromTTML(r)
	}
	return astisub.ReadFromSRT(r)
}

// maxCues bounds the cues of a sidecar: a long film has a few thousand.
const maxCues = 200_000

// sidecarText is data as text: UTF-8 (a byte order mark dropped), or
// UTF-16 with a byte order mark converted.
func sidecarText(data []byte) (string, error) {
	if bytes.HasPrefix(data, []byte{0xff, 0xfe}) || bytes.HasPrefix(data, []byte{0xfe, 0xff}) {
		out, err := unicode.UTF16(unicode.BigEndian, unicode.UseBOM).NewDecoder().Bytes(data)
		if err != nil {
			return "", &SidecarError{Msg: "not valid UTF-16 text: " + err.Error()}
		}
		data = out
	}
	data = bytes.TrimPrefix(data, []byte("\xef\xbb\xbf"))
	for i, line := range bytes.Split(data, []byte("\n")) {
		if !utf8.Valid(line) {
			return "", &SidecarError{Line: i + 1, Msg: "not UTF-8 text (save the file as UTF-8 and send it again)"}
		}
		if bytes.IndexByte(line, 0) >= 0 {
			return "", &SidecarError{Line: i + 1, Msg: "has a NUL byte: this is not a text file"}
		}
	}
	return string(data), nil
}

// sidecarFormat tells the format from the text's opening, never the file's name.
func sidecarFormat(text string) string {
	head := strings.TrimSpace(text[:min(len(text), 4096)])
	lower := strings.ToLower(head)
	switch {
	case strings.HasPrefix(head, "WEBVTT"):
		return SidecarWebVTT
	case strings.HasPrefix(lower, "[script info]") || strings.HasPrefix(lower, "[v4+ styles]") || strings.HasPrefix(lower, "[v4 styles]") || strings.HasPrefix(lower, "[events]"):
		return SidecarSSA
	case strings.HasPrefix(lower, "<?xml") || strings.HasPrefix(lower, "<tt"):
		return SidecarTTML
	case strings.Contains(head, "-->"):
		return SidecarSRT
	}
	return ""
}

func formatName(format string) string {
	switch format {
	case SidecarSRT:
		return "SRT"
	case SidecarWebVTT:
		return "WebVTT"
	case SidecarSSA:
		return "ASS/SSA"
	}
	return "TTML"
}

// cueLine is the line cue i (from 0) starts on: its timing line in SRT
// and WebVTT, its Dialogue line in ASS/SSA; 0 in TTML.
func cueLine(text, format string, i int) int {
	var is func(string) bool
	switch format {
	case SidecarSRT, SidecarWebVTT:
		is = func(l string) bool { return strings.Contains(l, "-->") }
	case SidecarSSA:
		is = func(l string) bool { return strings.HasPrefix(strings.TrimSpace(l), "Dialogue:") }
	default:
		return 0
	}
	n := 0
	for k, l := range strings.Split(text, "\n") {
		if is(l) {
			if n == i {
				return k + 1
			}
			n++
		}
	}
	return 0
}

// clock writes d as h:mm:ss.mmm.
func clock(d time.Duration) string {
	neg := ""
	if d < 0 {
		neg, d = "-", -d
	}
	ms := d.Milliseconds()
	return fmt.Sprintf("%s%d:%02d:%02d.%03d", neg, ms/3_600_000, ms/60_000%60, ms/1000%60, ms%1000)
}
