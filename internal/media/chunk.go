package media

import (
	"bytes"
	"context"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"

	"github.com/herdhq/herd/internal/pack"
	"github.com/herdhq/herd/internal/profile"
)

// Split-and-stitch: a long video encode cut into chunks that workers
// encode in parallel, then joined without encoding again.
//
//   - PlanChunks puts an hls plan's boundaries on frames where the unsplit
//     encode puts a keyframe on its segment grid, so a chunk owns whole
//     segments; an mp4 or mkv plan's on source keyframes (filechunk.go).
//   - SplitArgs stream-copies a chunk's piece of the source, with a second
//     of pre-roll before the boundary, keeping the source's timestamps.
//   - ChunkArgs encodes a piece: timestamps stay absolute (counted from the
//     source's start, as in the unsplit encode), the deinterlace and fps
//     filters run on the pre-roll too, and only then are the chunk's frames
//     trimmed out, so every chunk sees exactly the frames the unsplit encode
//     would give it and puts keyframes at the same places. The last chunk
//     also drops the frames an MP4's edit list hides at the end of its
//     video (Plan.VideoEnd, from ProbeVideoEnd): the piece keeps their
//     packets but not the demuxer's discard flag.
//   - AudioArgs encodes the audio once for the whole source: no priming gaps
//     or clicks at chunk edges.
//   - StitchChunks joins the chunks' and the audio's segments (pack.Stitch)
//     and packages them like any hls output; Tools.Stitch also joins an mp4
//     or mkv plan's chunk files by stream copy (filechunk.go).

// ChunkPlan is one chunk. For an hls plan: the frames First up to (not
// including) End of the output frame grid, where frame i is at i/FPS
// seconds of output time; the last chunk has End 0: it runs to the end of
// the stream, not to the probed duration (an estimate). For an mp4 or mkv
// plan: the frames from output time Time (seconds from the plan's Start; a
// source keyframe's) up to the next chunk's Time, or to the end.
type ChunkPlan struct {
	First int64   `json:"first"`
	End   int64   `json:"end,omitempty"`
	Time  float64 `json:"time,omitempty"`
}

// ChunkPreroll is how much source before a chunk's first frame its piece
// holds and its encode decodes: enough for the deinterlacer and the fps
// filter to decide the boundary frame exactly as the unsplit encode does.
const ChunkPreroll = 1.0

// PlanChunks splits a plan's video encode into chunks of about seconds
// each. A non-positive length, or a source too short for two chunks, is
// not split. An hls plan's chunks follow its segment grid (planGridChunks); an
// mp4 or mkv plan's start on keyframes, the source times of the source's
// keyframes (Info.Keyframes; none: no split; planKeyframeChunks).
func (pl *Plan) PlanChunks(seconds float64, keyframes []float64) {
	pl.Chunks = nil
	fpsFilter := pl.FPSFilter
	switch {
	case !(seconds > 0) || !(pl.FPS > 0) || !splittable[pl.Demuxer]:
	case pl.Format == profile.FormatHLS:
		pl.planGridChunks(seconds)
	default:
		pl.planKeyframeChunks(seconds, keyframes)
	}
	if len(pl.Chunks) > MaxChunks {
		// Too many to track: encoded whole, exactly as if never split.
		pl.Chunks, pl.FPSFilter = nil, fpsFilter
	}
}

// planGridChunks splits an hls plan into chunks of about seconds each,
// rounded to whole segments (at least one). The remainder joins the last
// chunk, so no chunk is shorter than the others. A split plan always runs
// the fps filter, so that frame i is at exactly i/FPS and every chunk's trim
// and keyframes fall on the same grid.
func (pl *Plan) planGridChunks(seconds float64) {
	if pl.SegmentSeconds <= 0 {
		return
	}
	step := max(1, math.Round(seconds/pl.SegmentSeconds)) * pl.SegmentSeconds
	n := int(math.Floor(pl.Duration / step))
	if n < 2 {
		return
	}
	pl.FPSFilter = true
	var first int64
	for k := 1; k <= n; k++ {
		c := ChunkPlan{First: first}
		if k < n {
			// The first frame at or after the boundary: where the segment
			// grid's keyframe expression (keyframeExpr) puts a keyframe.
			c.End = int64(math.Ceil(float64(k)*step*pl.FPS - 1e-6))
			first = c.End
		}
		pl.Chunks = append(pl.Chunks, c)
	}
}

