// Package profile owns herd's encoding recipes: the declarative, versioned YAML
// documents that say which outputs a job makes (an HLS/DASH ladder, one MP4 or
// MKV, thumbnails). It parses and validates them and ships the built-ins
// embedded in the binary. It knows nothing about ffmpeg arguments: turning a
// profile and a probed source into a plan is the media package's job.
package profile

import (
	"bytes"
	"cmp"
	"context"
	"embed"
	"errors"
	"fmt"
	"io/fs"
	"maps"
	"math"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"

	"go.yaml.in/yaml/v3"
)

// Formats a profile can produce.
const (
	FormatHLS = "hls" // HLS (fMP4/CMAF) and DASH over the same segments
	FormatMP4 = "mp4"
	FormatMKV = "mkv"
)

// Subtitle modes.
const (
	SubsNone    = "none"
	SubsMovText = "mov_text" // text subtitles converted for MP4
	SubsCopy    = "copy"     // every subtitle stream kept as it is (MKV)
	SubsWebVTT  = "webvtt"   // text subtitles as segmented WebVTT renditions (HLS and DASH)
)

// Verification modes: how much of the outputs the verify step decodes.
const (
	// VerifySampled checks every segment's boxes and sample sizes and
	// decodes a sample of segments (first, last and a spread): the default.
	VerifySampled = "sampled"
	// VerifyFull decodes every frame of every output.
	VerifyFull = "full"
)

// Engines say which encoder family a profile may use.
const (
	EngineSoftware = "software"
	EngineAuto     = "auto" // a proven hardware encoder when the worker has one, else software
	EngineNVENC    = "nvenc"
	EngineVAAPI    = "vaapi"
	EngineQSV      = "qsv"
)

// engines and videoCodecs are what a profile may name. Every hardware
// engine and codec accepted here must be an encoder that media plans for
// and workers prove (the worker package's tests check it).
var (
	engines     = []string{EngineSoftware, EngineAuto, EngineNVENC, EngineVAAPI, EngineQSV}
	videoCodecs = []string{"h264", "hevc", "av1"}
)

// Engines lists the engines a profile may name.
func Engines() []string { return slices.Clone(engines) }

// VideoCodecs lists the video codecs a profile may name.
func VideoCodecs() []string { return slices.Clone(videoCodecs) }

// Profile is one named, versioned recipe.
type Profile struct {
	Name           string     `yaml:"name" json:"name"`
	Version        int        `yaml:"version" json:"version"`
	Description    string     `yaml:"description" json:"description"`
	Format         string     `yaml:"format" json:"format"`
	SegmentSeconds float64    `yaml:"segment_seconds,omitempty" json:"segment_seconds,omitempty"`
	Engine         string     `yaml:"engine,omitempty" json:"engine,omitempty"`
	Video          Video      `yaml:"video" json:"video"`
	Audio          Audio      `yaml:"audio" json:"audio"`
	Subtitles      string     `yaml:"subtitles,omitempty" json:"subtitles,omitempty"`
	Thumbnails     Thumbnails `yaml:"thumbnails,omitempty" json:"thumbnails,omitempty"`
	// Verify is sampled (default) or full; see VerifySampled and VerifyFull.
	Verify string `yaml:"verify,omitempty" json:"verify,omitempty"`
	// ChunkSeconds splits a source at least twice as long into chunks of
	// about this many seconds (whole segments for hls; from a source
	// keyframe for mp4 and mkv) that workers encode side by side; 0 never
	// splits. A job may set its own (CheckChunkSeconds).
	ChunkSeconds float64 `yaml:"chunk_seconds,omitempty" json:"chunk_seconds,omitempty"`
	// Builtin is true for the profiles embedded in the binary.
	Builtin bool `yaml:"-" json:"builtin"`
	// File is the file it was read from, within its folder.
	File string `yaml:"-" json:"-"`
}

// Video says how the picture is encoded.
type Video struct {
	Codec     string  `yaml:"codec" json:"codec"` // h264 | hevc | av1
	Preset    string  `yaml:"preset,omitempty" json:"preset,omitempty"`
	CRF       int     `yaml:"crf,omitempty" json:"crf,omitempty"`               // file formats: constant quality
	MaxHeight int     `yaml:"max_height,omitempty" json:"max_height,omitempty"` // file formats: cap, never upscale
	MaxFPS    float64 `yaml:"max_fps,omitempty" json:"max_fps,omitempty"`
	Rungs     []Rung  `yaml:"rungs,omitempty" json:"rungs,omitempty"` // hls: the ladder, tallest first
	// MinQuality is a floor every video output must reach against its
	// source, measured in verification; an output below it fails the job,
	// saying what was measured.
	MinQuality *Quality `yaml:"min_quality,omitempty" json:"min_quality,omitempty"`
	// Quality steers the encode by measured quality instead of fixed
	// bitrates (per-title encoding): herd searches, per title and per rung,
	// the constant-quality setting that reaches the target (see Target).
	Quality *Target `yaml:"quality,omitempty" json:"quality,omitempty"`
	// Ladders are more codecs' ladders beside this one (hls only): each
	// names its codec and the rungs it gets, and the master playlist and
	// the DASH manifest offer them all, so that a player picks a codec it
	// decodes. Codec, Preset and Rungs above are the first ladder, the
	// H.264 every browser can play.
	Ladders []Ladder `yaml:"ladders,omitempty" json:"ladders,omitempty"`
}

