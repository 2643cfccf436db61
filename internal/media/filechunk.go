package media

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/herdhq/herd/internal/profile"
)

// Split-and-stitch for mp4 and mkv plans. They have no keyframe grid (x265
// uses open GOPs where it likes), so:
//
//   - planKeyframeChunks starts every chunk on a source keyframe: the
//     first at or after each multiple of the chunk length, no chunk
//     shorter than half of it. The boundaries are output times (Time).
//   - The split and the chunk encode are the hls ones (pre-roll, absolute
//     timestamps, filters before the trim); the trim keeps the frames from
//     a quarter frame before the boundary, so each frame falls in exactly
//     one chunk, and every chunk's first frame is its encode's first: an
//     IDR picture (a closed GOP at every chunk start). Each chunk is one
//     video-only file in the plan's own container, with the unsplit
//     encode's timestamps: an MP4's start is written with a nanosecond
//     movie timescale so that its edit list keeps it exactly.
//   - fileAudioArgs writes everything but the video (audio, subtitles,
//     attachments) in the plan's container, and the global metadata and
//     chapters as an ffmetadata file. Attachments without audio or
//     subtitles travel with one packet of the source's video, which the
//     stitch leaves out (writesTracks).
//   - Tools.Stitch checks that the chunks' codec parameters agree and joins
//     them with the concat demuxer by stream copy: each chunk's in point is
//     its first timestamp and the one before it lasts up to there, so
//     timestamps pass through unchanged. It muxes the video with the other
//     tracks into the file the unsplit encode makes (MP4 with faststart).

// MetadataName is the ffmetadata file an mp4 or mkv plan's audio task
// writes: the source's global metadata and chapters.
const MetadataName = "metadata.txt"

// chunkEdge is how far before a chunk's first frame, in frames, its trim
// starts (and the chunk before it ends): far from both that frame and the
// one before it, whatever the rounding of the piece's millisecond
// timestamps.
const chunkEdge = 0.25

// chunkMovieTimescale is an MP4 chunk's movie timescale (nanoseconds): its
// edit list holds the chunk's start in it, exactly for any track timescale
// below it (the default, milliseconds, would move it by up to half of one).
const chunkMovieTimescale = "1000000000"

// planKeyframeChunks splits an mp4 or mkv plan at source keyframes.
func (pl *Plan) planKeyframeChunks(seconds float64, keyframes []float64) {
	half := seconds / 2
	var starts []float64
	prev := 0.0
	for _, k := range keyframes {
		t := math.Round((k-pl.Start)*1e6) / 1e6 // output time
		if t > pl.Duration-half {
			break // the tail joins the last chunk
		}
		// The first keyframe at or after the next multiple of seconds, and
		// at least half a chunk after the one before.
		next := max((math.Floor(prev/seconds+1e-9)+1)*seconds, prev+half)
		if t < next-1e-6 {
			continue
		}
		starts = append(starts, t)
		prev = t
	}
	if len(starts) == 0 {
		return
	}
	pl.Chunks = []ChunkPlan{{}}
	for _, t := range starts {
		pl.Chunks = append(pl.Chunks, ChunkPlan{Time: t})
	}
}

// minChunkSeconds is the shortest chunk an mp4 or mkv plan may have.
const minChunkSeconds = 0.5

func (pl *Plan) validateKeyframeChunks() error {
	if pl.Chunks[0] != (ChunkPlan{}) {
		return bad("plan.chunks", "the first chunk must start at 0 s")
	}
	for k, c := range pl.Chunks[1:] {
		prev := pl.Chunks[k].Time
		if c.First != 0 || c.End != 0 || !finite(c.Time) || c.Time < prev+minChunkSeconds || c.Time > pl.Duration {
			return bad("plan.chunks", "chunk %d does not run on from the one before it", k+2)
		}
	}
	return nil
}