// splittable are the demuxers whose packets a piece can carry with the
// times the unsplit encode decodes them at. AVI is not among them: its
// packets have no presentation times (packed B-frames), and a piece that
// makes them up starts a frame later than the source decodes.
var splittable = map[string]bool{"mov": true, "matroska": true, "mpegts": true, "mpeg": true, "flv": true, "ogg": true, "mxf": true, "nut": true, "ivf": true, "yuv4mpegpipe": true}

// ChunkStart is chunk k's first frame's output time, in seconds.
func (pl *Plan) ChunkStart(k int) float64 {
	if pl.Format != profile.FormatHLS {
		return pl.Chunks[k].Time
	}
	return float64(pl.Chunks[k].First) / pl.FPS
}

// ChunkEnd is the output time, in seconds, where chunk k ends (the next
// chunk's start); 0 for the last chunk, which runs to the end of the stream.
func (pl *Plan) ChunkEnd(k int) float64 {
	if pl.Format != profile.FormatHLS {
		if k+1 < len(pl.Chunks) {
			return pl.Chunks[k+1].Time
		}
		return 0
	}
	return float64(pl.Chunks[k].End) / pl.FPS
}

// ChunkFrames is how many frames chunk k has (the last chunk's, as far as
// the probed duration says; an mp4 or mkv plan's, at the nominal rate).
func (pl *Plan) ChunkFrames(k int) float64 {
	if pl.Format != profile.FormatHLS {
		return max(pl.ChunkSeconds(k)*pl.FPS, 1)
	}
	c := pl.Chunks[k]
	if c.End > 0 {
		return float64(c.End - c.First)
	}
	return max(pl.Duration*pl.FPS-float64(c.First), 1)
}

// ChunkSeconds is how many seconds of video chunk k has.
func (pl *Plan) ChunkSeconds(k int) float64 {
	if pl.Format != profile.FormatHLS {
		end := pl.ChunkEnd(k)
		if end == 0 {
			end = pl.Duration
		}
		return max(end-pl.ChunkStart(k), 1/pl.FPS)
	}
	return pl.ChunkFrames(k) / pl.FPS
}

func (pl *Plan) validateChunks() error {
	if len(pl.Chunks) == 0 {
		return nil
	}
	if err := inRange("plan.chunks", len(pl.Chunks), 2, MaxChunks); err != nil {
		return err
	}
	if pl.Format != profile.FormatHLS {
		return pl.validateKeyframeChunks()
	}
	if !pl.FPSFilter {
		return bad("plan.chunks", "only an hls plan with a constant frame rate is split")
	}
	if pl.Chunks[0].First != 0 {
		return bad("plan.chunks", "the first chunk must start at frame 0")
	}
	for k, c := range pl.Chunks {
		last := k == len(pl.Chunks)-1
		if c.Time != 0 || (last && c.End != 0) || (!last && (c.End <= c.First || pl.Chunks[k+1].First != c.End)) {
			return bad("plan.chunks", "chunk %d does not run on from the one before it", k+1)
		}
	}
	return nil
}

// MaxChunks bounds a plan's chunks (a week of video in 30 s chunks).
const MaxChunks = 20_160

// SplitArgs returns the argv that stream-copies chunk k's piece of input
// (its video, from lead seconds before its first frame to ChunkPreroll after
// its end, or to the end of the stream) into piece, a Matroska file that
// keeps the source's timestamps. A stream copy starts at a keyframe, so the
// piece begins at the first source keyframe the demuxer finds after the
// seek point: Split widens lead until that is early enough.
func (pl *Plan) SplitArgs(input string, k int, piece string, lead float64) []string {
	args := []string{"-nostdin", "-hide_banner", "-nostats", "-progress", "pipe:1", "-y",
		"-protocol_whitelist", "file,pipe"}
	if from := pl.ChunkStart(k) - lead; from > 0 {
		args = append(args, "-ss", ftoa(from))
	}
	if end := pl.ChunkEnd(k); end > 0 {
		args = append(args, "-to", ftoa(end+ChunkPreroll))
	}
	return append(args, "-copyts", "-f", pl.Demuxer, "-i", "file:"+filepath.Clean(input),
		"-map", fmt.Sprintf("0:%d", pl.VideoIndex), "-c", "copy", "-f", "matroska", "file:"+filepath.Clean(piece))
}