// Quality is a floor of measured quality, by metric; 0 sets none. VMAF
// is measured only where a measuring ffmpeg has libvmaf (--measure-ffmpeg):
// elsewhere its floor is not checked.
type Quality struct {
	SSIM float64 `yaml:"ssim,omitempty" json:"ssim,omitempty"` // 0 to 1, all planes
	VMAF float64 `yaml:"vmaf,omitempty" json:"vmaf,omitempty"` // 0 to 100, the mean
}

// Quality metrics a target is given in.
const (
	MetricVMAF = "vmaf"
	MetricSSIM = "ssim"
)

// Target is a profile's quality target (video.quality): each title's
// encode gets the constant-quality setting (CRF, under a VBV cap) that
// reaches it on samples of that title, found by a search of a few probe
// encodes. The target is that of a picture at the source's own size (the
// top rung's, for most sources); every rung's is derived from it
// (RungTarget) unless the rung gives its own.
type Target struct {
	Metric string  `yaml:"metric" json:"metric"` // vmaf | ssim
	Target float64 `yaml:"target" json:"target"`
	// Fallback (metric vmaf only) is the SSIM target a search steers by
	// where its worker cannot measure VMAF (no libvmaf); 0: such a
	// profile's search and verification wait for a worker that measures
	// VMAF (--measure-ffmpeg).
	Fallback float64 `yaml:"fallback,omitempty" json:"fallback,omitempty"`
	// Step is how much lower a rung's derived target is than Target per
	// halving of its height below the source's: a rung is measured scaled
	// up to the source's size, where a smaller picture cannot score as
	// high. A rung whose size keeps it from even that (its best at the
	// bottom of the CRF scale is below) aims under that best by what
	// Target leaves under a perfect score instead (media's rungGoal).
	// Default: DefaultVMAFStep for vmaf, DefaultSSIMStep for ssim.
	Step float64 `yaml:"step,omitempty" json:"step,omitempty"`
	// Tolerance is how far below its target a rung's verified quality may
	// be before the quality gate acts. Default: DefaultVMAFTolerance,
	// DefaultSSIMTolerance.
	Tolerance float64 `yaml:"tolerance,omitempty" json:"tolerance,omitempty"`
	// MinBitrate and MaxBitrate bound the top rung's (or the file's)
	// bitrate: the search never picks a setting under MinBitrate, and
	// MaxBitrate is the encode's VBV cap. Lower rungs get them scaled by
	// their area; an hls rung's own bitrate caps it too (the fixed
	// ladder is the most a per-title ladder spends). 0: no bound (an mp4
	// or mkv file without a cap).
	MinBitrate Bitrate `yaml:"min_bitrate,omitempty" json:"min_bitrate,omitempty"`
	MaxBitrate Bitrate `yaml:"max_bitrate,omitempty" json:"max_bitrate,omitempty"`
	// DropWithin drops a rung whose searched bitrate lands within this
	// fraction of the next rung up's (it would add no step of quality).
	// Default DefaultDropWithin; 0 < DropWithin < 1.
	DropWithin float64 `yaml:"drop_within,omitempty" json:"drop_within,omitempty"`
}

// RungQuality is one rung's own target and bounds, overriding the
// derived ones.
type RungQuality struct {
	Target     float64 `yaml:"target,omitempty" json:"target,omitempty"`
	MinBitrate Bitrate `yaml:"min_bitrate,omitempty" json:"min_bitrate,omitempty"`
	MaxBitrate Bitrate `yaml:"max_bitrate,omitempty" json:"max_bitrate,omitempty"`
}

// Quality targets' defaults.
const (
	DefaultVMAFStep      = 8.0   // VMAF points per halving of height
	DefaultSSIMStep      = 0.01  // SSIM per halving of height
	DefaultVMAFTolerance = 1.0   // VMAF points
	DefaultSSIMTolerance = 0.003 // SSIM
	DefaultDropWithin    = 0.15
)

// withDefaults fills the fields a target may leave out.
func (t *Target) withDefaults() {
	if t.Step == 0 {
		t.Step = DefaultVMAFStep
		if t.Metric == MetricSSIM {
			t.Step = DefaultSSIMStep
		}
	}
	if t.Tolerance == 0 {
		t.Tolerance = DefaultVMAFTolerance
		if t.Metric == MetricSSIM {
			t.Tolerance = DefaultSSIMTolerance
		}
	}
	if t.DropWithin == 0 {
		t.DropWithin = DefaultDropWithin
	}
}

// RungTarget is the target of a rung whose short side is height, of a
// source whose short side is source: Target, less Step per halving of
// the height (source/height), never under a tenth of the scale.
func (t *Target) RungTarget(source, height int) float64 {
	if height >= source || source <= 0 || height <= 0 {
		return t.Target
	}
	v := t.Target - t.Step*math.Log2(float64(source)/float64(height))
	return math.Round(math.Max(v, 0.1*ScaleOf(t.Metric))*1000) / 1000
}

