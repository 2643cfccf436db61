package media

import (
	"cmp"
	"errors"
	"fmt"
	"math"
	"slices"

	"github.com/herdhq/herd/internal/job"
	"github.com/herdhq/herd/internal/profile"
)

// Plan is everything decided from the probe and the profile. It is stored on
// the job, so that a retry on another worker makes the same outputs.
type Plan struct {
	Profile        string  `json:"profile"`
	ProfileVersion int     `json:"profile_version"`
	Format         string  `json:"format"` // hls | mp4 | mkv
	Demuxer        string  `json:"demuxer"`
	Duration       float64 `json:"duration"`
	// Start is the source's start time (Info.Start): output time 0.
	Start          float64 `json:"start,omitempty"`
	SegmentSeconds float64 `json:"segment_seconds,omitempty"`
	// Chunks split the video encode into pieces that workers encode in
	// parallel (PlanChunks); empty: one encode.
	Chunks []ChunkPlan `json:"chunks,omitempty"`
	// AudioStep says an unsplit hls plan's audio and subtitles are made by
	// the job's audio task, as a split plan's are: the encode makes the
	// video alone, beside that task, and verify joins the two
	// (Plan.JoinAudio); false: the encode makes them too (plans made
	// before the audio task was the rule).
	AudioStep bool `json:"audio_step,omitempty"`
	// VideoEnd is the output time, in seconds, where the source's edit
	// list hides the rest of its video (Info.VideoEnd); 0: nothing hidden.
	// The last chunk's encode drops the frames from there on, as the
	// unsplit encode's decoder does (chunkFilters).
	VideoEnd float64 `json:"video_end,omitempty"`

	// VideoIndex is the input stream index of the video that is encoded.
	VideoIndex int `json:"video_index"`
	// Width and Height are the upright, square-pixel display size of the
	// source after rotation and sample aspect ratio, rounded down to even.
	Width  int `json:"width"`
	Height int `json:"height"`
	// Aspect is the exact display aspect ratio (width/height) the rungs keep.
	Aspect float64 `json:"aspect"`
	// FPS is the output frame rate; FPSFilter says an fps filter makes it
	// constant (the source is VFR or faster than the profile's max_fps).
	FPS       float64 `json:"fps"`
	FPSFilter bool    `json:"fps_filter,omitempty"`
	// GOP is the keyframe interval in frames (hls: FPS × segment seconds);
	// 0 leaves it to the encoder.
	GOP         int  `json:"gop,omitempty"`
	Deinterlace bool `json:"deinterlace,omitempty"`
	ToneMap     bool `json:"tone_map,omitempty"`
	// SourceTransfer is the HDR transfer the tone mapper converts from.
	SourceTransfer string `json:"source_transfer,omitempty"`
	// Rotation is the source's display rotation, clockwise (0, 90, 180,
	// 270). ffmpeg's autorotation applies it when it decodes the source; a
	// chunk's piece (Matroska) does not carry it, so ChunkArgs rotates.
	Rotation int `json:"rotation,omitempty"`

	// Hardware is the encoder family the plan was switched to (WithHardware); empty for software.
	Hardware string `json:"hardware,omitempty"`

	Video       VideoPlan      `json:"video"`
	Rungs       []RungPlan     `json:"rungs"`
	Audio       []AudioPlan    `json:"audio,omitempty"`
	Subtitles   []SubtitlePlan `json:"subtitles,omitempty"`
	Attachments bool           `json:"attachments,omitempty"` // mkv: copy fonts and other attachments
	Thumbs      ThumbPlan      `json:"thumbs"`
	// Verify is how the outputs are verified: profile.VerifySampled (also
	// when empty, as in plans made before it existed) or profile.VerifyFull.
	Verify string `json:"verify,omitempty"`
	// MinQuality is the profile's floor of each video output's quality
	// (video.min_quality): verification fails an output below it.
	MinQuality *profile.Quality `json:"min_quality,omitempty"`
	// Quality is a per-title plan's target (video.quality) and its
	// search; nil: the profile's fixed settings.
	Quality *QualityPlan `json:"quality,omitempty"`
	// Notes say what of the source the outputs leave out, and why.
	Notes []string `json:"notes,omitempty"`
	// Herd is what an mp4 or mkv output's herd tag says (the job's id), so
	// that a file herd made is known for one wherever it goes (a library's
	// rules never match it).
	Herd string `json:"herd,omitempty"`

	// sidecarPaths are the local paths of the subtitle files the plan's
	// renditions are made from, by id (UseSidecars).
	sidecarPaths map[string]string
}