// ChunkArgs returns the argv that encodes chunk k's frames from its piece
// into outDir, video only: for hls every rung, as segments and init
// segments named as in the unsplit encode; for mp4 and mkv one file
// (fileChunkOutput).
func (pl *Plan) ChunkArgs(piece string, k int, outDir string) []string {
	args := []string{"-nostdin", "-hide_banner", "-nostats", "-progress", "pipe:1", "-y",
		"-protocol_whitelist", "file,pipe"}
	args = append(args, pl.hwInputArgs()...)
	// The piece has lost the source's display rotation: rotateFilter does
	// what autorotation does in the unsplit encode (and, should a later
	// Matroska muxer keep it, -noautorotate keeps it from being done twice).
	args = append(args, pieceInput(piece)...)
	args = append(args, "-filter_complex", pl.graph("[0:0]", pl.chunkFilters(k)))
	for i := range pl.Rungs {
		args = append(args, "-map", fmt.Sprintf("[v%d]", i))
	}
	args = append(args, pl.videoCodecArgs()...)
	args = append(args, "-max_muxing_queue_size", "1024")
	if pl.Format != profile.FormatHLS {
		return append(args, pl.fileChunkOutput(outDir)...)
	}
	args = append(args, pl.dashArgs("id=0,streams=v", outDir)...)
	if pl.tilesInGraph() {
		args = append(args, pl.tileArgs(outDir, pl.firstTile(k))...)
	}
	return args
}

// pieceInput reads a piece with its timestamps, the source's own.
func pieceInput(piece string) []string {
	return []string{"-noautorotate", "-copyts", "-f", "matroska", "-i", "file:" + filepath.Clean(piece)}
}

// chunkFilters give chunk k's frames, from its piece, as the unsplit encode
// filters them (before scaling).
func (pl *Plan) chunkFilters(k int) []string {
	// Output time counts from the source's start, as ffmpeg counts it in the
	// unsplit encode; -copyts keeps the piece's timestamps, which are the
	// source's own.
	pre := []string{pl.fromStart("setpts")}
	if k == len(pl.Chunks)-1 && pl.VideoEnd > 0 {
		// The frames the source's edit list hides (Plan.VideoEnd): the
		// unsplit encode's decoder drops them before any filter sees
		// them, the piece has lost their discard flag. Half a millisecond
		// before the first of them: the piece's timestamps are the
		// source's rounded to milliseconds.
		pre = append(pre, "trim=end="+strconv.FormatFloat(max(pl.VideoEnd-0.0005, 0), 'f', 6, 64))
	}
	if r := pl.rotateFilter(); r != "" {
		pre = append(pre, r)
	}
	if pl.Format == profile.FormatHLS {
		// A split hls plan always has the fps filter; the first chunk's
		// starts at time 0, so that video that starts after the source does
		// (audio first, as in many MPEG-TS files) is padded back to 0 as in
		// the unsplit encode.
		pre = append(append(pre, pl.preFilters(false)...), pl.gridFilter(k == 0))
	} else if pl.onGrid() {
		// An MP4 is constant-rate from time 0 (the unsplit encode's
		// muxer pads video that starts after the source and puts every
		// frame on the grid), and so is a plan with the fps filter: each
		// chunk puts its frames on the same grid itself, the first chunk
		// from 0 as the MP4 muxer does.
		pre = append(append(pre, pl.preFilters(false)...), pl.gridFilter(k == 0 && pl.constantRate()))
	} else {
		pre = append(pre, pl.preFilters(true)...)
	}
	return append(pre, pl.chunkTrim(k))
}

// rotateFilter turns the picture upright as ffmpeg's autorotation does
// before an unsplit encode's filter graph; "" for an upright source.
func (pl *Plan) rotateFilter() string {
	switch pl.Rotation {
	case 90:
		return "transpose=clock"
	case 180:
		return "hflip,vflip"
	case 270:
		return "transpose=cclock"
	}
	return ""
}

// chunkTrim is the trim filter that keeps chunk k's frames.
func (pl *Plan) chunkTrim(k int) string {
	if pl.Format != profile.FormatHLS {
		return pl.keyframeChunkTrim(k)
	}
	trim := fmt.Sprintf("trim=start_pts=%d", pl.Chunks[k].First)
	if end := pl.Chunks[k].End; end > 0 {
		trim += fmt.Sprintf(":end_pts=%d", end)
	}
	return trim
}