// For is the target's search metric where VMAF cannot be measured:
// an SSIM target with its own step and tolerance from the fallback; nil
// when there is none.
func (t *Target) For(metric string) *Target {
	if metric == t.Metric {
		return t
	}
	if t.Metric != MetricVMAF || metric != MetricSSIM || t.Fallback == 0 {
		return nil
	}
	f := Target{Metric: MetricSSIM, Target: t.Fallback, MinBitrate: t.MinBitrate, MaxBitrate: t.MaxBitrate, DropWithin: t.DropWithin}
	f.withDefaults()
	return &f
}

// NeedsVMAF says the target can only be steered by VMAF: a VMAF target
// without an SSIM fallback, whose search and verification wait for a
// worker that measures VMAF.
func (t *Target) NeedsVMAF() bool { return t != nil && t.Metric == MetricVMAF && t.Fallback == 0 }

// ScaleOf is the top of a metric's scale: 100 for VMAF, 1 for SSIM.
func ScaleOf(metric string) float64 {
	if metric == MetricVMAF {
		return 100
	}
	return 1
}

// Ladder is one more codec's ladder of an hls profile, e.g.
// {codec: av1, preset: faster, rungs: [{height: 720, bitrate: 1600k}]}.
type Ladder struct {
	Codec  string `yaml:"codec" json:"codec"`                       // av1 | hevc
	Preset string `yaml:"preset,omitempty" json:"preset,omitempty"` // x264's names, mapped onto the encoder's; default: video.preset
	Rungs  []Rung `yaml:"rungs" json:"rungs"`
}

// Codecs lists the video codecs the profile encodes: video.codec, then
// every ladder's.
func (p *Profile) Codecs() []string {
	out := []string{p.Video.Codec}
	for _, l := range p.Video.Ladders {
		out = append(out, l.Codec)
	}
	return out
}

// Rung is one rendition of a ladder.
type Rung struct {
	Height  int     `yaml:"height" json:"height"`
	Bitrate Bitrate `yaml:"bitrate" json:"bitrate"`
	// Quality overrides the rung's derived target and bounds
	// (video.quality only).
	Quality *RungQuality `yaml:"quality,omitempty" json:"quality,omitempty"`
}

// Audio says how sound is encoded.
type Audio struct {
	Codec       string   `yaml:"codec" json:"codec"` // aac | copy | none
	Bitrate     Bitrate  `yaml:"bitrate,omitempty" json:"bitrate,omitempty"`
	Channels    int      `yaml:"channels,omitempty" json:"channels,omitempty"`
	Passthrough []string `yaml:"passthrough,omitempty" json:"passthrough,omitempty"` // codecs also copied as an extra track
	KeepAll     bool     `yaml:"keep_all,omitempty" json:"keep_all,omitempty"`       // keep every audio track
	// SurroundBitrate (hls) adds a 5.1 AAC rendition at this rate beside
	// the stereo one of every source stream with 5.1 or more; 0: none.
	SurroundBitrate Bitrate `yaml:"surround_bitrate,omitempty" json:"surround_bitrate,omitempty"`
	// Loudness brings every encoded track to a loudness target (EBU R128)
	// by one linear gain; nil leaves levels as they are.
	Loudness *Loudness `yaml:"loudness,omitempty" json:"loudness,omitempty"`
}

// Loudness is a target for EBU R128 loudness normalization.
type Loudness struct {
	// Integrated is the target integrated loudness in LUFS (default -16,
	// what speech-heavy web and mobile playback use; broadcast is -23).
	Integrated float64 `yaml:"integrated,omitempty" json:"integrated"`
	// TruePeak is the highest true peak the gain may reach, in dBTP
	// (default -1).
	TruePeak *float64 `yaml:"true_peak,omitempty" json:"true_peak"`
}

// Loudness targets' defaults.
const (
	DefaultLoudness = -16.0
	DefaultTruePeak = -1.0
)

// Target is the integrated loudness and true-peak limit asked for, with
// the defaults filled in.
func (l Loudness) Target() (integrated, truePeak float64) {
	integrated, truePeak = cmp.Or(l.Integrated, DefaultLoudness), DefaultTruePeak
	if l.TruePeak != nil {
		truePeak = *l.TruePeak
	}
	return integrated, truePeak
}

// Thumbnails says which pictures are made besides the video.
type Thumbnails struct {
	Poster   bool    `yaml:"poster,omitempty" json:"poster,omitempty"`
	Sprite   bool    `yaml:"sprite,omitempty" json:"sprite,omitempty"` // sprite sheet + WebVTT thumbnail track
	Interval float64 `yaml:"interval,omitempty" json:"interval,omitempty"`
	Width    int     `yaml:"width,omitempty" json:"width,omitempty"`
	Columns  int     `yaml:"columns,omitempty" json:"columns,omitempty"`
}

// Bitrate is bits per second, written in YAML as 5000k, 5M or 128000.
type Bitrate int64

// UnmarshalYAML accepts plain numbers and k/M suffixes.
func (b *Bitrate) UnmarshalYAML(n *yaml.Node) error {
	v, err := ParseBitrate(n.Value)
	if err != nil {
		return fmt.Errorf("line %d: %w", n.Line, err)
	}
	*b = v
	return nil
}

