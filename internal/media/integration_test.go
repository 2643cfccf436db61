package media

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/Eyevinn/dash-mpd/mpd"
	"github.com/Eyevinn/hls-m3u8/m3u8"
	"github.com/stretchr/testify/require"

	"github.com/herdhq/herd/internal/pack"
)

// pipeline admits, plans, encodes, makes thumbnails and verifies one input.
func pipeline(t *testing.T, input, profileName string) (*Plan, []Output, string) {
	t.Helper()
	tools := needFFmpeg(t)
	ctx := context.Background()
	pl := admitted(t, input, builtin(t, profileName))
	out := t.TempDir()
	var last Progress
	ran, err := tools.Encode(ctx, pl, input, out, func(p Progress) { last = p })
	require.NoError(t, err)
	require.Len(t, ran, 1)
	require.True(t, last.End, "the last progress block says end")
	require.Positive(t, last.OutTime)
	_, err = tools.Thumbnails(ctx, pl, input, out)
	require.NoError(t, err)
	outputs, ran, err := tools.Verify(ctx, pl, input, out)
	require.NoError(t, err)
	require.NotEmpty(t, ran)
	return pl, outputs, out
}

func outputNamed(t *testing.T, outs []Output, name string) Output {
	t.Helper()
	i := slices.IndexFunc(outs, func(o Output) bool { return o.Name == name })
	require.GreaterOrEqual(t, i, 0, "no output %q in %+v", name, outs)
	return outs[i]
}

// decodeNull decodes a whole file with ffmpeg and fails on any decoder error.
func decodeNull(t *testing.T, demuxer, path string) {
	t.Helper()
	out, err := exec.Command("ffmpeg", "-nostdin", "-v", "error", "-xerror", "-f", demuxer, "-i", "file:"+path, "-f", "null", "-").CombinedOutput()
	require.NoError(t, err, "decode %s: %s", filepath.Base(path), out)
	require.Empty(t, strings.TrimSpace(string(out)), "decoder errors in %s", filepath.Base(path))
}

// firstFrame reports the picture type and key flag of a file's first video frame.
func firstFrame(t *testing.T, path string) (pictType string, key bool) {
	t.Helper()
	out, err := exec.Command("ffprobe", "-v", "error", "-f", "mov", "-select_streams", "v:0", "-read_intervals", "%+#1",
		"-show_entries", "frame=pict_type,key_frame", "-of", "json", "file:"+path).Output()
	require.NoError(t, err)
	var res struct {
		Frames []struct {
			PictType string `json:"pict_type"`
			KeyFrame int    `json:"key_frame"`
		} `json:"frames"`
	}
	require.NoError(t, json.Unmarshal(out, &res))
	require.NotEmpty(t, res.Frames)
	return res.Frames[0].PictType, res.Frames[0].KeyFrame == 1
}

func catFiles(t *testing.T, dst string, srcs ...string) {
	t.Helper()
	var buf bytes.Buffer
	for _, s := range srcs {
		f, err := os.Open(s)
		require.NoError(t, err)
		_, err = io.Copy(&buf, f)
		require.NoError(t, err)
		require.NoError(t, f.Close())
	}
	writeFile(t, dst, buf.Bytes())
}

