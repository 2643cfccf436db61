package media

import (
	"context"
	"encoding/json"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/herdhq/herd/internal/profile"
)

// Quality per chunk: a chunk task measures its own outputs against its own
// piece, in parallel with the other chunks, so that verifying a split job
// does not decode the whole source again after the stitch. The stitch
// combines the chunks' measures (CombineQuality) into the folder it stages,
// and Verify takes them from there instead of comparing with the source.

// QualityName is the file a chunk's measures, and the stitch's combined
// ones, are written to.
const QualityName = "quality.json"

// ChunkQuality is what was measured of one chunk, or of a stitched job: SSIM
// and PSNR per rung (in the plan's order) and the frames they stand for.
type ChunkQuality struct {
	Frames float64   `json:"frames"`
	SSIM   []float64 `json:"ssim"`
	PSNR   []float64 `json:"psnr"`
}

// ChunkQualityArgs returns the argv that decodes chunk k's files (demuxed
// with demuxer: for hls its first segment of each rung, for mp4 and mkv its
// one file) and measures SSIM and PSNR of its first measureFrames frames
// against the frames its piece gives through the chunk's own filters, on a
// sample of them (qualityOutputs). The frames pair up exactly: the chunk
// was encoded from the same filters, in the same order.
func (pl *Plan) ChunkQualityArgs(piece string, k int, demuxer string, files []string) []string {
	args := append([]string{"-loglevel", "level+info", "-nostdin", "-hide_banner", "-nostats",
		"-protocol_whitelist", "file,pipe"}, pieceInput(piece)...)
	for _, f := range files {
		args = append(args, "-f", demuxer, "-i", "file:"+filepath.Clean(f))
	}
	src := append(pl.chunkFilters(k), fmt.Sprintf("trim=end_frame=%d", pl.measureFrames(k)))
	return append(args, pl.qualityOutputs("[0:0]"+strings.Join(src, ",")+",", 1, len(files), nil)...)
}

// fileMeasureSeconds is how much of an mp4 or mkv chunk its task measures,
// from its start (where it meets the chunk before): about what an hls
// chunk's first segment holds. Measuring whole chunks decodes the source a
// second time (a split hls job took 1.4 × as long on one worker).
const fileMeasureSeconds = 4

// measureFrames is how many frames, from its first, chunk k measures: an
// hls chunk its first segment, an mp4 or mkv chunk its first
// fileMeasureSeconds (all of it when shorter).
func (pl *Plan) measureFrames(k int) int64 {
	if pl.Format == profile.FormatHLS {
		return pl.firstSegmentFrames(k)
	}
	return max(1, int64(math.Ceil(min(fileMeasureSeconds, pl.ChunkSeconds(k))*pl.FPS-chunkEdge)))
}

// firstSegmentFrames is how many frames chunk k's first segment holds: up
// to the first frame at or after the next multiple of the segment length,
// where the grid's keyframe expression starts the next segment.
func (pl *Plan) firstSegmentFrames(k int) int64 {
	first := pl.Chunks[k].First
	seg := math.Round(float64(first)/pl.FPS/pl.SegmentSeconds) + 1
	return max(1, int64(math.Ceil(seg*pl.SegmentSeconds*pl.FPS-1e-6))-first)
}

// MeasureChunk measures chunk k's encode in dir against its piece, where
// the chunk meets the one before it (measureFrames; the verification after
// the stitch decodes the rest), and writes QualityName into dir: for hls
// the first segment of each rung, for mp4 and mkv the start of its file.
// It returns every argv it ran.
func (t Tools) MeasureChunk(ctx context.Context, pl *Plan, pieceFile string, k int, dir string) ([][]string, error) {
	in, out, err := absPaths(pieceFile, dir)
	if err != nil {
		return nil, fmt.Errorf("measure chunk %d: %w", k+1, err)
	}
	tmp, err := os.MkdirTemp("", "herd-chunk-quality-*")
	if err != nil {
		return nil, fmt.Errorf("measure chunk %d: %w", k+1, err)
	}
	defer os.RemoveAll(tmp)
	v := &verifier{t: t, pl: pl, in: in, out: out, tmp: tmp}
	demuxer, files, outs, err := pl.chunkFiles(out, tmp)
	if err != nil {
		return nil, fmt.Errorf("measure chunk %d: %w", k+1, err)
	}
	if err := v.measure(ctx, demuxer, files, pl.ChunkQualityArgs(in, k, demuxer, files), outs); err != nil {
		return v.ran, fmt.Errorf("measure chunk %d: %w", k+1, err)
	}
	q := ChunkQuality{Frames: float64(pl.measureFrames(k))}
	for _, o := range outs {
		q.SSIM, q.PSNR = append(q.SSIM, o.SSIM), append(q.PSNR, o.PSNR)
	}
	b, err := json.Marshal(q)
	if err != nil {
		return v.ran, err
	}
	if err := writeAtomic(out, QualityName, b); err != nil {
		return v.ran, fmt.Errorf("measure chunk %d: %w", k+1, err)
	}
	return v.ran, nil
}

