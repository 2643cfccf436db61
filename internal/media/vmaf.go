package media

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"os"
	"os/exec"
	"slices"
	"strconv"
	"strings"
	"sync"

	"github.com/herdhq/herd/internal/media/vmafmodel"
)

// VMAF measurement. Debian's ffmpeg has no libvmaf, so most users get VMAF
// from a second ffmpeg that has it (--measure-ffmpeg). That binary never
// parses a user's file: herd's own ffmpeg decodes the source and the
// output, scales both to the source's display size, sets each output
// frame beside its source frame in one picture, and pipes those raw
// (YUV4MPEG) into it, which cuts them apart again. One stream, not two:
// two pipes between two processes deadlock when one side writes a frame
// to the pipe the other is not reading yet.

// VMAF is a measuring ffmpeg whose libvmaf filter herd found.
type VMAF struct {
	FFmpeg string // the binary
	// Gen is the libvmaf generation: 1 (ffmpeg 4.x; a model file,
	// model_path) or 2 (libvmaf 2.x and later; built-in models by version).
	Gen int
	// Model is the model file a generation 1 libvmaf reads (a .pkl, its
	// .pkl.model beside it); Model4K the 4K model's, for sources taller
	// than 1440 lines ("": none, Model for every source).
	Model, Model4K string
	// Subsample scores every Nth frame (libvmaf's own n_subsample, which
	// still reads every frame for its motion feature); 0 or 1: every one.
	Subsample int
}

// VMAFScore is what VMAF measured of an output against its source.
type VMAFScore struct {
	Mean float64 `json:"mean"`
	// Low is the 5th percentile of the frames' scores: how bad the worst
	// stretches are, which a mean hides.
	Low    float64 `json:"low"`
	Frames int     `json:"frames"` // frames scored
	Model  string  `json:"model"`  // vmaf_v0.6.1, or vmaf_4k_v0.6.1
}

// ErrNoVMAF says a measuring ffmpeg has no libvmaf filter.
var ErrNoVMAF = errors.New("this ffmpeg has no libvmaf filter")

// VMAFConfig says where VMAF comes from: the operator's flags.
type VMAFConfig struct {
	// Measure is the measuring ffmpeg the operator named (--measure-ffmpeg);
	// "" tries the encoding one.
	Measure string
	// Model is the model file for a libvmaf 1.x (--vmaf-model); "" writes
	// herd's copy of vmaf_v0.6.1 into ModelDir. Model4K is its 4K model
	// (--vmaf-4k-model; "": none, which herd does not ship).
	Model, ModelDir, Model4K string
}

// SetupVMAF finds the ffmpeg that measures VMAF: the one the operator
// named, or else the encoding one (ffmpeg) when it has libvmaf. An ffmpeg
// named that cannot measure is an error (the operator asked for it); the
// encoding one without libvmaf is not: nil, and the log says once how to
// get VMAF.
func SetupVMAF(ctx context.Context, cfg VMAFConfig, ffmpeg string, log *slog.Logger) (*VMAF, error) {
	bin := cmp.Or(cfg.Measure, ffmpeg, "ffmpeg")
	v, err := DetectVMAF(ctx, bin, cfg.Model, cfg.ModelDir)
	if err == nil && cfg.Model4K != "" {
		err = v.use4K(cfg.Model4K, log)
	}
	switch {
	case err == nil:
		log.Info("VMAF is measured in verification", "ffmpeg", v.FFmpeg, "libvmaf", map[int]string{1: "1.x", 2: "2.x or later"}[v.Gen])
		return v, nil
	case cfg.Measure != "":
		return nil, fmt.Errorf("--measure-ffmpeg: %w", err)
	}
	log.Info("VMAF is not measured (SSIM and PSNR are): this ffmpeg has no libvmaf; name one that has with --measure-ffmpeg", "ffmpeg", bin)
	return nil, nil
}