// VideoPlan says how the picture is encoded.
type VideoPlan struct {
	Codec   string `json:"codec"`   // h264 | hevc | av1
	Encoder string `json:"encoder"` // libx264 | libx265 | libsvtav1, or a hardware encoder (WithHardware)
	Preset  string `json:"preset"`
	CRF     int    `json:"crf,omitempty"` // mp4/mkv
	PixFmt  string `json:"pix_fmt"`       // yuv420p, or yuv420p10le when hevc keeps 10-bit/HDR
	// Colour tags written on the output when HDR is kept (hevc in mkv).
	ColorPrimaries string `json:"color_primaries,omitempty"`
	ColorTransfer  string `json:"color_transfer,omitempty"`
	ColorSpace     string `json:"color_space,omitempty"`
}

// RungPlan is one rendition: the only one for mp4/mkv.
type RungPlan struct {
	Name    string `json:"name"` // e.g. "720p" (the short side, so a portrait 720p is 720x1280)
	Width   int    `json:"width"`
	Height  int    `json:"height"`
	Bitrate int64  `json:"bitrate,omitempty"` // bps; 0 for constant quality
	MaxRate int64  `json:"max_rate,omitempty"`
	BufSize int64  `json:"buf_size,omitempty"`
	// Video is the rung's own codec when it belongs to one of the
	// profile's other ladders (hls: AV1 or HEVC beside H.264); nil: the
	// plan's Video.
	Video *VideoPlan `json:"video,omitempty"`
	// A per-title plan's rung (Plan.Quality): its target in the target's
	// metric, and in SSIM where the search falls back to it; the least
	// bitrate the search may pick; and the CRF it picked (0 until the
	// search ran), encoded under the VBV cap MaxRate.
	Target         float64 `json:"target,omitempty"`
	FallbackTarget float64 `json:"fallback_target,omitempty"`
	MinRate        int64   `json:"min_rate,omitempty"`
	CRF            int     `json:"crf,omitempty"`
}

// AudioPlan is one output audio track.
type AudioPlan struct {
	Input       int    `json:"input"`        // input stream index
	SourceCodec string `json:"source_codec"` // codec of the input stream
	Codec       string `json:"codec"`        // aac | copy
	Channels    int    `json:"channels,omitempty"`
	Bitrate     int64  `json:"bitrate,omitempty"`
	Language    string `json:"language,omitempty"`
	Default     bool   `json:"default,omitempty"`
	// hls: the rendition's name in a player's menu, and whether it is a
	// commentary (not picked automatically, DASH role "commentary").
	Name       string `json:"name,omitempty"`
	Commentary bool   `json:"commentary,omitempty"`
	// Measured is the loudness of what the track carries (its source
	// stream, or that stream's stereo downmix), as the probe measured it;
	// nil: not measured. Loudness is the normalization the profile's
	// audio.loudness asks for; nil: levels left alone. Note says why a
	// track the profile asks to normalize is not (silent, not measured).
	Measured *job.Loudness `json:"measured,omitempty"`
	Loudness *LoudnessPlan `json:"loudness,omitempty"`
	Note     string        `json:"note,omitempty"`
}

// LoudnessPlan brings a track to a loudness target by one linear gain
// (the volume filter) found from its measurement: the EBU R128 two-pass
// method, without the dynamic compression of a single-pass normalizer.
// The gain never lifts the true peak over TruePeak; where that holds it
// back, the track ends Shortfall LU under Target.
type LoudnessPlan struct {
	Target    float64 `json:"target"`              // LUFS
	TruePeak  float64 `json:"true_peak"`           // dBTP
	Gain      float64 `json:"gain"`                // dB
	Shortfall float64 `json:"shortfall,omitempty"` // LU
}

