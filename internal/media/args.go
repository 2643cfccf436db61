package media

import (
	"fmt"
	"math"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/herdhq/herd/internal/profile"
)

// Output file names inside an output directory.
const (
	ManifestName = "manifest.mpd"
	MasterName   = "master.m3u8"
	PosterName   = "poster.jpg"
	SpriteName   = "sprite.jpg"
	VTTName      = "thumbnails.vtt"
)

// FileName returns the name of the single output of an mp4 or mkv plan.
func (pl *Plan) FileName() string { return "video." + pl.Format }

// inputArgs starts every ffmpeg argv: runArgs, and the source read from
// seek seconds (exactly: frames before it are dropped).
func (pl *Plan) inputArgs(input string, seek float64) []string {
	return append(pl.runArgs(), pl.sourceInput(input, seek, true)...)
}

// runArgs are the options every ffmpeg argv starts with: quiet, progress on
// stdout, overwrite, only local protocols, and the hardware devices.
func (pl *Plan) runArgs() []string {
	args := []string{"-nostdin", "-hide_banner", "-nostats", "-progress", "pipe:1", "-y",
		"-protocol_whitelist", "file,pipe"}
	return append(args, pl.hwInputArgs()...)
}

// sourceInput opens the source with its demuxer forced, read from seek
// seconds of output time: exactly, or (not exact) from the keyframe the
// demuxer seeks to at or before it, with every frame kept from there.
func (pl *Plan) sourceInput(input string, seek float64, exact bool) []string {
	var args []string
	if seek > 0 {
		if !exact {
			args = append(args, "-noaccurate_seek")
		}
		args = append(args, "-ss", ftoa(seek))
	}
	return append(args, "-f", pl.Demuxer, "-i", "file:"+filepath.Clean(input))
}

// preFilters is the chain applied once to the source picture before it is
// split and scaled: deinterlace, tone map, and a constant frame rate. Rotation
// is left to ffmpeg's autorotation, which runs before the graph and leaves no
// rotation metadata on the output.
func (pl *Plan) preFilters(withFPS bool) []string {
	var f []string
	if pl.Deinterlace {
		f = append(f, "bwdif=mode=send_frame:parity=auto:deint=all")
	}
	if pl.ToneMap {
		tin := pl.SourceTransfer
		if tin != "arib-std-b67" {
			tin = "smpte2084"
		}
		f = append(f,
			"zscale=tin="+tin+":min=bt2020nc:pin=bt2020:t=linear:npl=100",
			"format=gbrpf32le",
			"zscale=p=bt709",
			"tonemap=tonemap=hable:desat=0",
			"zscale=t=bt709:m=bt709:r=tv")
	}
	if withFPS && pl.FPSFilter {
		f = append(f, pl.gridFilter(false))
	}
	return f
}

// gridFilter puts frames on the output's constant-rate grid. From zero, it
// also fills the grid from time 0 with the first frame, as ffmpeg's
// constant-rate output pads video that starts after its source does.
func (pl *Plan) gridFilter(fromZero bool) string {
	f := "fps=" + fpsArg(pl.FPS)
	if fromZero {
		f += ":start_time=0"
	}
	return f
}

// scaleFilter scales to w×h with square pixels and the output pixel format.
func (pl *Plan) scaleFilter(w, h int) string {
	return fmt.Sprintf("scale=%d:%d,setsar=1,format=%s", w, h, pl.Video.PixFmt) + pl.hwUpload()
}

// videoGraph is the -filter_complex graph: the source video decoded once,
// pre-filtered, split and scaled to every rung, labelled [v0], [v1], ...
//
// An hls ladder's video is put on the constant-rate grid from time 0, its
// first frame held from 0 where the video starts after the source does
// (audio first, as in many MPEG-TS files and DVD or broadcast captures):
// its renditions play beside audio that starts at 0, and the dash muxer,
// unlike an MP4's, pads nothing (the video then lasted only its own length
// and verification refused it). A split plan's chunks do the same.
//
// An encode of the video alone (AudioStep) reads the source with its
// timestamps kept and counts them from the source's start itself, as a
// chunk does: ffmpeg would count a run that reads only the video from the
// video's own first frame, and the video would start as much too early as
// it starts after the audio.
func (pl *Plan) videoGraph() string {
	if pl.Format != profile.FormatHLS {
		return pl.graph(fmt.Sprintf("[0:%d]", pl.VideoIndex), pl.preFilters(true))
	}
	var pre []string
	if pl.videoAlone() {
		pre = append(pre, pl.fromStart("setpts"))
	}
	pre = append(append(pre, pl.preFilters(false)...), pl.gridFilter(true))
	return pl.graph(fmt.Sprintf("[0:%d]", pl.VideoIndex), pre)
}