// DetectVMAF asks ffmpeg (the measuring binary) for its libvmaf filter and
// says which generation it is. model is the model file for a generation 1
// libvmaf; when it is "", herd's own copy is written into modelDir (none:
// an error).
func DetectVMAF(ctx context.Context, ffmpeg, model, modelDir string) (*VMAF, error) {
	bin, err := exec.LookPath(ffmpeg)
	if err != nil {
		return nil, fmt.Errorf("measuring ffmpeg %s: %w", ffmpeg, err)
	}
	cmd := exec.CommandContext(ctx, bin, "-hide_banner", "-h", "filter=libvmaf")
	cmd.Env = ToolEnv(os.Environ()) // as every tool herd runs: none of herd's secrets
	out, err := cmd.CombinedOutput()
	if err != nil && len(out) == 0 {
		return nil, fmt.Errorf("measuring ffmpeg %s: %w", bin, err)
	}
	gen, ok := vmafGeneration(string(out))
	if !ok {
		return nil, fmt.Errorf("%s: %w", bin, ErrNoVMAF)
	}
	v := &VMAF{FFmpeg: bin, Gen: gen}
	if gen == 1 {
		if model == "" && modelDir != "" {
			if model, err = vmafmodel.Write(modelDir); err != nil {
				return nil, err
			}
		}
		if model == "" {
			return nil, fmt.Errorf("%s has libvmaf 1.x, which reads its model from a file: name one (--vmaf-model PATH, vmaf_v0.6.1.pkl with its .pkl.model beside it)", bin)
		}
		if _, err := os.Stat(model); err != nil {
			return nil, fmt.Errorf("VMAF model %s: %w", model, err)
		}
		v.Model = model
	}
	return v, nil
}

// vmafGeneration reads ffmpeg's help of the libvmaf filter: generation 1
// takes model_path, later ones model (by version); ok is false when the
// filter is not there.
func vmafGeneration(help string) (gen int, ok bool) {
	if !strings.Contains(help, "Filter libvmaf") {
		return 0, false
	}
	for _, l := range strings.Split(help, "\n") {
		f := strings.Fields(l)
		if len(f) > 1 && f[0] == "model" && strings.HasPrefix(f[1], "<") {
			return 2, true
		}
	}
	if strings.Contains(help, "model_path") {
		return 1, true
	}
	return 0, false
}

// use4K has a generation 1 libvmaf score sources taller than 1440 lines
// with the 4K model file model; a later one has that model built in, and
// the file is not needed.
func (v *VMAF) use4K(model string, log *slog.Logger) error {
	if v.Gen >= 2 {
		log.Info("--vmaf-4k-model is not needed: this libvmaf has the 4K model built in", "ffmpeg", v.FFmpeg)
		return nil
	}
	if _, err := os.Stat(model); err != nil {
		return fmt.Errorf("VMAF 4K model %s: %w", model, err)
	}
	v.Model4K = model
	return nil
}

// vmafModel is the model for pictures height lines high: the 4K model
// above 1440 lines where the libvmaf has it (built in from generation 2,
// a file named for generation 1), else the default.
func (v *VMAF) vmafModel(height int) string {
	if height > 1440 && (v.Gen >= 2 || v.Model4K != "") {
		return "vmaf_4k_v0.6.1"
	}
	return "vmaf_v0.6.1"
}

// modelFile is the model file a generation 1 libvmaf reads for pictures
// height lines high.
func (v *VMAF) modelFile(height int) string {
	if v.vmafModel(height) == "vmaf_4k_v0.6.1" {
		return v.Model4K
	}
	return v.Model
}

// Args is the measuring ffmpeg's argv: pictures w wide and h high from
// its stdin, each the source's frame (left) beside the output's (right),
// cut apart and scored (libvmaf takes the output first), every frame, the
// scores logged as JSON to logPath.
func (v *VMAF) Args(logPath string, w, h int) []string {
	opts := []string{}
	if v.Gen >= 2 {
		opts = append(opts, "model=version="+v.vmafModel(h))
	} else {
		opts = append(opts, "model_path="+filterQuote(v.modelFile(h)))
	}
	opts = append(opts, "log_path="+filterQuote(logPath), "log_fmt=json", "n_threads=2")
	if v.Subsample > 1 {
		opts = append(opts, "n_subsample="+strconv.Itoa(v.Subsample))
	}
	g := fmt.Sprintf("[0:v]split[a][b];[a]crop=%d:%d:0:0[ref];[b]crop=%d:%d:%d:0[dist];[dist][ref]libvmaf=%s", w, h, w, h, w, strings.Join(opts, ":"))
	return []string{"-nostdin", "-hide_banner", "-nostats", "-v", "error", "-f", "yuv4mpegpipe", "-i", "pipe:0", "-lavfi", g, "-f", "null", "-"}
}

