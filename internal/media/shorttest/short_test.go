package shorttest

import (
	"context"
	"errors"
	"fmt"
	"image"
	"image/jpeg"
	"math"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/herdhq/herd/internal/media"
	"github.com/herdhq/herd/internal/profile"
	"github.com/herdhq/herd/internal/testenv"
)

// source is a way to make a short or odd test input.
type source struct {
	name string
	// video and audio are lavfi sources; the video is delayed by videoAt
	// seconds (its first frame starts late, the audio at zero).
	video, audio string
	videoAt      float64
	frames       int // 0: as long as the lavfi source
}

var sources = []source{
	{name: "0.3s", video: "testsrc2=size=160x90:rate=25:duration=0.3", audio: "sine=frequency=440:sample_rate=48000:duration=0.3"},
	{name: "late-under-1s", video: "testsrc2=size=160x90:rate=25:duration=0.3", audio: "sine=frequency=440:sample_rate=48000:duration=0.9", videoAt: 0.6},
	{name: "single-frame", video: "testsrc2=size=160x90:rate=25", frames: 1},
	// The video begins more than half a sprite interval (web-hls: 2 s)
	// after the audio: its tiles still sit at 0, 2, 4 s of the source.
	{name: "audio-first", video: "testsrc2=size=160x90:rate=25:duration=2.5", audio: "sine=frequency=440:sample_rate=48000:duration=3.5", videoAt: 1.2},
}

// containers are the source formats, each with codecs it carries.
var containers = []struct {
	name, ext string
	args      []string
}{
	{"mp4", "mp4", []string{"-c:v", "libx264", "-preset", "ultrafast", "-pix_fmt", "yuv420p", "-c:a", "aac", "-f", "mp4"}},
	{"mpeg-ps", "mpg", []string{"-c:v", "mpeg2video", "-pix_fmt", "yuv420p", "-c:a", "mp2", "-f", "mpeg"}},
	{"mpeg-ts", "ts", []string{"-c:v", "libx264", "-preset", "ultrafast", "-pix_fmt", "yuv420p", "-c:a", "aac", "-f", "mpegts"}},
}

func (s source) make(t *testing.T, dir, ext string, codec []string) string {
	t.Helper()
	args := []string{"-f", "lavfi", "-i", s.video}
	if s.audio != "" {
		args = append(args, "-f", "lavfi", "-i", s.audio)
	}
	args = append(args, "-filter_complex", fmt.Sprintf("[0:v]setpts=PTS+%g/TB[v]", s.videoAt), "-map", "[v]")
	if s.audio != "" {
		args = append(args, "-map", "1:a")
	} else {
		codec = dropAudio(codec)
	}
	if s.frames > 0 {
		args = append(args, "-frames:v", fmt.Sprint(s.frames))
	}
	path := filepath.Join(dir, s.name+"."+ext)
	require.NoError(t, testenv.FFmpeg(append(append(args, codec...), path)...))
	return path
}

func dropAudio(args []string) []string {
	var out []string
	for i := 0; i < len(args); i++ {
		if args[i] == "-c:a" {
			i++
			continue
		}
		out = append(out, args[i])
	}
	return out
}

func needFFmpeg(t *testing.T) {
	t.Helper()
	for _, b := range []string{"ffmpeg", "ffprobe"} {
		if _, err := exec.LookPath(b); err != nil {
			t.Skipf("%s not found: %v", b, err)
		}
	}
}

// Every short or late-starting source, in every container, finishes through
// web-hls and mp4-library with a poster and, where the profile asks for one,
// a sprite of as many tiles as the plan counts (at least one); one of them
// goes through every other built-in profile.
func TestShortSources(t *testing.T) {
	t.Parallel()
	needFFmpeg(t)
	type tc struct{ ci, si int }
	var all []tc
	for ci := range containers {
		for si := range sources {
			all = append(all, tc{ci, si})
		}
	}
	other := 0
	for _, p := range profile.Builtin().All() {
		cases := all
		if p.Name != "web-hls" && p.Name != "mp4-library" {
			// Other profiles: one case each, a different one per profile,
			// to keep the suite quick.
			cases = []tc{all[(len(sources)+1)*other%len(all)]}
			other++
		}
		for _, k := range cases {
			c, s := containers[k.ci], sources[k.si]
			t.Run(p.Name+"/"+c.name+"/"+s.name, func(t *testing.T) {
				t.Parallel()
				input := s.make(t, t.TempDir(), c.ext, c.args)
				if c.name == "mpeg-ps" && s.frames == 1 {
					// One MPEG-2 picture in a program stream carries no
					// timestamp ffprobe can see (no start, no duration):
					// admission refuses it, permanently and saying why.
					_, err := media.Tools{}.Admit(context.Background(), input, media.Limits{})
					rej, ok := errors.AsType[*media.RejectedError](err)
					require.True(t, ok, "%v", err)
					require.Equal(t, media.CodeZeroDuration, rej.Code)
					return
				}
				check(t, input, p)
			})
		}
	}
}

func check(t *testing.T, input string, p *profile.Profile) {
	t.Helper()
	ctx := context.Background()
	tools := media.Tools{}
	info, err := tools.Admit(ctx, input, media.Limits{})
	require.NoError(t, err)
	pl, err := media.NewPlan(info, p)
	require.NoError(t, err)
	th := pl.Thumbs
	out := t.TempDir()
	ran, err := tools.Encode(ctx, pl, input, out, nil)
	require.NoError(t, err)
	require.Len(t, ran, 1, "one ffmpeg run makes the video and the pictures")
	outputs, _, err := tools.Verify(ctx, pl, input, out)
	require.NoError(t, err)
	names := map[string]media.Output{}
	for _, o := range outputs {
		names[o.Name] = o
	}
	if th.Poster {
		require.Contains(t, names, "poster")
		require.Equal(t, th.PosterWidth, names["poster"].Width)
	}
	if !th.Sprite {
		return
	}
	require.Equal(t, max(1, int(math.Ceil(pl.Duration/th.Interval-1e-9))), th.Count)
	require.Equal(t, th.Count, names["sprite"].Width/th.TileWidth*(names["sprite"].Height/th.TileHeight), "a grid of exactly Count tiles")
	sheet := decode(t, filepath.Join(out, media.SpriteName))
	for i := range th.Count {
		x, y := (i%th.Columns)*th.TileWidth, (i/th.Columns)*th.TileHeight
		require.Greater(t, meanLuma(sheet, image.Rect(x, y, x+th.TileWidth, y+th.TileHeight)), 20.0, "tile %d holds a picture, not the sheet's black padding", i)
	}
	vtt, err := os.ReadFile(filepath.Join(out, media.VTTName))
	require.NoError(t, err)
	require.Equal(t, th.Count, strings.Count(string(vtt), " --> "))
}

func decode(t *testing.T, path string) image.Image {
	t.Helper()
	f, err := os.Open(path)
	require.NoError(t, err)
	defer f.Close()
	img, err := jpeg.Decode(f)
	require.NoError(t, err)
	return img
}

// meanLuma is the average brightness (0–255) of r in img.
func meanLuma(img image.Image, r image.Rectangle) float64 {
	var sum, n float64
	for y := r.Min.Y; y < r.Max.Y; y++ {
		for x := r.Min.X; x < r.Max.X; x++ {
			cr, cg, cb, _ := img.At(x, y).RGBA()
			sum += (0.299*float64(cr) + 0.587*float64(cg) + 0.114*float64(cb)) / 257
			n++
		}
	}
	return sum / n
}