// chunkFiles returns what a chunk's measure decodes of its encode in out:
// for hls each rung's init and first segment, joined into a file in tmp;
// for mp4 and mkv its file. The outputs are named after them.
func (pl *Plan) chunkFiles(out, tmp string) (demuxer string, files []string, outs []Output, err error) {
	if pl.Format != profile.FormatHLS {
		return pl.fileDemuxer(), []string{filepath.Join(out, pl.FileName())}, []Output{{Path: pl.FileName()}}, nil
	}
	outs = make([]Output, len(pl.Rungs))
	for i := range pl.Rungs {
		p, err := piece(out, strconv.Itoa(i))
		if err != nil {
			return "", nil, nil, err
		}
		if len(p.Segments) == 0 {
			return "", nil, nil, fmt.Errorf("rung %d has no segment", i)
		}
		f, err := joinFiles(filepath.Join(tmp, fmt.Sprintf("rung-%d.mp4", i)), out, []string{p.Init, p.Segments[0]})
		if err != nil {
			return "", nil, nil, err
		}
		files = append(files, f)
		outs[i].Path = p.Init
	}
	return "mov", files, outs, nil
}

// joinFiles writes the files names of dir, one after another, to path.
func joinFiles(path, dir string, names []string) (_ string, err error) {
	f, err := os.Create(path)
	if err != nil {
		return "", err
	}
	defer func() {
		if cerr := f.Close(); cerr != nil && err == nil {
			err = cerr
		}
	}()
	for _, name := range names {
		if err := appendFile(f, filepath.Join(dir, name)); err != nil {
			return "", err
		}
	}
	return path, nil
}

// CombineQuality writes into outDir the chunks' measures combined: SSIM
// weighted by frames, PSNR from the frames' mean squared error. It writes
// nothing when a chunk has none (measured by a worker from before chunks
// measured themselves): Verify then compares with the source.
func (pl *Plan) CombineQuality(chunkDirs []string, outDir string) error {
	var all ChunkQuality
	var mse []float64
	for _, dir := range chunkDirs {
		q, err := readQuality(dir, len(pl.Rungs))
		if err != nil {
			// Not measured (a worker from before chunks measured
			// themselves), or not readable: Verify measures the whole.
			return nil
		}
		if all.SSIM == nil {
			all.SSIM, all.PSNR, mse = make([]float64, len(pl.Rungs)), make([]float64, len(pl.Rungs)), make([]float64, len(pl.Rungs))
		}
		all.Frames += q.Frames
		for i := range pl.Rungs {
			all.SSIM[i] += q.SSIM[i] * q.Frames
			mse[i] += math.Pow(10, -q.PSNR[i]/10) * q.Frames // relative to the peak's square
		}
	}
	if all.Frames <= 0 {
		return nil
	}
	for i := range all.SSIM {
		all.SSIM[i] /= all.Frames
		all.PSNR[i] = psnrOf(mse[i] / all.Frames)
	}
	b, err := json.Marshal(all)
	if err != nil {
		return err
	}
	return writeAtomic(outDir, QualityName, b)
}

// psnrOf is the PSNR, in dB, of a mean squared error relative to the peak's
// square; identical pictures get ffmpeg's cap.
func psnrOf(mse float64) float64 {
	if mse <= 0 {
		return maxPSNR
	}
	return min(-10*math.Log10(mse), maxPSNR)
}

// maxPSNR is what a PSNR of identical pictures is reported as.
const maxPSNR = 100

// readQuality reads dir's QualityName, checked for rungs rungs.
func readQuality(dir string, rungs int) (*ChunkQuality, error) {
	b, err := os.ReadFile(filepath.Join(dir, QualityName))
	if err != nil {
		return nil, err
	}
	var q ChunkQuality
	if err := json.Unmarshal(b, &q); err != nil {
		return nil, fmt.Errorf("%s: %w", QualityName, err)
	}
	if len(q.SSIM) != rungs || len(q.PSNR) != rungs || !(q.Frames >= 0 && q.Frames < 1e9) {
		return nil, fmt.Errorf("%s: not %d rungs' measures", QualityName, rungs)
	}
	for i := range rungs {
		if !(q.SSIM[i] >= 0 && q.SSIM[i] <= 1) || !(q.PSNR[i] >= 0 && q.PSNR[i] <= maxPSNR) {
			return nil, fmt.Errorf("%s: rung %d's SSIM %v or PSNR %v is out of range", QualityName, i, q.SSIM[i], q.PSNR[i])
		}
	}
	return &q, nil
}
