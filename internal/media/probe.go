package media

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"unicode/utf8"

	"github.com/herdhq/herd/internal/job"
)

// Info is what herd knows about an admitted input. It is stored on the job.
type Info struct {
	Demuxer    string  `json:"demuxer"`     // the allow-listed demuxer that was forced
	FormatName string  `json:"format_name"` // ffprobe's format_name
	Duration   float64 `json:"duration"`    // seconds
	// Start is the container's start time in seconds (ffprobe's
	// format.start_time): the timestamp that ffmpeg counts output time from.
	// Late-starting captures (MPEG-TS, DVD) have one above zero.
	Start     float64          `json:"start,omitempty"`
	Size      int64            `json:"size"`
	BitRate   int64            `json:"bit_rate"`
	Video     *VideoStream     `json:"video"`
	Audio     []AudioStream    `json:"audio,omitempty"`
	Subtitles []SubtitleStream `json:"subtitles,omitempty"`
	// Keyframes are the source times, in seconds, of the video stream's
	// keyframes (at most MaxKeyframes, thinned out evenly beyond): where an
	// mp4 or mkv plan's chunks may start. Only ProbeKeyframes lists them.
	Keyframes []float64 `json:"keyframes,omitempty"`
	// VideoEnd is the source time, in seconds, of the first frame an MP4's
	// edit list hides at the end of the video (the demuxer discards it and
	// every later one); 0 when none is hidden. Only ProbeVideoEnd sets it.
	VideoEnd float64 `json:"video_end,omitempty"`
	// Herd is the herd tag (HerdTag) herd writes on every MP4 and MKV it
	// makes, the job's id: a file herd made. "" on others.
	Herd string `json:"herd,omitempty"`
}

// VideoStream is the chosen video stream of an input.
type VideoStream struct {
	Index          int     `json:"index"`
	Codec          string  `json:"codec"`
	Profile        string  `json:"profile,omitempty"`
	PixFmt         string  `json:"pix_fmt,omitempty"`
	Width          int     `json:"width"`
	Height         int     `json:"height"`
	SARNum         int     `json:"sar_num,omitempty"`
	SARDen         int     `json:"sar_den,omitempty"`
	FPS            float64 `json:"fps"`            // avg_frame_rate
	RFPS           float64 `json:"rfps,omitempty"` // r_frame_rate
	VFR            bool    `json:"vfr,omitempty"`
	Rotation       int     `json:"rotation,omitempty"` // 0, 90, 180 or 270 degrees clockwise for display
	Interlaced     bool    `json:"interlaced,omitempty"`
	HDR            bool    `json:"hdr,omitempty"`
	ColorTransfer  string  `json:"color_transfer,omitempty"`
	ColorPrimaries string  `json:"color_primaries,omitempty"`
	ColorSpace     string  `json:"color_space,omitempty"`
	BitDepth       int     `json:"bit_depth,omitempty"`
	Frames         int64   `json:"frames,omitempty"`
	// BitRate is the stream's own, where the container says (MP4); 0 when not.
	BitRate int64 `json:"bit_rate,omitempty"`
}

// AudioStream is one audio stream of an input.
type AudioStream struct {
	Index      int    `json:"index"`
	Codec      string `json:"codec"`
	Channels   int    `json:"channels"`
	Layout     string `json:"layout,omitempty"`
	SampleRate int    `json:"sample_rate,omitempty"`
	Language   string `json:"language,omitempty"`
	Default    bool   `json:"default,omitempty"`
	// Title is the stream's own name (its title tag), cut to printable
	// text of at most maxTitle bytes.
	Title string `json:"title,omitempty"`
	// Commentary and Descriptive are the comment and visual_impaired
	// (audio description) dispositions.
	Commentary  bool `json:"commentary,omitempty"`
	Descriptive bool `json:"descriptive,omitempty"`
	// Loudness is the stream's EBU R128 measurement (MeasureLoudness);
	// StereoLoudness its stereo downmix's, for a stream of more than two
	// channels. nil: not measured.
	Loudness       *job.Loudness `json:"loudness,omitempty"`
	StereoLoudness *job.Loudness `json:"stereo_loudness,omitempty"`
}

// SubtitleStream is one subtitle stream of an input.
type SubtitleStream struct {
	Index    int    `json:"index"`
	Codec    string `json:"codec"`
	Language string `json:"language,omitempty"`
	Text     bool   `json:"text"` // text (convertible to mov_text/WebVTT), not pictures
	Default  bool   `json:"default,omitempty"`
	Forced   bool   `json:"forced,omitempty"`
	// Title is the stream's own name (title()); HearingImpaired the
	// hearing_impaired disposition (SDH: sounds and music described).
	Title           string `json:"title,omitempty"`
	HearingImpaired bool   `json:"hearing_impaired,omitempty"`
	// Unconvertible says why ffmpeg could not turn this text stream into
	// WebVTT (CheckSubtitles); "" when it could, or was not asked.
	Unconvertible string `json:"unconvertible,omitempty"`
}