// keyframeChunkTrim is the trim filter that keeps an mp4 or mkv plan's
// chunk k: frames from a quarter frame before its start to a quarter frame
// before the next chunk's. On a grid (onGrid) a keyframe is where the fps
// filter puts it, its time rounded to the nearest slot.
func (pl *Plan) keyframeChunkTrim(k int) string {
	h := chunkEdge / pl.FPS
	at := func(t float64) string {
		if pl.onGrid() {
			t = math.Round(t*pl.FPS) / pl.FPS
		}
		return strconv.FormatFloat(t-h, 'f', 6, 64)
	}
	var opts []string
	if k > 0 {
		opts = append(opts, "start="+at(pl.ChunkStart(k)))
	}
	if end := pl.ChunkEnd(k); end > 0 {
		opts = append(opts, "end="+at(end))
	}
	return "trim=" + strings.Join(opts, ":")
}

// onGrid says whether an mp4 or mkv plan's frames are on a constant-rate
// grid: an MP4's always, an MKV's when it has the fps filter.
func (pl *Plan) onGrid() bool { return pl.constantRate() || pl.FPSFilter }

// fileMuxer and fileDemuxer are ffmpeg's names for an mp4 or mkv plan's container.
func (pl *Plan) fileMuxer() string {
	if pl.Format == profile.FormatMP4 {
		return "mp4"
	}
	return "matroska"
}

func (pl *Plan) fileDemuxer() string {
	if pl.Format == profile.FormatMP4 {
		return "mov"
	}
	return "matroska"
}

// fileChunkOutput ends an mp4 or mkv plan's chunk argv: one file named as
// the unsplit output, video only, no metadata or chapters (the stitch takes
// them from the audio task's).
func (pl *Plan) fileChunkOutput(outDir string) []string {
	args := []string{"-map_metadata", "-1", "-map_chapters", "-1"}
	if pl.Format == profile.FormatMP4 {
		args = append(args, "-movie_timescale", chunkMovieTimescale)
	}
	return append(args, "-f", pl.fileMuxer(), "file:"+filepath.Join(filepath.Clean(outDir), pl.FileName()))
}

// TracksName is the file an mp4 or mkv plan's audio task writes its
// tracks into (audio, subtitles and, for mkv, attachments).
func (pl *Plan) TracksName() string { return "tracks." + pl.Format }

// hasTracks says whether the output has tracks besides its video and
// attachments: audio or subtitles.
func (pl *Plan) hasTracks() bool { return len(pl.Audio) > 0 || len(pl.Subtitles) > 0 }

// writesTracks says whether the audio task writes TracksName: when the
// output has audio or subtitles, or (mkv from mkv) may have attachments.
//
// ffmpeg 5.1 writes a Matroska file of attachments alone that it cannot
// read back (no cluster: the demuxer fails on its first element), so
// without audio or subtitles the file also holds the source video's first
// packet, stream-copied: a valid file whose attachments the stitch maps
// (the very muxing path they take beside audio), and nothing else. The
// attachments' names stay tags: none becomes a path.
func (pl *Plan) writesTracks() bool { return pl.hasTracks() || pl.Attachments }

// fileAudioArgs returns the argv that writes everything of an mp4 or mkv
// output but the video into outDir: its audio, subtitle and attachment
// tracks, encoded and copied as the unsplit encode does, into TracksName
// (when it has any), and the global metadata and chapters into
// MetadataName.
func (pl *Plan) fileAudioArgs(input, outDir string) []string {
	outDir = filepath.Clean(outDir)
	args := pl.inputArgs(input, 0)
	if pl.writesTracks() {
		if !pl.hasTracks() {
			// A carrier for the attachments (writesTracks); -frames:v 1
			// also ends the run after that one packet: the metadata and
			// chapters are written from the input's header.
			args = append(args, "-map", fmt.Sprintf("0:%d", pl.VideoIndex), "-c:v", "copy", "-frames:v", "1")
		}
		args = append(args, pl.trackMaps()...)
		args = append(args, pl.audioCodecArgs()...)
		args = append(args, pl.subtitleCodecArgs()...)
		args = append(args, "-map_chapters", "-1", "-max_muxing_queue_size", "1024",
			"-f", pl.fileMuxer(), "file:"+filepath.Join(outDir, pl.TracksName()))
	}
	return append(args, "-map_metadata", "0", "-map_chapters", "0",
		"-f", "ffmetadata", "file:"+filepath.Join(outDir, MetadataName))
}