// MarshalYAML writes the bitrate back in kilobits.
func (b Bitrate) MarshalYAML() (any, error) { return b.String(), nil }

func (b Bitrate) String() string {
	if b%1000 == 0 {
		return strconv.FormatInt(int64(b)/1000, 10) + "k"
	}
	return strconv.FormatInt(int64(b), 10)
}

// ParseBitrate parses "5000k", "5M", "5.5M" or "128000".
func ParseBitrate(s string) (Bitrate, error) {
	s = strings.TrimSpace(s)
	mult := 1.0
	switch {
	case strings.HasSuffix(s, "k"), strings.HasSuffix(s, "K"):
		mult, s = 1e3, s[:len(s)-1]
	case strings.HasSuffix(s, "M"), strings.HasSuffix(s, "m"):
		mult, s = 1e6, s[:len(s)-1]
	}
	f, err := strconv.ParseFloat(s, 64)
	if err != nil || f < 0 {
		return 0, fmt.Errorf("bitrate %q: want a number of bits per second such as 5000k or 5M", s)
	}
	return Bitrate(f * mult), nil
}

// MaxChunkSeconds bounds chunk_seconds: an hour of video per chunk.
const MaxChunkSeconds = 3600

// MinFileChunkSeconds is the shortest chunk_seconds of an mp4 or mkv
// profile: their chunks start on the source's keyframes, which may be
// seconds apart, and every chunk starts a closed GOP.
const MinFileChunkSeconds = 10

// CheckChunkSeconds says whether a chunk length suits this profile: 0 (never
// split), or up to MaxChunkSeconds from one segment (hls) or from
// MinFileChunkSeconds (mp4, mkv).
func (p *Profile) CheckChunkSeconds(s float64) error {
	switch {
	case s == 0:
		return nil
	case math.IsNaN(s) || s < 0:
		return fmt.Errorf("must be 0 (never split) or a positive number of seconds (got %v)", s)
	case p.Format == FormatHLS && (s < p.SegmentSeconds || s > MaxChunkSeconds):
		return fmt.Errorf("must be from the segment length (%g s) to %d s, or 0 (never split); got %g", p.SegmentSeconds, MaxChunkSeconds, s)
	case len(p.Video.Ladders) > 0:
		return errors.New("must be 0: a ladder of more than one codec is encoded whole (never split)")
	case p.Video.MinQuality != nil && p.Video.MinQuality.VMAF > 0:
		return errors.New("must be 0: a profile with a VMAF floor (video.min_quality.vmaf) is encoded whole, so that its verification measures VMAF against the source")
	case p.Video.Quality.NeedsVMAF():
		return errors.New("must be 0: a profile with a VMAF target and no SSIM fallback (video.quality.fallback) is encoded whole, so that its verification measures VMAF against the source")
	case p.Format != FormatHLS && (s < MinFileChunkSeconds || s > MaxChunkSeconds):
		return fmt.Errorf("must be from %d s to %d s for an %s profile, or 0 (never split); got %g", MinFileChunkSeconds, MaxChunkSeconds, p.Format, s)
	}
	return nil
}

// Withdefaults fills the fields a profile may leave out.
func (p *Profile) withDefaults() {
	if p.Version == 0 {
		p.Version = 1
	}
	if p.Engine == "" {
		p.Engine = EngineSoftware
	}
	if p.Subtitles == "" {
		p.Subtitles = SubsNone
	}
	if p.Verify == "" {
		p.Verify = VerifySampled
	}
	if p.Format == FormatHLS && p.SegmentSeconds == 0 {
		p.SegmentSeconds = 4
	}
	if p.Video.Preset == "" {
		p.Video.Preset = "veryfast"
	}
	if p.Video.Quality != nil {
		p.Video.Quality.withDefaults()
	}
	for i := range p.Video.Ladders {
		if p.Video.Ladders[i].Preset == "" {
			p.Video.Ladders[i].Preset = p.Video.Preset
		}
	}
	if p.Audio.Codec == "" {
		p.Audio.Codec = "aac"
	}
	if p.Audio.Codec == "aac" {
		if p.Audio.Bitrate == 0 {
			p.Audio.Bitrate = 128000
		}
		if p.Audio.Channels == 0 {
			p.Audio.Channels = 2
		}
	}
	t := &p.Thumbnails
	if t.Sprite {
		if t.Interval == 0 {
			t.Interval = 2
		}
		if t.Width == 0 {
			t.Width = 160
		}
		if t.Columns == 0 {
			t.Columns = 10
		}
	}
}

// FieldError names the field of a profile that is wrong.
type FieldError struct {
	Profile string
	Field   string
	Msg     string
}

func (e *FieldError) Error() string {
	return fmt.Sprintf("profile %q: %s: %s", e.Profile, e.Field, e.Msg)
}

// Presets are the speed presets a profile may name (x264's names; other
// encoders map them onto their own).
func Presets() []string { return slices.Clone(presets) }

var (
	presets = []string{"ultrafast", "superfast", "veryfast", "faster", "fast", "medium", "slow", "slower", "veryslow"}
	nameOK  = func(s string) bool {
		if s == "" || len(s) > 64 {
			return false
		}
		for _, r := range s {
			if (r < 'a' || r > 'z') && (r < '0' || r > '9') && r != '-' && r != '_' {
				return false
			}
		}
		return true
	}
)

