package chunktest

import (
	"cmp"
	"context"
	"encoding/json"
	"fmt"
	"math"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/herdhq/herd/internal/media"
	"github.com/herdhq/herd/internal/profile"
	"github.com/herdhq/herd/internal/testenv"
)

// TestFileChunkedEqualsUnchunked splits mp4-library and archive-hevc jobs at
// source keyframes and checks the stitched file against an unsplit encode:
// the same frames, timestamps running on across every chunk boundary, the
// same duration, quality and audio, and the other tracks, metadata and
// chapters kept.
func TestFileChunkedEqualsUnchunked(t *testing.T) {
	t.Parallel()
	testenv.NeedFFmpeg(t)
	tmp := t.TempDir()
	for _, tc := range []struct {
		name    string
		profile string
		source  func() string
		// chunks the source splits into at 2 s.
		chunks int
	}{
		{"mp4-library, 29.97 fps MP4, keyframes off the millisecond grid", "mp4-library", func() string {
			// A keyframe every 25 frames: 0.834166 s, whose multiples are
			// no whole milliseconds, at a rate whose frames are none either.
			p := filepath.Join(tmp, "ntsc.mp4")
			require.NoError(t, testenv.FFmpeg(
				"-f", "lavfi", "-i", "testsrc2=size=320x180:rate=30000/1001",
				"-f", "lavfi", "-i", "sine=frequency=300:sample_rate=48000",
				"-t", "6.5", "-c:v", "libx264", "-preset", "ultrafast", "-g", "25", "-pix_fmt", "yuv420p",
				"-c:a", "aac", "-ac", "2", "-shortest", "-metadata", "title=Chunked", p))
			return p
		}, 3},
		{"archive-hevc, 25 fps MKV with two audio tracks, subtitles and a chapter", "archive-hevc", func() string {
			srt := filepath.Join(tmp, "subs.srt")
			require.NoError(t, os.WriteFile(srt, []byte("1\n00:00:00,500 --> 00:00:02,500\nfirst\n\n2\n00:00:03,000 --> 00:00:05,000\nsecond\n"), 0o644))
			meta := filepath.Join(tmp, "chapters.txt")
			require.NoError(t, os.WriteFile(meta, []byte(";FFMETADATA1\ntitle=Archived\n\n[CHAPTER]\nTIMEBASE=1/1000\nSTART=0\nEND=3000\ntitle=One\n\n[CHAPTER]\nTIMEBASE=1/1000\nSTART=3000\nEND=6000\ntitle=Two\n"), 0o644))
			p := filepath.Join(tmp, "pal.mkv")
			require.NoError(t, testenv.FFmpeg(
				"-f", "lavfi", "-i", "testsrc2=size=320x180:rate=25",
				"-f", "lavfi", "-i", "sine=frequency=300:sample_rate=48000",
				"-f", "lavfi", "-i", "sine=frequency=500:sample_rate=48000",
				"-i", srt, "-i", meta,
				"-map", "0", "-map", "1", "-map", "2", "-map", "3", "-map_metadata", "4", "-map_chapters", "4",
				"-t", "6.2", "-c:v", "libx264", "-preset", "ultrafast", "-g", "25", "-pix_fmt", "yuv420p",
				"-c:a", "aac", "-c:s", "srt", "-metadata:s:a:1", "language=fra", p))
			return p
		}, 3},
		{"mp4-library, MPEG-TS whose audio starts half a second before its video", "mp4-library", func() string {
			// MP4 output is constant-rate from time 0: the unsplit encode
			// pads the late video with its first frame, and so must the
			// first chunk.
			p := filepath.Join(tmp, "late.ts")
			require.NoError(t, testenv.FFmpeg("-itsoffset", "0.48", "-f", "lavfi", "-i", "testsrc2=size=320x180:rate=25",
				"-f", "lavfi", "-i", "sine=frequency=320:sample_rate=48000", "-t", "6.5", "-map", "0:v", "-map", "1:a",
				"-c:v", "libx264", "-preset", "ultrafast", "-g", "25", "-pix_fmt", "yuv420p", "-c:a", "aac", "-ac", "2", "-f", "mpegts", p))
			return p
		}, 3},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			src := tc.source()
			ctx := context.Background()
			tools := media.Tools{}
			info, err := tools.Admit(ctx, src, media.Limits{})
			require.NoError(t, err)
			require.Empty(t, info.Keyframes, "Admit lists no keyframes")
			require.NoError(t, tools.ProbeKeyframes(ctx, src, info))
			require.NoError(t, info.Validate(media.Limits{}))

			p, ok := profile.Builtin().Get(tc.profile)
			require.True(t, ok)
			whole, err := media.NewPlan(info, p)
			require.NoError(t, err)
			whole.Thumbs = media.ThumbPlan{}
			split := *whole
			split.PlanChunks(2, info.Keyframes)
			require.Len(t, split.Chunks, tc.chunks)
			require.NoError(t, split.Validate())
			for k := range split.Chunks[1:] {
				at := split.ChunkStart(k+1) + info.Start
				require.True(t, slices.ContainsFunc(info.Keyframes, func(kf float64) bool { return math.Abs(kf-at) < 1e-6 }),
					"chunk %d starts on a source keyframe (%v in %v)", k+2, at, info.Keyframes)
			}

			wholeDir := t.TempDir()
			_, err = tools.Encode(ctx, whole, src, wholeDir, nil)
			require.NoError(t, err)

			work := t.TempDir()
			require.True(t, split.AudioTask())
			chunkDirs, audioDir := splitAndEncode(t, &split, src, work)
			splitDir := t.TempDir()
			_, err = tools.Stitch(ctx, &split, chunkDirs, audioDir, splitDir)
			require.NoError(t, err)

			name := whole.FileName()
			a := videoPackets(t, filepath.Join(wholeDir, name))
			b := videoPackets(t, filepath.Join(splitDir, name))
			require.Len(t, b, len(a), "frames")
			require.Equal(t, a[0].pts, b[0].pts, "the first frame's timestamp")
			require.Equal(t, a[len(a)-1].pts, b[len(b)-1].pts, "the last frame's timestamp")
			frame := b[1].pts - b[0].pts
			// Every chunk's first frame is a keyframe one frame after the
			// chunk before it ends (±1 tick), and no frame is left out or
			// repeated: the timestamps run on at one frame's duration.
			for i := 1; i < len(b); i++ {
				require.InDelta(t, frame, b[i].pts-b[i-1].pts, 1, "frame %d follows frame %d by one frame", i, i-1)
			}
			for k := range split.Chunks[1:] {
				i := int((split.ChunkStart(k+1)/b[0].tb-float64(b[0].pts))/float64(frame) + 0.5)
				require.True(t, b[i].key, "chunk %d's first frame (frame %d) is a keyframe", k+2, i)
				require.False(t, b[i-1].key && b[i-1].pts == b[i].pts)
			}
			dw, ds := probeFile(t, wholeDir, name), probeFile(t, splitDir, name)
			require.InDelta(t, dw.duration, ds.duration, float64(frame)*b[0].tb, "duration within a frame")
			require.Equal(t, dw.streams, ds.streams, "the same tracks")
			require.Equal(t, dw.title, ds.title, "global metadata")
			require.Equal(t, dw.chapters, ds.chapters, "chapters")
			for i, d := range dw.audio {
				require.InDelta(t, d, ds.audio[i], 0.03, "audio track %d's duration", i)
			}

			// Both pass verification, with the same quality measured
			// against the whole source; by default the split job's comes
			// from its chunks' own measures (the start of each against its
			// piece), with no second decode of the source: other frames, so
			// a little apart, but a frame paired with its neighbour costs
			// 0.05 and more (at 29.97 fps the piece's millisecond timestamps
			// are off the encode's: frames pair by order, not by time).
			wantOuts, _, err := tools.Verify(ctx, whole, src, wholeDir)
			require.NoError(t, err)
			measured, err := os.ReadFile(filepath.Join(splitDir, media.QualityName))
			require.NoError(t, err, "the stitch combined the chunks' own measures")
			require.NoError(t, os.Remove(filepath.Join(splitDir, media.QualityName)))
			gotOuts, _, err := tools.Verify(ctx, &split, src, splitDir)
			require.NoError(t, err)
			require.Len(t, gotOuts, len(wantOuts))
			require.NotZero(t, wantOuts[0].SSIM)
			require.InDelta(t, wantOuts[0].SSIM, gotOuts[0].SSIM, 0.002, "SSIM")
			require.NoError(t, os.WriteFile(filepath.Join(splitDir, media.QualityName), measured, 0o644))
			require.False(t, split.VerifyReadsSource(splitDir))
			fromChunks, _, err := tools.Verify(ctx, &split, "", splitDir)
			require.NoError(t, err, "verifying a split job with its chunks' measures reads no source")
			require.InDelta(t, wantOuts[0].SSIM, fromChunks[0].SSIM, 0.006, "chunk-measured SSIM")
			require.Less(t, fromChunks[0].SSIM, 1.0, "chunk-measured SSIM")
			t.Logf("SSIM against the whole source %.4f, from the chunks %.4f", wantOuts[0].SSIM, fromChunks[0].SSIM)
		})
	}
}