// SubtitlePlan is one output subtitle track.
type SubtitlePlan struct {
	Input    int    `json:"input"` // input stream index
	Codec    string `json:"codec"` // mov_text | srt | copy | webvtt (hls: a WebVTT rendition)
	Language string `json:"language,omitempty"`
	Default  bool   `json:"default,omitempty"`
	Forced   bool   `json:"forced,omitempty"`
	// hls: the rendition's name, and whether it describes sounds and
	// music too (SDH), for viewers who cannot hear them.
	Name            string `json:"name,omitempty"`
	HearingImpaired bool   `json:"hearing_impaired,omitempty"`
	// Sidecar is the id of the subtitle file given with the source
	// (job.SourceSubtitle) the rendition is made from; "": the source's
	// stream Input.
	Sidecar string `json:"sidecar,omitempty"`
}

// rendition says the track is a WebVTT rendition of its own (an hls
// plan's), not a stream muxed into the video's output.
func (s SubtitlePlan) rendition() bool { return s.Codec == "webvtt" }

// ThumbPlan says which pictures Thumbnails makes.
type ThumbPlan struct {
	Poster       bool    `json:"poster,omitempty"`
	PosterAt     float64 `json:"poster_at,omitempty"` // seconds
	PosterWidth  int     `json:"poster_width,omitempty"`
	PosterHeight int     `json:"poster_height,omitempty"`
	Sprite       bool    `json:"sprite,omitempty"`
	Interval     float64 `json:"interval,omitempty"` // seconds between tiles
	TileWidth    int     `json:"tile_width,omitempty"`
	TileHeight   int     `json:"tile_height,omitempty"`
	Columns      int     `json:"columns,omitempty"`
	Rows         int     `json:"rows,omitempty"`
	Count        int     `json:"count,omitempty"`
}

const (
	// maxSpriteTiles bounds the sprite sheet; longer videos get a wider interval.
	maxSpriteTiles = 1000
	// minRungBitrate is the floor for a rung made below the profile's ladder.
	minRungBitrate = 100_000
)

// NewPlan decides the outputs for a probed source and a profile.
func NewPlan(info *Info, p *profile.Profile) (*Plan, error) {
	if info == nil || info.Video == nil {
		return nil, errors.New("plan: the source has no video stream")
	}
	if p == nil {
		return nil, errors.New("plan: no profile")
	}
	if err := p.Validate(); err != nil {
		return nil, fmt.Errorf("plan: %w", err)
	}
	v := info.Video
	if v.Width <= 0 || v.Height <= 0 || !(info.Duration > 0) {
		return nil, fmt.Errorf("plan: the source has no picture size or duration (%dx%d, %.3f s)", v.Width, v.Height, info.Duration)
	}
	pl := &Plan{
		Profile:        p.Name,
		ProfileVersion: p.Version,
		Format:         p.Format,
		Demuxer:        info.Demuxer,
		Duration:       info.Duration,
		Start:          info.Start,
		VideoIndex:     v.Index,
		Deinterlace:    v.Interlaced,
	}
	if info.VideoEnd > 0 {
		pl.VideoEnd = info.VideoEnd - info.Start
	}
	if p.Format == profile.FormatHLS {
		pl.SegmentSeconds = p.SegmentSeconds
	}
	pl.Verify = cmp.Or(p.Verify, profile.VerifySampled)
	pl.MinQuality = p.Video.MinQuality

	// Display geometry: sample aspect ratio, then rotation.
	w, h := float64(v.Width), float64(v.Height)
	if v.SARNum > 0 && v.SARDen > 0 && v.SARNum != v.SARDen {
		w = w * float64(v.SARNum) / float64(v.SARDen)
	}
	pl.Rotation = v.Rotation
	if v.Rotation == 90 || v.Rotation == 270 {
		w, h = h, w
	}
	pl.Width, pl.Height = evenDown(w), evenDown(h)
	pl.Aspect = w / h

	pl.planFPS(v, p.Video.MaxFPS)
	pl.planVideo(v, p)
	pl.planRungs(p)
	pl.planAudio(info, p)
	pl.planSubtitles(info, p)
	pl.Attachments = p.Format == profile.FormatMKV && info.Demuxer == "matroska"
	pl.planThumbs(p)
	pl.planQuality(p)
	return pl, nil
}