// Validate reports the first field that is wrong.
func (p *Profile) Validate() error {
	bad := func(field, msg string, args ...any) error {
		return &FieldError{Profile: p.Name, Field: field, Msg: fmt.Sprintf(msg, args...)}
	}
	switch {
	case !nameOK(p.Name):
		return bad("name", "must be 1-64 characters of a-z, 0-9, - and _")
	case p.Version < 1:
		return bad("version", "must be a whole number of at least 1 (herd numbers each change itself; a higher number here starts from it)")
	}
	switch p.Format {
	case FormatHLS:
		if len(p.Video.Rungs) == 0 {
			return bad("video.rungs", "an hls profile needs at least one rung")
		}
		if p.SegmentSeconds < 1 || p.SegmentSeconds > 30 {
			return bad("segment_seconds", "must be between 1 and 30")
		}
		if p.Video.CRF != 0 {
			return bad("video.crf", "is for mp4/mkv; an hls ladder uses a bitrate per rung")
		}
	case FormatMP4, FormatMKV:
		if len(p.Video.Rungs) != 0 {
			return bad("video.rungs", "is for hls; a %s profile makes one file (use max_height and crf)", p.Format)
		}
		if p.Video.Quality != nil && p.Video.CRF != 0 {
			return bad("video.crf", "leave it out with video.quality: the search finds each title's")
		}
		if p.Video.Quality == nil && (p.Video.CRF < 1 || p.Video.CRF > 51) {
			return bad("video.crf", "must be between 1 and 51")
		}
	default:
		return bad("format", "must be one of hls, mp4, mkv (got %q)", p.Format)
	}
	if !slices.Contains(videoCodecs, p.Video.Codec) {
		return bad("video.codec", "must be h264, hevc or av1 (got %q)", p.Video.Codec)
	}
	if p.Format == FormatHLS && p.Video.Codec != "h264" {
		return bad("video.codec", "hls profiles use h264 so that every browser can play them")
	}
	if !slices.Contains(presets, p.Video.Preset) {
		return bad("video.preset", "must be one of %s", strings.Join(presets, ", "))
	}
	if p.Video.MaxHeight != 0 && (p.Video.MaxHeight < 16 || p.Video.MaxHeight > 8192) {
		return bad("video.max_height", "must be between 16 and 8192")
	}
	if p.Video.MaxFPS < 0 || p.Video.MaxFPS > 240 {
		return bad("video.max_fps", "must be between 0 (no cap) and 240")
	}
	if err := validRungs(p.Video.Rungs, "video.rungs", bad); err != nil {
		return err
	}
	if err := p.validateLadders(bad); err != nil {
		return err
	}
	switch p.Audio.Codec {
	case "aac":
		if p.Audio.Bitrate < 32_000 || p.Audio.Bitrate > 512_000 {
			return bad("audio.bitrate", "must be between 32k and 512k")
		}
		if p.Audio.Channels != 1 && p.Audio.Channels != 2 && p.Audio.Channels != 6 {
			return bad("audio.channels", "must be 1, 2 or 6")
		}
	case "copy":
		if p.Format != FormatMKV {
			return bad("audio.codec", "copy keeps tracks in any codec, which only mkv can hold")
		}
	case "none":
	default:
		return bad("audio.codec", "must be aac, copy or none (got %q)", p.Audio.Codec)
	}
	for i, c := range p.Audio.Passthrough {
		if !slices.Contains([]string{"ac3", "eac3"}, c) {
			return bad(fmt.Sprintf("audio.passthrough[%d]", i), "must be ac3 or eac3")
		}
	}
	if p.Format == FormatHLS && (len(p.Audio.Passthrough) > 0 || p.Audio.KeepAll) {
		return bad("audio", "hls profiles make an AAC rendition of every audio stream already; passthrough and keep_all are for mp4/mkv")
	}
	if l := p.Audio.Loudness; l != nil {
		i, tp := l.Target()
		switch {
		case p.Audio.Codec != "aac":
			return bad("audio.loudness", "needs audio.codec aac: a copied track keeps its levels")
		case i < -70 || i > -5:
			return bad("audio.loudness.integrated", "must be between -70 and -5 LUFS (-16 for the web, -23 for broadcast)")
		case tp < -9 || tp > 0:
			return bad("audio.loudness.true_peak", "must be between -9 and 0 dBTP")
		}
	}
	if p.Audio.SurroundBitrate != 0 {
		switch {
		case p.Format != FormatHLS || p.Audio.Codec != "aac":
			return bad("audio.surround_bitrate", "is for hls profiles with aac audio: mp4 and mkv keep 5.1 with channels: 6")
		case p.Audio.Channels > 2:
			return bad("audio.channels", "must be 1 or 2 with surround_bitrate, which adds the 5.1 rendition")
		case p.Audio.SurroundBitrate < 128_000 || p.Audio.SurroundBitrate > 1_000_000:
			return bad("audio.surround_bitrate", "must be between 128k and 1M")
		}
	}
	switch p.Subtitles {
	case SubsNone:
	case SubsMovText:
		if p.Format != FormatMP4 {
			return bad("subtitles", "mov_text is for mp4")
		}
	case SubsCopy:
		if p.Format != FormatMKV {
			return bad("subtitles", "copy is for mkv")
		}
	case SubsWebVTT:
		if p.Format != FormatHLS {
			return bad("subtitles", "webvtt is for hls")
		}
	default:
		return bad("subtitles", "must be none, mov_text, copy or webvtt (got %q)", p.Subtitles)
	}
	if p.Verify != VerifySampled && p.Verify != VerifyFull {
		return bad("verify", "must be sampled or full (got %q)", p.Verify)
	}
	if q := p.Video.MinQuality; q != nil {
		switch {
		case q.SSIM < 0 || q.SSIM >= 1:
			return bad("video.min_quality.ssim", "must be above 0 and below 1, e.g. 0.95 (got %g)", q.SSIM)
		case q.VMAF < 0 || q.VMAF >= 100:
			return bad("video.min_quality.vmaf", "must be above 0 and below 100, e.g. 80 (got %g)", q.VMAF)
		case q.SSIM == 0 && q.VMAF == 0:
			return bad("video.min_quality", "names no floor: set ssim, vmaf or both")
		}
	}
	if err := p.validateQuality(bad); err != nil {
		return err
	}
	if err := p.CheckChunkSeconds(p.ChunkSeconds); err != nil {
		return bad("chunk_seconds", "%s", err)
	}
	if !slices.Contains(engines, p.Engine) {
		return bad("engine", "must be software, auto, nvenc, vaapi or qsv (got %q)", p.Engine)
	}
	t := p.Thumbnails
	if t.Sprite {
		if t.Interval < 0.5 || t.Interval > 600 {
			return bad("thumbnails.interval", "must be between 0.5 and 600 seconds")
		}
		if t.Width < 32 || t.Width > 640 {
			return bad("thumbnails.width", "must be between 32 and 640")
		}
		if t.Columns < 1 || t.Columns > 50 {
			return bad("thumbnails.columns", "must be between 1 and 50")
		}
	}
	return nil
}

