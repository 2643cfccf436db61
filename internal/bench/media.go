package bench

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"

	"github.com/Eyevinn/hls-m3u8/m3u8"
)

// input is a clip the scenarios encode, made from the real sample clip.
type input struct {
	name    string // file name in the cache
	about   string // how it was made, for the report
	seconds int
	width   int
	height  int
}

// bigInput is the ladder and library input: the real 720p sample scaled to
// 1080p (lanczos) and looped (quick: 2 s at 640x360).
func (e *env) bigInput() input {
	if e.Quick {
		return input{name: "bench-360p-2s-v1.mp4", seconds: 2, width: 640, height: 360}
	}
	return input{name: "bench-1080p-25s-v1.mp4", seconds: 25, width: 1920, height: 1080}
}

// bigSetup makes the ladder and library input (once per cache) and the
// scenario's folder, and says how many runs to take the median of.
func (e *env) bigSetup(ctx context.Context, name string) (src string, in input, runs int, work string, err error) {
	if src, in, err = e.make(ctx, e.bigInput()); err != nil {
		return "", in, 0, "", err
	}
	runs = 3
	if e.Quick {
		runs = 1
	}
	work, err = e.dir(name)
	return src, in, runs, work, err
}

// smallInput is the overhead input: 10 s of the sample at its own 720p
// (quick: 1 s at 320x180).
func (e *env) smallInput() input {
	if e.Quick {
		return input{name: "bench-180p-1s-v1.mp4", seconds: 1, width: 320, height: 180}
	}
	return input{name: "bench-720p-10s-v1.mp4", seconds: 10, width: 1280, height: 720}
}

// make returns the input's path, making it once per cache.
func (e *env) make(ctx context.Context, in input) (string, input, error) {
	in.about = fmt.Sprintf("%s: %d s of %s (real camera footage, H.264 1280x720 30 fps, AAC stereo, looped) scaled to %dx%d with lanczos, "+
		"encoded with libx264 -preset fast -crf 16 and AAC 192k stereo", in.name, in.seconds, filepath.Base(e.Sample), in.width, in.height)
	p := filepath.Join(e.Cache, in.name)
	if _, err := os.Stat(p); err == nil {
		return p, in, nil
	}
	e.logf("making %s", in.name)
	tmp := p + ".tmp.mp4"
	_, err := runCmd(ctx, p+".log", "ffmpeg", "-nostdin", "-hide_banner", "-y",
		"-stream_loop", "-1", "-i", e.Sample, "-t", strconv.Itoa(in.seconds),
		"-vf", fmt.Sprintf("scale=%d:%d:flags=lanczos,setsar=1", in.width, in.height),
		"-c:v", "libx264", "-preset", "fast", "-crf", "16", "-pix_fmt", "yuv420p",
		"-c:a", "aac", "-b:a", "192k", "-ac", "2", "-movflags", "+faststart", tmp)
	if err != nil {
		return "", in, err
	}
	_ = os.Remove(p + ".log")
	return p, in, os.Rename(tmp, p)
}

// ssimLine is how ffmpeg's ssim filter, named ssim@qN, ends its run.
var ssimLine = regexp.MustCompile(`\[ssim@q(\d+) @ [^\]]+\] SSIM .* All:([0-9.]+|inf)`)