// Admit decides whether path is a media file herd will take, and probes it.
// The container is sniffed from the file's first bytes and forced on ffprobe;
// a refusal is a *RejectedError whose Reason can be shown to the user.
func (t Tools) Admit(ctx context.Context, path string, lim Limits) (*Info, error) {
	lim = lim.withDefaults()
	abs, err := filepath.Abs(path)
	if err != nil {
		return nil, fmt.Errorf("admit: %w", err)
	}
	f, err := os.Open(abs)
	if err != nil {
		return nil, fmt.Errorf("admit: %w", err)
	}
	head := make([]byte, sniffBytes)
	n, err := io.ReadFull(f, head)
	_ = f.Close()
	if err != nil && !errors.Is(err, io.ErrUnexpectedEOF) && !errors.Is(err, io.EOF) {
		return nil, fmt.Errorf("admit: read head: %w", err)
	}
	demuxer, err := Sniff(head[:n])
	if err != nil {
		return nil, err
	}
	out, err := t.probe(ctx, demuxer, abs)
	if err != nil {
		if ee, ok := errors.AsType[*ExitError](err); ok && ee.Signal == "" && ctx.Err() == nil {
			t.log().Info("probe refused input", "demuxer", demuxer, "stderr", lastLines(ee.StderrTail, 3))
			return nil, reject(CodeUnreadable, "the file looks like %s but could not be read; it may be truncated or corrupt, so upload it again or export it anew", containerName(demuxer))
		}
		return nil, fmt.Errorf("admit: %w", err)
	}
	info, err := parseProbe(out, demuxer)
	if err != nil {
		return nil, reject(CodeUnreadable, "the file looks like %s but its streams could not be read", containerName(demuxer))
	}
	if err := info.check(lim); err != nil {
		return nil, err
	}
	return info, nil
}

// probe runs ffprobe on abs with demuxer forced and returns its JSON.
func (t Tools) probe(ctx context.Context, demuxer, abs string) ([]byte, error) {
	var stdout bytes.Buffer
	_, err := t.exec(ctx, t.ffprobe(), probeArgs(demuxer, abs), nil, &stdout, stderrTailBytes)
	if err != nil {
		return nil, fmt.Errorf("run ffprobe: %w", err)
	}
	return stdout.Bytes(), nil
}

func probeArgs(demuxer, abs string) []string {
	return []string{
		"-v", "error", "-hide_banner",
		"-protocol_whitelist", "file,pipe",
		"-f", demuxer,
		"-show_format", "-show_streams", "-of", "json",
		"-i", "file:" + abs,
	}
}

func containerName(demuxer string) string {
	switch demuxer {
	case "mov":
		return "an MP4/MOV file"
	case "matroska":
		return "a Matroska/WebM file"
	case "mpeg":
		return "an MPEG program stream"
	case "mpegts":
		return "an MPEG transport stream"
	default:
		return "a " + strings.ToUpper(demuxer) + " file"
	}
}

// check applies the admission rules that need the probe.
func (info *Info) check(lim Limits) error {
	v := info.Video
	switch {
	case v == nil && len(info.Audio) > 0:
		return reject(CodeNoVideo, "the file has no video stream (audio only?); herd transcodes videos")
	case v == nil:
		return reject(CodeNoVideo, "the file has no video stream; herd transcodes videos")
	case v.Width <= 0 || v.Height <= 0:
		return reject(CodeUnreadable, "the video stream has no picture size; the file may be corrupt")
	case math.IsNaN(info.Duration) || info.Duration <= 0:
		return reject(CodeZeroDuration, "the video has no duration; it may be empty, a single picture or truncated")
	case v.Width > lim.MaxWidth || v.Height > lim.MaxHeight:
		return reject(CodeTooLarge, "the picture is %dx%d, larger than the %dx%d herd accepts; scale it down first", v.Width, v.Height, lim.MaxWidth, lim.MaxHeight)
	case v.Width*v.Height > lim.MaxPixels:
		return reject(CodeTooLarge, "the picture is %dx%d (%.1f megapixels), more than the %.1f megapixels herd accepts; scale it down first",
			v.Width, v.Height, float64(v.Width*v.Height)/1e6, float64(lim.MaxPixels)/1e6)
	case info.Duration > lim.MaxDuration.Seconds():
		return reject(CodeTooLarge, "the video lasts %.0f minutes, longer than the %.0f herd accepts; split it first", info.Duration/60, lim.MaxDuration.Minutes())
	}
	return nil
}