func TestWebHLS(t *testing.T) {
	t.Parallel()
	needFFmpeg(t)
	input := clip(t, "in.mp4", "640x360", "6")
	pl, outs, dir := pipeline(t, input, "web-hls")
	require.Equal(t, []RungPlan{
		{Name: "360p", Width: 640, Height: 360, Bitrate: 800_000, MaxRate: 856_000, BufSize: 1_200_000},
		{Name: "240p", Width: 426, Height: 240, Bitrate: 400_000, MaxRate: 428_000, BufSize: 600_000},
	}, pl.Rungs)

	// The master playlist, with every attribute, read with hls-m3u8.
	master, err := pack.ReadMaster(filepath.Join(dir, MasterName))
	require.NoError(t, err)
	var variants []*m3u8.Variant
	for _, v := range master.Variants {
		if !v.Iframe {
			variants = append(variants, v)
		}
	}
	require.Len(t, variants, 2)
	require.Len(t, master.Variants, 4, "two rungs and their I-frame playlists")
	alts := master.GetAllAlternatives()
	require.Len(t, alts, 1)
	require.Equal(t, "AUDIO", alts[0].Type)
	codecs := regexp.MustCompile(`^avc1\.64[0-9A-F]{4},mp4a\.40\.2$`)
	for i, v := range variants {
		r := pl.Rungs[i]
		require.Equal(t, strconv.Itoa(r.Width)+"x"+strconv.Itoa(r.Height), v.Resolution)
		require.Regexp(t, codecs, v.Codecs)
		require.InDelta(t, 25.0, v.FrameRate, 0.001)
		require.Equal(t, alts[0].GroupId, v.Audio)
		bw, avg := int64(v.Bandwidth), int64(v.AverageBandwidth)
		require.Positive(t, avg)
		require.GreaterOrEqual(t, bw, avg, "peak below average")
		require.Less(t, avg, 3*r.MaxRate, "average far above the rung's rate")

		// Segments: ~4 s except the last; each starts with a keyframe and decodes.
		mp, err := pack.ReadMedia(filepath.Join(dir, v.URI))
		require.NoError(t, err)
		require.True(t, mp.Closed)
		segments := pack.Segments(mp)
		require.GreaterOrEqual(t, len(segments), 2)
		total := 0.0
		for j, s := range segments {
			total += s.Duration
			if j < len(segments)-1 {
				require.InDelta(t, pl.SegmentSeconds, s.Duration, 0.1, "segment %d", j)
			}
			joined := filepath.Join(t.TempDir(), "seg.mp4")
			catFiles(t, joined, filepath.Join(dir, mp.Map.URI), filepath.Join(dir, s.URI))
			pt, key := firstFrame(t, joined)
			require.True(t, key, "segment %s does not start with a keyframe", s.URI)
			require.Equal(t, "I", pt)
		}
		require.InDelta(t, 6, total, 0.5)
		all := filepath.Join(t.TempDir(), "all.mp4")
		segs := []string{filepath.Join(dir, mp.Map.URI)}
		for _, s := range segments {
			segs = append(segs, filepath.Join(dir, s.URI))
		}
		catFiles(t, all, segs...)
		decodeNull(t, "mov", all)
	}

	// The DASH manifest lists the same rungs.
	m, err := pack.ReadManifest(filepath.Join(dir, ManifestName))
	require.NoError(t, err)
	var reps []*mpd.RepresentationType
	for _, as := range m.Periods[0].AdaptationSets {
		if as.ContentType == "video" {
			reps = append(reps, as.Representations...)
		}
	}
	require.Len(t, reps, 2)
	for i, r := range reps {
		require.EqualValues(t, pl.Rungs[i].Width, r.Width)
		require.EqualValues(t, pl.Rungs[i].Height, r.Height)
	}

	// Outputs: quality, sizes, thumbnails.
	for _, name := range []string{"360p", "240p"} {
		o := outputNamed(t, outs, name)
		require.Equal(t, "hls", o.Kind)
		require.Equal(t, "h264", o.Codec)
		require.InDelta(t, 6, o.Duration, 0.5)
		require.Positive(t, o.Size)
		require.Positive(t, o.Bitrate)
		require.Greater(t, o.SSIM, 0.8, name)
		require.LessOrEqual(t, o.SSIM, 1.0, name)
		require.Greater(t, o.PSNR, 25.0, name)
	}
	require.Equal(t, "aac", outputNamed(t, outs, "audio").Codec)
	require.Equal(t, "dash", outputNamed(t, outs, "manifest").Kind)
	require.Equal(t, MasterName, outputNamed(t, outs, "master").Path)
	poster := outputNamed(t, outs, "poster")
	require.Equal(t, 640, poster.Width)
	require.Equal(t, 360, poster.Height)
	sprite := outputNamed(t, outs, "sprite")
	require.Equal(t, 3*160, sprite.Width, "three tiles of 2 s in a row")
	require.Equal(t, 90, sprite.Height)
	vtt, err := os.ReadFile(filepath.Join(dir, VTTName))
	require.NoError(t, err)
	require.Equal(t, 3, strings.Count(string(vtt), "sprite.jpg#xywh="))
	require.Contains(t, string(vtt), "00:00:04.000 --> 00:00:06.000\nsprite.jpg#xywh=320,0,160,90\n")
	data, err := json.Marshal(outs)
	require.NoError(t, err)
	require.Contains(t, string(data), `"ssim":`)

	// A thumbnail track that lost a cue, or a sheet of the wrong size, fails.
	require.NoError(t, os.WriteFile(filepath.Join(dir, VTTName), vtt[:bytes.LastIndex(vtt, []byte("\n\n"))+1], 0o644))
	_, _, err = Tools{}.Verify(context.Background(), pl, input, dir)
	require.ErrorContains(t, err, VTTName+" is not the plan's track of 3 cues")
	require.True(t, IsPermanent(err))
	require.NoError(t, os.WriteFile(filepath.Join(dir, VTTName), vtt, 0o644))
	pl.Thumbs.Columns = 2
	_, _, err = Tools{}.Verify(context.Background(), pl, input, dir)
	require.ErrorContains(t, err, SpriteName+" is 480x90, not the plan's 2 × 1 tiles of 160x90")
}

