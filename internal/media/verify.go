package media

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"image/jpeg"
	"io"
	"math"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"

	"github.com/Eyevinn/hls-m3u8/m3u8"

	"github.com/herdhq/herd/internal/job"
	"github.com/herdhq/herd/internal/pack"
	"github.com/herdhq/herd/internal/profile"
)

// Output is one verified output file (or rendition) of a job.
type Output struct {
	Name     string  `json:"name"` // master, 720p, audio, manifest, video, poster, sprite, thumbnails
	Kind     string  `json:"kind"` // hls | dash | mp4 | mkv | poster | sprite | thumbnails_vtt
	Path     string  `json:"path"` // slash path relative to the output directory
	Size     int64   `json:"size"` // bytes; a rung counts its init, segments and playlist
	Width    int     `json:"width,omitempty"`
	Height   int     `json:"height,omitempty"`
	Bitrate  int64   `json:"bitrate,omitempty"` // measured average, bits/s
	Codec    string  `json:"codec,omitempty"`
	Duration float64 `json:"duration,omitempty"`
	SSIM     float64 `json:"ssim,omitempty"` // against the source at its display size
	PSNR     float64 `json:"psnr,omitempty"` // dB, capped at 100 for identical pictures
	// VMAF, where a measuring ffmpeg has it, on a few stretches of the
	// output (VMAFWindows).
	VMAF *VMAFScore `json:"vmaf,omitempty"`
	// Verify says how a video output was checked: sampled or full
	// (profile.VerifySampled, profile.VerifyFull); Segments is how many
	// segments had their boxes and sample sizes checked, Decoded how many
	// of them were decoded (a file output: seconds decoded).
	Verify   string `json:"verify,omitempty"`
	Segments int    `json:"segments,omitempty"`
	Decoded  int    `json:"decoded,omitempty"`
	// Audio renditions: their channels, and their loudness as made
	// (EBU R128), to compare with the plan's target.
	Channels int           `json:"channels,omitempty"`
	Loudness *job.Loudness `json:"loudness,omitempty"`
}

// outputFault makes err, a check of output name that failed, an
// *OutputError (permanent: verifying the same files again cannot change it),
// unless a tool was killed or cancelled, which says nothing about the output.
func outputFault(name string, err error) error {
	if _, ok := errors.AsType[*OutputError](err); ok {
		return err
	}
	if interrupted(err) {
		return err
	}
	return &OutputError{Output: name, Problem: "failed verification: " + err.Error()}
}

// sampleSegments picks the segments the default verification decodes out
// of n: the first, the last and some spread evenly between, about a third
// of them, three at least and five at most (all of them when full or when
// n is three or fewer). A short title's rung is then not decoded nearly
// whole (five of seven segments, before), which cost more than a tenth of
// its encode; a long title's keeps its five.
func sampleSegments(n int, full bool) []int {
	if full || n <= sampledMin {
		idx := make([]int, n)
		for i := range idx {
			idx[i] = i
		}
		return idx
	}
	k := min(sampledMax, max(sampledMin, int(math.Round(float64(n)/3))))
	idx := make([]int, k)
	for j := range idx {
		idx[j] = int(math.Round(float64(j*(n-1)) / float64(k-1)))
	}
	return idx
}

// sampledMin and sampledMax bound how many of a rung's segments the
// default verification decodes (sampleSegments).
const (
	sampledMin = 3
	sampledMax = 5
)

// durationTolerance is how far an output's duration may be from the source's.
const durationTolerance = 0.5

// Verify probes every output in outDir again: each video output or rung must
// last within 0.5 s of the source and decode without errors, in the one
// ffmpeg run that also measures SSIM and PSNR per rung against the source on
// a sample of the frames; for hls, the master playlist and the DASH manifest
// must list the same rungs as the plan, and every segment's boxes, sample
// sizes and timing are checked (package pack). With pl.Verify full every
// frame is decoded; by default (sampled) an hls rung decodes its first, last
// and evenly spread segments between (sampleSegments), the spread ones
// moved onto source keyframes where one is near (verifier.sampled). It returns the
// outputs (thumbnails included) and every argv it ran. A missing or malformed output is an
// *OutputError (permanent); other errors are retryable. input may be ""
// when VerifyReadsSource says the source is not read.
func (t Tools) Verify(ctx context.Context, pl *Plan, input, outDir string) ([]Output, [][]string, error) {
	in, out, err := absPaths(input, outDir)
	if err != nil {
		return nil, nil, fmt.Errorf("verify: %w", err)
	}
	chunkQ := pl.chunkQuality(out)
	if input == "" {
		if chunkQ == nil {
			return nil, nil, errors.New("verify: the source is needed to measure quality")
		}
		in = ""
	}
	tmp, err := os.MkdirTemp("", "herd-verify-*")
	if err != nil {
		return nil, nil, fmt.Errorf("verify: %w", err)
	}
	defer os.RemoveAll(tmp)

	v := &verifier{t: t, pl: pl, in: in, out: out, tmp: tmp, seek: seeksToKeyframes[pl.Demuxer], chunkQ: chunkQ}
	var outputs []Output
	if pl.Format == profile.FormatHLS {
		outputs, err = v.hls(ctx)
	} else {
		outputs, err = v.file(ctx)
	}
	if err != nil {
		return nil, v.ran, fmt.Errorf("verify: %w", err)
	}
	thumbs, err := v.thumbnails()
	if err != nil {
		return nil, v.ran, fmt.Errorf("verify: %w", err)
	}
	return append(outputs, thumbs...), v.ran, nil
}

type verifier struct {
	t            Tools
	pl           *Plan
	in, out, tmp string
	ran          [][]string
	// seek: the source's demuxer seeks to keyframes (seeksToKeyframes),
	// so comparing sampled segments reads only the source around them.
	seek bool
	// chunkQ: a split job's combined chunk measures (chunkQuality), which
	// stand in for comparing with the source; nil when there are none.
	chunkQ *ChunkQuality
	// keys: the source's keyframes in the sampled segments (keyed), once
	// listed; keysListed says they were.
	keys       []float64
	keysListed bool
}

// keyed moves windows, of the sampled segments ranges, onto the source's
// keyframes (keyedWindows) where keyable says they can be.
func (v *verifier) keyed(ctx context.Context, windows, ranges [][2]float64) [][2]float64 {
	if len(windows) == 0 || len(ranges) == 0 || !v.keyable() {
		return windows
	}
	v.listKeys(ctx, ranges)
	return v.pl.keyedWindows(windows, ranges, v.keys)
}