// AudioArgs returns the argv that encodes a split plan's audio tracks, once
// for the whole source, into outDir: for hls as segments (representations
// 0, 1, ...; StitchChunks renumbers them after the rungs); for mp4 and mkv
// as everything of the output but its video (fileAudioArgs).
func (pl *Plan) AudioArgs(input, outDir string) []string {
	if pl.Format != profile.FormatHLS {
		return pl.fileAudioArgs(input, outDir)
	}
	args := pl.wholeInputArgs(input, pl.audioAlone())
	if len(pl.Audio) > 0 {
		for _, a := range pl.Audio {
			args = append(args, "-map", fmt.Sprintf("0:%d", a.Input))
		}
		args = append(args, pl.audioCodecArgs()...)
		args = append(args, "-vn", "-max_muxing_queue_size", "1024")
		args = append(args, pl.dashArgs("id=0,streams=a", outDir)...)
	}
	return append(args, pl.subtitleOutputs(outDir)...)
}

// PlanAudioStep gives an unsplit hls plan that has audio or subtitles an
// audio task (AudioStep), so that a web job's audio is made by the one
// audio task whether or not its video is split.
func (pl *Plan) PlanAudioStep() {
	pl.AudioStep = pl.Format == profile.FormatHLS && len(pl.Chunks) == 0 && pl.AudioTask()
}

// AudioTask says whether a split plan has an audio task: an hls plan when
// it has audio; an mp4 or mkv plan always, for its other tracks, metadata
// and chapters.
func (pl *Plan) AudioTask() bool {
	return pl.Format != profile.FormatHLS || len(pl.Audio) > 0 || pl.webSubtitles()
}

// StitchChunks joins the chunk encodes in chunkDirs (chunk k's outDir of
// ChunkArgs, in order) and the audio encode in audioDir ("" when the plan
// has no audio) into outDir, then writes the playlists and the manifest
// (PackageHLS): the same files an unsplit encode makes.
func (pl *Plan) StitchChunks(chunkDirs []string, audioDir, outDir string) (*pack.Packed, error) {
	if len(chunkDirs) != len(pl.Chunks) {
		return nil, fmt.Errorf("stitch: %d chunk encodes for %d chunks", len(chunkDirs), len(pl.Chunks))
	}
	if err := os.MkdirAll(outDir, 0o755); err != nil {
		return nil, fmt.Errorf("stitch: %w", err)
	}
	for i := range pl.Rungs {
		id := strconv.Itoa(i)
		var pieces []pack.Piece
		for k, dir := range chunkDirs {
			p, err := piece(dir, id)
			if err != nil {
				return nil, fmt.Errorf("stitch: chunk %d: %w", k+1, err)
			}
			p.Start = pl.ChunkStart(k)
			pieces = append(pieces, p)
		}
		if _, err := pack.Stitch(outDir, id, initTemplate, mediaTemplate, pieces); err != nil {
			return nil, fmt.Errorf("rung %s: %w", pl.Rungs[i].Name, err)
		}
	}
	if err := pl.joinAudio(audioDir, outDir); err != nil {
		return nil, fmt.Errorf("stitch: %w", err)
	}
	if pl.tilesInGraph() {
		if err := pl.AssembleSprite(outDir, chunkDirs...); err != nil {
			return nil, fmt.Errorf("stitch: %w", err)
		}
	}
	if err := pl.CombineQuality(chunkDirs, outDir); err != nil {
		return nil, fmt.Errorf("stitch: %w", err)
	}
	return pl.PackageHLS(outDir)
}

// joinAudio puts the audio task's encode in audioDir (AudioArgs) into
// outDir beside the video: each track's segments as the representation
// after the rungs', and the subtitle renditions' files.
func (pl *Plan) joinAudio(audioDir, outDir string) error {
	for j := range pl.Audio {
		p, err := piece(audioDir, strconv.Itoa(j))
		if err != nil {
			return fmt.Errorf("audio: %w", err)
		}
		if _, err := pack.Stitch(outDir, strconv.Itoa(len(pl.Rungs)+j), initTemplate, mediaTemplate, []pack.Piece{p}); err != nil {
			return fmt.Errorf("audio track %d: %w", j+1, err)
		}
	}
	for k := range pl.Subtitles {
		if err := copyFile(filepath.Join(audioDir, SubtitleFile(k)), filepath.Join(outDir, SubtitleFile(k))); err != nil {
			return fmt.Errorf("subtitles: %w", err)
		}
	}
	return nil
}

// piece lists representation id's files in dir.
func piece(dir, id string) (pack.Piece, error) {
	files, err := os.ReadDir(dir)
	if err != nil {
		return pack.Piece{}, err
	}
	segs, err := segmentNames(files, id)
	if err != nil {
		return pack.Piece{}, err
	}
	return pack.Piece{Dir: dir, Init: "init-" + id + ".m4s", Segments: segs}, nil
}