// smallLadder encodes a 3 s 320x180 clip with web-hls (no thumbnails) into a folder.
func smallLadder(t *testing.T) (tools Tools, pl *Plan, input, dir string) {
	t.Helper()
	tools = needFFmpeg(t)
	ctx := context.Background()
	input = clip(t, "in.mp4", "320x180", "3")
	info, err := tools.Admit(ctx, input, Limits{})
	require.NoError(t, err)
	pl, err = NewPlan(info, builtin(t, "web-hls"))
	require.NoError(t, err)
	pl.Thumbs = ThumbPlan{}
	dir = t.TempDir()
	_, err = tools.Encode(ctx, pl, input, dir, nil)
	require.NoError(t, err)
	return tools, pl, input, dir
}

func TestVerifyNoticesMissingSegment(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	tools, pl, input, dir := smallLadder(t)
	_, _, err := tools.Verify(ctx, pl, input, dir)
	require.NoError(t, err)
	require.NoError(t, os.Remove(filepath.Join(dir, "chunk-0-00001.m4s")))
	_, _, err = tools.Verify(ctx, pl, input, dir)
	require.ErrorContains(t, err, "chunk-0-00001.m4s: missing")
	require.True(t, IsPermanent(err), "verifying the same files again cannot help")
}

// TestVerifyNoticesCorruptSegment: a segment whose picture data was
// overwritten demuxes and lasts as long as before; only decoding it tells.
func TestVerifyNoticesCorruptSegment(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	tools, pl, input, dir := smallLadder(t)
	seg := filepath.Join(dir, "chunk-0-00001.m4s")
	b, err := os.ReadFile(seg)
	require.NoError(t, err)
	// Everything past the first quarter (moof and the start of mdat) becomes noise.
	rng := rand.New(rand.NewPCG(1, 2))
	for i := len(b) / 4; i < len(b); i++ {
		b[i] = byte(rng.UintN(256))
	}
	require.NoError(t, os.WriteFile(seg, b, 0o644))
	_, _, err = tools.Verify(ctx, pl, input, dir)
	require.ErrorContains(t, err, "decode")
	require.True(t, IsPermanent(err), "verifying the same files again cannot help")
}

// TestVerifyToleratesDamagedSource: the quality run decodes the source
// too; damaged source frames the encode got past are not the output's fault.
func TestVerifyToleratesDamagedSource(t *testing.T) {
	t.Parallel()
	tools := needFFmpeg(t)
	ctx := context.Background()
	input := clip(t, "in.mp4", "320x180", "3")
	b, err := os.ReadFile(input)
	require.NoError(t, err)
	// Noise in the middle of the picture data (the clip has moov at the end).
	rng := rand.New(rand.NewPCG(3, 4))
	for i := len(b) / 2; i < len(b)/2+400; i++ {
		b[i] = byte(rng.UintN(256))
	}
	require.NoError(t, os.WriteFile(input, b, 0o644))
	var stderr bytes.Buffer
	cmd := exec.Command("ffmpeg", "-v", "error", "-i", input, "-f", "null", "-")
	cmd.Stderr = &stderr
	_ = cmd.Run()
	require.NotEmpty(t, stderr.String(), "the damaged source decodes with errors")

	pl := admitted(t, input, builtin(t, "web-hls"))
	pl.Thumbs = ThumbPlan{}
	dir := t.TempDir()
	_, err = tools.Encode(ctx, pl, input, dir, nil)
	require.NoError(t, err)
	_, ran, err := tools.Verify(ctx, pl, input, dir)
	require.NoError(t, err)
	require.Contains(t, fmt.Sprint(ran), "-count_frames -select_streams v:0", "the outputs were decoded alone to clear them")
}