// keyable says whether windows can be moved onto the source's keyframes:
// it is read (not only a split job's chunk measures), its demuxer seeks
// to them, and the output is on a constant-rate grid.
func (v *verifier) keyable() bool {
	return v.in != "" && seeksToKeyframes[v.pl.Demuxer] && v.pl.constantRate()
}

// listKeys lists the source's keyframes in ranges, once per verification;
// a list ffprobe cannot give leaves every window and sample where it is.
func (v *verifier) listKeys(ctx context.Context, ranges [][2]float64) {
	if v.keysListed {
		return
	}
	keys, ran, err := v.t.keyframesIn(ctx, v.pl, v.in, ranges)
	v.ran = append(v.ran, ran)
	if err != nil {
		v.t.log().Warn("the windows verification compares stay where they are", "err", err)
	}
	v.keys, v.keysListed = keys, true
}

// sampled moves the interior segments of picked, a rung's sampled ones,
// onto segments near them that hold a source keyframe (keyedSamples),
// where windows can be keyed. The keyframes are listed once, over every
// segment a sample may move to and the first and last, which keyed then
// reads from too.
func (v *verifier) sampled(ctx context.Context, st *pack.Stream, picked []int) []int {
	if len(picked) < 3 || len(picked) == len(st.Segments) || !v.keyable() {
		return picked
	}
	segs := segmentRanges(st, sampleSegments(len(st.Segments), true))
	spans := [][2]float64{segs[picked[0]]}
	for j := 1; j < len(picked)-1; j++ {
		d := sampleReach(picked, j)
		spans = append(spans, [2]float64{segs[picked[j]-d][0], segs[picked[j]+d][1]})
	}
	spans = append(spans, segs[picked[len(picked)-1]])
	v.listKeys(ctx, spans)
	return v.pl.keyedSamples(picked, segs, v.keys)
}

func (v *verifier) full() bool { return v.pl.Verify == profile.VerifyFull }

func (v *verifier) mode() string {
	if v.full() {
		return profile.VerifyFull
	}
	return profile.VerifySampled
}

// hls checks the master playlist, the DASH manifest and every rendition:
// each media playlist's segments are read again (package pack checks their
// boxes, timing and keyframes) and decoded.
func (v *verifier) hls(ctx context.Context) ([]Output, error) {
	pl := v.pl
	master, err := pack.ReadMaster(filepath.Join(v.out, MasterName))
	if err != nil {
		return nil, fmt.Errorf("read master playlist: %w", err)
	}
	manifest, err := pack.ReadManifest(filepath.Join(v.out, ManifestName))
	if err != nil {
		return nil, fmt.Errorf("read dash manifest: %w", err)
	}
	masterSize, err := fileSize(v.out, MasterName)
	if err != nil {
		return nil, err
	}
	mpdSize, err := fileSize(v.out, ManifestName)
	if err != nil {
		return nil, err
	}
	outputs := []Output{
		{Name: "master", Kind: "hls", Path: MasterName, Size: masterSize, Duration: pl.Duration},
		{Name: "manifest", Kind: "dash", Path: ManifestName, Size: mpdSize, Duration: pl.Duration},
	}

	want := make([]string, len(pl.Rungs))
	for i, r := range pl.Rungs {
		want[i] = fmt.Sprintf("%dx%d", r.Width, r.Height)
	}
	var variants []*m3u8.Variant
	var inMaster, inIFrames, inMPD []string
	for _, vr := range master.Variants {
		if vr.Iframe {
			inIFrames = append(inIFrames, vr.Resolution)
			continue
		}
		variants = append(variants, vr)
		inMaster = append(inMaster, vr.Resolution)
	}
	for _, p := range manifest.Periods {
		for _, as := range p.AdaptationSets {
			for _, r := range as.Representations {
				if as.ContentType == "video" || strings.HasPrefix(as.MimeType, "video/") {
					inMPD = append(inMPD, fmt.Sprintf("%dx%d", r.Width, r.Height))
				}
			}
		}
	}
	for _, l := range [][]string{want, inMaster, inIFrames, inMPD} {
		slices.Sort(l)
	}
	if !slices.Equal(want, inMaster) || !slices.Equal(want, inIFrames) || !slices.Equal(want, inMPD) {
		return nil, fmt.Errorf("rungs differ: plan %v, master playlist %v, I-frame playlists %v, dash manifest %v", want, inMaster, inIFrames, inMPD)
	}

	// A split job's chunks decoded their first segment of every rung when
	// they measured themselves (MeasureChunk): segments spread over the
	// whole length, the first among them. The stitch rewrote only their
	// boxes' decode times, which the checks of every segment's boxes
	// cover: sampled verification decodes the last segment, the one left.
	fromChunks := v.chunkQ != nil
	var files []string
	var rungs []Output
	var ranges [][2]float64
	for _, vr := range variants {
		st, err := v.stream(vr.URI)
		if err != nil {
			return nil, err
		}
		codec, err := v.checkCodecs(vr, st)
		if err != nil {
			return nil, err
		}
		picked := sampleSegments(len(st.Segments), v.full())
		decoded := len(picked)
		if !fromChunks {
			picked = v.sampled(ctx, st.Stream, picked)
		} else if len(st.Segments) > 0 {
			picked = []int{len(st.Segments) - 1}
			if last := picked[0]; last > 0 && v.pl.gateMetric() == profile.MetricVMAF {
				// VMAF is measured here (the chunks measured SSIM and
				// PSNR only): the first segment too, which its chunk
				// decoded already, so that the file starts where the
				// output does and its windows line up with the source's.
				picked = []int{0, last}
			}
			decoded = v.pl.chunkDecoded(len(st.Segments))
		}
		file, err := v.concat(st, picked)
		if err != nil {
			return nil, err
		}
		o, err := videoOutput(st, codec)
		if err != nil {
			return nil, &OutputError{Output: pack.LocalName(vr.URI), Problem: err.Error()}
		}
		if d := math.Abs(o.Duration - pl.Duration); !(d <= durationTolerance) {
			return nil, &OutputError{Output: pack.LocalName(vr.URI), Problem: fmt.Sprintf("lasts %.3f s, but the source lasts %.3f s", o.Duration, pl.Duration)}
		}
		if len(picked) < len(st.Segments) && ranges == nil {
			ranges = segmentRanges(st.Stream, picked)
		}
		o.Name = fmt.Sprintf("%dp", min(o.Width, o.Height))
		if o.Codec != pl.Video.Codec {
			o.Name += "-" + o.Codec // a rung of another codec's ladder: 360p-av1 beside 360p
		}
		o.Kind, o.Path, o.Size, o.Bitrate = "hls", pack.LocalName(vr.URI), st.bytes, st.Average(false)
		o.Verify, o.Segments, o.Decoded = v.mode(), len(st.Segments), decoded
		rungs = append(rungs, o)
		files = append(files, file)
	}
	if err := v.quality(ctx, "mov", files, ranges, rungs); err != nil {
		return nil, err
	}
	outputs = append(outputs, rungs...)

	var audio, subs []*m3u8.Alternative
	for _, m := range master.GetAllAlternatives() {
		switch {
		case m.URI == "":
		case m.Type == "AUDIO":
			audio = append(audio, m)
		case m.Type == "SUBTITLES":
			subs = append(subs, m)
		}
	}
	subOuts, err := v.subtitles(subs)
	if err != nil {
		return nil, err
	}
	if len(audio) != len(pl.Audio) {
		return nil, &OutputError{Output: MasterName, Problem: fmt.Sprintf("lists %d audio renditions, but the plan has %d", len(audio), len(pl.Audio))}
	}
	names := map[string]int{}
	for _, m := range audio {
		j := -1
		for k := range pl.Audio {
			if pack.LocalName(m.URI) == MediaPlaylistName(len(pl.Rungs)+k) {
				j = k
			}
		}
		if j < 0 {
			return nil, &OutputError{Output: MasterName, Problem: fmt.Sprintf("lists audio rendition %s, which the plan does not make", pack.LocalName(m.URI))}
		}
		st, err := v.stream(m.URI)
		if err != nil {
			return nil, err
		}
		if a := pl.Audio[j]; a.Codec == "aac" && st.Channels != a.Channels {
			return nil, &OutputError{Output: pack.LocalName(m.URI), Problem: fmt.Sprintf("has %d audio channels, but the plan %d", st.Channels, a.Channels)}
		}
		// Audio is cheap to decode: every segment, in both modes.
		picked := sampleSegments(len(st.Segments), true)
		file, err := v.concat(st, picked)
		if err != nil {
			return nil, err
		}
		info, err := v.probeDecode(ctx, "mov", file, false)
		if err != nil {
			return nil, outputFault(pack.LocalName(m.URI), err)
		}
		if len(info.Audio) == 0 {
			return nil, &OutputError{Output: pack.LocalName(m.URI), Problem: "no audio stream"}
		}
		// What a listener hears: recorded beside the plan's gain.
		cmd, err := v.t.measureLoudness(ctx, "mov", file, info.Audio[:1])
		if err != nil {
			return nil, outputFault(pack.LocalName(m.URI), err)
		}
		v.ran = append(v.ran, cmd)
		outputs = append(outputs, Output{Name: audioOutputName(pl.Audio[j], names), Kind: "hls", Path: st.playlist, Size: st.bytes,
			Bitrate: st.Average(false), Codec: info.Audio[0].Codec, Duration: info.Duration, Loudness: info.Audio[0].Loudness, Channels: info.Audio[0].Channels,
			Verify: v.mode(), Segments: len(st.Segments), Decoded: len(picked)})
	}
	return append(outputs, subOuts...), nil
}