func (pl *Plan) planFPS(v *VideoStream, maxFPS float64) {
	src := v.FPS
	if src <= 0 || src > 1000 {
		src = v.RFPS
	}
	if v.RFPS > 0 && v.RFPS <= 1000 && math.Abs(src-v.RFPS)/v.RFPS < 0.01 {
		// The average is skewed by the stream's first or last timestamps
		// (2500/83 for a 30 fps phone clip): the nominal rate is the real one.
		src = v.RFPS
	}
	if src <= 0 || src > 1000 {
		// No usable rate: make one.
		src, pl.FPSFilter = 25, true
	}
	if v.VFR {
		pl.FPSFilter = true
	}
	fps := src
	if maxFPS > 0 && fps > maxFPS*1.001 {
		// Drop whole frames (120 → 60, 50 → 25) rather than resample unevenly.
		n := 2.0
		for fps/n > maxFPS*1.001 {
			n++
		}
		fps = fps / n
		pl.FPSFilter = true
	}
	pl.FPS = snapFPS(fps)
	if pl.Format == profile.FormatHLS {
		pl.GOP = max(1, int(math.Round(pl.FPS*pl.SegmentSeconds)))
	}
}

// snapFPS rounds a frame rate to the nearest common one when it is within
// 0.3% of it, else to three decimals.
func snapFPS(f float64) float64 {
	best, bestDiff := f, 0.003
	for _, c := range []float64{24000.0 / 1001, 24, 25, 30000.0 / 1001, 30, 48, 50, 60000.0 / 1001, 60, 100, 120000.0 / 1001, 120} {
		if d := math.Abs(f-c) / c; d < bestDiff {
			best, bestDiff = c, d
		}
	}
	return math.Round(best*1000) / 1000
}

func (pl *Plan) planVideo(v *VideoStream, p *profile.Profile) {
	vp := VideoPlan{Codec: p.Video.Codec, Preset: p.Video.Preset, PixFmt: "yuv420p"}
	if pl.Format != profile.FormatHLS {
		vp.CRF = p.Video.CRF
	}
	switch p.Video.Codec {
	case "hevc":
		vp.Encoder = "libx265"
		// An HEVC archive keeps 10-bit pictures, and HDR as it is.
		if v.BitDepth > 8 || v.HDR {
			vp.PixFmt = "yuv420p10le"
		}
		if v.HDR {
			vp.ColorPrimaries = cmp.Or(v.ColorPrimaries, "bt2020")
			vp.ColorTransfer = v.ColorTransfer
			vp.ColorSpace = cmp.Or(v.ColorSpace, "bt2020nc")
		}
	case "av1":
		vp.Encoder = "libsvtav1"
		if v.HDR {
			pl.ToneMap = true
			pl.SourceTransfer = v.ColorTransfer
		}
	default:
		vp.Encoder = "libx264"
		if v.HDR {
			pl.ToneMap = true
			pl.SourceTransfer = v.ColorTransfer
		}
	}
	pl.Video = vp
}