// videoAlone says whether the encode reads the video alone and so keeps
// the source's timestamps (videoGraph).
func (pl *Plan) videoAlone() bool { return pl.Format == profile.FormatHLS && pl.AudioStep }

// fromStart is the filter (setpts, or asetpts for audio) that moves
// timestamps a run kept (-copyts) to output time: counted from the
// source's start, as the encode counts them.
func (pl *Plan) fromStart(filter string) string {
	return filter + "=PTS-" + ftoa(pl.Start) + "/TB"
}

// wholeInputArgs is inputArgs for the whole source, keeping its
// timestamps (-copyts) where keepTS: for a run that counts them from the
// source's start itself (fromStart).
func (pl *Plan) wholeInputArgs(input string, keepTS bool) []string {
	args := pl.runArgs()
	if keepTS {
		args = append(args, "-copyts")
	}
	return append(args, pl.sourceInput(input, 0, true)...)
}

// graph applies the filters pre to the input pad in once, then splits and
// scales the picture to every rung, and (tilesInGraph) to the sprite's
// tiles, labelled [tiles].
func (pl *Plan) graph(in string, pre []string) string {
	n := len(pl.Rungs)
	tiles := pl.tilesInGraph()
	var b strings.Builder
	if n == 1 && !tiles {
		chain := append(pre, pl.scaleFilter(pl.Rungs[0].Width, pl.Rungs[0].Height))
		return in + strings.Join(chain, ",") + "[v0]"
	}
	b.WriteString(in)
	if len(pre) > 0 {
		b.WriteString(strings.Join(pre, ","))
		b.WriteString(",")
	}
	branches := n
	if tiles {
		branches++
	}
	fmt.Fprintf(&b, "split=%d", branches)
	for i := range n {
		fmt.Fprintf(&b, "[s%d]", i)
	}
	if tiles {
		b.WriteString("[st];[st]" + pl.tileFilter() + "[tiles]")
	}
	// ffmpeg 5.1's dash muxer refuses an adaptation set whose renditions
	// differ in display aspect ratio (426x240 is not exactly 16:9), so every
	// rung gets the top rung's aspect ratio with a sample aspect ratio a
	// fraction of a percent from square.
	top := pl.Rungs[0]
	g := gcd(top.Width, top.Height)
	dar := fmt.Sprintf("setdar=%d/%d", top.Width/g, top.Height/g)
	for i, r := range pl.Rungs {
		fmt.Fprintf(&b, ";[s%d]scale=%d:%d,%s,format=%s%s[v%d]", i, r.Width, r.Height, dar, pl.Video.PixFmt, pl.hwUpload(), i)
	}
	return b.String()
}

func gcd(a, b int) int {
	for b != 0 {
		a, b = b, a%b
	}
	return max(a, 1)
}