type packet struct {
	pts int64
	tb  float64
	key bool
}

// videoPackets lists a file's video packets in presentation order.
func videoPackets(t *testing.T, path string) []packet {
	t.Helper()
	out, err := exec.Command("ffprobe", "-v", "error", "-select_streams", "v:0", "-show_entries", "stream=time_base:packet=pts,flags", "-of", "compact=p=0:nk=1", path).Output()
	require.NoError(t, err)
	var tb float64
	var ps []packet
	for line := range strings.Lines(string(out)) {
		f := strings.Split(strings.TrimSpace(line), "|")
		if len(f) == 1 { // the stream's time base
			num, den, _ := strings.Cut(f[0], "/")
			n, _ := strconv.ParseFloat(num, 64)
			d, _ := strconv.ParseFloat(den, 64)
			tb = n / d
			continue
		}
		pts, err := strconv.ParseInt(f[0], 10, 64)
		require.NoError(t, err, line)
		ps = append(ps, packet{pts: pts, key: strings.HasPrefix(f[1], "K")})
	}
	require.NotZero(t, tb)
	for i := range ps {
		ps[i].tb = tb
	}
	slices.SortFunc(ps, func(a, b packet) int { return cmp.Compare(a.pts, b.pts) })
	require.NotEmpty(t, ps)
	return ps
}