func (pl *Plan) planRungs(p *profile.Profile) {
	short := math.Min(float64(pl.Width), float64(pl.Height))
	// rung makes a rendition whose short side is s, keeping the aspect.
	rung := func(s int) RungPlan {
		r := RungPlan{Name: fmt.Sprintf("%dp", s)}
		long := min(evenRound(float64(s)*math.Max(pl.Aspect, 1/pl.Aspect)), max(pl.Width, pl.Height))
		if pl.Height >= pl.Width {
			r.Width, r.Height = s, long
		} else {
			r.Width, r.Height = long, s
		}
		return r
	}
	if p.Format != profile.FormatHLS {
		s := int(short)
		if p.Video.MaxHeight > 0 && s > p.Video.MaxHeight {
			s = evenDown(float64(p.Video.MaxHeight))
		}
		r := rung(s)
		if s == int(short) {
			r.Width, r.Height = pl.Width, pl.Height
		}
		pl.Rungs = []RungPlan{r}
		return
	}
	pl.Rungs = pl.ladderRungs(p.Video.Rungs, rung)
	for _, l := range p.Video.Ladders {
		v := &VideoPlan{Codec: l.Codec, Encoder: softwareEncoder(l.Codec), Preset: l.Preset, PixFmt: pl.Video.PixFmt}
		for _, r := range pl.ladderRungs(l.Rungs, rung) {
			r.Name += "-" + l.Codec
			r.Video = v
			pl.Rungs = append(pl.Rungs, r)
		}
	}
	for i := range pl.Rungs {
		r := &pl.Rungs[i]
		r.MaxRate = r.Bitrate * 107 / 100
		r.BufSize = r.Bitrate * 3 / 2
	}
}

// ladderRungs is one hls ladder's renditions, tallest first: the profile's
// rungs the source is tall enough for, or (smaller than every rung) one at
// the source's size with the smallest rung's bitrate scaled by area.
func (pl *Plan) ladderRungs(rungs []profile.Rung, rung func(int) RungPlan) []RungPlan {
	short := math.Min(float64(pl.Width), float64(pl.Height))
	ladder := slices.Clone(rungs)
	slices.SortFunc(ladder, func(a, b profile.Rung) int { return b.Height - a.Height })
	var out []RungPlan
	for _, pr := range ladder {
		if float64(pr.Height) > short {
			continue
		}
		r := rung(evenDown(float64(pr.Height)))
		r.Bitrate = int64(pr.Bitrate)
		out = append(out, r)
	}
	if len(out) == 0 {
		small := ladder[len(ladder)-1]
		r := rung(int(short))
		smallArea := float64(small.Height) * float64(small.Height) * math.Max(pl.Aspect, 1/pl.Aspect)
		r.Bitrate = max(minRungBitrate, int64(float64(small.Bitrate)*float64(r.Width*r.Height)/smallArea))
		out = append(out, r)
	}
	return out
}

// RungVideo is how rung i's picture is encoded: its own ladder's codec, or
// the plan's.
func (pl *Plan) RungVideo(i int) VideoPlan {
	if v := pl.Rungs[i].Video; v != nil {
		return *v
	}
	return pl.Video
}

// MultiCodec says the plan's rungs carry more than one codec.
func (pl *Plan) MultiCodec() bool {
	return slices.ContainsFunc(pl.Rungs, func(r RungPlan) bool { return r.Video != nil })
}

// Codecs lists the video codecs the plan encodes, the plan's first.
func (pl *Plan) Codecs() []string {
	out := []string{pl.Video.Codec}
	for _, r := range pl.Rungs {
		if r.Video != nil && !slices.Contains(out, r.Video.Codec) {
			out = append(out, r.Video.Codec)
		}
	}
	return out
}

func (pl *Plan) planAudio(info *Info, p *profile.Profile) {
	if p.Audio.Codec == "none" || len(info.Audio) == 0 {
		return
	}
	if p.Format == profile.FormatHLS {
		pl.planRenditions(info, p)
		return
	}
	main := slices.IndexFunc(info.Audio, func(a AudioStream) bool { return a.Default })
	chosen := []AudioStream{info.Audio[max(main, 0)]}
	if p.Audio.KeepAll {
		chosen = info.Audio
	}
	for _, a := range chosen {
		ap := AudioPlan{Input: a.Index, SourceCodec: a.Codec, Language: a.Language}
		if p.Audio.Codec == "copy" {
			ap.Codec = "copy"
			ap.normalize(nil, a)
		} else {
			ap.Codec = "aac"
			ap.Channels = p.Audio.Channels
			if a.Channels > 0 {
				ap.Channels = min(a.Channels, p.Audio.Channels)
			}
			ap.Bitrate = int64(p.Audio.Bitrate)
			ap.normalize(p.Audio.Loudness, a)
		}
		pl.Audio = append(pl.Audio, ap)
	}
	// Pass-through copies follow the encoded tracks, so that a player that
	// picks the first track gets AAC.
	if p.Audio.Codec == "aac" {
		for _, a := range chosen {
			if slices.Contains(p.Audio.Passthrough, a.Codec) {
				cp := AudioPlan{Input: a.Index, SourceCodec: a.Codec, Codec: "copy", Language: a.Language}
				cp.normalize(nil, a)
				pl.Audio = append(pl.Audio, cp)
			}
		}
	}
	pl.Audio[0].Default = true
}