// validateQuality checks video.quality and the rungs' own targets.
func (p *Profile) validateQuality(bad func(field, msg string, args ...any) error) error {
	t := p.Video.Quality
	if t == nil {
		for i, r := range p.Video.Rungs {
			if r.Quality != nil {
				return bad(fmt.Sprintf("video.rungs[%d].quality", i), "needs video.quality (the metric and the top rung's target)")
			}
		}
		for i, l := range p.Video.Ladders {
			for j, r := range l.Rungs {
				if r.Quality != nil {
					return bad(fmt.Sprintf("video.ladders[%d].rungs[%d].quality", i, j), "needs video.quality (the metric and the top rung's target)")
				}
			}
		}
		return nil
	}
	top := ScaleOf(t.Metric)
	switch {
	case t.Metric != MetricVMAF && t.Metric != MetricSSIM:
		return bad("video.quality.metric", "must be vmaf or ssim (got %q)", t.Metric)
	case !(t.Target > 0 && t.Target < top):
		return bad("video.quality.target", "must be above 0 and below %g, e.g. %s (got %g)", top, map[string]string{MetricVMAF: "93", MetricSSIM: "0.98"}[t.Metric], t.Target)
	case t.Fallback != 0 && t.Metric != MetricVMAF:
		return bad("video.quality.fallback", "is the SSIM target of a vmaf profile where VMAF cannot be measured")
	case !(t.Fallback >= 0 && t.Fallback < 1):
		return bad("video.quality.fallback", "must be an SSIM above 0 and below 1, e.g. 0.98 (got %g)", t.Fallback)
	case !(t.Step >= 0 && t.Step <= top/4):
		return bad("video.quality.step", "must be from 0 to %g (got %g)", top/4, t.Step)
	case !(t.Tolerance >= 0 && t.Tolerance <= top/10):
		return bad("video.quality.tolerance", "must be from 0 to %g (got %g)", top/10, t.Tolerance)
	case !(t.DropWithin > 0 && t.DropWithin < 1):
		return bad("video.quality.drop_within", "must be above 0 and below 1, e.g. 0.15 (got %g)", t.DropWithin)
	case t.MinBitrate < 0 || t.MaxBitrate < 0 || t.MaxBitrate > 200_000_000:
		return bad("video.quality", "min_bitrate and max_bitrate must be from 0 to 200M")
	case t.MaxBitrate != 0 && t.MinBitrate > t.MaxBitrate:
		return bad("video.quality.min_bitrate", "is above max_bitrate")
	case len(p.Video.Ladders) > 0:
		return bad("video.quality", "is for a ladder of one codec, for now (video.ladders has more)")
	case t.NeedsVMAF() && p.Video.Codec != "h264":
		// A task asks a worker for one capability: the search's would be
		// both the encoder and VMAF.
		return bad("video.quality.fallback", "is needed with %s and a VMAF target: its search needs a worker proven for %s, and one that measures VMAF, and a task asks for one capability", p.Video.Codec, p.Video.Codec)
	case p.Engine != EngineSoftware:
		// The search probes with the encoder that makes the final encode;
		// engine auto may move the encode onto a GPU whose scale of
		// quality is another one.
		return bad("video.quality", "needs engine software: the search's probe encodes and the final encode must use one encoder")
	}
	check := func(field string, r Rung) error {
		q := r.Quality
		if q == nil {
			return nil
		}
		switch {
		case q.Target != 0 && !(q.Target > 0 && q.Target < top):
			return bad(field+".target", "must be above 0 and below %g (got %g)", top, q.Target)
		case q.MinBitrate < 0 || q.MaxBitrate < 0 || q.MaxBitrate > 200_000_000:
			return bad(field, "min_bitrate and max_bitrate must be from 0 to 200M")
		case q.MaxBitrate != 0 && q.MinBitrate > q.MaxBitrate:
			return bad(field+".min_bitrate", "is above max_bitrate")
		}
		return nil
	}
	for i, r := range p.Video.Rungs {
		if err := check(fmt.Sprintf("video.rungs[%d].quality", i), r); err != nil {
			return err
		}
	}
	for i, l := range p.Video.Ladders {
		for j, r := range l.Rungs {
			if err := check(fmt.Sprintf("video.ladders[%d].rungs[%d].quality", i, j), r); err != nil {
				return err
			}
		}
	}
	return nil
}