type fileFacts struct {
	duration float64
	streams  []string // codec type, codec, start time, language, default
	title    string
	chapters []string
	audio    []float64 // each audio track's decoded duration
}

func probeFile(t *testing.T, dir, name string) fileFacts {
	t.Helper()
	path := filepath.Join(dir, name)
	out, err := exec.Command("ffprobe", "-v", "error", "-show_entries",
		"format=duration:format_tags=title:stream=codec_type,codec_name,start_time:stream_tags=language:stream_disposition=default:chapter=start_time,end_time:chapter_tags=title",
		"-of", "compact=p=1", path).Output()
	require.NoError(t, err)
	var f fileFacts
	for line := range strings.Lines(string(out)) {
		line = strings.TrimSpace(line)
		switch {
		case strings.HasPrefix(line, "format|"):
			for kv := range strings.SplitSeq(strings.TrimPrefix(line, "format|"), "|") {
				k, v, _ := strings.Cut(kv, "=")
				switch k {
				case "duration":
					f.duration, err = strconv.ParseFloat(v, 64)
					require.NoError(t, err)
				case "tag:title":
					f.title = v
				}
			}
		case strings.HasPrefix(line, "stream|"):
			f.streams = append(f.streams, line)
		case strings.HasPrefix(line, "chapter|"):
			f.chapters = append(f.chapters, line)
		}
	}
	// Audio durations, decoded.
	n := 0
	for _, s := range f.streams {
		if strings.Contains(s, "codec_type=audio") {
			n++
		}
	}
	for i := range n {
		out, err := exec.Command("ffmpeg", "-nostdin", "-v", "error", "-i", path, "-map", fmt.Sprintf("0:a:%d", i), "-f", "null", "-progress", "pipe:1", "-").Output()
		require.NoError(t, err)
		us := int64(-1)
		for line := range strings.Lines(string(out)) {
			if v, ok := strings.CutPrefix(strings.TrimSpace(line), "out_time_us="); ok {
				us, _ = strconv.ParseInt(v, 10, 64)
			}
		}
		require.Positive(t, us, "audio track %d decodes", i)
		f.audio = append(f.audio, float64(us)/1e6)
	}
	return f
}