func TestLevelLines(t *testing.T) {
	log := "[info] Stream mapping:\n" +
		"[h264 @ 0x55d0] [error] error while decoding MB 3 4\n" +
		"[ssim@q0 @ 0x55d1] [info] SSIM Y:0.99 All:0.99 (20.0)\n" +
		"[fatal] Conversion failed!\n" +
		"[info] the word [error] inside a message\n"
	require.Equal(t, "[h264 @ 0x55d0] [error] error while decoding MB 3 4\n[fatal] Conversion failed!\n", levelLines(log, "[error]", "[fatal]"))
	require.Empty(t, levelLines("[info] fine\n", "[error]"))
}

func TestWebHLSRealMPEG2NoAudio(t *testing.T) {
	t.Parallel()
	pl, outs, dir := pipeline(t, filepath.Join("testdata", "cityCC0.mpg"), "web-hls")
	require.Equal(t, "mpeg", pl.Demuxer)
	require.Empty(t, pl.Audio)
	require.Len(t, pl.Rungs, 2)
	for _, r := range pl.Rungs {
		require.LessOrEqual(t, r.Height, 405)
		o := outputNamed(t, outs, r.Name)
		require.Greater(t, o.SSIM, 0.7)
	}
	data, err := os.ReadFile(filepath.Join(dir, MasterName))
	require.NoError(t, err)
	require.NotContains(t, string(data), "AUDIO")
	require.Regexp(t, `CODECS="avc1\.64[0-9a-f]{4}"`, string(data))
}

// boxOrder returns the top-level box types of an MP4 file.
func boxOrder(t *testing.T, path string) []string {
	t.Helper()
	data, err := os.ReadFile(path)
	require.NoError(t, err)
	var types []string
	for off := 0; off+8 <= len(data); {
		size := int(uint32(data[off])<<24 | uint32(data[off+1])<<16 | uint32(data[off+2])<<8 | uint32(data[off+3]))
		types = append(types, string(data[off+4:off+8]))
		if size < 8 {
			break
		}
		off += size
	}
	return types
}

func TestMP4LibraryAC3Passthrough(t *testing.T) {
	t.Parallel()
	pl, outs, dir := pipeline(t, filepath.Join("testdata", "Megamind.avi"), "mp4-library")
	require.Len(t, pl.Audio, 2)
	path := filepath.Join(dir, "video.mp4")
	types := boxOrder(t, path)
	require.Less(t, slices.Index(types, "moov"), slices.Index(types, "mdat"), "faststart: moov before mdat (%v)", types)
	info := probeStreams(t, "mov", path)
	require.Equal(t, "h264", info.Video.Codec)
	require.Len(t, info.Audio, 2)
	require.Equal(t, "aac", info.Audio[0].Codec)
	require.Equal(t, 2, info.Audio[0].Channels)
	require.True(t, info.Audio[0].Default)
	require.Equal(t, "ac3", info.Audio[1].Codec)
	require.InDelta(t, pl.Duration, info.Duration, 0.5)
	o := outputNamed(t, outs, "video")
	require.Equal(t, "mp4", o.Kind)
	require.Greater(t, o.SSIM, 0.8)
	require.Greater(t, o.PSNR, 25.0)
	require.Equal(t, 720, outputNamed(t, outs, "poster").Width)
	decodeNull(t, "mov", path)
}

func TestMP4LibraryRotatedSurround(t *testing.T) {
	t.Parallel()
	needFFmpeg(t)
	base := clip(t, "base.mp4", "320x180", "2", "-af", "aformat=channel_layouts=5.1", "-ac", "6")
	rotated := filepath.Join(t.TempDir(), "rotated.mp4")
	generate(t, "-i", base, "-c", "copy", "-metadata:s:v:0", "rotate=90", rotated)
	pl, outs, dir := pipeline(t, rotated, "mp4-library")
	require.Equal(t, 180, pl.Width)
	require.Equal(t, 320, pl.Height)
	info := probeStreams(t, "mov", filepath.Join(dir, "video.mp4"))
	require.Less(t, info.Video.Width, info.Video.Height, "upright output")
	require.Equal(t, 180, info.Video.Width)
	require.Zero(t, info.Video.Rotation, "no rotation metadata on the output")
	require.Equal(t, 2, info.Audio[0].Channels, "5.1 downmixed to stereo")
	require.Len(t, info.Audio, 1, "aac is not passed through")
	o := outputNamed(t, outs, "video")
	require.Greater(t, o.SSIM, 0.8, "upright the same way as the source is displayed")
}

