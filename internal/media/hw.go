package media

import (
	"fmt"
	"slices"
	"strconv"
	"strings"

	"github.com/herdhq/herd/internal/profile"
)

// Hardware encoder families a plan can be switched to.
const (
	HWNone  = ""
	HWNVENC = "nvenc"
	HWVAAPI = "vaapi"
	HWQSV   = "qsv"
)

// VAAPIDevice is the render node VAAPI and QSV encode on.
const VAAPIDevice = "/dev/dri/renderD128"

// HWEncoder is one hardware encoder: the family it belongs to, the codec it
// makes, and ffmpeg's name for it.
type HWEncoder struct {
	Family, Codec, Encoder string
}

// hwEncoders is the one list of hardware encoders. Plans switch to them
// (WithHardware), plan validation accepts them, and workers prove each one
// with a trial encode before they advertise HWCap(Family, Codec). A task
// that needs an encoder no worker ever tries would wait forever, so every
// engine and codec a profile may ask for must be here (the worker package's
// tests check that).
var hwEncoders = []HWEncoder{
	{HWNVENC, "h264", "h264_nvenc"}, {HWNVENC, "hevc", "hevc_nvenc"}, {HWNVENC, "av1", "av1_nvenc"},
	{HWVAAPI, "h264", "h264_vaapi"}, {HWVAAPI, "hevc", "hevc_vaapi"}, {HWVAAPI, "av1", "av1_vaapi"},
	{HWQSV, "h264", "h264_qsv"}, {HWQSV, "hevc", "hevc_qsv"}, {HWQSV, "av1", "av1_qsv"},
}

// SWEncoder is one software encoder: the codec it makes and ffmpeg's name
// for it.
type SWEncoder struct {
	Codec, Encoder string
}

// swEncoders is the one list of software encoders: plans name them,
// plan validation accepts them, and workers prove each one with a trial
// encode before they advertise SoftwareCap(Codec). Debian's ffmpeg has
// them all; other builds often lack libsvtav1 or libx265.
var swEncoders = []SWEncoder{{"h264", "libx264"}, {"hevc", "libx265"}, {"av1", "libsvtav1"}}

// SoftwareEncoders lists every software encoder herd plans for.
func SoftwareEncoders() []SWEncoder { return slices.Clone(swEncoders) }

// SoftwareCap is the capability a worker advertises when its ffmpeg's
// software encoder for codec works: the codec's name (h264, hevc, av1).
func SoftwareCap(codec string) string { return codec }

// SoftwareCaps lists the capabilities of every software encoder.
func SoftwareCaps() []string {
	out := make([]string, len(swEncoders))
	for i, e := range swEncoders {
		out[i] = SoftwareCap(e.Codec)
	}
	return out
}

// softwareEncoder is codec's software encoder.
func softwareEncoder(codec string) string {
	for _, e := range swEncoders {
		if e.Codec == codec {
			return e.Encoder
		}
	}
	return ""
}

// HWEncoders lists every hardware encoder herd plans for, family by family
// in order of preference.
func HWEncoders() []HWEncoder { return slices.Clone(hwEncoders) }

// HWFamilies lists the hardware encoder families in order of preference.
func HWFamilies() []string {
	var out []string
	for _, e := range hwEncoders {
		if !slices.Contains(out, e.Family) {
			out = append(out, e.Family)
		}
	}
	return out
}

// hwEncoder is family's encoder for codec.
func hwEncoder(family, codec string) (string, bool) {
	for _, e := range hwEncoders {
		if e.Family == family && e.Codec == codec {
			return e.Encoder, true
		}
	}
	return "", false
}

// HWCap is the capability a worker advertises when kind can encode codec
// (e.g. "nvenc:h264"); tasks that must use that encoder need it.
func HWCap(kind, codec string) string { return kind + ":" + codec }

// WithHardware returns a copy of the plan that encodes on a hardware encoder
// family. Filters still run on the CPU; frames are uploaded to the encoder.
func (pl *Plan) WithHardware(kind string) (*Plan, error) {
	if kind == HWNone {
		return pl, nil
	}
	if pl.MultiCodec() {
		return nil, fmt.Errorf("a ladder of %s is encoded in software", strings.Join(pl.Codecs(), " and "))
	}
	enc, ok := hwEncoder(kind, pl.Video.Codec)
	if !ok {
		return nil, fmt.Errorf("no %s encoder for %s", kind, pl.Video.Codec)
	}
	cp := *pl
	cp.Hardware = kind
	cp.Video.Encoder = enc
	cp.Rungs = slices.Clone(pl.Rungs)
	return &cp, nil
}

// hwInputArgs set up the device before the input.
func (pl *Plan) hwInputArgs() []string {
	switch pl.Hardware {
	case HWVAAPI:
		return []string{"-vaapi_device", VAAPIDevice}
	case HWQSV:
		return []string{"-init_hw_device", "qsv=hw:" + VAAPIDevice, "-filter_hw_device", "hw"}
	}
	return nil
}

// hwUpload ends a filter chain for encoders that take frames in GPU memory.
func (pl *Plan) hwUpload() string {
	switch pl.Hardware {
	case HWVAAPI:
		return ",format=nv12,hwupload"
	case HWQSV:
		return ",format=nv12,hwupload=extra_hw_frames=64"
	}
	return ""
}

// nvencPreset maps x264 preset names onto NVENC's p1 (fastest) .. p7 (slowest).
func nvencPreset(p string) string {
	switch p {
	case "ultrafast", "superfast":
		return "p1"
	case "veryfast":
		return "p2"
	case "faster":
		return "p3"
	case "fast":
		return "p4"
	case "medium":
		return "p5"
	case "slow":
		return "p6"
	}
	return "p7"
}