// encodeFileBoth encodes src with the named mp4 or mkv profile unsplit and
// split into chunks of about seconds (at least two), as
// TestFileChunkedEqualsUnchunked does, and returns the two output files.
func encodeFileBoth(t *testing.T, profileName, src string, seconds float64) (whole, split string) {
	t.Helper()
	ctx, tools := context.Background(), media.Tools{}
	info, err := tools.Admit(ctx, src, media.Limits{})
	require.NoError(t, err)
	require.NoError(t, tools.ProbeKeyframes(ctx, src, info))
	p, ok := profile.Builtin().Get(profileName)
	require.True(t, ok)
	wholePlan, err := media.NewPlan(info, p)
	require.NoError(t, err)
	wholePlan.Thumbs = media.ThumbPlan{}
	splitPlan := *wholePlan
	splitPlan.PlanChunks(seconds, info.Keyframes)
	require.GreaterOrEqual(t, len(splitPlan.Chunks), 2, "the source splits")
	require.NoError(t, splitPlan.Validate())

	wholeDir := t.TempDir()
	_, err = tools.Encode(ctx, wholePlan, src, wholeDir, nil)
	require.NoError(t, err)
	work := t.TempDir()
	chunkDirs, audioDir := splitAndEncode(t, &splitPlan, src, work)
	splitDir := t.TempDir()
	_, err = tools.Stitch(ctx, &splitPlan, chunkDirs, audioDir, splitDir)
	require.NoError(t, err)
	return filepath.Join(wholeDir, wholePlan.FileName()), filepath.Join(splitDir, splitPlan.FileName())
}

// streamFacts lists a file's streams as ffprobe reports them: codec type,
// tags (without DURATION) and disposition, one map per stream.
//
// DURATION is the one tag left out: Matroska's muxer writes it on every
// track itself, as the length it measured while muxing, so it is no tag
// carried from the source; the stitched file's length is checked against
// the unsplit one's elsewhere (within a frame). Every other tag the muxers
// and encoders write themselves (ENCODER/encoder, handler_name, vendor_id,
// an MP4's language=und) is the same either way and is compared.
func streamFacts(t *testing.T, path string) []map[string]string {
	t.Helper()
	out, err := exec.Command("ffprobe", "-v", "error", "-show_entries",
		"stream=index,codec_type:stream_tags:stream_disposition", "-of", "json", path).Output()
	require.NoError(t, err)
	var pj struct {
		Streams []struct {
			CodecType   string            `json:"codec_type"`
			Tags        map[string]string `json:"tags"`
			Disposition map[string]int    `json:"disposition"`
		} `json:"streams"`
	}
	require.NoError(t, json.Unmarshal(out, &pj))
	var facts []map[string]string
	for _, s := range pj.Streams {
		m := map[string]string{"codec_type": s.CodecType}
		for k, v := range s.Tags {
			if k != "DURATION" {
				m["tag:"+k] = v
			}
		}
		for k, v := range s.Disposition {
			if v != 0 {
				m["disposition:"+k] = strconv.Itoa(v)
			}
		}
		facts = append(facts, m)
	}
	return facts
}

// hostileTag is a tag value that would break an ffmetadata file or an
// ffmpeg option string if it reached one unescaped.
const hostileTag = "a=b;c#d\\e\nf -i x [STREAM] ;FFMETADATA1"

// TestFileChunkedKeepsStreamTags checks that every track of a stitched file
// carries the tags and dispositions of the unsplit encode's, the video's
// included, for sources whose video track has tags of its own (a title,
// a language, a comment, a handler name, some of them hostile).
//
// With ffmpeg 5.1 the unsplit encode's video comes out of -filter_complex,
// which copies no tag from the source's video stream: the video keeps only
// what its encoder and muxer write, and so must the stitched file's.
func TestFileChunkedKeepsStreamTags(t *testing.T) {
	t.Parallel()
	testenv.NeedFFmpeg(t)
	tmp := t.TempDir()
	tagged := []string{
		"-metadata:s:v:0", "title=" + hostileTag, "-metadata:s:v:0", "language=ger",
		"-metadata:s:v:0", "COMMENT=" + hostileTag, "-metadata:s:v:0", "handler_name=Camera",
		"-metadata:s:a:0", "language=fra", "-metadata:s:a:0", "title=Ton",
	}
	for _, tc := range []struct{ profile, ext string }{
		{"archive-hevc", "mkv"},
		{"mp4-library", "mp4"},
	} {
		t.Run(tc.ext, func(t *testing.T) {
			t.Parallel()
			src := filepath.Join(tmp, "tagged."+tc.ext)
			require.NoError(t, testenv.Clip{Size: "160x90", Rate: 25, Seconds: 3, Tone: 300,
				Extra: append([]string{"-g", "25"}, tagged...)}.Make(src))
			require.Equal(t, "ger", streamFacts(t, src)[0]["tag:language"], "the source's video has tags")
			whole, split := encodeFileBoth(t, tc.profile, src, 1)
			want := streamFacts(t, whole)
			require.NotEmpty(t, want)
			require.Equal(t, want, streamFacts(t, split))
		})
	}
}