// filterQuote makes a filter option's value (a path) a literal for a
// filter graph, which ffmpeg parses twice: the option string (where \, '
// and : are escaped with \), then the graph (where the whole is quoted).
func filterQuote(s string) string {
	s = strings.NewReplacer(`\`, `\\`, `'`, `\'`, `:`, `\:`).Replace(s)
	return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'"
}

// vmafWindow is the longest stretch of an output scored at once, and
// vmafWindows how many stretches: VMAF's motion feature compares each
// frame with the one before, so it is given whole stretches of frames,
// never every Nth frame.
const (
	vmafWindow  = 2.0 // seconds
	vmafWindows = 2
)

// VMAFWindows picks the stretches of an output VMAF scores: the start of
// the first and of the middle range given (the sampled segments), or of
// the output's start and middle when none is given, each vmafWindow long
// at most.
func (pl *Plan) VMAFWindows(ranges [][2]float64) [][2]float64 {
	if len(ranges) == 0 {
		ranges = [][2]float64{{0, pl.Duration}}
		if pl.Duration > 2*vmafWindow {
			ranges = [][2]float64{{0, pl.Duration / 2}, {pl.Duration / 2, pl.Duration}}
		}
	}
	picked := []int{0}
	if mid := len(ranges) / 2; mid > 0 && vmafWindows > 1 {
		picked = append(picked, mid)
	}
	return pl.gridWindows(ranges, picked, vmafWindow)
}

// gridWindows are the starts of the picked ranges, each length long at
// most, on the frame grid, so that the source's frames (counted) and the
// output's (by time) are the same ones.
func (pl *Plan) gridWindows(ranges [][2]float64, picked []int, length float64) [][2]float64 {
	fps := pl.FPS
	if !(fps > 0) {
		fps = 1000
	}
	var out [][2]float64
	for _, i := range picked {
		r := ranges[i]
		from := math.Ceil(r[0]*fps-1e-6) / fps
		frames := math.Floor((math.Min(r[1], from+length)-from)*fps + 1e-6)
		if frames >= 1 {
			out = append(out, [2]float64{round6(from), round6(from + frames/fps)})
		}
	}
	return out
}

func round6(f float64) float64 { return math.Round(f*1e6) / 1e6 }

// VMAFArgs is the argv of herd's own ffmpeg that feeds a measuring one:
// the source's frames in windows (output time), through the encode's
// filters as QualityArgs takes them, beside the same frames of the decoded
// output file (demuxed with demuxer; a rung's sampled segments, or a whole
// file), both at the source's display size, as YUV4MPEG on stdout.
func (pl *Plan) VMAFArgs(input, demuxer, file string, windows [][2]float64, seek bool) []string {
	args, src, n := pl.sourceChain(input, windows, seek && pl.constantRate())
	if i := slices.Index(args, "-progress"); i >= 0 {
		args = slices.Delete(args, i, i+2) // stdout carries the frames
	}
	args = append(args, "-f", demuxer, "-i", "file:"+file)
	// Each pair is one frame of a nominal 25 fps stream, whatever the
	// source's rate (-r 25 keeps ffmpeg from adding or dropping any).
	size := fmt.Sprintf("scale=%d:%d:flags=bicubic,setsar=1,format=%s,settb=AVTB,setpts=N/TB/25", pl.Width, pl.Height, pl.Video.PixFmt)
	// The output's frames are counted from its first (a Matroska output's
	// video may start a few milliseconds late, after the audio's priming),
	// and read only to the last window's end: select alone would decode
	// the rest, and shortest ends the run there.
	end := 0.0
	for _, w := range windows {
		end = math.Max(end, w[1])
	}
	dist := fmt.Sprintf("[%d:v:0]setpts=PTS-STARTPTS,trim=end=%.6f,%s%s[dist]", n, end, pl.windowSelect(windows), size)
	g := fmt.Sprintf("%s%s[ref];%s;[ref][dist]hstack=inputs=2:shortest=1[pair]", src, size, dist)
	return append(args, "-filter_complex", g, "-map", "[pair]", "-r", "25", "-f", "yuv4mpegpipe", "-strict", "-1", "pipe:1")
}

// windowSelect is a select filter (ending in a comma) that keeps the
// frames whose output time falls in windows: a frame belongs to the
// window its timestamp is in, the boundaries moved half a frame down so
// that rounding never puts a frame on the wrong side.
func (pl *Plan) windowSelect(windows [][2]float64) string {
	h := 0.5 / pl.FPS
	terms := make([]string, len(windows))
	for i, r := range windows {
		terms[i] = fmt.Sprintf("gte(t\\,%.6f)*lt(t\\,%.6f)", r[0]-h, r[1]-h)
	}
	return fmt.Sprintf("select='%s',", strings.Join(terms, "+"))
}

// MeasureVMAF scores the output file (a rung's sampled segments, or a
// whole file) against the source in windows (VMAFWindows). Both of herd's
// processes and the measuring one end with ctx.
func (t Tools) MeasureVMAF(ctx context.Context, v *VMAF, pl *Plan, input, demuxer, file string, windows [][2]float64, seek bool, tmp string) (*VMAFScore, [][]string, error) {
	feed := pl.VMAFArgs(input, demuxer, file, windows, seek)
	logFile, err := os.CreateTemp(tmp, "vmaf-*.json")
	if err != nil {
		return nil, nil, err
	}
	logPath := logFile.Name()
	_ = logFile.Close() // libvmaf writes it
	defer os.Remove(logPath)
	measure := v.Args(logPath, pl.Width, pl.Height)
	ran := [][]string{argv(t.ffmpeg(), feed), argv(v.FFmpeg, measure)}
	r, w, err := os.Pipe()
	if err != nil {
		return nil, ran, err
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var wg sync.WaitGroup
	var feedErr, measureErr error
	var feedTail, measureTail string
	wg.Go(func() {
		feedTail, feedErr = t.execWith(ctx, t.ffmpeg(), feed, nil, w, stderrTailBytes, []*os.File{w})
		if feedErr != nil {
			cancel() // the measuring side would wait for frames forever
		}
	})
	wg.Go(func() {
		measureTail, measureErr = t.execWith(ctx, v.FFmpeg, measure, r, nil, stderrTailBytes, []*os.File{r})
		if measureErr != nil {
			cancel()
		}
	})
	wg.Wait() // each run closed its end of the pipe once its child started
	switch {
	case measureErr != nil && !errors.Is(measureErr, context.Canceled):
		return nil, ran, fmt.Errorf("measure VMAF: %w: %s", measureErr, lastLines(measureTail, 3))
	case feedErr != nil:
		return nil, ran, fmt.Errorf("decode for VMAF: %w: %s", feedErr, lastLines(feedTail, 3))
	case measureErr != nil:
		return nil, ran, measureErr
	}
	b, err := os.ReadFile(logPath)
	if err != nil {
		return nil, ran, fmt.Errorf("measure VMAF: no scores: %w", err)
	}
	s, err := parseVMAFLog(b)
	if err != nil {
		return nil, ran, err
	}
	s.Model = v.vmafModel(pl.Height)
	return s, ran, nil
}

// parseVMAFLog reads libvmaf's JSON log (both generations write each
// frame's metrics, with "vmaf" among them): the mean, the 5th percentile
// and how many frames.
func parseVMAFLog(b []byte) (*VMAFScore, error) {
	var log struct {
		Frames []struct {
			Metrics map[string]float64 `json:"metrics"`
		} `json:"frames"`
	}
	if err := json.Unmarshal(b, &log); err != nil {
		return nil, fmt.Errorf("measure VMAF: read its log: %w", err)
	}
	var scores []float64
	for _, f := range log.Frames {
		if s, ok := f.Metrics["vmaf"]; ok && !math.IsNaN(s) {
			scores = append(scores, s)
		}
	}
	if len(scores) == 0 {
		return nil, errors.New("measure VMAF: no frame was scored")
	}
	sum := 0.0
	for _, s := range scores {
		sum += s
	}
	slices.Sort(scores)
	low := scores[int(math.Floor(0.05*float64(len(scores)-1)))]
	return &VMAFScore{Mean: round3(sum / float64(len(scores))), Low: round3(low), Frames: len(scores)}, nil
}

func round3(f float64) float64 { return math.Round(f*1000) / 1000 }