func TestMP4LibraryRealH264(t *testing.T) {
	t.Parallel()
	pl, outs, dir := pipeline(t, filepath.Join("testdata", "movie-hello.mp4"), "mp4-library")
	require.Equal(t, []RungPlan{{Name: "720p", Width: 1280, Height: 720}}, pl.Rungs)
	info := probeStreams(t, "mov", filepath.Join(dir, "video.mp4"))
	require.Equal(t, "aac", info.Audio[0].Codec)
	require.InDelta(t, pl.Duration, info.Duration, 0.5)
	require.Greater(t, outputNamed(t, outs, "video").SSIM, 0.8)
}

func TestArchiveHEVCKeepsEveryTrack(t *testing.T) {
	t.Parallel()
	needFFmpeg(t)
	dir := t.TempDir()
	srt := filepath.Join(dir, "subs.srt")
	writeFile(t, srt, []byte("1\n00:00:00,000 --> 00:00:01,000\nHello\n\n2\n00:00:01,000 --> 00:00:02,000\nWorld\n"))
	input := filepath.Join(dir, "in.mkv")
	generate(t, "-f", "lavfi", "-i", "testsrc2=size=320x180:rate=25:duration=2",
		"-f", "lavfi", "-i", "sine=frequency=440:duration=2", "-f", "lavfi", "-i", "sine=frequency=880:duration=2", "-i", srt,
		"-map", "0", "-map", "1", "-map", "2", "-map", "3", "-c:v", "libx264", "-preset", "ultrafast",
		"-c:a:0", "aac", "-c:a:1", "ac3", "-c:s", "subrip", "-metadata:s:a:1", "language=fre", input)
	pl, outs, out := pipeline(t, input, "archive-hevc")
	require.Len(t, pl.Audio, 2)
	require.Len(t, pl.Subtitles, 1)
	info := probeStreams(t, "matroska", filepath.Join(out, "video.mkv"))
	require.Equal(t, "hevc", info.Video.Codec)
	require.Equal(t, []string{"aac", "ac3"}, []string{info.Audio[0].Codec, info.Audio[1].Codec})
	require.Equal(t, "fre", info.Audio[1].Language)
	require.Len(t, info.Subtitles, 1)
	require.Equal(t, "subrip", info.Subtitles[0].Codec)
	o := outputNamed(t, outs, "video")
	require.Equal(t, "hevc", o.Codec)
	require.Greater(t, o.SSIM, 0.8)
	require.Greater(t, o.PSNR, 25.0)
}

func TestHDRToneMappedForH264KeptForHEVC(t *testing.T) {
	t.Parallel()
	tools := needFFmpeg(t)
	ctx := context.Background()
	input := filepath.Join(t.TempDir(), "hdr.mkv")
	generate(t, "-f", "lavfi", "-i", "testsrc2=size=320x180:rate=24:duration=1", "-pix_fmt", "yuv420p10le",
		"-c:v", "libx265", "-x265-params", "log-level=error",
		"-color_primaries", "bt2020", "-color_trc", "smpte2084", "-colorspace", "bt2020nc", input)
	info, err := tools.Admit(ctx, input, Limits{})
	require.NoError(t, err)
	require.True(t, info.Video.HDR)
	for _, tc := range []struct {
		profile, demuxer, pixFmt, transfer string
		toneMap                            bool
	}{
		{"mp4-library", "mov", "yuv420p", "", true},
		{"archive-hevc", "matroska", "yuv420p10le", "smpte2084", false},
	} {
		pl, err := NewPlan(info, builtin(t, tc.profile))
		require.NoError(t, err)
		require.Equal(t, tc.toneMap, pl.ToneMap)
		pl.Thumbs = ThumbPlan{}
		out := t.TempDir()
		_, err = tools.Encode(ctx, pl, input, out, nil)
		require.NoError(t, err)
		outs, _, err := tools.Verify(ctx, pl, input, out)
		require.NoError(t, err)
		require.Greater(t, outs[0].SSIM, 0.8, tc.profile)
		got := probeStreams(t, tc.demuxer, filepath.Join(out, pl.FileName()))
		require.Equal(t, tc.pixFmt, got.Video.PixFmt, tc.profile)
		require.Equal(t, tc.transfer != "", got.Video.HDR, tc.profile)
	}
}