// attachmentFacts lists a file's attachments: file name, MIME type and a
// hash of the bytes, in order.
func attachmentFacts(t *testing.T, path string) []string {
	t.Helper()
	out, err := exec.Command("ffprobe", "-v", "error", "-select_streams", "t", "-show_data_hash", "sha256",
		"-show_entries", "stream=codec_name,extradata_hash:stream_tags=filename,mimetype", "-of", "compact=p=0", path).Output()
	require.NoError(t, err)
	var facts []string
	for line := range strings.Lines(string(out)) { // compact escapes a line break in a tag
		facts = append(facts, strings.TrimSpace(line))
	}
	return facts
}

// TestFileChunkedKeepsAttachments checks that a split archive-hevc job keeps
// an MKV source's attachments (fonts) as the unsplit encode does: the same
// file names, MIME types and bytes, with and without audio and subtitle
// tracks beside them. A file name from the source is only ever a tag: one
// that looks like a path or an option changes nothing.
func TestFileChunkedKeepsAttachments(t *testing.T) {
	t.Parallel()
	testenv.NeedFFmpeg(t)
	tmp := t.TempDir()
	font := filepath.Join(tmp, "font.ttf")
	require.NoError(t, os.WriteFile(font, []byte("not really a font\x00\x01\xff"), 0o644))
	blob := filepath.Join(tmp, "blob.bin")
	require.NoError(t, os.WriteFile(blob, []byte(strings.Repeat("herd attachment ", 300)), 0o644))
	attach := []string{
		"-attach", font, "-metadata:s:t:0", "mimetype=application/x-truetype-font",
		"-metadata:s:t:0", "filename=../../" + hostileTag + ".ttf",
		"-attach", blob, "-metadata:s:t:1", "mimetype=application/octet-stream",
		"-metadata:s:t:1", "filename=-i",
	}
	for _, tc := range []struct {
		name string
		tone int
	}{
		{"video and attachments only", 0},
		{"with audio", 300},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			src := filepath.Join(tmp, fmt.Sprintf("fonts-%d.mkv", tc.tone))
			require.NoError(t, testenv.Clip{Size: "160x90", Rate: 25, Seconds: 3, Tone: tc.tone,
				Extra: append([]string{"-g", "25"}, attach...)}.Make(src))
			require.Len(t, attachmentFacts(t, src), 2, "the source has two attachments")
			whole, split := encodeFileBoth(t, "archive-hevc", src, 1)
			want := attachmentFacts(t, whole)
			require.Len(t, want, 2, "the unsplit encode keeps the attachments")
			require.Equal(t, want, attachmentFacts(t, split))
			require.Equal(t, streamFacts(t, whole), streamFacts(t, split))
		})
	}
}

// TestFileChunkedHiddenEnd checks that a split mp4-library job of an MP4
// whose edit list hides its last frame has the unsplit encode's frames:
// the last chunk drops the hidden frame as the unsplit encode's decoder
// does.
func TestFileChunkedHiddenEnd(t *testing.T) {
	t.Parallel()
	testenv.NeedFFmpeg(t)
	src := filepath.Join(t.TempDir(), "edit.mp4")
	require.NoError(t, testenv.Clip{Size: "160x90", Rate: 25, Seconds: 3, Tone: 300, Extra: []string{"-g", "25"}}.Make(src))
	shortenVideoEdit(t, src, 40) // hides the frame at 2.96 s
	whole, split := encodeFileBoth(t, "mp4-library", src, 1)
	a, b := videoPackets(t, whole), videoPackets(t, split)
	require.Len(t, a, 74, "the unsplit encode shows all but the hidden frame")
	require.Len(t, b, len(a), "frames")
	require.Equal(t, a[len(a)-1].pts, b[len(b)-1].pts, "the last frame's timestamp")
}