// EncodeArgs returns the ffmpeg argv (without the binary) that makes the main
// outputs from input into outDir in one process: the source is decoded once
// and split and scaled to every rung (only the video when the plan's audio
// task makes the audio and subtitles: AudioStep). input and outDir should be absolute;
// the function is pure (no file system access), so that it can be golden-tested.
func (pl *Plan) EncodeArgs(input, outDir string) []string {
	args := pl.wholeInputArgs(input, pl.videoAlone())
	args = append(args, "-filter_complex", pl.videoGraph())
	for i := range pl.Rungs {
		args = append(args, "-map", fmt.Sprintf("[v%d]", i))
	}
	if !pl.AudioStep {
		args = append(args, pl.trackMaps()...)
	}
	args = append(args, pl.videoCodecArgs()...)
	if !pl.AudioStep {
		args = append(args, pl.audioCodecArgs()...)
		args = append(args, pl.subtitleCodecArgs()...)
	}
	args = append(args, "-max_muxing_queue_size", "1024")

	outDir = filepath.Clean(outDir)
	switch pl.Format {
	case profile.FormatHLS:
		sets := "id=0,streams=v"
		if len(pl.Audio) > 0 && !pl.AudioStep {
			sets += " id=1,streams=a"
		}
		args = append(args, pl.dashArgs(sets, outDir)...)
		if !pl.AudioStep {
			args = append(args, pl.subtitleOutputs(outDir)...)
		}
		if pl.tilesInGraph() {
			args = append(args, pl.tileArgs(outDir, 0)...)
		}
	case profile.FormatMP4:
		args = append(args, pl.herdTag()...)
		args = append(args, "-movflags", "+faststart", "-f", "mp4", "file:"+filepath.Join(outDir, pl.FileName()))
	case profile.FormatMKV:
		args = append(args, pl.herdTag()...)
		args = append(args, "-f", "matroska", "file:"+filepath.Join(outDir, pl.FileName()))
	}
	return args
}

// HerdTag is the tag herd writes on every MP4 and MKV it makes, the job's
// id (Plan.Herd), read back by the probe (Info.Herd): a Matroska tag
// "herd"; in an MP4, which keeps only its standard tags (a tag of another
// name would need use_metadata_tags, which drops the iTunes ones players
// read), the video track's handler name, "herd:ID".
const HerdTag = "herd"

// herdTag is the output option that writes the herd tag; none for a plan
// without one (made before the tag was written).
func (pl *Plan) herdTag() []string {
	switch {
	case pl.Herd == "":
		return nil
	case pl.Format == profile.FormatMP4:
		return []string{"-metadata:s:v:0", "handler_name=" + HerdTag + ":" + pl.Herd}
	}
	return []string{"-metadata", HerdTag + "=" + pl.Herd}
}

// dashArgs has ffmpeg's dash muxer write the init and media segments of the
// adaptation sets into outDir, named by initTemplate and mediaTemplate
// (package pack then writes the playlists and the manifest).
func (pl *Plan) dashArgs(sets, outDir string) []string {
	return []string{
		"-map_metadata", "-1", "-map_chapters", "-1",
		"-f", "dash",
		"-seg_duration", ftoa(pl.SegmentSeconds),
		"-use_template", "1", "-use_timeline", "1",
		"-adaptation_sets", sets,
		"-dash_segment_type", "mp4",
		"-init_seg_name", initTemplate,
		"-media_seg_name", mediaTemplate,
		"file:" + filepath.Join(filepath.Clean(outDir), ManifestName)}
}

func (pl *Plan) videoCodecArgs() []string {
	args, quality := pl.encoderArgs()
	v := pl.Video
	if v.ColorTransfer != "" {
		args = append(args, "-color_primaries", v.ColorPrimaries, "-color_trc", v.ColorTransfer, "-colorspace", v.ColorSpace)
	}
	if pl.Format == profile.FormatHLS {
		for i, r := range pl.Rungs {
			if r.CRF > 0 {
				// A per-title rung: the CRF its search found, under its cap.
				args = append(args, fmt.Sprintf("-crf:v:%d", i), strconv.Itoa(r.CRF))
			} else {
				args = append(args, fmt.Sprintf("-b:v:%d", i), strconv.FormatInt(r.Bitrate, 10))
			}
			args = append(args,
				fmt.Sprintf("-maxrate:v:%d", i), strconv.FormatInt(r.MaxRate, 10),
				fmt.Sprintf("-bufsize:v:%d", i), strconv.FormatInt(r.BufSize, 10))
		}
		return args
	}
	if r := pl.Rungs[0]; r.MaxRate > 0 {
		// A per-title file under its cap (video.quality.max_bitrate).
		quality = append(quality, "-maxrate", strconv.FormatInt(r.MaxRate, 10), "-bufsize", strconv.FormatInt(r.BufSize, 10))
	}
	return append(args, quality...)
}

