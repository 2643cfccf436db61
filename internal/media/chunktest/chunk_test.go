// Package chunktest checks split-and-stitch with real ffmpeg: a chunked
// encode of a source and an unchunked one give the same frames, timestamps
// and keyframes per rung, the same quality, and audio of the same duration.
// It is its own package so that its encodes do not slow internal/media's
// tests.
package chunktest

import (
	"bytes"
	"context"
	"encoding/binary"
	"fmt"
	"image/jpeg"
	"math"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/herdhq/herd/internal/media"
	"github.com/herdhq/herd/internal/pack"
	"github.com/herdhq/herd/internal/profile"
	"github.com/herdhq/herd/internal/testenv"
)

// web is web-hls cut to two small rungs and 2 s segments.
func web(t *testing.T) *profile.Profile {
	t.Helper()
	p, err := profile.Parse([]byte(`name: chunk-test
version: 1
format: hls
segment_seconds: 2
video:
  codec: h264
  preset: veryfast
  rungs:
    - {height: 180, bitrate: 400k}
    - {height: 90, bitrate: 250k}
audio:
  codec: aac
  bitrate: 96k
  channels: 2
thumbnails:
  poster: false
  sprite: true
  interval: 1
  width: 64
  columns: 4
`))
	require.NoError(t, err)
	return p
}