// qsvPreset maps x264 preset names onto QSV's (which has no ultra/superfast).
func qsvPreset(p string) string {
	switch p {
	case "ultrafast", "superfast":
		return "veryfast"
	}
	return p
}

// svtPreset maps x264 preset names onto SVT-AV1's 0 (slowest) .. 13 (fastest).
func svtPreset(p string) string {
	return map[string]string{"ultrafast": "12", "superfast": "11", "veryfast": "10", "faster": "9", "fast": "8",
		"medium": "6", "slow": "4", "slower": "3", "veryslow": "2"}[p]
}

// encoderArgs is the encoder, its speed/quality knobs and, for hls, the
// keyframe cadence; rate control per rung is added by the caller. A plan of
// one codec names its encoder for every video stream (-c:v); a ladder of
// several codecs names each rung's (-c:v:0, -c:v:1, ...).
func (pl *Plan) encoderArgs() (args []string, quality []string) {
	if !pl.MultiCodec() {
		args, quality = pl.codecArgs(pl.Video, "v")
	} else {
		for i := range pl.Rungs {
			a, _ := pl.codecArgs(pl.RungVideo(i), "v:"+strconv.Itoa(i))
			args = append(args, a...)
		}
	}
	if pl.Format == profile.FormatHLS {
		gop := strconv.Itoa(pl.GOP)
		args = append(args, "-g", gop, "-keyint_min", gop)
		switch pl.Hardware {
		case HWNone:
			args = append(args, "-sc_threshold", "0")
		case HWNVENC:
			args = append(args, "-no-scenecut", "1", "-forced-idr", "1")
		}
		args = append(args, "-force_key_frames", keyframeExpr(pl.SegmentSeconds))
	} else if pl.GOP > 0 {
		args = append(args, "-g", strconv.Itoa(pl.GOP))
	}
	return args, quality
}

// codecArgs is one encoder's options for the output streams spec names
// ("v": every video stream; "v:2": the third).
func (pl *Plan) codecArgs(v VideoPlan, spec string) (args []string, quality []string) {
	opt := func(name string) string { return "-" + name + ":" + spec }
	// The encoders' own parameter lists: for every stream without a
	// specifier, as plans of one codec always wrote them.
	params := func(name string) string {
		if spec == "v" {
			return "-" + name
		}
		return opt(name)
	}
	hls := pl.Format == profile.FormatHLS
	args = []string{opt("c"), v.Encoder}
	crf := strconv.Itoa(v.CRF)
	switch v.Encoder {
	case "libx264":
		args = append(args, opt("preset"), v.Preset, opt("profile"), "high")
		if len(pl.Chunks) > 0 {
			// Parameter sets that do not depend on a chunk's content, so
			// that every chunk's stitch into one stream.
			args = append(args, params("x264-params"), "stitchable=1")
		}
		quality = []string{"-crf", crf}
	case "libx265":
		p := "log-level=error"
		if len(pl.Chunks) > 0 {
			// No SEI with x265's options in the parameter sets: it names
			// the worker's thread count, which differs between workers.
			p += ":info=0"
		}
		if hls {
			// x265 makes a forced keyframe an open-GOP CRA picture unless
			// told: every segment must start a closed GOP (an IDR).
			p += ":open-gop=0"
			args = append(args, opt("forced-idr"), "1")
		}
		args = append(args, opt("preset"), v.Preset, params("x265-params"), p)
		if pl.Format == profile.FormatMP4 || hls {
			// hvc1: parameter sets in the sample entry, which Apple's
			// players require.
			args = append(args, opt("tag"), "hvc1")
		}
		quality = []string{"-crf", crf}
	case "libsvtav1":
		args = append(args, opt("preset"), svtPreset(v.Preset))
		if hls {
			// A forced keyframe is a KEY_FRAME that starts a closed GOP
			// (SVT-AV1's intra refresh type 2), not a forward keyframe.
			args = append(args, params("svtav1-params"), "irefresh-type=2")
		}
		quality = []string{"-crf", crf}
	case "h264_nvenc", "hevc_nvenc", "av1_nvenc":
		args = append(args, opt("preset"), nvencPreset(v.Preset), opt("tune"), "hq", opt("rc"), "vbr")
		if v.Encoder == "h264_nvenc" {
			args = append(args, opt("profile"), "high")
		}
		if v.Encoder == "hevc_nvenc" && pl.Format == profile.FormatMP4 {
			args = append(args, opt("tag"), "hvc1")
		}
		quality = []string{"-cq:v", crf, "-b:v", "0"}
	case "h264_vaapi", "hevc_vaapi", "av1_vaapi":
		if hls {
			args = append(args, opt("rc_mode"), "VBR")
		}
		quality = []string{"-rc_mode:v", "CQP", "-qp:v", crf}
	case "h264_qsv", "hevc_qsv", "av1_qsv":
		args = append(args, opt("preset"), qsvPreset(v.Preset))
		quality = []string{"-global_quality:v", crf}
	}
	return args, quality
}

// keyframeExpr forces a keyframe on the first frame and on the first frame at
// or after every multiple of seg seconds of output time. It is anchored to
// the grid, not to where the encode began (as gte(t,n_forced*seg) is), so a
// chunk that starts mid-stream with absolute timestamps puts its keyframes
// exactly where the unsplit encode does; the epsilon keeps a frame that lies
// on a multiple (t = 4.0 at 25 fps, computed as 3.9999999999999996) on it.
func keyframeExpr(seg float64) string {
	s := ftoa(seg)
	return "expr:if(isnan(prev_forced_t),1,gte(floor(t/" + s + "+1e-9),floor(prev_forced_t/" + s + "+1e-9)+1))"
}

// SVTPreset is SVT-AV1's preset number for a profile's preset name.
func SVTPreset(name string) string { return svtPreset(name) }