// StitchArgs returns the argv that joins an mp4 or mkv plan's chunks (the
// concat list) by stream copy, with the audio task's tracks ("" when it
// writes none; of a plan without audio or subtitles only the attachments)
// and metadata, into outDir's output file.
func (pl *Plan) StitchArgs(list, tracks, metadata, outDir string) []string {
	in := func(demuxer, path string) []string {
		return []string{"-protocol_whitelist", "file,pipe", "-f", demuxer, "-i", "file:" + filepath.Clean(path)}
	}
	// -copyts: every input's timestamps are already output time (the
	// chunks' and the tracks' alike); ffmpeg must not move them to start
	// at zero, or a video that starts after the audio would start with it.
	args := []string{"-nostdin", "-hide_banner", "-nostats", "-progress", "pipe:1", "-y", "-copyts"}
	args = append(args, "-safe", "0")
	args = append(args, in("concat", list)...)
	meta := "1"
	if tracks != "" {
		args = append(args, in(pl.fileDemuxer(), tracks)...)
		meta = "2"
	}
	args = append(args, in("ffmetadata", metadata)...)
	args = append(args, "-map", "0:v:0")
	switch {
	case tracks != "" && pl.hasTracks():
		args = append(args, "-map", "1")
	case tracks != "":
		args = append(args, "-map", "1:t?") // not the carrier's video packet
	}
	args = append(args, "-c", "copy", "-map_metadata", meta, "-map_chapters", meta)
	for i := range pl.Audio {
		args = append(args, pl.audioDisposition(i)...)
	}
	for i := range pl.Subtitles {
		args = append(args, pl.subtitleDisposition(i)...)
	}
	args = append(args, "-max_muxing_queue_size", "1024")
	args = append(args, pl.herdTag()...)
	if pl.Format == profile.FormatMP4 {
		args = append(args, "-movflags", "+faststart")
	}
	return append(args, "-f", pl.fileMuxer(), "file:"+filepath.Join(filepath.Clean(outDir), pl.FileName()))
}

// StitchError says a split plan's chunks cannot be joined: the same chunks
// would fail the same way again.
type StitchError struct {
	Chunk int // the chunk at fault, from 1; 0 when no one chunk is
	Err   error
}

func (e *StitchError) Error() string {
	if e.Chunk > 0 {
		return fmt.Sprintf("chunk %d: %v", e.Chunk, e.Err)
	}
	return e.Err.Error()
}

func (e *StitchError) Unwrap() error { return e.Err }