func (pl *Plan) audioCodecArgs() []string {
	var args []string
	alone := pl.audioAlone()
	for i, a := range pl.Audio {
		s := strconv.Itoa(i)
		if a.Codec == "copy" {
			args = append(args, "-c:a:"+s, "copy")
		} else {
			args = append(args, "-c:a:"+s, "aac", "-b:a:"+s, strconv.FormatInt(a.Bitrate, 10), "-ac:a:"+s, strconv.Itoa(a.Channels))
			var f, resample []string
			if alone {
				// Counted from the source's start (the run keeps its
				// timestamps), silence before audio that starts after it.
				f = append(f, pl.fromStart("asetpts"))
			}
			if l := a.Loudness; l != nil {
				// The measured gain, then 48 kHz whatever the source's rate.
				f = append(f, "volume="+strconv.FormatFloat(l.Gain, 'f', 2, 64)+"dB")
				resample = append(resample, "48000")
			}
			if alone {
				resample = append(resample, "first_pts=0")
			}
			if len(resample) > 0 {
				f = append(f, "aresample="+strings.Join(resample, ":"))
			}
			if len(f) > 0 {
				args = append(args, "-filter:a:"+s, strings.Join(f, ","))
			}
		}
		args = append(args, pl.audioDisposition(i)...)
	}
	return args
}

// audioAlone says whether the run that makes the audio reads no video
// (an hls plan's audio task): it keeps the source's timestamps and counts
// them from the source's start itself, as the encode of the video alone
// does (videoGraph). ffmpeg would count such a run from the audio's own
// first packet, and audio that starts after the video would play as much
// too early. A copied track cannot be moved so: such a plan does not.
func (pl *Plan) audioAlone() bool {
	if pl.Format != profile.FormatHLS || !pl.AudioStep && len(pl.Chunks) == 0 {
		return false
	}
	for _, a := range pl.Audio {
		if a.Codec == "copy" {
			return false
		}
	}
	return true
}

// audioDisposition sets audio track i's disposition in an mp4: MP4 players
// pick the first default track; an archive keeps the dispositions it was
// given.
func (pl *Plan) audioDisposition(i int) []string {
	if pl.Format != profile.FormatMP4 {
		return nil
	}
	disp := "0"
	if pl.Audio[i].Default {
		disp = "default"
	}
	return []string{"-disposition:a:" + strconv.Itoa(i), disp}
}

func (pl *Plan) subtitleCodecArgs() []string {
	var args []string
	for i, sp := range pl.Subtitles {
		if sp.rendition() {
			continue
		}
		args = append(args, "-c:s:"+strconv.Itoa(i), sp.Codec)
		args = append(args, pl.subtitleDisposition(i)...)
	}
	return args
}

// subtitleDisposition sets subtitle track i's disposition in an mp4.
func (pl *Plan) subtitleDisposition(i int) []string {
	if pl.Format != profile.FormatMP4 {
		return nil
	}
	sp := pl.Subtitles[i]
	disp := "0"
	switch {
	case sp.Default && sp.Forced:
		disp = "default+forced"
	case sp.Default:
		disp = "default"
	case sp.Forced:
		disp = "forced"
	}
	return []string{"-disposition:s:" + strconv.Itoa(i), disp}
}

// trackMaps maps the source's tracks the plan keeps besides the video:
// audio, subtitles and (mkv from mkv) attachments, copied.
func (pl *Plan) trackMaps() []string {
	var args []string
	for _, a := range pl.Audio {
		args = append(args, "-map", fmt.Sprintf("0:%d", a.Input))
	}
	for _, s := range pl.Subtitles {
		if !s.rendition() { // WebVTT renditions are outputs of their own (subtitleOutputs)
			args = append(args, "-map", fmt.Sprintf("0:%d", s.Input))
		}
	}
	if pl.Attachments {
		args = append(args, "-map", "0:t?", "-c:t", "copy")
	}
	return args
}

// ftoa formats seconds or rates without exponent or trailing zeros.
func ftoa(f float64) string { return strconv.FormatFloat(f, 'f', -1, 64) }

// fpsArg writes a frame rate for the fps filter, exactly for the NTSC rates.
func fpsArg(f float64) string {
	for _, k := range []int{24, 30, 48, 60, 120} {
		if math.Abs(f-float64(k)*1000/1001) < 0.0015 {
			return fmt.Sprintf("%d/1001", k*1000)
		}
	}
	return ftoa(f)
}