func TestChunkedEqualsUnchunked(t *testing.T) {
	testenv.NeedFFmpeg(t)
	tmp := t.TempDir()
	for _, tc := range []struct {
		name   string
		source func() string
		chunks int
	}{
		{"25 fps MP4, three chunks", func() string {
			p := filepath.Join(tmp, "pal.mp4")
			require.NoError(t, testenv.Clip{Size: "320x180", Rate: 25, Seconds: 13, Tone: 300, Stereo: true}.Make(p))
			return p
		}, 3},
		{"29.97 fps MP4", func() string {
			p := filepath.Join(tmp, "ntsc.mp4")
			require.NoError(t, testenv.Clip{Size: "320x180", Rate: 30, Seconds: 9, Tone: 310, Stereo: true, Extra: []string{"-r", "30000/1001"}}.Make(p))
			return p
		}, 2},
		{"variable frame rate MKV", func() string {
			// Two of every seven frames dropped: 25 fps with gaps.
			p := filepath.Join(tmp, "vfr.mkv")
			require.NoError(t, testenv.FFmpeg("-f", "lavfi", "-i", "testsrc2=size=320x180:rate=25", "-f", "lavfi", "-i", "sine=frequency=330:sample_rate=48000",
				"-t", "9", "-vf", `select='lt(mod(n\,7)\,5)'`, "-fps_mode", "vfr", "-c:v", "libx264", "-preset", "ultrafast", "-pix_fmt", "yuv420p",
				"-c:a", "aac", "-ac", "2", p))
			return p
		}, 2},
		{"MP4 shot on its side (rotated 90°: the pieces lose the rotation)", func() string {
			plain := filepath.Join(tmp, "side-plain.mp4")
			require.NoError(t, testenv.Clip{Size: "320x180", Rate: 25, Seconds: 9, Tone: 340, Stereo: true}.Make(plain))
			p := filepath.Join(tmp, "side.mp4")
			require.NoError(t, testenv.FFmpeg("-i", plain, "-c", "copy", "-metadata:s:v:0", "rotate=90", p))
			return p
		}, 2},
		{"interlaced MPEG-TS (deinterlaced before the split's trim)", func() string {
			p := filepath.Join(tmp, "tff.ts")
			require.NoError(t, testenv.FFmpeg("-f", "lavfi", "-i", "testsrc2=size=320x180:rate=50", "-f", "lavfi", "-i", "sine=frequency=350:sample_rate=48000",
				"-t", "9", "-vf", "tinterlace=interleave_top,setfield=tff", "-flags", "+ildct+ilme", "-c:v", "libx264", "-preset", "ultrafast", "-g", "25",
				"-pix_fmt", "yuv420p", "-c:a", "aac", "-ac", "2", "-f", "mpegts", p))
			return p
		}, 2},
		{"HDR10 HEVC (tone-mapped to SDR in every chunk)", func() string {
			p := filepath.Join(tmp, "hdr.mp4")
			require.NoError(t, testenv.FFmpeg("-f", "lavfi", "-i", "testsrc2=size=320x180:rate=25", "-f", "lavfi", "-i", "sine=frequency=360:sample_rate=48000",
				"-t", "9", "-pix_fmt", "yuv420p10le", "-c:v", "libx265", "-preset", "ultrafast",
				"-x265-params", "log-level=error:keyint=25:colorprim=bt2020:transfer=smpte2084:colormatrix=bt2020nc",
				"-color_primaries", "bt2020", "-color_trc", "smpte2084", "-colorspace", "bt2020nc", "-c:a", "aac", "-ac", "2", p))
			return p
		}, 2},
		{"MPEG-TS whose audio starts half a second before its video", func() string {
			p := filepath.Join(tmp, "late.ts")
			require.NoError(t, testenv.FFmpeg("-itsoffset", "0.48", "-f", "lavfi", "-i", "testsrc2=size=320x180:rate=25",
				"-f", "lavfi", "-i", "sine=frequency=320:sample_rate=48000", "-t", "9", "-map", "0:v", "-map", "1:a",
				"-c:v", "libx264", "-preset", "ultrafast", "-g", "25", "-pix_fmt", "yuv420p", "-c:a", "aac", "-ac", "2", "-f", "mpegts", p))
			return p
		}, 2},
		{"MP4 whose edit list hides its last frame", func() string {
			// The edit ends 60 ms before the video's 9 s: the frame at
			// 8.96 s is hidden (the demuxer discards it), the one at
			// 8.92 s shown, though the edit ends inside it.
			p := filepath.Join(tmp, "edit.mp4")
			require.NoError(t, testenv.Clip{Size: "320x180", Rate: 25, Seconds: 9, Tone: 370, Stereo: true}.Make(p))
			shortenVideoEdit(t, p, 60)
			return p
		}, 2},
	} {
		t.Run(tc.name, func(t *testing.T) {
			src := tc.source()
			ctx := context.Background()
			tools := media.Tools{}
			info, err := tools.Admit(ctx, src, media.Limits{})
			require.NoError(t, err)
			require.NoError(t, tools.ProbeVideoEnd(ctx, src, info))
			require.Equal(t, strings.Contains(tc.name, "edit list"), info.VideoEnd > 0, "the source's edit list hides frames at its end")

			whole, err := media.NewPlan(info, web(t))
			require.NoError(t, err)
			require.Equal(t, strings.HasPrefix(tc.name, "interlaced"), whole.Deinterlace, "the plan deinterlaces")
			require.Equal(t, strings.HasPrefix(tc.name, "HDR"), whole.ToneMap, "the plan tone-maps")
			split := *whole
			split.PlanChunks(4, nil)
			require.Len(t, split.Chunks, tc.chunks)
			require.NoError(t, split.Validate())
			whole.FPSFilter = true // as the split plan: the same frames either way

			wholeDir := t.TempDir()
			_, err = tools.Encode(ctx, whole, src, wholeDir, nil)
			require.NoError(t, err)

			work := t.TempDir()
			chunkDirs, audioDir := splitAndEncode(t, &split, src, work)
			splitDir := t.TempDir()
			_, err = split.StitchChunks(chunkDirs, audioDir, splitDir)
			require.NoError(t, err)

			// Per rung: the same packets (timestamps, decode timestamps, key
			// flags), so the same frame count, continuous timestamps and
			// keyframes at the same positions.
			for i := range whole.Rungs {
				a := packets(t, wholeDir, media.MediaPlaylistName(i), "v:0")
				b := packets(t, splitDir, media.MediaPlaylistName(i), "v:0")
				require.NotEmpty(t, a)
				require.Equal(t, a, b, "rung %s", whole.Rungs[i].Name)
				// Each chunk's first frame is a keyframe one frame after the
				// previous chunk's last.
				for _, c := range split.Chunks[1:] {
					require.True(t, strings.HasSuffix(b[c.First], ",K_"), "rung %d frame %d (a chunk's first) is a keyframe: %s", i, c.First, b[c.First])
				}

				// One EXT-X-MAP and segments numbered on without a gap.
				mp, err := pack.ReadMedia(filepath.Join(splitDir, media.MediaPlaylistName(i)))
				require.NoError(t, err)
				require.Equal(t, fmt.Sprintf("init-%d.m4s", i), mp.Map.URI)
				for n, s := range pack.Segments(mp) {
					require.Equal(t, fmt.Sprintf("chunk-%d-%05d.m4s", i, n+1), s.URI)
				}
			}

			// The sprite sheet comes from the chunks' own decodes, tile by
			// tile the unsplit encode's: the same file.
			wantSprite, err := os.ReadFile(filepath.Join(wholeDir, media.SpriteName))
			require.NoError(t, err)
			gotSprite, err := os.ReadFile(filepath.Join(splitDir, media.SpriteName))
			require.NoError(t, err)
			require.True(t, bytes.Equal(wantSprite, gotSprite), "the stitched sprite sheet is the unsplit one; tiles that differ: %v", differingTiles(t, wantSprite, gotSprite, split.Thumbs))
			vtt, err := os.ReadFile(filepath.Join(splitDir, media.VTTName))
			require.NoError(t, err)
			require.Equal(t, split.ThumbnailsVTT(), string(vtt))

			// Audio: encoded once either way, of the same duration.
			audio := media.MediaPlaylistName(len(whole.Rungs))
			require.InDelta(t, duration(t, wholeDir, audio), duration(t, splitDir, audio), 0.05)

			// Both pass verification. Measured against the whole source
			// the same way, the quality per rung is the same.
			wantOuts, _, err := tools.Verify(ctx, whole, src, wholeDir)
			require.NoError(t, err)
			measured, err := os.ReadFile(filepath.Join(splitDir, media.QualityName))
			require.NoError(t, err, "the stitch combined the chunks' own measures")
			require.NoError(t, os.Remove(filepath.Join(splitDir, media.QualityName)))
			sameWay, _, err := tools.Verify(ctx, &split, src, splitDir)
			require.NoError(t, err)
			// By default a split job's verification takes its quality from
			// the chunks, each measuring its first segment against its own
			// piece through the very filters it was encoded from (no second
			// decode of the source). Other frames than the whole-source
			// sample, so a little apart; but a frame paired with its
			// neighbour costs far more (0.05 and up), on either side: VFR,
			// interlaced and late video included.
			require.NoError(t, os.WriteFile(filepath.Join(splitDir, media.QualityName), measured, 0o644))
			require.False(t, split.VerifyReadsSource(splitDir), "a split job's verification needs no source")
			fromChunks, _, err := tools.Verify(ctx, &split, "", splitDir)
			require.NoError(t, err)
			for _, w := range wantOuts {
				if w.SSIM == 0 {
					continue
				}
				for i, g := range sameWay {
					if g.Name == w.Name {
						// Sampled verification compares two stretches of 2 s
						// here, 16 frames a rung: one frame's difference
						// weighs more than over whole segments, and the
						// second (at 4 s, segment 2 of the decoded 0, 2 and
						// 4) is where a two-chunk split's second chunk
						// starts its rate control afresh.
						require.InDelta(t, w.SSIM, g.SSIM, 0.004, "SSIM of %s", w.Name)
						require.InDelta(t, w.SSIM, fromChunks[i].SSIM, 0.006, "chunk-measured SSIM of %s", w.Name)
						require.Less(t, fromChunks[i].SSIM, 1.0, "chunk-measured SSIM of %s", w.Name)
						// The chunks decoded their first segments: the
						// verification decodes the last one only.
						require.Equal(t, len(split.Chunks)+1, fromChunks[i].Decoded, "segments of %s decoded", w.Name)
						t.Logf("%s: SSIM against the whole source %.4f, from the chunks %.4f", w.Name, w.SSIM, fromChunks[i].SSIM)
					}
				}
			}
		})
	}
}

