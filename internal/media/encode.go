package media

import (
	"context"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"strings"

	"github.com/herdhq/herd/internal/profile"
	"github.com/herdhq/herd/internal/safefs"
)

// Encode runs EncodeArgs and, for hls, writes the HLS playlists and the DASH
// manifest over the segments ffmpeg wrote (see package pack): rates, codecs
// and timing measured from the segments on disk. It returns every argv it
// ran. A plan whose audio and subtitles the audio task makes (AudioStep)
// gets its video segments and sprite sheet only, so that its encode need
// not wait for the audio task: JoinAudio then joins the two and writes the
// playlists.
func (t Tools) Encode(ctx context.Context, pl *Plan, input, outDir string, progress func(Progress)) ([][]string, error) {
	ran, out, err := t.runInto(ctx, "encode", input, outDir, pl.EncodeArgs, progress)
	if err != nil {
		return ran, err
	}
	if !pl.AudioStep {
		if err := pl.writeSidecars(out); err != nil {
			return ran, fmt.Errorf("encode: %w", err)
		}
	}
	if pl.tilesInGraph() {
		if err := pl.AssembleSprite(out, out); err != nil {
			return ran, fmt.Errorf("encode: %w", err)
		}
		if err := removeTiles(out); err != nil {
			return ran, fmt.Errorf("encode: %w", err)
		}
	}
	if pl.Format == profile.FormatHLS && !pl.AudioStep {
		if _, err := pl.PackageHLS(out); err != nil {
			return ran, fmt.Errorf("encode: %w", err)
		}
	}
	return ran, nil
}

// JoinsAudio says whether the encode in outDir waits for JoinAudio: an
// AudioStep plan's, unless it has its master playlist already (an encode
// by a version 7 worker, which joined the audio itself).
func (pl *Plan) JoinsAudio(outDir string) bool {
	if !pl.AudioStep {
		return false
	}
	_, err := os.Stat(filepath.Join(outDir, MasterName))
	return err != nil
}

// JoinAudio joins the audio and subtitles the audio task made into
// audioDir (EncodeAudio) to the video an AudioStep plan's Encode made in
// outDir (JoinsAudio), as a stitch does a split plan's, then writes the
// playlists and the manifest (PackageHLS).
func (pl *Plan) JoinAudio(audioDir, outDir string) error {
	if !pl.AudioStep {
		return fmt.Errorf("join audio: the plan has no audio task")
	}
	if err := pl.joinAudio(audioDir, outDir); err != nil {
		return fmt.Errorf("join audio: %w", err)
	}
	if _, err := pl.PackageHLS(outDir); err != nil {
		return fmt.Errorf("join audio: %w", err)
	}
	return nil
}

// runInto runs the ffmpeg argv that args builds from input and outDir (both
// made absolute; outDir created), with progress. It returns the argv it ran
// and the absolute outDir; errors start with what.
func (t Tools) runInto(ctx context.Context, what, input, outDir string, args func(in, out string) []string, progress func(Progress)) ([][]string, string, error) {
	in, out, err := absPaths(input, outDir)
	if err != nil {
		return nil, "", fmt.Errorf("%s: %w", what, err)
	}
	if err := os.MkdirAll(out, 0o755); err != nil {
		return nil, "", fmt.Errorf("%s: %w", what, err)
	}
	a := args(in, out)
	ran := [][]string{argv(t.ffmpeg(), a)}
	if err := t.Run(ctx, a, progress); err != nil {
		return ran, out, fmt.Errorf("%s: %w", what, err)
	}
	return ran, out, nil
}

func absPaths(input, outDir string) (string, string, error) {
	in, err := filepath.Abs(input)
	if err != nil {
		return "", "", err
	}
	out, err := filepath.Abs(outDir)
	if err != nil {
		return "", "", err
	}
	return in, out, nil
}

// PosterArgs returns the argv that writes outDir/poster.jpg.
func (pl *Plan) PosterArgs(input, outDir string) []string {
	th := pl.Thumbs
	chain := append(pl.preFilters(false), pl.scaleFilter(th.PosterWidth, th.PosterHeight))
	args := pl.inputArgs(input, th.PosterAt)
	return append(args,
		"-map", fmt.Sprintf("0:%d", pl.VideoIndex),
		"-vf", strings.Join(chain, ","),
		"-frames:v", "1", "-q:v", "2", "-update", "1",
		"-f", "image2", "file:"+filepath.Join(filepath.Clean(outDir), PosterName))
}