// probeJSON is the part of ffprobe's JSON that herd reads.
type probeJSON struct {
	Format struct {
		FormatName string            `json:"format_name"`
		Duration   string            `json:"duration"`
		StartTime  string            `json:"start_time"`
		Size       string            `json:"size"`
		BitRate    string            `json:"bit_rate"`
		Tags       map[string]string `json:"tags"`
	} `json:"format"`
	Streams []probeStream `json:"streams"`
}

type probeStream struct {
	Index             int    `json:"index"`
	CodecName         string `json:"codec_name"`
	CodecType         string `json:"codec_type"`
	Profile           string `json:"profile"`
	PixFmt            string `json:"pix_fmt"`
	Width             int    `json:"width"`
	Height            int    `json:"height"`
	SampleAspectRatio string `json:"sample_aspect_ratio"`
	AvgFrameRate      string `json:"avg_frame_rate"`
	RFrameRate        string `json:"r_frame_rate"`
	FieldOrder        string `json:"field_order"`
	ColorTransfer     string `json:"color_transfer"`
	ColorPrimaries    string `json:"color_primaries"`
	ColorSpace        string `json:"color_space"`
	BitsPerRawSample  string `json:"bits_per_raw_sample"`
	NbFrames          string `json:"nb_frames"`
	Duration          string `json:"duration"`
	BitRate           string `json:"bit_rate"`
	Channels          int    `json:"channels"`
	ChannelLayout     string `json:"channel_layout"`
	SampleRate        string `json:"sample_rate"`
	Disposition       struct {
		Default         int `json:"default"`
		Forced          int `json:"forced"`
		AttachedPic     int `json:"attached_pic"`
		Comment         int `json:"comment"`
		VisualImpaired  int `json:"visual_impaired"`
		HearingImpaired int `json:"hearing_impaired"`
	} `json:"disposition"`
	Tags struct {
		Language    string `json:"language"`
		Rotate      string `json:"rotate"`
		Title       string `json:"title"`
		HandlerName string `json:"handler_name"`
	} `json:"tags"`
	SideDataList []struct {
		Rotation *float64 `json:"rotation"`
	} `json:"side_data_list"`
}

// parseProbe turns ffprobe's JSON into an Info; it does not apply the
// admission rules.
func parseProbe(data []byte, demuxer string) (*Info, error) {
	var pj probeJSON
	if err := json.Unmarshal(data, &pj); err != nil {
		return nil, fmt.Errorf("parse probe: %w", err)
	}
	info := &Info{
		Demuxer:    demuxer,
		FormatName: pj.Format.FormatName,
		Duration:   parseFloat(pj.Format.Duration),
		Start:      parseFloat(pj.Format.StartTime),
		Size:       parseInt(pj.Format.Size),
		BitRate:    parseInt(pj.Format.BitRate),
	}
	for k, v := range pj.Format.Tags {
		if strings.EqualFold(k, HerdTag) && IsToken(v) {
			info.Herd = v
		}
	}
	var videos []probeStream
	for _, s := range pj.Streams {
		switch s.CodecType {
		case "video":
			if s.Disposition.AttachedPic == 0 {
				videos = append(videos, s)
			}
			if id, ok := strings.CutPrefix(s.Tags.HandlerName, HerdTag+":"); ok && IsToken(id) && info.Herd == "" {
				info.Herd = id // an MP4's (HerdTag)
			}
		case "audio":
			info.Audio = append(info.Audio, AudioStream{
				Index: s.Index, Codec: s.CodecName, Channels: s.Channels, Layout: s.ChannelLayout,
				SampleRate: int(parseInt(s.SampleRate)), Language: language(s.Tags.Language),
				Default: s.Disposition.Default == 1, Title: title(s.Tags.Title),
				Commentary: s.Disposition.Comment == 1, Descriptive: s.Disposition.VisualImpaired == 1,
			})
		case "subtitle":
			info.Subtitles = append(info.Subtitles, SubtitleStream{
				Index: s.Index, Codec: s.CodecName, Language: language(s.Tags.Language),
				Text: isTextSubtitle(s.CodecName), Default: s.Disposition.Default == 1,
				Forced: s.Disposition.Forced == 1, Title: title(s.Tags.Title), HearingImpaired: s.Disposition.HearingImpaired == 1,
			})
		}
	}
	if len(videos) > 0 {
		i := slices.IndexFunc(videos, func(s probeStream) bool { return s.Disposition.Default == 1 })
		info.Video = videoStream(videos[max(i, 0)])
		if !(info.Duration > 0) { // also NaN
			info.Duration = parseFloat(videos[max(i, 0)].Duration)
		}
	}
	if v := info.Video; v != nil && v.Frames == 0 && v.FPS > 0 && info.Duration > 0 {
		v.Frames = int64(math.Round(info.Duration * v.FPS))
	}
	return info, nil
}