// shortenVideoEdit ends the edit list of an MP4's video track ms
// milliseconds earlier, in place, so that it hides the frames of its last
// ms milliseconds. The file must have one edit list entry per track and a
// millisecond movie timescale (as ffmpeg's mp4 muxer writes).
func shortenVideoEdit(t *testing.T, path string, ms uint32) {
	t.Helper()
	b, err := os.ReadFile(path)
	require.NoError(t, err)
	// boxes returns the boxes in b[from:to] as type → (start, end) of
	// their payload, the first of each type, and every trak.
	type span struct{ from, to int }
	boxes := func(from, to int) (map[string]span, []span) {
		m := map[string]span{}
		var traks []span
		for off := from; off+8 <= to; {
			size := int(binary.BigEndian.Uint32(b[off:]))
			typ := string(b[off+4 : off+8])
			require.GreaterOrEqual(t, size, 8, "box %q", typ)
			sp := span{off + 8, off + size}
			if _, ok := m[typ]; !ok {
				m[typ] = sp
			}
			if typ == "trak" {
				traks = append(traks, sp)
			}
			off += size
		}
		return m, traks
	}
	top, _ := boxes(0, len(b))
	moov, ok := top["moov"]
	require.True(t, ok)
	inMoov, traks := boxes(moov.from, moov.to)
	mvhd := inMoov["mvhd"]
	require.Equal(t, byte(0), b[mvhd.from], "mvhd version 0")
	require.Equal(t, uint32(1000), binary.BigEndian.Uint32(b[mvhd.from+12:]), "a millisecond movie timescale")
	for _, trak := range traks {
		inTrak, _ := boxes(trak.from, trak.to)
		inMdia, _ := boxes(inTrak["mdia"].from, inTrak["mdia"].to)
		if string(b[inMdia["hdlr"].from+8:inMdia["hdlr"].from+12]) != "vide" {
			continue
		}
		inEdts, _ := boxes(inTrak["edts"].from, inTrak["edts"].to)
		elst, ok := inEdts["elst"]
		require.True(t, ok, "the video track has an edit list")
		require.Equal(t, byte(0), b[elst.from], "elst version 0")
		require.Equal(t, uint32(1), binary.BigEndian.Uint32(b[elst.from+4:]), "one edit")
		d := binary.BigEndian.Uint32(b[elst.from+8:])
		require.Greater(t, d, ms)
		binary.BigEndian.PutUint32(b[elst.from+8:], d-ms)
		require.NoError(t, os.WriteFile(path, b, 0o644))
		return
	}
	t.Fatal("no video track")
}

