package media

import (
	"fmt"
	"math"
	"regexp"
	"slices"
	"strconv"
	"strings"

	"github.com/herdhq/herd/internal/job"
	"github.com/herdhq/herd/internal/profile"
)

// Whatever reaches an ffmpeg argv or filter graph from a plan comes from the
// sets below or is a number checked here: a plan is stored on the job and
// handed to every executor, and a probe result may come from a remote
// worker, so neither is trusted until it passed Validate.

// FieldError names the field of a plan or probe result that is not
// acceptable and why.
type FieldError struct {
	Field string
	Msg   string
}

func (e *FieldError) Error() string { return e.Field + ": " + e.Msg }

func bad(field, format string, args ...any) error {
	return &FieldError{Field: field, Msg: fmt.Sprintf(format, args...)}
}

// Demuxers are the containers Sniff can name: the only values -f takes.
var Demuxers = []string{"mov", "matroska", "avi", "wav", "mpeg", "mpegts", "flv", "ogg", "asf", "mxf", "rm", "nut", "yuv4mpegpipe", "ivf", "mp3", "flac"}

// Colour names: those ffprobe prints and ffmpeg's -color_primaries,
// -color_trc and -colorspace options take (libavutil's names, and the
// option aliases that differ from them).
var (
	colorPrimaries = []string{"bt709", "bt470m", "bt470bg", "smpte170m", "smpte240m", "film", "bt2020", "smpte428", "smpte431", "smpte432", "jedec-p22", "ebu3213"}
	colorTransfers = []string{"bt709", "gamma22", "gamma28", "bt470m", "bt470bg", "smpte170m", "smpte240m", "linear", "log100", "log316", "iec61966-2-4", "bt1361e", "iec61966-2-1", "bt2020-10", "bt2020-12", "smpte2084", "smpte428", "arib-std-b67"}
	colorSpaces    = []string{"rgb", "gbr", "bt709", "fcc", "bt470bg", "smpte170m", "smpte240m", "ycgco", "ycocg", "ycgco-re", "ycgco-ro", "bt2020nc", "bt2020c", "smpte2085", "chroma-derived-nc", "chroma-derived-c", "ictcp", "ipt-c2"}
)

// knownColor returns s when it is one of ffmpeg's names in set, else "".
func knownColor(set []string, s string) string {
	if slices.Contains(set, s) {
		return s
	}
	return ""
}