// subtitles checks the master's subtitle renditions against the plan:
// each planned one listed, its playlist as long as the video's, and every
// segment WebVTT that parses.
func (v *verifier) subtitles(alts []*m3u8.Alternative) ([]Output, error) {
	pl := v.pl
	if len(alts) != len(pl.Subtitles) {
		return nil, &OutputError{Output: MasterName, Problem: fmt.Sprintf("lists %d subtitle renditions, but the plan has %d", len(alts), len(pl.Subtitles))}
	}
	var outs []Output
	names := map[string]int{}
	for k, s := range pl.Subtitles {
		name := SubtitlePlaylistName(k)
		if !slices.ContainsFunc(alts, func(a *m3u8.Alternative) bool { return pack.LocalName(a.URI) == name }) {
			return nil, &OutputError{Output: MasterName, Problem: "does not list subtitle rendition " + name}
		}
		b, err := os.ReadFile(filepath.Join(v.out, name))
		if err != nil {
			return nil, &OutputError{Output: name, Problem: "is missing"}
		}
		p, kind, err := m3u8.DecodeFrom(bytes.NewReader(b), true)
		if err != nil || kind != m3u8.MEDIA {
			return nil, &OutputError{Output: name, Problem: "is not a media playlist"}
		}
		segs := p.(*m3u8.MediaPlaylist).GetAllSegments()
		size, seconds := int64(len(b)), 0.0
		for _, seg := range segs {
			path := filepath.Join(v.out, pack.LocalName(seg.URI))
			if _, err := pack.ReadText(path); err != nil {
				return nil, &OutputError{Output: pack.LocalName(seg.URI), Problem: "is not WebVTT that parses: " + err.Error()}
			}
			if st, err := os.Stat(path); err == nil {
				size += st.Size()
			}
			seconds += seg.Duration
		}
		if d := math.Abs(seconds - pl.Duration); !(d <= durationTolerance) {
			return nil, &OutputError{Output: name, Problem: fmt.Sprintf("lasts %.3f s, but the source lasts %.3f s", seconds, pl.Duration)}
		}
		outs = append(outs, Output{Name: outputName(names, "subtitles", s.Language, ""), Kind: "hls", Path: name, Size: size, Codec: "webvtt", Duration: seconds, Segments: len(segs)})
	}
	return outs, nil
}

// audioOutputName names an hls audio rendition among a job's outputs:
// "audio", "audio-fr", "audio-fr-5.1"; a second of the same name gets a
// number. seen counts the names given so far.
func audioOutputName(a AudioPlan, seen map[string]int) string {
	layout := ""
	if a.Channels == surroundChannels {
		layout = "5.1"
	}
	return outputName(seen, "audio", a.Language, layout)
}