// validRungs checks one ladder's rungs; field names them (video.rungs).
func validRungs(rungs []Rung, field string, bad func(field, msg string, args ...any) error) error {
	seen := map[int]bool{}
	for i, r := range rungs {
		f := fmt.Sprintf("%s[%d]", field, i)
		if r.Height < 16 || r.Height > 8192 {
			return bad(f+".height", "must be between 16 and 8192")
		}
		if seen[r.Height] {
			return bad(f+".height", "%d appears twice", r.Height)
		}
		seen[r.Height] = true
		if r.Bitrate < 50_000 || r.Bitrate > 200_000_000 {
			return bad(f+".bitrate", "must be between 50k and 200M")
		}
	}
	return nil
}

// ladderCodecs are the codecs a ladder beside the H.264 one may carry.
var ladderCodecs = []string{"av1", "hevc"}

// maxRungs bounds every ladder's rungs together: one ffmpeg process
// encodes them all.
const maxRungs = 16

func (p *Profile) validateLadders(bad func(field, msg string, args ...any) error) error {
	if len(p.Video.Ladders) == 0 {
		return nil
	}
	if p.Format != FormatHLS {
		return bad("video.ladders", "are for hls; a %s profile makes one file of one codec", p.Format)
	}
	// Hardware families are proven one codec at a time, and a task needs
	// one capability: a ladder of several codecs is encoded in software.
	if p.Engine != EngineSoftware && p.Engine != EngineAuto {
		return bad("video.ladders", "are encoded in software (engine software or auto), not on %s", p.Engine)
	}
	// A task asks its worker for one capability, the encoder of the one
	// codec beside H.264 (the store matches one): one ladder, for now.
	if len(p.Video.Ladders) > 1 {
		return bad("video.ladders", "one ladder beside video.codec's, for now (got %d): a worker is asked to prove one encoder besides libx264", len(p.Video.Ladders))
	}
	n := len(p.Video.Rungs)
	seen := []string{p.Video.Codec}
	for i, l := range p.Video.Ladders {
		f := fmt.Sprintf("video.ladders[%d]", i)
		if !slices.Contains(ladderCodecs, l.Codec) {
			return bad(f+".codec", "must be av1 or hevc (got %q); the first ladder is video.codec's", l.Codec)
		}
		if slices.Contains(seen, l.Codec) {
			return bad(f+".codec", "%s has a ladder already", l.Codec)
		}
		seen = append(seen, l.Codec)
		if !slices.Contains(presets, l.Preset) {
			return bad(f+".preset", "must be one of %s", strings.Join(presets, ", "))
		}
		if len(l.Rungs) == 0 {
			return bad(f+".rungs", "a ladder needs at least one rung")
		}
		if err := validRungs(l.Rungs, f+".rungs", bad); err != nil {
			return err
		}
		n += len(l.Rungs)
	}
	if n > maxRungs {
		return bad("video.ladders", "%d rungs in all; at most %d", n, maxRungs)
	}
	return nil
}

// Parse reads one profile document. Unknown keys are errors that name their line.
func Parse(data []byte) (*Profile, error) {
	dec := yaml.NewDecoder(bytes.NewReader(data))
	dec.KnownFields(true)
	var p Profile
	if err := dec.Decode(&p); err != nil {
		return nil, fmt.Errorf("parse profile: %w", err)
	}
	p.withDefaults()
	if err := p.Validate(); err != nil {
		return nil, err
	}
	return &p, nil
}

//go:embed builtin/*.yaml
var builtinFS embed.FS

// Set is the profiles a server knows, by name. A reload replaces them
// while others read.
type Set struct {
	mu     sync.RWMutex
	byName map[string]*Profile
}

// Builtin returns the embedded profiles.
func Builtin() *Set {
	s, err := load(builtinFS, "builtin", true)
	if err != nil {
		// The embedded files are checked by tests; a failure here is a build defect.
		panic(err)
	}
	return s
}