var (
	// A token as ffprobe prints codec, pixel format and colour names.
	tokenRe    = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$`)
	rungNameRe = regexp.MustCompile(`^[0-9]{1,5}p(-av1|-hevc)?$`)
)

const (
	maxDimension  = 16384
	maxStreams    = 1024
	maxTracks     = 64
	maxRungs      = 16
	maxBitrate    = 2_000_000_000
	maxSeconds    = 7 * 24 * 3600
	maxSpriteSide = 4096
	// maxSpriteSheet bounds a sprite sheet's side: JPEG cannot be larger.
	maxSpriteSheet = 65500
)

func finite(f float64) bool { return !math.IsNaN(f) && !math.IsInf(f, 0) }

// IsToken reports whether s is a plain name as ffprobe and ffmpeg print
// them (codecs, formats, colour names): letters, digits, '_', '.', '-'.
func IsToken(s string) bool { return tokenRe.MatchString(s) }

func optToken(field, s string) error {
	if s != "" && !tokenRe.MatchString(s) {
		return bad(field, "%q is not a name ffprobe gives", s)
	}
	return nil
}

// text checks a free-text fact (a profile name, a channel layout, a
// language tag as the file has it): short and printable. None of these
// reaches an argv.
func text(field, s string) error {
	if len(s) > 128 {
		return bad(field, "is longer than 128 bytes")
	}
	if strings.ContainsFunc(s, job.UnsafeRune) {
		return bad(field, "%q has a control character", s)
	}
	return nil
}

// label checks a name that is shown and written into a playlist's quoted
// attribute (a stream title, a rendition name): title's output.
func label(field, s string) error {
	if s != title(s) {
		return bad(field, "%q is not a plain name of at most %d bytes", s, maxTitle)
	}
	return nil
}

func loudness(field string, l *job.Loudness) error {
	if l != nil && !l.Valid() {
		return bad(field, "%+v is not a loudness ebur128 reports", *l)
	}
	return nil
}

func oneOf(field, s string, set []string) error {
	if !slices.Contains(set, s) {
		return bad(field, "%q is not one of %v", s, set)
	}
	return nil
}

func optOneOf(field, s string, set []string) error {
	if s == "" {
		return nil
	}
	return oneOf(field, s, set)
}

func inRange[T int | int64](field string, v, lo, hi T) error {
	if v < lo || v > hi {
		return bad(field, "%d is outside %d..%d", v, lo, hi)
	}
	return nil
}

func floatIn(field string, v, lo, hi float64) error {
	if !finite(v) || v < lo || v > hi {
		return bad(field, "%v is outside %v..%v", v, lo, hi)
	}
	return nil
}

// first returns the first non-nil error.
func first(errs ...error) error {
	for _, err := range errs {
		if err != nil {
			return err
		}
	}
	return nil
}

// Validate checks a probe result that came from outside this process (a
// remote worker's report) as strictly as Admit's own checks: every name is
// a plain token, every number is in range, and the picture is within lim.
func (info *Info) Validate(lim Limits) error {
	if info == nil {
		return bad("info", "missing")
	}
	err := first(
		oneOf("info.demuxer", info.Demuxer, Demuxers),
		text("info.format_name", info.FormatName),
		floatIn("info.duration", info.Duration, 0, maxSeconds),
		floatIn("info.start", info.Start, -maxSeconds, maxSeconds),
		inRange("info.size", info.Size, 0, 1<<50),
		inRange("info.bit_rate", info.BitRate, 0, 1<<40),
		optToken("info.herd", info.Herd),
		inRange("info.audio", len(info.Audio), 0, maxStreams),
		inRange("info.subtitles", len(info.Subtitles), 0, maxStreams),
		info.validateKeyframes(),
		info.validateVideoEnd(),
	)
	if err != nil {
		return err
	}
	if v := info.Video; v != nil {
		err := first(
			inRange("info.video.index", v.Index, 0, maxStreams-1),
			optToken("info.video.codec", v.Codec),
			text("info.video.profile", v.Profile),
			optToken("info.video.pix_fmt", v.PixFmt),
			inRange("info.video.width", v.Width, 0, 1<<16),
			inRange("info.video.height", v.Height, 0, 1<<16),
			inRange("info.video.sar_num", v.SARNum, 0, 1<<30),
			inRange("info.video.sar_den", v.SARDen, 0, 1<<30),
			floatIn("info.video.fps", v.FPS, 0, 1e6),
			floatIn("info.video.rfps", v.RFPS, 0, 1e6),
			// A name ffmpeg does not know is dropped (Normalize), as a
			// local probe drops it; only a name that is not a name is refused.
			optToken("info.video.color_transfer", v.ColorTransfer),
			optToken("info.video.color_primaries", v.ColorPrimaries),
			optToken("info.video.color_space", v.ColorSpace),
			inRange("info.video.bit_depth", v.BitDepth, 0, 16),
			inRange("info.video.frames", v.Frames, 0, 1<<40),
		)
		if err != nil {
			return err
		}
		if !slices.Contains([]int{0, 90, 180, 270}, v.Rotation) {
			return bad("info.video.rotation", "%d is not 0, 90, 180 or 270", v.Rotation)
		}
	}
	for i, a := range info.Audio {
		f := fmt.Sprintf("info.audio[%d]", i)
		err := first(
			inRange(f+".index", a.Index, 0, maxStreams-1),
			optToken(f+".codec", a.Codec),
			inRange(f+".channels", a.Channels, 0, 64),
			text(f+".layout", a.Layout),
			inRange(f+".sample_rate", a.SampleRate, 0, 1_000_000),
			text(f+".language", a.Language),
			label(f+".title", a.Title),
			loudness(f+".loudness", a.Loudness),
			loudness(f+".stereo_loudness", a.StereoLoudness),
		)
		if err != nil {
			return err
		}
	}
	for i, s := range info.Subtitles {
		f := fmt.Sprintf("info.subtitles[%d]", i)
		if err := first(inRange(f+".index", s.Index, 0, maxStreams-1), optToken(f+".codec", s.Codec), text(f+".language", s.Language),
			label(f+".title", s.Title), text(f+".unconvertible", s.Unconvertible)); err != nil {
			return err
		}
	}
	// The same refusals Admit makes, with the limits of whoever validates.
	return info.check(lim.withDefaults())
}

// Normalize drops the colour names ffmpeg does not know, as parsing a
// probe does: they are written back on HDR outputs.
func (info *Info) Normalize() {
	if v := info.Video; v != nil {
		v.ColorTransfer = knownColor(colorTransfers, v.ColorTransfer)
		v.ColorPrimaries = knownColor(colorPrimaries, v.ColorPrimaries)
		v.ColorSpace = knownColor(colorSpaces, v.ColorSpace)
	}
}

// Validate checks every field of a plan that reaches an ffmpeg argv or
// filter graph, and the geometry its builders divide by, so that a plan
// that did not come from NewPlan (a stored one, or one a worker sent) can
// make ffmpeg do nothing but what a plan may ask. The error is a *FieldError.
func (pl *Plan) Validate() error {
	if pl == nil {
		return bad("plan", "missing")
	}
	err := first(
		oneOf("plan.format", pl.Format, []string{profile.FormatHLS, profile.FormatMP4, profile.FormatMKV}),
		oneOf("plan.demuxer", pl.Demuxer, Demuxers),
		optToken("plan.herd", pl.Herd),
		floatIn("plan.duration", pl.Duration, 1e-6, maxSeconds),
		floatIn("plan.start", pl.Start, -maxSeconds, maxSeconds),
		pl.validateChunks(),
		pl.validateAudioStep(),
		floatIn("plan.video_end", pl.VideoEnd, 0, pl.Duration+1),
		inRange("plan.video_index", pl.VideoIndex, 0, maxStreams-1),
		inRange("plan.width", pl.Width, 2, maxDimension),
		inRange("plan.height", pl.Height, 2, maxDimension),
		floatIn("plan.aspect", pl.Aspect, 0.01, 100),
		floatIn("plan.fps", pl.FPS, 0.001, 1000),
		inRange("plan.gop", pl.GOP, 0, 100_000),
		optOneOf("plan.source_transfer", pl.SourceTransfer, colorTransfers),
		oneOf("plan.rotation", strconv.Itoa(pl.Rotation), []string{"0", "90", "180", "270"}),
		optOneOf("plan.hardware", pl.Hardware, HWFamilies()),
		inRange("plan.rungs", len(pl.Rungs), 1, maxRungs),
		inRange("plan.audio", len(pl.Audio), 0, maxTracks),
		inRange("plan.subtitles", len(pl.Subtitles), 0, maxTracks),
		inRange("plan.notes", len(pl.Notes), 0, maxStreams),
		pl.validateMinQuality(),
		pl.validateQuality(),
	)
	if err != nil {
		return err
	}
	for i, n := range pl.Notes {
		if err := text(fmt.Sprintf("plan.notes[%d]", i), n); err != nil {
			return err
		}
	}
	if pl.Format == profile.FormatHLS {
		if err := first(floatIn("plan.segment_seconds", pl.SegmentSeconds, 0.5, 60), inRange("plan.gop", pl.GOP, 1, 100_000)); err != nil {
			return err
		}
	} else if pl.SegmentSeconds != 0 {
		return bad("plan.segment_seconds", "is for hls only")
	}
	if err := pl.Video.validate(pl.Hardware); err != nil {
		return err
	}
	for i, r := range pl.Rungs {
		f := fmt.Sprintf("plan.rungs[%d]", i)
		err := first(
			inRange(f+".width", r.Width, 2, maxDimension),
			inRange(f+".height", r.Height, 2, maxDimension),
			inRange(f+".bitrate", r.Bitrate, 0, maxBitrate),
			inRange(f+".max_rate", r.MaxRate, 0, maxBitrate),
			inRange(f+".buf_size", r.BufSize, 0, maxBitrate),
		)
		if err != nil {
			return err
		}
		if r.Video != nil {
			if pl.Format != profile.FormatHLS || pl.Hardware != HWNone || len(pl.Chunks) > 0 {
				return bad(f+".video", "a rung of its own codec is for software hls ladders encoded whole")
			}
			if err := r.Video.validate(HWNone); err != nil {
				return err
			}
			if r.Video.PixFmt != pl.Video.PixFmt || r.Video.ColorTransfer != "" {
				return bad(f+".video.pix_fmt", "every rung of a ladder has the plan's picture format")
			}
		}
		if !rungNameRe.MatchString(r.Name) {
			return bad(f+".name", "%q is not a rung name such as 720p", r.Name)
		}
		if r.Width%2 != 0 || r.Height%2 != 0 {
			return bad(f, "%dx%d is not even", r.Width, r.Height)
		}
		if pl.Format == profile.FormatHLS && (r.Bitrate <= 0 || r.MaxRate <= 0 || r.BufSize <= 0) {
			return bad(f+".bitrate", "an hls rung needs a bitrate, max_rate and buf_size")
		}
	}
	for i, a := range pl.Audio {
		f := fmt.Sprintf("plan.audio[%d]", i)
		err := first(
			inRange(f+".input", a.Input, 0, maxStreams-1),
			optToken(f+".source_codec", a.SourceCodec),
			oneOf(f+".codec", a.Codec, []string{"aac", "copy"}),
			text(f+".language", a.Language),
			label(f+".name", a.Name),
			text(f+".note", a.Note),
			loudness(f+".measured", a.Measured),
		)
		if err != nil {
			return err
		}
		if a.Codec == "aac" {
			if err := first(inRange(f+".channels", a.Channels, 1, 8), inRange(f+".bitrate", a.Bitrate, 8_000, 1_000_000)); err != nil {
				return err
			}
		}
		if l := a.Loudness; l != nil {
			err := first(
				floatIn(f+".loudness.gain", l.Gain, -99, 99),
				floatIn(f+".loudness.shortfall", l.Shortfall, 0, 99),
				floatIn(f+".loudness.target", l.Target, -70, -5),
				floatIn(f+".loudness.true_peak", l.TruePeak, -9, 0),
			)
			if err != nil {
				return err
			}
		}
	}
	for i, s := range pl.Subtitles {
		f := fmt.Sprintf("plan.subtitles[%d]", i)
		err := first(
			inRange(f+".input", s.Input, 0, maxStreams-1),
			oneOf(f+".codec", s.Codec, []string{"mov_text", "srt", "webvtt", "copy"}),
			text(f+".language", s.Language),
			label(f+".name", s.Name),
		)
		if err != nil {
			return err
		}
		if s.Sidecar != "" && (!job.ValidSubtitleID(s.Sidecar) || s.Codec != "webvtt") {
			return &FieldError{Field: f + ".sidecar", Msg: "not a WebVTT rendition of a stored subtitle file"}
		}
	}
	return pl.Thumbs.validate(pl.Duration)
}

func (pl *Plan) validateAudioStep() error {
	if pl.AudioStep && (pl.Format != profile.FormatHLS || len(pl.Chunks) > 0 || !pl.AudioTask()) {
		return bad("plan.audio_step", "only an unsplit hls plan with audio or subtitles has an audio task of its own")
	}
	return nil
}

func (v VideoPlan) validate(hw string) error {
	enc := softwareEncoder(v.Codec)
	if hw != HWNone {
		enc, _ = hwEncoder(hw, v.Codec)
	}
	err := first(
		oneOf("plan.video.codec", v.Codec, []string{"h264", "hevc", "av1"}),
		oneOf("plan.video.preset", v.Preset, profile.Presets()),
		inRange("plan.video.crf", v.CRF, 0, 63),
		oneOf("plan.video.pix_fmt", v.PixFmt, []string{"yuv420p", "yuv420p10le"}),
		optOneOf("plan.video.color_primaries", v.ColorPrimaries, colorPrimaries),
		optOneOf("plan.video.color_transfer", v.ColorTransfer, colorTransfers),
		optOneOf("plan.video.color_space", v.ColorSpace, colorSpaces),
	)
	if err != nil {
		return err
	}
	if v.Encoder != enc {
		return bad("plan.video.encoder", "%q does not encode %s here (expected %q)", v.Encoder, v.Codec, enc)
	}
	if v.ColorTransfer != "" && (v.ColorPrimaries == "" || v.ColorSpace == "") {
		return bad("plan.video.color_transfer", "needs color_primaries and color_space too")
	}
	return nil
}

func (th ThumbPlan) validate(duration float64) error {
	if th.Poster {
		err := first(
			floatIn("plan.thumbs.poster_at", th.PosterAt, 0, duration),
			inRange("plan.thumbs.poster_width", th.PosterWidth, 2, maxDimension),
			inRange("plan.thumbs.poster_height", th.PosterHeight, 2, maxDimension),
		)
		if err != nil {
			return err
		}
	}
	if !th.Sprite {
		return nil
	}
	err := first(
		floatIn("plan.thumbs.interval", th.Interval, 0.01, maxSeconds),
		inRange("plan.thumbs.count", th.Count, 1, maxSpriteTiles),
		inRange("plan.thumbs.columns", th.Columns, 1, th.Count),
		inRange("plan.thumbs.rows", th.Rows, 1, th.Count),
		inRange("plan.thumbs.tile_width", th.TileWidth, 2, maxSpriteSide),
		inRange("plan.thumbs.tile_height", th.TileHeight, 2, maxSpriteSide),
	)
	if err != nil {
		return err
	}
	if th.Columns*th.Rows < th.Count {
		return bad("plan.thumbs.rows", "%d columns × %d rows hold fewer than %d tiles", th.Columns, th.Rows, th.Count)
	}
	if th.Columns*th.TileWidth > maxSpriteSheet || th.Rows*th.TileHeight > maxSpriteSheet {
		return bad("plan.thumbs", "a %dx%d sheet of %dx%d tiles is larger than a JPEG can be", th.Columns, th.Rows, th.TileWidth, th.TileHeight)
	}
	return nil
}

// validateVideoEnd checks a reported video end: none, or within the source.
func (info *Info) validateVideoEnd() error {
	if info.VideoEnd == 0 {
		return nil
	}
	return floatIn("info.video_end", info.VideoEnd, info.Start, info.Start+info.Duration+1)
}

// validateMinQuality checks the floor of the outputs' quality.
func (pl *Plan) validateMinQuality() error {
	if q := pl.MinQuality; q != nil {
		return first(floatIn("plan.min_quality.ssim", q.SSIM, 0, 1), floatIn("plan.min_quality.vmaf", q.VMAF, 0, 100))
	}
	return nil
}