// outputName names a rendition among a job's outputs: kind, then its
// language (BCP 47) and layout where it has them ("audio-fr-5.1",
// "subtitles-en"); a second of the same name gets a number. seen counts
// the names given so far.
func outputName(seen map[string]int, kind, language, layout string) string {
	name := kind
	for _, part := range []string{LanguageTag(language), layout} {
		if part != "" {
			name += "-" + part
		}
	}
	seen[name]++
	if n := seen[name]; n > 1 {
		name += "-" + strconv.Itoa(n)
	}
	return name
}

// chunkDecoded is how many of a split hls plan's n segments per rung are
// decoded when verification takes them from the chunks: each chunk's first
// (MeasureChunk), and the last.
func (pl *Plan) chunkDecoded(n int) int {
	seen := map[int]bool{n - 1: true}
	for k := range pl.Chunks {
		if i := int(math.Round(pl.ChunkStart(k) / pl.SegmentSeconds)); i < n {
			seen[i] = true
		}
	}
	return len(seen)
}

// sampleEntries are the sample entry types (the codecs string's first
// part) each codec's renditions may have.
var sampleEntries = map[string][]string{"h264": {"avc1", "avc3"}, "hevc": {"hvc1", "hev1"}, "av1": {"av01"}}

// checkCodecs holds a variant to its rung of the plan: the codec the plan
// encodes there (which it returns), CODECS that begin with what its init
// segment says, and the plan's picture size in its sample entry.
func (v *verifier) checkCodecs(vr *m3u8.Variant, st *rendition) (codec string, err error) {
	name := pack.LocalName(vr.URI)
	i := -1
	for k := range v.pl.Rungs {
		if MediaPlaylistName(k) == name {
			i = k
		}
	}
	if i < 0 {
		return "", &OutputError{Output: name, Problem: "is no rung of the plan"}
	}
	codec = v.pl.RungVideo(i).Codec
	entry, _, _ := strings.Cut(st.Codec, ".")
	if !slices.Contains(sampleEntries[codec], entry) {
		return "", &OutputError{Output: name, Problem: fmt.Sprintf("holds %s, but the plan encodes %s there", st.Codec, codec)}
	}
	if first, _, _ := strings.Cut(vr.Codecs, ","); first != st.Codec {
		return "", &OutputError{Output: MasterName, Problem: fmt.Sprintf("says CODECS %q for %s, whose init segment says %s", vr.Codecs, name, st.Codec)}
	}
	if r := v.pl.Rungs[i]; st.Width != r.Width || st.Height != r.Height {
		return "", &OutputError{Output: name, Problem: fmt.Sprintf("is %dx%d, but the plan makes %dx%d there", st.Width, st.Height, r.Width, r.Height)}
	}
	return codec, nil
}

// videoOutput is what a video rendition's boxes say of it (package pack
// read every segment's): its picture size, its codec (checkCodecs' name
// for its sample entry) and how long it lasts. Its frames are decoded by
// the quality run, which also finds what the demuxer cannot read.
func videoOutput(st *rendition, codec string) (Output, error) {
	frames := 0
	for _, g := range st.Segments {
		frames += g.Samples
	}
	if frames == 0 {
		return Output{}, errors.New("holds no video frame")
	}
	return Output{Width: st.Width, Height: st.Height, Codec: codec, Duration: st.Seconds()}, nil
}

// rendition is one media playlist and the segments it names, read again.
type rendition struct {
	*pack.Stream
	playlist string
	bytes    int64 // init, segments and playlist
}

func (v *verifier) stream(uri string) (*rendition, error) {
	name := pack.LocalName(uri)
	st, _, err := pack.ReadPlaylistStream(v.out, name)
	if err != nil {
		// pack names the playlist first; the output is the playlist.
		return nil, &OutputError{Output: name, Problem: strings.TrimPrefix(err.Error(), name+": ")}
	}
	size, err := fileSize(v.out, name)
	if err != nil {
		return nil, err
	}
	return &rendition{Stream: st, playlist: name, bytes: st.Bytes() + size}, nil
}

func fileSize(dir, name string) (int64, error) {
	fi, err := os.Stat(filepath.Join(dir, name))
	if err != nil {
		return 0, fmt.Errorf("stat %s: %w", name, err)
	}
	return fi.Size(), nil
}

// file checks the single mp4 or mkv output.
func (v *verifier) file(ctx context.Context) ([]Output, error) {
	name := v.pl.FileName()
	path := filepath.Join(v.out, name)
	fi, err := os.Stat(path)
	if err != nil {
		return nil, &OutputError{Output: name, Problem: "missing"}
	}
	demuxer := "mov"
	if v.pl.Format == profile.FormatMKV {
		demuxer = "matroska"
	}
	o, err := v.checkVideo(ctx, demuxer, path)
	if err != nil {
		return nil, outputFault(name, err)
	}
	o.Name, o.Kind, o.Path, o.Size = "video", v.pl.Format, name, fi.Size()
	// A file is decoded whole in both modes for now (see README, Verification).
	o.Verify, o.Decoded = profile.VerifyFull, int(math.Ceil(o.Duration))
	if o.Duration > 0 {
		o.Bitrate = int64(float64(fi.Size()) * 8 / o.Duration)
	}
	outs := []Output{o}
	if err := v.quality(ctx, demuxer, []string{path}, nil, outs); err != nil {
		return nil, err
	}
	return outs, nil
}

// segmentRanges returns the time ranges, in seconds from the stream's start,
// of the segments picked.
func segmentRanges(st *pack.Stream, picked []int) [][2]float64 {
	t0 := st.Segments[0].Start
	var out [][2]float64
	for _, i := range picked {
		g := st.Segments[i]
		a := float64(g.Start-t0) / float64(st.Timescale)
		out = append(out, [2]float64{a, a + st.SegmentSeconds(i)})
	}
	return out
}

// concat joins a rendition's init and its picked media segments into one
// file in the temporary directory, which the mov demuxer reads as
// fragmented MP4. Every segment starts with an IDR picture, so segments
// that do not follow each other still decode.
func (v *verifier) concat(st *rendition, picked []int) (string, error) {
	names := []string{st.Init}
	for _, i := range picked {
		names = append(names, st.Segments[i].Name)
	}
	path, err := joinFiles(filepath.Join(v.tmp, strings.TrimSuffix(st.playlist, filepath.Ext(st.playlist))+".mp4"), v.out, names)
	if err != nil {
		return "", fmt.Errorf("join segments: %w", err)
	}
	return path, nil
}

func appendFile(w io.Writer, path string) error {
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	defer f.Close()
	_, err = io.Copy(w, f)
	return err
}