// Stitch joins the chunk encodes in chunkDirs (chunk k's outDir of
// ChunkArgs, in order) and the audio task's outDir (audioDir; "" when the
// plan has no audio task) into outDir: the files an unsplit encode makes,
// never encoding again. It returns every argv it ran; a *StitchError when
// the chunks cannot be joined.
func (t Tools) Stitch(ctx context.Context, pl *Plan, chunkDirs []string, audioDir, outDir string) ([][]string, error) {
	if len(chunkDirs) != len(pl.Chunks) {
		return nil, &StitchError{Err: fmt.Errorf("%d chunk encodes for %d chunks", len(chunkDirs), len(pl.Chunks))}
	}
	if pl.Format == profile.FormatHLS {
		if _, err := pl.StitchChunks(chunkDirs, audioDir, outDir); err != nil {
			return nil, &StitchError{Err: err}
		}
		return nil, nil
	}
	out, err := filepath.Abs(outDir)
	if err != nil {
		return nil, fmt.Errorf("stitch: %w", err)
	}
	if err := os.MkdirAll(out, 0o755); err != nil {
		return nil, fmt.Errorf("stitch: %w", err)
	}
	var ran [][]string
	var first chunkParams
	starts := make([]int64, len(chunkDirs)) // microseconds
	files := make([]string, len(chunkDirs))
	for k, dir := range chunkDirs {
		if files[k], err = filepath.Abs(filepath.Join(dir, pl.FileName())); err != nil {
			return ran, fmt.Errorf("stitch: %w", err)
		}
		args := chunkParamArgs(pl.fileDemuxer(), files[k])
		ran = append(ran, argv(t.ffprobe(), args))
		p, err := t.chunkParams(ctx, args)
		if err != nil {
			if ee, ok := errors.AsType[*ExitError](err); ok && ee.Signal == "" && ctx.Err() == nil {
				return ran, &StitchError{Chunk: k + 1, Err: fmt.Errorf("its encode cannot be read: %w", err)}
			}
			return ran, fmt.Errorf("stitch: chunk %d: %w", k+1, err)
		}
		if k == 0 {
			first = p
		} else if d := first.differs(p); d != "" {
			return ran, &StitchError{Chunk: k + 1, Err: fmt.Errorf("its video's %s differs from chunk 1's, so the chunks cannot be joined without encoding again", d)}
		}
		// A chunk's first frame is its first source keyframe's, or the fps
		// filter's first frame at or after it.
		if k > 0 && math.Abs(p.start-pl.ChunkStart(k)) > 1/pl.FPS+1e-3 {
			return ran, &StitchError{Chunk: k + 1, Err: fmt.Errorf("it starts at %.6f s, not at %.6f s", p.start, pl.ChunkStart(k))}
		}
		starts[k] = int64(math.Round(p.start * 1e6))
		if k > 0 && starts[k] <= starts[k-1] {
			return ran, &StitchError{Chunk: k + 1, Err: errors.New("it does not start after the chunk before it")}
		}
	}
	list, err := writeConcatList(files, starts)
	if err != nil {
		return ran, fmt.Errorf("stitch: %w", err)
	}
	defer os.Remove(list)
	tracks := ""
	if pl.writesTracks() {
		tracks = filepath.Join(audioDir, pl.TracksName())
	}
	for _, f := range []string{tracks, filepath.Join(audioDir, MetadataName)} {
		if _, err := os.Stat(f); f != "" && err != nil {
			return ran, &StitchError{Err: fmt.Errorf("the audio task's %s is missing", filepath.Base(f))}
		}
	}
	args := pl.StitchArgs(list, tracks, filepath.Join(audioDir, MetadataName), out)
	ran = append(ran, argv(t.ffmpeg(), args))
	if err := t.Run(ctx, args, nil); err != nil {
		return ran, fmt.Errorf("stitch: %w", err)
	}
	if err := pl.CombineQuality(chunkDirs, out); err != nil {
		return ran, fmt.Errorf("stitch: %w", err)
	}
	return ran, nil
}

// writeConcatList writes the concat demuxer's list of the chunk files,
// each with its in point (its first timestamp; 0 for the first, whose
// video may start after the source) and the one before it lasting up to
// there: the demuxer then moves no timestamp.
func writeConcatList(files []string, starts []int64) (string, error) {
	var b strings.Builder
	b.WriteString("ffconcat version 1.0\n")
	for k, f := range files {
		if strings.ContainsAny(f, "\r\n") {
			// The list is read line by line: a path cannot span two.
			return "", fmt.Errorf("chunk %d's path %q has a line break", k+1, f)
		}
		in := starts[k]
		if k == 0 {
			in = 0
		}
		fmt.Fprintf(&b, "file %s\ninpoint %s\n", concatQuote("file:"+f), usSeconds(in))
		if k+1 < len(files) {
			fmt.Fprintf(&b, "duration %s\n", usSeconds(starts[k+1]-in))
		}
	}
	f, err := os.CreateTemp("", "herd-stitch-*.ffconcat")
	if err != nil {
		return "", err
	}
	if _, err := f.WriteString(b.String()); err != nil {
		_ = f.Close()
		_ = os.Remove(f.Name())
		return "", err
	}
	if err := f.Close(); err != nil {
		_ = os.Remove(f.Name())
		return "", err
	}
	return f.Name(), nil
}