// splitAndEncode splits the source into the plan's pieces under work and
// encodes each chunk, as the split and chunk tasks do; it returns the
// chunks' folders.
func splitAndEncode(t *testing.T, split *media.Plan, src, work string) (dirs []string, audioDir string) {
	t.Helper()
	ctx, tools := context.Background(), media.Tools{}
	for k := range split.Chunks {
		piece := filepath.Join(work, fmt.Sprintf("piece-%d.mkv", k))
		_, err := tools.Split(ctx, split, src, k, piece)
		require.NoError(t, err)
		dir := filepath.Join(work, fmt.Sprintf("chunk-%d", k))
		_, err = tools.EncodeChunk(ctx, split, piece, k, dir, nil)
		require.NoError(t, err)
		dirs = append(dirs, dir)
	}
	audioDir = filepath.Join(work, "audio")
	_, err := tools.EncodeAudio(ctx, split, src, audioDir, nil)
	require.NoError(t, err)
	return dirs, audioDir
}

// packets lists a rendition's packets as "pts,dts,flags", its init and
// segments joined as its media playlist names them.
func packets(t *testing.T, dir, playlist, stream string) []string {
	t.Helper()
	s, _, err := pack.ReadPlaylistStream(dir, playlist)
	require.NoError(t, err)
	joined := filepath.Join(t.TempDir(), "joined.mp4")
	f, err := os.Create(joined)
	require.NoError(t, err)
	names := []string{s.Init}
	for _, g := range s.Segments {
		names = append(names, g.Name)
	}
	for _, n := range names {
		b, err := os.ReadFile(filepath.Join(dir, n))
		require.NoError(t, err)
		_, err = f.Write(b)
		require.NoError(t, err)
	}
	require.NoError(t, f.Close())
	out, err := exec.Command("ffprobe", "-v", "error", "-select_streams", stream, "-show_entries", "packet=pts,dts,flags", "-of", "csv=p=0", joined).Output()
	require.NoError(t, err)
	return strings.Fields(string(out))
}