// checkVideo reads a video output's streams and packets and checks its
// duration; its frames are decoded by the quality run.
func (v *verifier) checkVideo(ctx context.Context, demuxer, path string) (Output, error) {
	info, err := v.probeDecode(ctx, demuxer, path, true)
	if err != nil {
		return Output{}, err
	}
	if info.Video == nil {
		return Output{}, errors.New("no video stream")
	}
	if d := math.Abs(info.Duration - v.pl.Duration); !(d <= durationTolerance) {
		return Output{}, fmt.Errorf("lasts %.3f s, but the source lasts %.3f s", info.Duration, v.pl.Duration)
	}
	if info.Video.Frames == 0 {
		return Output{}, errors.New("no video frame")
	}
	return Output{Width: info.Video.Width, Height: info.Video.Height, Codec: info.Video.Codec, Duration: info.Duration}, nil
}

// probeDecode probes path with ffprobe. For video (videoOnly) it reads the
// first video stream's packets (-count_packets) without decoding them: the
// quality run decodes every frame once. Otherwise it decodes every frame
// (-count_frames) of every stream: audio is cheap, and an AC-3 track passed
// through keeps whatever broken last frame the source had, so video and
// audio are never decoded together. Any error printed makes it fail.
func (v *verifier) probeDecode(ctx context.Context, demuxer, path string, videoOnly bool) (*Info, error) {
	args := []string{"-v", "error", "-hide_banner", "-protocol_whitelist", "file,pipe", "-f", demuxer}
	if videoOnly {
		args = append(args, "-count_packets", "-select_streams", "v:0")
	} else {
		args = append(args, "-count_frames")
	}
	args = append(args, "-show_format", "-show_streams", "-of", "json", "-i", "file:"+path)
	v.ran = append(v.ran, argv(v.t.ffprobe(), args))
	var stdout strings.Builder
	tail, err := v.t.exec(ctx, v.t.ffprobe(), args, nil, &stdout, stderrTailBytes)
	if err != nil {
		return nil, fmt.Errorf("probe output: %w", err)
	}
	if tail = strings.TrimSpace(tail); tail != "" {
		return nil, fmt.Errorf("decode output: %s", lastLines(tail, 3))
	}
	info, err := parseProbe([]byte(stdout.String()), demuxer)
	if err != nil {
		return nil, err
	}
	if info.Video != nil {
		// With -count_packets, nb_read_packets is what the file really holds.
		var pj struct {
			Streams []struct {
				Index         int    `json:"index"`
				NbReadPackets string `json:"nb_read_packets"`
			} `json:"streams"`
		}
		if err := json.Unmarshal([]byte(stdout.String()), &pj); err == nil {
			for _, s := range pj.Streams {
				if s.Index == info.Video.Index {
					info.Video.Frames = parseInt(s.NbReadPackets)
				}
			}
		}
	}
	return info, nil
}

// QualityArgs returns the argv that decodes every frame of every file (a
// video output, demuxed with demuxer), printing any decoder error, and
// measures SSIM and PSNR against the source on a sample of the frames (see
// QualityStep): both are scaled to the source's display size, and the source
// goes through the same deinterlace, tone map and frame rate filters as the
// encode (WindowQualityArgs for files that hold an output's sampled
// segments). Every line it prints carries its level ("[error]", "[info]")
// after the name of what logged it.
func (pl *Plan) QualityArgs(input, demuxer string, files []string) []string {
	return pl.WindowQualityArgs(input, demuxer, files, nil, false)
}

// WindowQualityArgs is QualityArgs for files that hold an output's
// sampled segments, compared with the source only in windows
// (QualityWindows, seconds of output time; none: every frame): the source
// is read once per window from the keyframe before it when seek
// (rangeSource), else whole, and every frame of each file is still
// decoded.
func (pl *Plan) WindowQualityArgs(input, demuxer string, files []string, windows [][2]float64, seek bool) []string {
	args, src, n := pl.sourceChain(input, windows, seek)
	for _, f := range files {
		args = append(args, "-f", demuxer, "-i", "file:"+f)
	}
	return append(args, pl.qualityOutputs(src, n, len(files), windows)...)
}

// sourceChain returns the start of an argv that opens the source and a
// filter chain (ending in a comma) over it that gives the source's frames
// on the output's timeline, as the encode made them, only those in ranges
// when there are any; n is how many inputs it opened. With seek, the
// source is read once per range from a keyframe before it
// (rangeSource); else whole, and the ranges selected from it.
func (pl *Plan) sourceChain(input string, ranges [][2]float64, seek bool) (args []string, src string, n int) {
	if seek && len(ranges) > 0 {
		return pl.rangeSource(input, ranges)
	}
	// -copyts and the setpts: output time counts from the source's start,
	// as in the encode. Left to ffmpeg, the source's timestamps would count
	// from the first packet of the streams this run reads, its video only:
	// video that starts after the audio would lose its padding and every
	// frame be compared with another.
	args = append([]string{"-loglevel", "level+info", "-copyts"}, pl.inputArgs(input, 0)...)
	var g strings.Builder
	pre := pl.preFilters(true)
	if pl.constantRate() {
		// The output is on its constant-rate grid from time 0: ffmpeg
		// pads video that starts after its source with its first frame
		// (an hls plan's chunks do the same with this filter). So are the
		// frames compared, one for one and in output time.
		pre = append(pl.preFilters(false), pl.gridFilter(true))
	}
	g.WriteString(pl.onOutputTime(0, pre))
	if len(ranges) > 0 {
		g.WriteString(pl.windowSelect(ranges))
	}
	return args, g.String(), 1
}

// onOutputTime is the start of a filter chain over input in's source
// video, read with -copyts: its timestamps moved to output time (from the
// source's start, as the encode counts them), then the filters pre; it
// ends in a comma.
func (pl *Plan) onOutputTime(in int, pre []string) string {
	var b strings.Builder
	fmt.Fprintf(&b, "[%d:%d]%s,", in, pl.VideoIndex, pl.fromStart("setpts"))
	for _, f := range pre {
		b.WriteString(f + ",")
	}
	return b.String()
}

// seeksToKeyframes are the demuxers whose seeking verification trusts
// (rangeSource): they seek by an index of the keyframes (MP4's sample
// tables, Matroska's cues or the clusters it scans), to one at or before
// the point asked. MPEG-TS, MPEG-PS and the rest guess positions from timestamps and can
// land after it, where frames would go missing and every frame after
// them be compared with another: their sources are decoded whole.
var seeksToKeyframes = map[string]bool{"mov": true, "matroska": true}