// normalize plans the gain that brings track a, made from source stream
// src, to target t (nil: no normalization).
func (a *AudioPlan) normalize(t *profile.Loudness, src AudioStream) {
	a.Loudness, a.Note = nil, ""
	m := src.Loudness
	if a.Codec == "aac" && a.Channels <= 2 && src.Channels > 2 {
		m = src.StereoLoudness // a downmix is quieter than its source
	}
	a.Measured = m
	if t == nil || a.Codec != "aac" {
		return
	}
	switch {
	case m == nil:
		a.Note = "not normalized: its loudness could not be measured"
		return
	case m.Silent():
		a.Note = "not normalized: it is silent"
		return
	}
	target, peak := t.Target()
	lp := &LoudnessPlan{Target: target, TruePeak: peak, Gain: target - m.Integrated}
	if m.TruePeak+lp.Gain > peak {
		// The largest gain that keeps the true peak within the limit.
		lp.Gain = peak - m.TruePeak
		lp.Shortfall = max(0, math.Round((target-m.Integrated-lp.Gain)*100)/100)
	}
	lp.Gain = math.Round(lp.Gain*100) / 100
	a.Loudness = lp
}

// surroundChannels is the layout of an hls plan's surround renditions: 5.1.
const surroundChannels = 6

// planRenditions makes an hls plan's audio renditions: every audio stream
// of the source in stereo AAC (mono stays mono), each under its BCP 47
// language and a name, the source's default stream the default; and where
// the profile asks for it and the stream has 5.1 or more, a 5.1 AAC
// rendition of it too, right after its stereo one. Each is encoded once,
// whatever the number of rungs.
func (pl *Plan) planRenditions(info *Info, p *profile.Profile) {
	def := max(slices.IndexFunc(info.Audio, func(a AudioStream) bool { return a.Default && !a.Commentary }), 0)
	for i, a := range info.Audio {
		tag := LanguageTag(a.Language)
		name := audioName(a, tag, i+1)
		ap := AudioPlan{
			Input: a.Index, SourceCodec: a.Codec, Codec: "aac", Channels: p.Audio.Channels, Bitrate: int64(p.Audio.Bitrate),
			Language: tag, Name: name, Default: i == def, Commentary: a.Commentary,
		}
		if a.Channels > 0 {
			ap.Channels = min(a.Channels, p.Audio.Channels)
		}
		ap.normalize(p.Audio.Loudness, a)
		pl.Audio = append(pl.Audio, ap)
		if p.Audio.SurroundBitrate > 0 && a.Channels >= surroundChannels {
			ap.Channels, ap.Bitrate, ap.Default = surroundChannels, int64(p.Audio.SurroundBitrate), false
			ap.Name = cutName(name, " 5.1")
			ap.normalize(p.Audio.Loudness, a)
			pl.Audio = append(pl.Audio, ap)
		}
	}
}

// cutName is name with suffix, cut so that the whole stays a label.
func cutName(name, suffix string) string {
	return title(title(name[:max(0, min(len(name), maxTitle-len(suffix)))]) + suffix)
}