// ssim measures the SSIM (All) of every file against source, both scaled
// to w×h (the source's display size) with bicubic, in one ffmpeg process
// that decodes the source once. The same measure is applied to herd and to
// what it is compared with.
func ssim(ctx context.Context, log, source string, w, h int, files []string) ([]float64, error) {
	if len(files) == 0 {
		return nil, nil
	}
	args := []string{"-nostdin", "-hide_banner", "-nostats", "-i", source}
	for _, f := range files {
		args = append(args, "-i", f)
	}
	norm := fmt.Sprintf("scale=%d:%d:flags=bicubic,setsar=1,format=yuv420p,setpts=PTS-STARTPTS", w, h)
	var g strings.Builder
	fmt.Fprintf(&g, "[0:v:0]%s,split=%d", norm, len(files))
	for i := range files {
		fmt.Fprintf(&g, "[r%d]", i)
	}
	for i := range files {
		fmt.Fprintf(&g, ";[%d:v:0]%s[d%d];[d%d][r%d]ssim@q%d=shortest=1[q%d]", i+1, norm, i, i, i, i, i)
	}
	args = append(args, "-filter_complex", g.String())
	for i := range files {
		args = append(args, "-map", fmt.Sprintf("[q%d]", i), "-f", "null", "-")
	}
	if _, err := runCmd(ctx, log, "ffmpeg", args...); err != nil {
		return nil, err
	}
	out := make([]float64, len(files))
	found := 0
	f, err := os.Open(log)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		m := ssimLine.FindStringSubmatch(sc.Text())
		if m == nil {
			continue
		}
		i, _ := strconv.Atoi(m[1])
		v := 1.0
		if m[2] != "inf" {
			v, _ = strconv.ParseFloat(m[2], 64)
		}
		if i < len(out) {
			out[i] = v
			found++
		}
	}
	if found != len(files) {
		return nil, fmt.Errorf("ffmpeg printed %d SSIM lines for %d files (log %s)", found, len(files), log)
	}
	return out, nil
}

// rendition is one video rung of an HLS output, made into one file.
type rendition struct {
	Width, Height int
	File          string // init segment and media segments, concatenated
	Bytes         int64
}

// opener reads a file of an HLS output by its path relative to the master playlist.
type opener func(name string) (io.ReadCloser, error)

func localOpener(dir string) opener {
	return func(name string) (io.ReadCloser, error) {
		return os.Open(filepath.Join(dir, filepath.FromSlash(path.Clean("/"+name))))
	}
}

// flattenHLS reads a master playlist (fMP4 renditions) and writes each video
// rendition as one file into dir (prefix-N.mp4), so that any tool can read it.
func flattenHLS(open opener, master, dir, prefix string) ([]rendition, error) {
	pl, err := decodePlaylist(open, master, m3u8.MASTER)
	if err != nil {
		return nil, err
	}
	base := path.Dir(master)
	var out []rendition
	for _, v := range pl.(*m3u8.MasterPlaylist).Variants {
		if v.Iframe {
			continue
		}
		r := rendition{}
		if w, h, ok := strings.Cut(v.Resolution, "x"); ok {
			r.Width, _ = strconv.Atoi(w)
			r.Height, _ = strconv.Atoi(h)
		}
		r.File = filepath.Join(dir, fmt.Sprintf("%s-%d.mp4", prefix, len(out)))
		if r.Bytes, err = concatMedia(open, path.Join(base, v.URI), r.File); err != nil {
			return nil, err
		}
		out = append(out, r)
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("%s lists no video rendition", master)
	}
	return out, nil
}

// concatMedia writes a media playlist's init segment and segments to one file.
func concatMedia(open opener, media, to string) (int64, error) {
	pl, err := decodePlaylist(open, media, m3u8.MEDIA)
	if err != nil {
		return 0, err
	}
	mp := pl.(*m3u8.MediaPlaylist)
	base := path.Dir(media)
	var parts []string
	if mp.Map != nil {
		parts = append(parts, path.Join(base, mp.Map.URI))
	}
	for _, seg := range mp.Segments {
		if seg != nil {
			parts = append(parts, path.Join(base, seg.URI))
		}
	}
	f, err := os.Create(to)
	if err != nil {
		return 0, err
	}
	var n int64
	for _, p := range parts {
		rc, err := open(p)
		if err != nil {
			_ = f.Close()
			return 0, err
		}
		k, err := io.Copy(f, rc)
		_ = rc.Close()
		n += k
		if err != nil {
			_ = f.Close()
			return 0, err
		}
	}
	return n, f.Close()
}

// decodePlaylist reads an HLS playlist of the kind wanted with hls-m3u8.
func decodePlaylist(open opener, name string, want m3u8.ListType) (m3u8.Playlist, error) {
	rc, err := open(name)
	if err != nil {
		return nil, err
	}
	defer rc.Close()
	pl, kind, err := m3u8.DecodeFrom(rc, true)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", name, err)
	}
	if kind != want {
		return nil, fmt.Errorf("%s: not the playlist kind expected", name)
	}
	return pl, nil
}

// have reports whether a program is on PATH.
func have(name string) bool {
	_, err := exec.LookPath(name)
	return err == nil
}
