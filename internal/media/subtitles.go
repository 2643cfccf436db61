package media

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"

	"github.com/herdhq/herd/internal/job"
	"github.com/herdhq/herd/internal/profile"
)

// Subtitles: a web plan turns each text subtitle stream of the source into
// a WebVTT file (SubtitleFile) in the same ffmpeg that encodes the audio,
// which package pack then cuts into segments on the video's segment grid
// with their own playlists. A stream ffmpeg cannot convert is found when
// the source is probed (CheckSubtitles) and left out of the plan with a
// note, so the job still succeeds; so is a picture subtitle (PGS, DVD),
// which WebVTT cannot carry.

// SubtitleFile names subtitle rendition k's whole WebVTT file, and
// SubtitlePlaylistName its HLS media playlist.
func SubtitleFile(k int) string         { return "subs_" + strconv.Itoa(k) + ".vtt" }
func SubtitlePlaylistName(k int) string { return "subs_" + strconv.Itoa(k) + ".m3u8" }

// subtitleOutputs are the ffmpeg outputs that write a web plan's subtitle
// renditions of the source's streams into outDir, one WebVTT file each
// (a sidecar's is copied: WriteSidecars).
func (pl *Plan) subtitleOutputs(outDir string) []string {
	var args []string
	alone := pl.audioAlone()
	for k, s := range pl.Subtitles {
		if !s.rendition() || s.Sidecar != "" {
			continue
		}
		args = append(args, "-map", fmt.Sprintf("0:%d", s.Input), "-c:s", "webvtt")
		if alone {
			// The run keeps the source's timestamps: cues count from its start.
			args = append(args, "-output_ts_offset", ftoa(-pl.Start))
		}
		args = append(args, "-f", "webvtt", "file:"+filepath.Join(filepath.Clean(outDir), SubtitleFile(k)))
	}
	return args
}

// webSubtitles says whether the plan makes WebVTT renditions.
func (pl *Plan) webSubtitles() bool {
	return pl.Format == profile.FormatHLS && len(pl.Subtitles) > 0
}

// AddSidecars adds a WebVTT rendition for each subtitle file given with
// the source, after the source's own, named like them. A plan that makes
// no WebVTT renditions notes that it leaves them out (submissions naming
// such a profile are refused, so only a profile changed since gets here).
func (pl *Plan) AddSidecars(p *profile.Profile, subs []job.SourceSubtitle) {
	for i, s := range subs {
		switch {
		case p.Subtitles != profile.SubsWebVTT || pl.Format != profile.FormatHLS:
			pl.Notes = append(pl.Notes, fmt.Sprintf("subtitle file %d is left out: profile %s does not make WebVTT renditions", i+1, p.Name))
			continue
		case len(pl.Subtitles) == maxTracks:
			pl.Notes = append(pl.Notes, fmt.Sprintf("subtitle file %d is past the %d subtitle renditions a job makes: left out", i+1, maxTracks))
			continue
		}
		tag := LanguageTag(s.Language)
		name := cmp.Or(languageName(tag), fmt.Sprintf("Subtitles %d", len(pl.Subtitles)+1))
		switch {
		case s.Forced:
			name += " (forced)"
		case s.HearingImpaired:
			name += " (SDH)"
		}
		pl.Subtitles = append(pl.Subtitles, SubtitlePlan{Codec: "webvtt", Language: tag, Name: name,
			Forced: s.Forced, HearingImpaired: s.HearingImpaired, Sidecar: s.ID})
	}
}

// Sidecars are the ids of the subtitle files the plan's renditions are
// made from, which the step that writes them (Encode, EncodeAudio) is
// given with UseSidecars.
func (pl *Plan) Sidecars() []string {
	var ids []string
	for _, s := range pl.Subtitles {
		if s.Sidecar != "" && !slices.Contains(ids, s.Sidecar) {
			ids = append(ids, s.Sidecar)
		}
	}
	return ids
}

// UseSidecars gives the plan the local path of each subtitle file it
// names (Sidecars), by id.
func (pl *Plan) UseSidecars(paths map[string]string) { pl.sidecarPaths = paths }

// writeSidecars copies the plan's sidecar renditions into outDir.
func (pl *Plan) writeSidecars(outDir string) error {
	for k, s := range pl.Subtitles {
		if s.Sidecar == "" {
			continue
		}
		src, ok := pl.sidecarPaths[s.Sidecar]
		if !ok {
			return fmt.Errorf("subtitle file %s was not fetched", s.Sidecar)
		}
		if err := copyFile(src, filepath.Join(outDir, SubtitleFile(k))); err != nil {
			return fmt.Errorf("subtitle file: %w", err)
		}
	}
	return nil
}

// CheckSubtitles converts every text subtitle stream of input to WebVTT,
// to nowhere, and marks those ffmpeg cannot convert (Unconvertible): one
// ffmpeg for all of them, and one a stream only when that one fails. A
// stream fails when ffmpeg exits with an error or reports one: it exits
// 0 on a cue it cannot decode (text that is not UTF-8), and drops it.
func (t Tools) CheckSubtitles(ctx context.Context, input string, info *Info) error {
	var text []int
	for i, s := range info.Subtitles {
		if s.Text {
			text = append(text, i)
		}
	}
	if len(text) == 0 {
		return nil
	}
	abs, err := filepath.Abs(input)
	if err != nil {
		return fmt.Errorf("check subtitles: %w", err)
	}
	tmp, err := os.MkdirTemp("", "herd-subtitles-")
	if err != nil {
		return fmt.Errorf("check subtitles: %w", err)
	}
	defer os.RemoveAll(tmp)
	convert := func(streams []int) error {
		args := []string{"-nostdin", "-hide_banner", "-nostats", "-v", "error", "-y", "-protocol_whitelist", "file,pipe",
			"-f", info.Demuxer, "-i", "file:" + filepath.Clean(abs)}
		for _, i := range streams {
			args = append(args, "-map", fmt.Sprintf("0:%d", info.Subtitles[i].Index), "-c:s", "webvtt", "-f", "webvtt",
				"file:"+filepath.Join(tmp, SubtitleFile(i)))
		}
		stderr, err := t.exec(ctx, t.ffmpeg(), args, nil, nil, stderrTailBytes)
		if err == nil && strings.TrimSpace(stderr) != "" {
			err = errors.New(lastLines(stderr, 1))
		}
		return err
	}
	if err := convert(text); err == nil || ctx.Err() != nil {
		return ctx.Err()
	}
	for _, i := range text {
		if err := convert([]int{i}); err != nil {
			if ctx.Err() != nil {
				return ctx.Err()
			}
			info.Subtitles[i].Unconvertible = "could not be converted to WebVTT (it is damaged, or its text is not UTF-8)"
		}
	}
	return nil
}

// copyFile copies the file src to dst (a new file).
func copyFile(src, dst string) error {
	in, err := os.Open(src)
	if err != nil {
		return err
	}
	defer in.Close()
	out, err := os.OpenFile(dst, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o644)
	if err != nil {
		return err
	}
	if _, err := io.Copy(out, in); err != nil {
		_ = out.Close()
		return err
	}
	return out.Close()
}