// Load returns the built-ins plus every *.yaml/*.yml in dir (when dir exists).
// A user profile with a built-in's name replaces it.
func Load(dir string) (*Set, error) {
	s := Builtin()
	if dir == "" {
		return s, nil
	}
	if _, err := os.Stat(dir); errors.Is(err, fs.ErrNotExist) {
		return s, nil
	}
	user, err := load(os.DirFS(dir), ".", false)
	if err != nil {
		return nil, err
	}
	for n, p := range user.byName {
		s.byName[n] = p
	}
	return s, nil
}

// Reload reads dir again as Load does, except that a file that does not
// parse or validate is refused on its own: the profiles prev read from that
// file stay, and its error (naming the file, and the line or field) is
// among errs. Files that define one name are all refused, and the name
// keeps prev's profile.
func Reload(dir string, prev *Set) (s *Set, errs []error) {
	s = Builtin()
	if _, err := os.Stat(dir); errors.Is(err, fs.ErrNotExist) {
		return s, nil
	}
	read, errs, err := readDir(os.DirFS(dir), ".")
	if err != nil {
		return prev.clone(), []error{err}
	}
	refused := map[string]bool{}   // files
	files := map[string][]string{} // profile name -> the files that define it
	for _, e := range errs {
		if fe, ok := errors.AsType[*fileErr](e); ok {
			refused[fe.file] = true
		}
	}
	for _, p := range read {
		files[p.Name] = append(files[p.Name], p.File)
	}
	for _, p := range read {
		if in := files[p.Name]; len(in) == 1 {
			s.byName[p.Name] = p
		} else if in[0] == p.File {
			errs = append(errs, fmt.Errorf("%s: profile %q is defined in each of them; they are refused until one is renamed or removed", strings.Join(in, ", "), p.Name))
		}
	}
	// What refused files and names defined twice had before stays.
	for _, p := range prev.All() {
		if !p.Builtin && (len(files[p.Name]) > 1 || (refused[p.File] && len(files[p.Name]) == 0)) {
			s.byName[p.Name] = p
		}
	}
	return s, errs
}

// Replace makes next's profiles this set's.
func (s *Set) Replace(next *Set) {
	next.mu.RLock()
	m := maps.Clone(next.byName)
	next.mu.RUnlock()
	s.mu.Lock()
	s.byName = m
	s.mu.Unlock()
}

func (s *Set) clone() *Set {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return &Set{byName: maps.Clone(s.byName)}
}

func readFile(fsys fs.FS, dir, name string) (*Profile, error) {
	data, err := fs.ReadFile(fsys, filepath.ToSlash(filepath.Join(dir, name)))
	if err != nil {
		return nil, fmt.Errorf("read profile %s: %w", name, err)
	}
	p, err := Parse(data)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", name, err)
	}
	p.File = name
	return p, nil
}

func load(fsys fs.FS, dir string, builtin bool) (*Set, error) {
	s := &Set{byName: map[string]*Profile{}}
	read, errs, err := readDir(fsys, dir)
	if err != nil {
		return nil, err
	}
	if len(errs) > 0 {
		return nil, errs[0]
	}
	for _, p := range read {
		p.Builtin = builtin
		if _, dup := s.byName[p.Name]; dup {
			return nil, fmt.Errorf("%s: profile %q is defined twice", p.File, p.Name)
		}
		s.byName[p.Name] = p
	}
	return s, nil
}

// readDir parses every *.yaml/*.yml file in dir, in name order: the
// profiles that parse, an error for each file that does not (its file
// name among them, fileErr), and err when dir cannot be read at all.
func readDir(fsys fs.FS, dir string) (read []*Profile, errs []error, err error) {
	entries, err := fs.ReadDir(fsys, dir)
	if err != nil {
		return nil, nil, fmt.Errorf("read profiles: %w", err)
	}
	for _, e := range entries {
		ext := filepath.Ext(e.Name())
		if e.IsDir() || (ext != ".yaml" && ext != ".yml") {
			continue
		}
		p, err := readFile(fsys, dir, e.Name())
		if err != nil {
			errs = append(errs, &fileErr{file: e.Name(), err: err})
			continue
		}
		read = append(read, p)
	}
	return read, errs, nil
}

// fileErr is a profile file's error, with the file's name.
type fileErr struct {
	file string
	err  error
}

func (e *fileErr) Error() string { return e.err.Error() }
func (e *fileErr) Unwrap() error { return e.err }

// Get returns the profile with that name.
func (s *Set) Get(name string) (*Profile, bool) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	p, ok := s.byName[name]
	return p, ok
}

// At returns the profile with that name at that version when it is the
// current one; nil when it is not (a Versions also finds older ones).
func (s *Set) At(_ context.Context, name string, version int) (*Profile, error) {
	if p, ok := s.Get(name); ok && p.Version == version {
		return p, nil
	}
	return nil, nil
}

// All returns every profile, sorted by name.
func (s *Set) All() []*Profile {
	s.mu.RLock()
	out := make([]*Profile, 0, len(s.byName))
	for _, p := range s.byName {
		out = append(out, p)
	}
	s.mu.RUnlock()
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out
}

// Names lists the profile names, sorted.
func (s *Set) Names() []string {
	var n []string
	for _, p := range s.All() {
		n = append(n, p.Name)
	}
	return n
}