func videoStream(s probeStream) *VideoStream {
	v := &VideoStream{
		Index: s.Index, Codec: s.CodecName, Profile: s.Profile, PixFmt: s.PixFmt,
		Width: s.Width, Height: s.Height,
		FPS: parseRational(s.AvgFrameRate), RFPS: parseRational(s.RFrameRate),
		// Only ffmpeg's own names are kept: they are written back on HDR outputs.
		ColorTransfer: knownColor(colorTransfers, s.ColorTransfer), ColorPrimaries: knownColor(colorPrimaries, s.ColorPrimaries), ColorSpace: knownColor(colorSpaces, s.ColorSpace),
		Frames: parseInt(s.NbFrames), BitRate: parseInt(s.BitRate),
	}
	if num, den, ok := strings.Cut(s.SampleAspectRatio, ":"); ok {
		n, _ := strconv.Atoi(num)
		d, _ := strconv.Atoi(den)
		if n > 0 && d > 0 {
			v.SARNum, v.SARDen = n, d
		}
	}
	if v.FPS <= 0 {
		v.FPS = v.RFPS
	}
	v.VFR = v.FPS > 0 && v.RFPS > 0 && math.Abs(v.RFPS-v.FPS)/v.RFPS > 0.005
	// The display matrix angle is counter-clockwise; the legacy rotate tag clockwise.
	rot := 0.0
	found := false
	for _, sd := range s.SideDataList {
		if sd.Rotation != nil {
			rot, found = -*sd.Rotation, true
			break
		}
	}
	if !found && s.Tags.Rotate != "" {
		rot = parseFloat(s.Tags.Rotate)
	}
	v.Rotation = normalizeRotation(rot)
	switch s.FieldOrder {
	case "tt", "bb", "tb", "bt":
		v.Interlaced = true
	}
	v.HDR = s.ColorTransfer == "smpte2084" || s.ColorTransfer == "arib-std-b67"
	v.BitDepth = int(parseInt(s.BitsPerRawSample))
	if v.BitDepth <= 0 {
		v.BitDepth = bitDepthOf(s.PixFmt)
	}
	return v
}

// normalizeRotation rounds a clockwise angle to 0, 90, 180 or 270.
func normalizeRotation(deg float64) int {
	if math.IsNaN(deg) || math.IsInf(deg, 0) {
		return 0
	}
	r := int(math.Round(deg/90)) % 4
	if r < 0 {
		r += 4
	}
	return r * 90
}

func bitDepthOf(pixFmt string) int {
	switch {
	case pixFmt == "":
		return 0
	case strings.Contains(pixFmt, "p10") || strings.Contains(pixFmt, "10le") || strings.Contains(pixFmt, "10be"):
		return 10
	case strings.Contains(pixFmt, "p12") || strings.Contains(pixFmt, "12le") || strings.Contains(pixFmt, "12be"):
		return 12
	default:
		return 8
	}
}

func isTextSubtitle(codec string) bool {
	switch codec {
	case "subrip", "srt", "ass", "ssa", "mov_text", "webvtt", "text", "microdvd", "subviewer",
		"subviewer1", "jacosub", "sami", "realtext", "stl", "pjs", "mpl2", "vplayer":
		return true
	}
	return false
}

// maxTitle bounds a stream title kept from a file, in bytes.
const maxTitle = 64

// title is a stream title as a file has it, made safe to show and to
// quote in a playlist: control characters and double quotes dropped,
// spaces folded, cut to maxTitle bytes on a character boundary.
func title(s string) string {
	s = strings.Join(strings.Fields(strings.Map(func(r rune) rune {
		if r == '"' || job.UnsafeRune(r) {
			return ' '
		}
		return r
	}, strings.ToValidUTF8(s, ""))), " ")
	for len(s) > maxTitle {
		_, size := utf8.DecodeLastRuneInString(s)
		s = s[:len(s)-size]
	}
	return s
}

// language returns a probe language tag, dropping "und".
func language(s string) string {
	if s == "und" {
		return ""
	}
	return s
}

func parseFloat(s string) float64 {
	f, err := strconv.ParseFloat(s, 64)
	if err != nil || math.IsNaN(f) || math.IsInf(f, 0) {
		return 0
	}
	return f
}

func parseInt(s string) int64 {
	n, err := strconv.ParseInt(s, 10, 64)
	if err != nil || n < 0 {
		return 0
	}
	return n
}

// parseRational parses "30000/1001" (or a plain number); "0/0" is 0.
func parseRational(s string) float64 {
	num, den, ok := strings.Cut(s, "/")
	if !ok {
		return max(parseFloat(s), 0)
	}
	n, d := parseFloat(num), parseFloat(den)
	if n <= 0 || d <= 0 {
		return 0
	}
	return n / d
}