// Split runs SplitArgs.
func (t Tools) Split(ctx context.Context, pl *Plan, input string, k int, piece string) ([][]string, error) {
	in, out, err := absPaths(input, piece)
	if err != nil {
		return nil, fmt.Errorf("split chunk %d: %w", k+1, err)
	}
	if err := os.MkdirAll(filepath.Dir(out), 0o755); err != nil {
		return nil, fmt.Errorf("split chunk %d: %w", k+1, err)
	}
	// Sources with sparse keyframes, and demuxers that seek inexactly
	// (MPEG-TS, MPEG-PS), can start the copy after the boundary; each try
	// seeks further back, the last from the start of the file.
	var ran [][]string
	for _, lead := range splitLeads {
		args := pl.SplitArgs(in, k, out, lead)
		ran = append(ran, argv(t.ffmpeg(), args))
		if err := t.Run(ctx, args, nil); err != nil {
			return ran, fmt.Errorf("split chunk %d: %w", k+1, err)
		}
		if pl.ChunkStart(k)-lead <= 0 {
			return ran, nil // read from the start of the file: all there is
		}
		first, err := t.firstPTS(ctx, out)
		if err != nil {
			return ran, fmt.Errorf("split chunk %d: %w", k+1, err)
		}
		// Enough pre-roll, in source time: ChunkPreroll, or all there is.
		if first <= pl.Start+max(0, pl.ChunkStart(k)-ChunkPreroll)+1e-3 {
			return ran, nil
		}
	}
	return ran, fmt.Errorf("split chunk %d: the copied piece starts after the chunk's first frame even when read from the start of the file", k+1)
}

// splitLeads are the seconds before a chunk's first frame that Split seeks
// to, one try after another; the last reads from the start of the file.
var splitLeads = []float64{ChunkPreroll, 10, 60, 600, math.Inf(1)}

// firstPTS is the timestamp, in seconds, of a file's first video packet.
func (t Tools) firstPTS(ctx context.Context, path string) (float64, error) {
	var stdout bytes.Buffer
	_, err := t.exec(ctx, t.ffprobe(), []string{"-v", "error", "-hide_banner", "-protocol_whitelist", "file,pipe",
		"-f", "matroska", "-select_streams", "v:0", "-read_intervals", "%+#1",
		"-show_entries", "packet=pts_time", "-of", "csv=p=0", "-i", "file:" + path}, nil, &stdout, stderrTailBytes)
	if err != nil {
		return 0, fmt.Errorf("run ffprobe: %w", err)
	}
	f, err := strconv.ParseFloat(strings.TrimSpace(stdout.String()), 64)
	if err != nil {
		return 0, fmt.Errorf("the piece has no video packet with a timestamp (%q)", strings.TrimSpace(stdout.String()))
	}
	return f, nil
}

// EncodeChunk runs ChunkArgs, then measures what it made (MeasureChunk).
func (t Tools) EncodeChunk(ctx context.Context, pl *Plan, piece string, k int, outDir string, progress func(Progress)) ([][]string, error) {
	ran, _, err := t.runInto(ctx, fmt.Sprintf("encode chunk %d", k+1), piece, outDir,
		func(in, out string) []string { return pl.ChunkArgs(in, k, out) }, progress)
	if err != nil {
		return ran, err
	}
	measured, err := t.MeasureChunk(ctx, pl, piece, k, outDir)
	return append(ran, measured...), err
}

// EncodeAudio runs AudioArgs.
func (t Tools) EncodeAudio(ctx context.Context, pl *Plan, input, outDir string, progress func(Progress)) ([][]string, error) {
	if !pl.audioFFmpeg() { // sidecar subtitles only: nothing to encode
		if err := os.MkdirAll(outDir, 0o755); err != nil {
			return nil, fmt.Errorf("encode audio: %w", err)
		}
		return nil, pl.writeSidecars(outDir)
	}
	ran, out, err := t.runInto(ctx, "encode audio", input, outDir, pl.AudioArgs, progress)
	if err == nil {
		err = pl.writeSidecars(out)
	}
	return ran, err
}

// audioFFmpeg says the audio task runs ffmpeg: an mp4 or mkv plan, or an
// hls plan with audio or subtitle streams of the source.
func (pl *Plan) audioFFmpeg() bool {
	return pl.Format != profile.FormatHLS || len(pl.Audio) > 0 ||
		slices.ContainsFunc(pl.Subtitles, func(s SubtitlePlan) bool { return s.rendition() && s.Sidecar == "" })
}