func (pl *Plan) planSubtitles(info *Info, p *profile.Profile) {
	if p.Subtitles == profile.SubsWebVTT {
		pl.planWebVTT(info)
		return
	}
	for _, s := range info.Subtitles {
		sp := SubtitlePlan{Input: s.Index, Language: s.Language, Default: s.Default, Forced: s.Forced}
		switch {
		case p.Subtitles == profile.SubsMovText && p.Format == profile.FormatMP4 && s.Text:
			sp.Codec = "mov_text" // pictures (DVD, PGS) cannot go into MP4 and are left out
		case p.Subtitles == profile.SubsCopy && p.Format == profile.FormatMKV && s.Codec == "mov_text":
			sp.Codec = "srt" // Matroska cannot hold mov_text
		case p.Subtitles == profile.SubsCopy && p.Format == profile.FormatMKV:
			sp.Codec = "copy"
		case p.Subtitles == profile.SubsMovText && !s.Text:
			pl.Notes = append(pl.Notes, subtitleNote(s, "is pictures, which MP4 cannot carry: left out (archive-hevc keeps it)"))
			continue
		default:
			continue
		}
		pl.Subtitles = append(pl.Subtitles, sp)
	}
}

// planWebVTT makes a WebVTT rendition of every text subtitle stream that
// converts, named and tagged like the audio; the others get a note.
func (pl *Plan) planWebVTT(info *Info) {
	n := 0
	for _, s := range info.Subtitles {
		switch {
		case !s.Text:
			pl.Notes = append(pl.Notes, subtitleNote(s, "is pictures, which WebVTT cannot carry: left out (archive-hevc keeps it)"))
			continue
		case s.Unconvertible != "":
			pl.Notes = append(pl.Notes, subtitleNote(s, s.Unconvertible+": left out"))
			continue
		case len(pl.Subtitles) == maxTracks:
			pl.Notes = append(pl.Notes, subtitleNote(s, fmt.Sprintf("is past the %d subtitle renditions a job makes: left out", maxTracks)))
			continue
		}
		n++
		tag := LanguageTag(s.Language)
		name := s.Title
		if name == "" {
			name = cmp.Or(languageName(tag), fmt.Sprintf("Subtitles %d", n))
			switch {
			case s.Forced:
				name += " (forced)"
			case s.HearingImpaired:
				name += " (SDH)"
			}
		}
		pl.Subtitles = append(pl.Subtitles, SubtitlePlan{Input: s.Index, Codec: "webvtt", Language: tag, Name: name,
			Default: s.Default, Forced: s.Forced, HearingImpaired: s.HearingImpaired})
	}
}

// subtitleNote says what became of subtitle stream s.
func subtitleNote(s SubtitleStream, what string) string {
	lang := ""
	if tag := LanguageTag(s.Language); tag != "" {
		lang = ", " + tag
	}
	return fmt.Sprintf("subtitle stream %d (%s%s) %s", s.Index, s.Codec, lang, what)
}

func (pl *Plan) planThumbs(p *profile.Profile) {
	t := p.Thumbnails
	top := pl.Rungs[0]
	if t.Poster {
		pl.Thumbs.Poster = true
		pl.Thumbs.PosterAt = math.Round(math.Max(0, math.Min(pl.Duration*0.1, pl.Duration-1/pl.FPS))*1000) / 1000
		pl.Thumbs.PosterWidth, pl.Thumbs.PosterHeight = top.Width, top.Height
	}
	if t.Sprite && t.Interval > 0 {
		th := &pl.Thumbs
		th.Sprite = true
		th.Interval = t.Interval
		th.Count = int(math.Ceil(pl.Duration/t.Interval - 1e-9))
		if th.Count > maxSpriteTiles {
			th.Interval = math.Ceil(pl.Duration / maxSpriteTiles)
			th.Count = int(math.Ceil(pl.Duration/th.Interval - 1e-9))
		}
		th.Count = max(th.Count, 1)
		th.TileWidth = min(evenDown(float64(t.Width)), top.Width)
		th.TileHeight = max(2, evenRound(float64(th.TileWidth)/pl.Aspect))
		th.Columns = min(t.Columns, th.Count)
		th.Rows = (th.Count + th.Columns - 1) / th.Columns
	}
}

// evenDown rounds x down to an even number of at least 2.
func evenDown(x float64) int { return max(2, int(math.Floor(x/2))*2) }

// evenRound rounds x to the nearest even number of at least 2.
func evenRound(x float64) int { return max(2, int(math.Round(x/2))*2) }