// rangeSource is sourceChain reading the source once per range (a window
// of a constant-rate output): from the keyframe before windowLead ahead
// of it (keyedWindows puts a window there when it can), through the same filters with
// timestamps kept (so the deinterlace and frame rate filters see the
// frames before the range, and pick the frames the encode picked), and
// trimmed to the range's frames on the output grid. A long source is then
// decoded only around its windows, not whole.
func (pl *Plan) rangeSource(input string, ranges [][2]float64) (args []string, src string, n int) {
	args = append([]string{"-loglevel", "level+info", "-copyts"}, pl.runArgs()...)
	var g strings.Builder
	for i, r := range ranges {
		from := r[0] - pl.windowLead()
		args = append(args, pl.sourceInput(input, from, false)...)
		// Read from the start, the grid starts at 0 as the encode's
		// does (padding video that starts late); the grid's time base is
		// one frame, so the trim counts frames.
		g.WriteString(pl.onOutputTime(i, append(pl.preFilters(false), pl.gridFilter(from <= 0))))
		fmt.Fprintf(&g, "trim=start_pts=%d:end_pts=%d[s%d];", int64(math.Round(r[0]*pl.FPS)), int64(math.Round(r[1]*pl.FPS)), i)
	}
	for i := range ranges {
		fmt.Fprintf(&g, "[s%d]", i)
	}
	fmt.Fprintf(&g, "concat=n=%d:v=1:a=0,", len(ranges))
	return args, g.String(), len(ranges)
}

// constantRate says whether the output's muxer makes ffmpeg keep video at
// a constant rate from time 0 (hls segments and MP4 do; Matroska keeps the
// frames' own times).
func (pl *Plan) constantRate() bool { return pl.Format != profile.FormatMKV }

// qualityOutputs is the -filter_complex graph and outputs that compare n
// decoded files (inputs first to first+n-1) with the source frames that
// the chain src (ending in a comma) gives, frame for frame in order,
// on a sample of the frames: SSIM and PSNR per file, logged as ssim@qI and
// psnr@qI. With windows, only each file's frames in them (output time,
// from its first frame) are compared, and every frame of it is decoded
// all the same (an output of its own), to its end.
func (pl *Plan) qualityOutputs(src string, first, n int, windows [][2]float64) []string {
	// The sample is taken before scaling, the costly part at the source's
	// size: the same frame numbers on both sides, the rungs' frames being
	// the filtered source's one for one.
	sample := fmt.Sprintf("select='not(mod(n\\,%d))',", pl.QualityStep())
	// Both sides in one time base, each frame at its place in order: the
	// comparing filters pair frames by time, and with the sides' own time
	// bases (the source's grid, the output's timescale) they dropped or
	// misjudged the last frames ("not matching timebases").
	size := fmt.Sprintf("scale=%d:%d:flags=bicubic,setsar=1,format=%s,settb=AVTB,setpts=N/TB", pl.Width, pl.Height, pl.Video.PixFmt)
	var g strings.Builder
	g.WriteString(src)
	fmt.Fprintf(&g, "%s%s,split=%d", sample, size, 2*n)
	for i := range n {
		fmt.Fprintf(&g, "[r%da][r%db]", i, i)
	}
	pick := ""
	if len(windows) > 0 {
		pick = "setpts=PTS-STARTPTS," + pl.windowSelect(windows)
	}
	for i := range n {
		fmt.Fprintf(&g, ";[%d:v:0]%s%s%s,split=2[d%da][d%db]", first+i, pick, sample, size, i, i)
		fmt.Fprintf(&g, ";[d%da][r%da]ssim@q%d=shortest=1[qs%d]", i, i, i, i)
		fmt.Fprintf(&g, ";[d%db][r%db]psnr@q%d=shortest=1[qp%d]", i, i, i, i)
	}
	args := []string{"-filter_complex", g.String()}
	for i := range n {
		args = append(args, "-map", fmt.Sprintf("[qs%d]", i), "-f", "null", "-",
			"-map", fmt.Sprintf("[qp%d]", i), "-f", "null", "-")
		if len(windows) > 0 {
			args = append(args, "-map", fmt.Sprintf("%d:v:0", first+i), "-f", "null", "-")
		}
	}
	return args
}

// qualityWindow is the longest stretch of a sampled segment that sampled
// verification measures SSIM and PSNR on, and qualitySpan how much of the
// output one stretch stands for: a minute-long output is measured on two
// stretches, a long one on one per sampled segment.
const (
	qualityWindow = 2.0 // seconds
	qualitySpan   = 30.0
)

// QualityWindows picks the stretches of an output that sampled
// verification measures SSIM and PSNR on, out of ranges (its sampled
// segments, every frame of which is decoded): one for each qualitySpan of
// the output, two at least and one per range at most, each at the start of
// a range, spread evenly over the ranges between the first and the last (a
// first and a last segment are often black or titles, which say little),
// the first and then the last taken too only where those are too few (the
// first starts at a source keyframe, so its window costs no decode before
// it); qualityWindow long at most. The source is then decoded only around
// those, not around every sampled segment: most of what sampled
// verification costs.
func (pl *Plan) QualityWindows(ranges [][2]float64) [][2]float64 {
	if len(ranges) == 0 {
		return nil
	}
	n := min(len(ranges), max(2, int(pl.Duration/qualitySpan)))
	from, to := 0, len(ranges) // the ranges picked from: [from, to)
	if len(ranges)-2 >= n {
		from, to = 1, len(ranges)-1
	} else if len(ranges)-1 >= n {
		to = len(ranges) - 1
	}
	share := float64(to-from) / float64(n)
	picked := make([]int, n)
	for k := range picked {
		picked[k] = from + min(int((float64(k)+0.5)*share), to-from-1)
	}
	return pl.gridWindows(ranges, picked, qualityWindow)
}

// QualityStep is how many frames apart the frames SSIM and PSNR are
// measured on are: about four a second. Scaling every rung to the source's
// size and comparing it cost more than the encode itself (a 1080p ladder);
// every frame is still decoded, which is what finds a broken output.
func (pl *Plan) QualityStep() int {
	return max(1, int(math.Round(pl.FPS/4)))
}