// usSeconds writes microseconds as seconds, exactly.
func usSeconds(us int64) string { return fmt.Sprintf("%d.%06d", us/1_000_000, us%1_000_000) }

// concatQuote quotes a path for a concat list.
func concatQuote(s string) string { return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'" }

// chunkParams are a chunk file's first timestamp and the codec parameters
// that must agree for chunks to join into one stream.
type chunkParams struct {
	start  float64
	stream chunkStream
}

type chunkStream struct {
	CodecName     string `json:"codec_name"`
	Profile       string `json:"profile"`
	Level         int    `json:"level"`
	Width         int    `json:"width"`
	Height        int    `json:"height"`
	PixFmt        string `json:"pix_fmt"`
	TimeBase      string `json:"time_base"`
	ExtradataHash string `json:"extradata_hash"`
}

// differs names the first codec parameter in which p is not as c, or "".
func (c chunkParams) differs(p chunkParams) string {
	a, b := c.stream, p.stream
	switch {
	case a.CodecName != b.CodecName:
		return "codec"
	case a.Profile != b.Profile:
		return "profile"
	case a.Level != b.Level:
		return "level"
	case a.Width != b.Width || a.Height != b.Height:
		return "picture size"
	case a.PixFmt != b.PixFmt:
		return "pixel format"
	case a.TimeBase != b.TimeBase:
		return "time base"
	case a.ExtradataHash != b.ExtradataHash:
		return "parameter sets (extradata)"
	}
	return ""
}

// chunkParamArgs is the ffprobe argv that prints a chunk file's video codec
// parameters and its first packet's timestamp.
func chunkParamArgs(demuxer, path string) []string {
	return []string{"-v", "error", "-hide_banner", "-protocol_whitelist", "file,pipe", "-f", demuxer,
		"-select_streams", "v:0", "-show_data_hash", "sha256", "-read_intervals", "%+#1",
		"-show_entries", "stream=codec_name,profile,level,width,height,pix_fmt,time_base,extradata_hash:packet=pts_time",
		"-of", "json", "-i", "file:" + path}
}

func (t Tools) chunkParams(ctx context.Context, args []string) (chunkParams, error) {
	var stdout strings.Builder
	if _, err := t.exec(ctx, t.ffprobe(), args, nil, &stdout, stderrTailBytes); err != nil {
		return chunkParams{}, fmt.Errorf("run ffprobe: %w", err)
	}
	var pj struct {
		Packets []struct {
			PTSTime string `json:"pts_time"`
		} `json:"packets"`
		Streams []chunkStream `json:"streams"`
	}
	if err := json.Unmarshal([]byte(stdout.String()), &pj); err != nil {
		return chunkParams{}, fmt.Errorf("parse ffprobe's answer: %w", err)
	}
	if len(pj.Streams) != 1 || len(pj.Packets) == 0 {
		return chunkParams{}, &StitchError{Err: errors.New("no video stream or no video packet")}
	}
	start, err := strconv.ParseFloat(pj.Packets[0].PTSTime, 64)
	if err != nil || !finite(start) {
		return chunkParams{}, &StitchError{Err: fmt.Errorf("the first video packet has no timestamp (%q)", pj.Packets[0].PTSTime)}
	}
	return chunkParams{start: start, stream: pj.Streams[0]}, nil
}