// SpriteArgs returns the argv that writes outDir/sprite.jpg: one tile every
// Interval seconds, Columns × Rows tiles.
func (pl *Plan) SpriteArgs(input, outDir string) []string {
	th := pl.Thumbs
	chain := append(pl.preFilters(false),
		"fps=1/"+ftoa(th.Interval),
		fmt.Sprintf("scale=%d:%d,setsar=1", th.TileWidth, th.TileHeight),
		fmt.Sprintf("tile=%dx%d", th.Columns, th.Rows))
	args := pl.inputArgs(input, 0)
	return append(args,
		"-map", fmt.Sprintf("0:%d", pl.VideoIndex),
		"-vf", strings.Join(chain, ","),
		"-frames:v", "1", "-q:v", "3", "-update", "1",
		"-f", "image2", "file:"+filepath.Join(filepath.Clean(outDir), SpriteName))
}

// ThumbnailsVTT returns the WebVTT track whose cues point into sprite.jpg.
func (pl *Plan) ThumbnailsVTT() string {
	th := pl.Thumbs
	var b strings.Builder
	b.WriteString("WEBVTT\n")
	for i := range th.Count {
		start := float64(i) * th.Interval
		end := math.Min(float64(i+1)*th.Interval, pl.Duration)
		if end <= start {
			end = start + th.Interval
		}
		x, y := (i%th.Columns)*th.TileWidth, (i/th.Columns)*th.TileHeight
		fmt.Fprintf(&b, "\n%s --> %s\n%s#xywh=%d,%d,%d,%d\n", vttTime(start), vttTime(end), SpriteName, x, y, th.TileWidth, th.TileHeight)
	}
	return b.String()
}

func vttTime(sec float64) string {
	ms := int64(math.Round(sec * 1000))
	return fmt.Sprintf("%02d:%02d:%02d.%03d", ms/3_600_000, ms/60_000%60, ms/1000%60, ms%1000)
}

// Thumbnails writes poster.jpg and, when the plan asks for it, sprite.jpg and
// thumbnails.vtt into outDir. It returns every argv it ran.
func (t Tools) Thumbnails(ctx context.Context, pl *Plan, input, outDir string) ([][]string, error) {
	in, out, err := absPaths(input, outDir)
	if err != nil {
		return nil, fmt.Errorf("make thumbnails: %w", err)
	}
	if err := os.MkdirAll(out, 0o755); err != nil {
		return nil, fmt.Errorf("make thumbnails: %w", err)
	}
	var ran [][]string
	if pl.Thumbs.Poster {
		// A seek into a stream with few keyframes (an MPEG-TS or PS
		// capture, a short clip with one keyframe) can land after the last
		// one and decode nothing: then the poster is the first frame.
		at := []float64{pl.Thumbs.PosterAt}
		if at[0] > 0 {
			at = append(at, 0)
		}
		made := false
		for _, a := range at {
			p := *pl
			p.Thumbs.PosterAt = a
			args := p.PosterArgs(in, out)
			ran = append(ran, argv(t.ffmpeg(), args))
			if err := t.Run(ctx, args, nil); err != nil {
				return ran, fmt.Errorf("make poster: %w", err)
			}
			if _, err := os.Stat(filepath.Join(out, PosterName)); err == nil {
				made = true
				break
			}
		}
		if !made {
			return ran, &OutputError{Output: PosterName, Problem: "could not be made: ffmpeg decoded no picture of the source's video, from its start either"}
		}
	}
	if pl.Thumbs.Sprite && !pl.tilesInGraph() { // an hls encode makes its own
		args := pl.SpriteArgs(in, out)
		ran = append(ran, argv(t.ffmpeg(), args))
		if err := t.Run(ctx, args, nil); err != nil {
			return ran, fmt.Errorf("make sprite: %w", err)
		}
		if err := writeAtomic(out, VTTName, []byte(pl.ThumbnailsVTT())); err != nil {
			return ran, fmt.Errorf("make sprite: %w", err)
		}
	}
	return ran, nil
}

// writeAtomic writes dir/name atomically.
func writeAtomic(dir, name string, data []byte) error {
	root, err := os.OpenRoot(dir)
	if err != nil {
		return err
	}
	defer root.Close()
	return safefs.WriteFile(root, name, data, 0o644)
}