// quality decodes every frame of each file and measures SSIM and PSNR into
// outs[i]: only in the QualityWindows of ranges, the sampled segments the
// files hold, when there are any (WindowQualityArgs).
func (v *verifier) quality(ctx context.Context, demuxer string, files []string, ranges [][2]float64, outs []Output) error {
	if q := v.chunkQ; q != nil {
		// A split job's chunks measured themselves against their pieces
		// (CombineQuality): only the output's own decode is left to do,
		// and VMAF where a search steered by it (the gate checks it).
		for i, f := range files {
			if err := v.decodeAlone(ctx, demuxer, f, outs[i].Path); err != nil {
				return err
			}
			outs[i].SSIM, outs[i].PSNR = q.SSIM[i], q.PSNR[i]
		}
		if v.pl.gateMetric() == profile.MetricVMAF && v.t.VMAF != nil {
			if err := v.measureVMAF(ctx, demuxer, files, ranges, outs); err != nil {
				return err
			}
		}
	} else if err := v.measureAll(ctx, demuxer, files, ranges, outs); err != nil {
		return err
	}
	return v.floor(outs)
}

// CodeQualityTarget is the code of a job failed by the quality gate.
const CodeQualityTarget = "quality_target"

// gateMetric is what a per-title plan's gate checks: what its search
// measured; "" for a plan with no search.
func (pl *Plan) gateMetric() string {
	if pl.Quality == nil || pl.Quality.Search == nil {
		return ""
	}
	return pl.Quality.Search.Metric
}

// scoreText writes a score of metric: VMAF to a tenth, SSIM to four places.
func scoreText(metric string, f float64) string {
	if metric == profile.MetricVMAF {
		return strconv.FormatFloat(f, 'f', 1, 64)
	}
	return strconv.FormatFloat(f, 'f', 4, 64)
}

// CodeQualityFloor is the code of a job failed by the quality floor.
const CodeQualityFloor = "quality_floor"

// floor fails the first output whose measured quality is below the
// profile's floor (video.min_quality), saying what was measured. A VMAF
// floor is checked where VMAF was measured.
func (v *verifier) floor(outs []Output) error {
	q := v.pl.MinQuality
	if q == nil {
		return nil
	}
	for _, o := range outs {
		switch {
		case q.SSIM > 0 && o.SSIM < q.SSIM:
			return &OutputError{Output: o.Path, Code: CodeQualityFloor, Problem: fmt.Sprintf("(%s): SSIM %.4f is below the profile's floor of %g (video.min_quality); give it more bits, or lower the floor", o.Name, o.SSIM, q.SSIM)}
		case q.VMAF > 0 && o.VMAF != nil && o.VMAF.Mean < q.VMAF:
			return &OutputError{Output: o.Path, Code: CodeQualityFloor, Problem: fmt.Sprintf("(%s): VMAF %.1f is below the profile's floor of %g (video.min_quality); give it more bits, or lower the floor", o.Name, o.VMAF.Mean, q.VMAF)}
		}
	}
	return nil
}

// measureAll measures SSIM and PSNR of each file, and VMAF where a
// measuring ffmpeg is named (see quality).
func (v *verifier) measureAll(ctx context.Context, demuxer string, files []string, ranges [][2]float64, outs []Output) error {
	var err error
	if windows := v.keyed(ctx, v.pl.QualityWindows(ranges), ranges); len(windows) > 0 {
		err = v.measure(ctx, demuxer, files, v.pl.WindowQualityArgs(v.in, demuxer, files, windows, v.seek && v.pl.constantRate()), outs)
	} else {
		err = v.measure(ctx, demuxer, files, v.pl.QualityArgs(v.in, demuxer, files), outs)
	}
	if err != nil || v.t.VMAF == nil {
		return err
	}
	return v.measureVMAF(ctx, demuxer, files, ranges, outs)
}

// measureVMAF measures VMAF of each file into outs[i], where a measuring
// ffmpeg has it, on a few stretches of each output. Its failing says
// nothing of the output: the output is kept without the score, and the
// log says why, unless a floor or the quality gate needs the score.
func (v *verifier) measureVMAF(ctx context.Context, demuxer string, files []string, ranges [][2]float64, outs []Output) error {
	windows := v.keyed(ctx, v.pl.VMAFWindows(ranges), ranges)
	for i, f := range files {
		s, ran, err := v.t.MeasureVMAF(ctx, v.t.VMAF, v.pl, v.in, demuxer, f, windows, v.seek, v.tmp)
		v.ran = append(v.ran, ran...)
		if err != nil {
			if ctx.Err() != nil {
				return ctx.Err()
			}
			if q := v.pl.MinQuality; (q != nil && q.VMAF > 0) || v.pl.gateMetric() == profile.MetricVMAF {
				return err // the floor or the gate needs the score: tried again
			}
			v.t.log().Warn("VMAF was not measured", "output", outs[i].Path, "err", err)
			continue
		}
		outs[i].VMAF = s
	}
	return nil
}

// chunkQuality is the stitched chunks' combined measures in outDir that
// verification takes instead of comparing the outputs with the source: a
// split plan's, unless it is verified in full; nil when there are none.
func (pl *Plan) chunkQuality(outDir string) *ChunkQuality {
	if len(pl.Chunks) == 0 || pl.Verify == profile.VerifyFull {
		return nil
	}
	q, err := readQuality(outDir, len(pl.Rungs))
	if err != nil {
		return nil
	}
	return q
}

// VerifyReadsSource says whether Verify of the outputs in outDir reads the
// source: not for a split plan whose chunks measured themselves, so a
// worker verifying one need not fetch it.
func (pl *Plan) VerifyReadsSource(outDir string) bool {
	return pl.chunkQuality(outDir) == nil || pl.gateMetric() == profile.MetricVMAF
}