// duration is a media playlist's total EXTINF.
func duration(t *testing.T, dir, playlist string) float64 {
	t.Helper()
	mp, err := pack.ReadMedia(filepath.Join(dir, playlist))
	require.NoError(t, err)
	var d float64
	for _, s := range pack.Segments(mp) {
		d += s.Duration
	}
	require.False(t, math.IsNaN(d))
	return d
}

// differingTiles lists the tiles in which two sprite sheets differ.
func differingTiles(t *testing.T, a, b []byte, th media.ThumbPlan) []int {
	t.Helper()
	ia, err := jpeg.Decode(bytes.NewReader(a))
	require.NoError(t, err)
	ib, err := jpeg.Decode(bytes.NewReader(b))
	require.NoError(t, err)
	var out []int
	for k := range th.Count {
		x0, y0 := (k%th.Columns)*th.TileWidth, (k/th.Columns)*th.TileHeight
		diff := 0.0
		for y := y0; y < y0+th.TileHeight; y++ {
			for x := x0; x < x0+th.TileWidth; x++ {
				r1, g1, b1, _ := ia.At(x, y).RGBA()
				r2, g2, b2, _ := ib.At(x, y).RGBA()
				diff += math.Abs(float64(r1)-float64(r2)) + math.Abs(float64(g1)-float64(g2)) + math.Abs(float64(b1)-float64(b2))
			}
		}
		if diff > 0 {
			out = append(out, k)
		}
	}
	return out
}

// A split job's quality gate re-encodes it whole, with one encode task:
// a split plan encoded by the unsplit encode makes outputs that verify
// (against the source: there are no chunk measures), audio included.
func TestSplitPlanEncodedWhole(t *testing.T) {
	t.Parallel()
	testenv.NeedFFmpeg(t)
	src := filepath.Join(t.TempDir(), "src.mp4")
	require.NoError(t, testenv.Clip{Size: "320x180", Rate: 25, Seconds: 9, Tone: 440, Stereo: true}.Make(src))
	ctx, tools := context.Background(), media.Tools{}
	info, err := tools.Admit(ctx, src, media.Limits{})
	require.NoError(t, err)
	pl, err := media.NewPlan(info, web(t))
	require.NoError(t, err)
	pl.PlanChunks(4, nil)
	require.NotEmpty(t, pl.Chunks)
	require.NoError(t, pl.Validate())
	dir := t.TempDir()
	_, err = tools.Encode(ctx, pl, src, dir, nil)
	require.NoError(t, err)
	require.True(t, pl.VerifyReadsSource(dir), "no chunk measures: measured against the source")
	outs, _, err := tools.Verify(ctx, pl, src, dir)
	require.NoError(t, err)
	var audio bool
	for _, o := range outs {
		audio = audio || (o.Kind == "hls" && o.Channels > 0)
	}
	require.True(t, audio, "the whole encode makes the audio the split job's audio task made")
}
