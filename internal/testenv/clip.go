package testenv

import (
	"cmp"
	"fmt"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
)

// NeedFFmpeg skips a test where ffmpeg or ffprobe is missing (make test
// installs both).
func NeedFFmpeg(t testing.TB) {
	t.Helper()
	for _, b := range []string{"ffmpeg", "ffprobe"} {
		if _, err := exec.LookPath(b); err != nil {
			t.Skipf("%s not found (make test installs it): %v", b, err)
		}
	}
}

// FFmpeg runs ffmpeg quietly (no stdin, no banner, errors only, overwriting
// its output) with args: for tests whose inputs are not plain clips (other
// codecs and containers, audio only, damaged or oversized pictures).
func FFmpeg(args ...string) error {
	full := append([]string{"-nostdin", "-hide_banner", "-loglevel", "error", "-y"}, args...)
	out, err := exec.Command("ffmpeg", full...).CombinedOutput()
	if err != nil {
		return fmt.Errorf("ffmpeg %v: %v: %s", args, err, out)
	}
	return nil
}

// Clip is a test clip made from ffmpeg's built-in sources: a test pattern
// in H.264 (ultrafast, yuv420p) and, when Tone is set, a sine tone in AAC.
// Every test that needs such a clip makes it here, so they all look alike.
type Clip struct {
	Pattern string  // lavfi video source; "" → testsrc2
	Size    string  // width x height, e.g. 160x90
	Rate    int     // frames per second
	Seconds float64 // length
	Tone    int     // frequency in Hz of a 48 kHz sine track; 0 → no audio
	Stereo  bool    // two audio channels instead of the source's one
	// Languages, when set with Tone, makes one audio track a language tag
	// ("" leaves a track untagged), the first the default, each a tone of
	// its own: Tone, Tone+110 Hz, ...
	Languages []string
	// Subtitles are subtitle files (SRT, ASS, WebVTT) muxed in as
	// subtitle streams, in order, each tagged with its language.
	Subtitles []Subtitle
	Extra     []string // further output options, e.g. -qp 8 or -metadata title=x
}

// Subtitle is a subtitle file of a Clip and its language tag ("" for none).
type Subtitle struct {
	Path, Language string
}

// Make writes the clip to path.
func (c Clip) Make(path string) error {
	args := []string{"-f", "lavfi", "-i", fmt.Sprintf("%s=size=%s:rate=%d", cmp.Or(c.Pattern, "testsrc2"), c.Size, c.Rate)}
	tracks := 0
	if c.Tone != 0 {
		tracks = max(1, len(c.Languages))
	}
	for k := range tracks {
		args = append(args, "-f", "lavfi", "-i", fmt.Sprintf("sine=frequency=%d:sample_rate=48000", c.Tone+110*k))
	}
	for _, s := range c.Subtitles {
		args = append(args, "-i", s.Path)
	}
	if len(c.Languages) > 0 || len(c.Subtitles) > 0 {
		for k := range tracks + 1 + len(c.Subtitles) {
			args = append(args, "-map", strconv.Itoa(k))
		}
		for k, s := range c.Subtitles {
			if s.Language != "" {
				args = append(args, fmt.Sprintf("-metadata:s:s:%d", k), "language="+s.Language)
			}
		}
		for k, lang := range c.Languages {
			if lang != "" {
				args = append(args, fmt.Sprintf("-metadata:s:a:%d", k), "language="+lang)
			}
			disp := "0"
			if k == 0 {
				disp = "default"
			}
			args = append(args, fmt.Sprintf("-disposition:a:%d", k), disp)
		}
	}
	args = append(args, "-t", strconv.FormatFloat(c.Seconds, 'f', -1, 64), "-c:v", "libx264", "-preset", "ultrafast", "-pix_fmt", "yuv420p")
	if c.Tone != 0 {
		args = append(args, "-c:a", "aac")
		if c.Stereo {
			args = append(args, "-ac", "2")
		}
		if len(c.Subtitles) == 0 { // the subtitles end at their last cue
			args = append(args, "-shortest")
		}
	}
	if len(c.Subtitles) > 0 {
		codec := "copy"
		if ext := strings.ToLower(filepath.Ext(path)); ext == ".mp4" || ext == ".mov" {
			codec = "mov_text" // MP4 holds text subtitles only as mov_text
		}
		args = append(args, "-c:s", codec)
	}
	args = append(args, c.Extra...)
	if err := FFmpeg(append(args, path)...); err != nil {
		return fmt.Errorf("make a test clip: %w", err)
	}
	return nil
}

// ToneClip writes a one-second 160x90 MP4 (H.264 and AAC) to path; clips
// with different frequencies differ in content, so none is a duplicate.
func ToneClip(path string, freq int) error {
	return Clip{Size: "160x90", Rate: 15, Seconds: 1, Tone: freq, Extra: []string{"-f", "mp4"}}.Make(path)
}