// measure runs args, a QualityArgs or ChunkQualityArgs argv over files, and
// sets outs[i]'s SSIM and PSNR.
func (v *verifier) measure(ctx context.Context, demuxer string, files []string, args []string, outs []Output) error {
	v.ran = append(v.ran, argv(v.t.ffmpeg(), args))
	pr, pw := io.Pipe()
	go func() { _, _ = io.Copy(io.Discard, pr) }()
	tail, err := v.t.exec(ctx, v.t.ffmpeg(), args, nil, pw, 64<<10)
	_ = pw.Close()
	if err != nil || levelLines(tail, "[error]", "[fatal]", "[panic]") != "" {
		// The source is decoded in the same run, and ffmpeg does not say
		// which input an error came from: a source with damaged frames the
		// encode got past would fail here. Only then is each output decoded
		// alone, to find whether one of them is at fault (an output ffmpeg
		// cannot read at all fails the run).
		if interrupted(err) {
			return fmt.Errorf("measure quality: %w", err)
		}
		for i, f := range files {
			if err := v.decodeAlone(ctx, demuxer, f, outs[i].Path); err != nil {
				return err
			}
		}
		if err != nil {
			return fmt.Errorf("measure quality: %w", err)
		}
	}
	ssim, psnr := parseQuality(tail)
	for i := range outs {
		s, okS := ssim[i]
		p, okP := psnr[i]
		if !okS || !okP {
			return fmt.Errorf("measure quality: ffmpeg printed no SSIM/PSNR for %s", outs[i].Path)
		}
		outs[i].SSIM, outs[i].PSNR = s, p
	}
	return nil
}

// decodeAlone decodes every frame of the first video stream of path, a
// video output or the file joined from its sampled segments; any error
// printed, or ffprobe failing on it, fails it as the output name's fault
// (permanent: outputFault).
func (v *verifier) decodeAlone(ctx context.Context, demuxer, path, name string) error {
	args := []string{"-v", "error", "-hide_banner", "-protocol_whitelist", "file,pipe", "-f", demuxer,
		"-count_frames", "-select_streams", "v:0", "-show_entries", "stream=nb_read_frames", "-of", "json", "-i", "file:" + path}
	v.ran = append(v.ran, argv(v.t.ffprobe(), args))
	tail, err := v.t.exec(ctx, v.t.ffprobe(), args, nil, io.Discard, stderrTailBytes)
	if err != nil {
		return outputFault(name, fmt.Errorf("decode: %w", err))
	}
	if tail = strings.TrimSpace(tail); tail != "" {
		return &OutputError{Output: name, Problem: "decode: " + lastLines(tail, 3)}
	}
	return nil
}

// levelLines returns the lines of a level+ log whose level is one of
// levels: ffmpeg writes "[error] message", or "[h264 @ 0x...] [error] message"
// when a context logs it.
func levelLines(log string, levels ...string) string {
	var b strings.Builder
	for _, l := range strings.Split(log, "\n") {
		for rest := l; strings.HasPrefix(rest, "["); {
			end := strings.Index(rest, "] ")
			if end < 0 {
				break
			}
			if slices.Contains(levels, rest[:end+1]) {
				b.WriteString(l + "\n")
				break
			}
			rest = rest[end+2:]
		}
	}
	return b.String()
}

// parseQuality reads the summary lines of the ssim@qN and psnr@qN filters.
func parseQuality(log string) (ssim, psnr map[int]float64) {
	ssim, psnr = map[int]float64{}, map[int]float64{}
	sc := bufio.NewScanner(strings.NewReader(log))
	for sc.Scan() {
		line := sc.Text()
		for _, k := range []struct {
			prefix, field string
			into          map[int]float64
		}{{"[ssim@q", " All:", ssim}, {"[psnr@q", " average:", psnr}} {
			rest, ok := strings.CutPrefix(line, k.prefix)
			if !ok {
				continue
			}
			num, _, _ := strings.Cut(rest, " ")
			i, err := strconv.Atoi(num)
			if err != nil {
				continue
			}
			_, val, ok := strings.Cut(rest, k.field)
			if !ok {
				continue
			}
			val, _, _ = strings.Cut(val, " ")
			f, err := strconv.ParseFloat(val, 64)
			if val == "inf" || (err == nil && math.IsInf(f, 1)) {
				f, err = 100, nil
			}
			if err == nil && !math.IsNaN(f) {
				k.into[i] = math.Min(f, 100)
			}
		}
	}
	return ssim, psnr
}

// thumbnails lists the pictures and the WebVTT track that exist.
func (v *verifier) thumbnails() ([]Output, error) {
	var outs []Output
	th := v.pl.Thumbs
	for _, p := range []struct {
		want       bool
		name, kind string
		file       string
	}{{th.Poster, "poster", "poster", PosterName}, {th.Sprite, "sprite", "sprite", SpriteName}} {
		if !p.want {
			continue
		}
		f, err := os.Open(filepath.Join(v.out, p.file))
		if err != nil {
			return nil, fmt.Errorf("open %s: %w", p.file, err)
		}
		cfg, err := jpeg.DecodeConfig(f)
		fi, serr := f.Stat()
		_ = f.Close()
		if err != nil {
			return nil, fmt.Errorf("read %s: %w", p.file, err)
		}
		if serr != nil {
			return nil, fmt.Errorf("stat %s: %w", p.file, serr)
		}
		if p.kind == "sprite" && (cfg.Width != th.Columns*th.TileWidth || cfg.Height != th.Rows*th.TileHeight) {
			return nil, &OutputError{Output: p.file, Problem: fmt.Sprintf("is %dx%d, not the plan's %d × %d tiles of %dx%d", cfg.Width, cfg.Height, th.Columns, th.Rows, th.TileWidth, th.TileHeight)}
		}
		outs = append(outs, Output{Name: p.name, Kind: p.kind, Path: p.file, Size: fi.Size(), Width: cfg.Width, Height: cfg.Height, Codec: "mjpeg"})
	}
	if th.Sprite {
		vtt, err := os.ReadFile(filepath.Join(v.out, VTTName))
		if err != nil {
			return nil, fmt.Errorf("read %s: %w", VTTName, err)
		}
		// The track is a function of the plan: a cue per tile, each
		// pointing at its place in the sheet.
		if string(vtt) != v.pl.ThumbnailsVTT() {
			return nil, &OutputError{Output: VTTName, Problem: fmt.Sprintf("is not the plan's track of %d cues", th.Count)}
		}
		outs = append(outs, Output{Name: "thumbnails", Kind: "thumbnails_vtt", Path: VTTName, Size: int64(len(vtt)), Duration: v.pl.Duration})
	}
	return outs, nil
}

func ctxErr(err error) bool {
	return errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded)
}

// interrupted says err is a tool's that was killed or cancelled, which
// says nothing about the output it was reading.
func interrupted(err error) bool {
	ee, ok := errors.AsType[*ExitError](err)
	return (ok && ee.Signal != "") || ctxErr(err)
}
