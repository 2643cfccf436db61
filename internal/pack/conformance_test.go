package pack_test

// The HLS and DASH authoring rules (RFC 8216bis, Apple's HLS authoring
// specification, DASH-IF IOP) checked on real ffmpeg output of herd's own
// encode: generated clips (a short last segment, 29.97 fps, an HDR source,
// which web ladders tone-map for H.264) and real ones. Every check reads
// the files with the libraries (hls-m3u8, dash-mpd, mp4ff) or with ffprobe,
// and measures rates by the RFC's definition independently of package pack.

import (
	"bytes"
	"context"
	"fmt"
	"math"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/Eyevinn/dash-mpd/mpd"
	"github.com/Eyevinn/hls-m3u8/m3u8"
	"github.com/Eyevinn/mp4ff/aac"
	"github.com/Eyevinn/mp4ff/mp4"
	"github.com/stretchr/testify/require"

	"github.com/herdhq/herd/internal/media"
	"github.com/herdhq/herd/internal/pack"
	"github.com/herdhq/herd/internal/profile"
	"github.com/herdhq/herd/internal/testenv"
)

func needFFmpeg(t *testing.T) {
	t.Helper()
	testenv.NeedFFmpeg(t)
}

// webHLS is the built-in web-hls profile, with its ladder cut to the rungs
// given (heights) so that real clips stay cheap to encode.
func webHLS(t *testing.T, codec string, heights ...int) *profile.Profile {
	t.Helper()
	y := "name: test-hls\nversion: 1\nformat: hls\nsegment_seconds: 2\nvideo:\n  codec: " + codec + "\n  preset: ultrafast\n  rungs:\n"
	for _, h := range heights {
		y += fmt.Sprintf("    - {height: %d, bitrate: %dk}\n", h, h*2)
	}
	y += "audio:\n  codec: aac\n  bitrate: 96k\n  channels: 2\nthumbnails:\n  poster: false\n  sprite: false\n"
	p, err := profile.Parse([]byte(y))
	require.NoError(t, err, y)
	return p
}

// encode runs herd's encode of input with p into a new folder.
func encode(t *testing.T, input string, p *profile.Profile) (*media.Plan, string) {
	t.Helper()
	ctx := context.Background()
	info, err := media.Tools{}.Admit(ctx, input, media.Limits{})
	require.NoError(t, err)
	pl, err := media.NewPlan(info, p)
	require.NoError(t, err)
	pl.Thumbs = media.ThumbPlan{}
	dir := t.TempDir()
	_, err = media.Tools{}.Encode(ctx, pl, input, dir, nil)
	require.NoError(t, err)
	return pl, dir
}

func TestConformance(t *testing.T) {
	needFFmpeg(t)
	web, ok := profile.Builtin().Get("web-hls")
	require.True(t, ok)
	tmp := t.TempDir()
	gen := func(name string, args ...string) string {
		path := filepath.Join(tmp, name)
		require.NoError(t, testenv.FFmpeg(append(args, path)...))
		return path
	}
	hdr := gen("hdr.mkv", "-f", "lavfi", "-i", "testsrc2=size=320x180:rate=24:duration=5", "-pix_fmt", "yuv420p10le",
		"-c:v", "libx265", "-preset", "ultrafast", "-x265-params", "log-level=error",
		"-color_primaries", "bt2020", "-color_trc", "smpte2084", "-colorspace", "bt2020nc")
	for _, tc := range []struct {
		name    string
		input   func() string
		profile *profile.Profile
		rungs   int
		fps     float64
		rng     string // VIDEO-RANGE
		codec   string // prefix of the video CODECS
	}{
		{"short last segment", func() string {
			p := filepath.Join(tmp, "short.mp4")
			require.NoError(t, testenv.Clip{Size: "320x180", Rate: 25, Seconds: 6.5, Tone: 440, Stereo: true}.Make(p))
			return p
		}, web, 1, 25, "SDR", "avc1."},
		{"29.97 fps", func() string {
			return gen("ntsc.mp4", "-f", "lavfi", "-i", "testsrc2=size=320x180:rate=30000/1001:duration=5",
				"-f", "lavfi", "-i", "sine=frequency=300:sample_rate=44100:duration=5", "-c:v", "libx264", "-preset", "ultrafast", "-c:a", "aac", "-shortest")
		}, webHLS(t, "h264", 180, 90), 2, 30000.0 / 1001, "SDR", "avc1."},
		{"HDR tone-mapped for H.264", func() string { return hdr }, webHLS(t, "h264", 180), 1, 24, "SDR", "avc1."},
		{"real: H.264 720p with AAC", func() string { return "../media/testdata/movie-hello.mp4" }, webHLS(t, "h264", 180), 1, 30, "SDR", "avc1."},
		{"real: 1.2 s, shorter than a segment", func() string { return "../media/testdata/realshort.mp4" }, web, 1, 0, "SDR", "avc1."},
	} {
		t.Run(tc.name, func(t *testing.T) {
			pl, dir := encode(t, tc.input(), tc.profile)
			fps := tc.fps
			if fps == 0 {
				fps = pl.FPS
			}
			checkHLS(t, dir, tc.rungs, fps, tc.rng, tc.codec)
			checkDASH(t, dir, pl)
		})
	}
}

// checkHLS holds dir's playlists to the HLS rules.
func checkHLS(t *testing.T, dir string, rungs int, fps float64, videoRange, codecPrefix string) {
	master, err := pack.ReadMaster(filepath.Join(dir, media.MasterName))
	require.NoError(t, err)
	raw, err := os.ReadFile(filepath.Join(dir, media.MasterName))
	require.NoError(t, err)
	require.Contains(t, string(raw), "#EXT-X-INDEPENDENT-SEGMENTS\n")

	// One target duration for every playlist, audio included; VOD; no
	// program date-time.
	playlists, err := filepath.Glob(filepath.Join(dir, "*.m3u8"))
	require.NoError(t, err)
	target := -1
	for _, path := range playlists {
		if filepath.Base(path) == media.MasterName {
			continue
		}
		data, err := os.ReadFile(path)
		require.NoError(t, err)
		require.NotContains(t, string(data), "PROGRAM-DATE-TIME", path)
		p, err := pack.ReadMedia(path)
		require.NoError(t, err)
		require.Equal(t, m3u8.VOD, p.MediaType, "%s: EXT-X-PLAYLIST-TYPE:VOD", path)
		require.True(t, p.Closed, "%s: EXT-X-ENDLIST", path)
		require.Contains(t, string(data), "#EXT-X-INDEPENDENT-SEGMENTS\n", path)
		if target < 0 {
			target = int(p.TargetDuration)
		}
		require.Equal(t, target, int(p.TargetDuration), "%s: one EXT-X-TARGETDURATION for all playlists", path)
		for _, s := range pack.Segments(p) {
			require.LessOrEqual(t, int(math.Round(s.Duration)), target, "%s: %s longer than the target duration", path, s.URI)
		}
	}

	// Audio: the largest peak and average in the group.
	var audioPeak, audioAvg float64
	var audioCodec string
	for _, a := range master.GetAllAlternatives() {
		require.Equal(t, "AUDIO", a.Type)
		sizes, secs := segmentRates(t, dir, a.URI)
		audioPeak = math.Max(audioPeak, peak(sizes, secs, float64(target)))
		audioAvg = math.Max(audioAvg, average(sizes, secs))
		audioCodec = initCodec(t, dir, a.URI)
		require.NotNil(t, a.Channels)
		require.Positive(t, a.Channels.Amount)
	}

	var variants, iframes []*m3u8.Variant
	for _, v := range master.Variants {
		if v.Iframe {
			iframes = append(iframes, v)
		} else {
			variants = append(variants, v)
		}
	}
	require.Len(t, variants, rungs)
	require.Len(t, iframes, rungs, "an I-frame playlist for every rung")
	for i, v := range variants {
		sizes, secs := segmentRates(t, dir, v.URI)
		wantPeak := math.Floor(peak(sizes, secs, float64(target)) + audioPeak) // whole bits/s
		require.GreaterOrEqual(t, float64(v.Bandwidth), wantPeak, "%s: BANDWIDTH below the measured peak", v.URI)
		require.LessOrEqual(t, float64(v.Bandwidth), 1.1*wantPeak, "%s: BANDWIDTH more than 10 %% above the measured peak", v.URI)
		wantAvg := average(sizes, secs) + audioAvg
		require.InEpsilon(t, wantAvg, float64(v.AverageBandwidth), 0.1, "%s: AVERAGE-BANDWIDTH", v.URI)

		codec := initCodec(t, dir, v.URI)
		require.True(t, strings.HasPrefix(codec, codecPrefix), "%s: codec %s", v.URI, codec)
		want := codec
		if audioCodec != "" {
			want += "," + audioCodec
		}
		require.Equal(t, want, v.Codecs, "%s: CODECS must be what the init segments say", v.URI)
		require.InDelta(t, fps, v.FrameRate, 0.001, v.URI)
		require.Equal(t, videoRange, v.VideoRange, v.URI)
		if len(master.GetAllAlternatives()) > 0 {
			require.Equal(t, master.GetAllAlternatives()[0].GroupId, v.Audio)
		}

		// Every segment starts with an IDR picture, and has the size the
		// master says.
		p, err := pack.ReadMedia(filepath.Join(dir, v.URI))
		require.NoError(t, err)
		for _, s := range pack.Segments(p) {
			f := joined(t, filepath.Join(dir, p.Map.URI), filepath.Join(dir, s.URI), 0, -1)
			frames := probeFrames(t, f, 1)
			require.Equal(t, "1,I", frames[0], "%s does not start with a key frame", s.URI)
			require.Equal(t, v.Resolution, probeSize(t, f), s.URI)
		}

		// Its I-frame playlist: byte ranges from each segment's moof through
		// its first frame, which decode alone to one key frame.
		iv := iframes[i]
		require.Equal(t, v.Resolution, iv.Resolution)
		require.Equal(t, codec, iv.Codecs)
		require.Equal(t, videoRange, iv.VideoRange)
		ip, err := pack.ReadMedia(filepath.Join(dir, iv.URI))
		require.NoError(t, err)
		require.True(t, ip.Iframe, "%s: EXT-X-I-FRAMES-ONLY", iv.URI)
		require.Equal(t, p.Map.URI, ip.Map.URI)
		segs, isegs := pack.Segments(p), pack.Segments(ip)
		require.Len(t, isegs, len(segs))
		var isizes []int64
		for j, s := range isegs {
			require.Equal(t, segs[j].URI, s.URI)
			require.InDelta(t, segs[j].Duration, s.Duration, 1e-6)
			require.Positive(t, s.Limit)
			data, err := os.ReadFile(filepath.Join(dir, s.URI))
			require.NoError(t, err)
			require.Equal(t, "moof", string(data[s.Offset+4:s.Offset+8]), "%s: the byte range starts at a moof box", s.URI)
			f := joined(t, filepath.Join(dir, ip.Map.URI), filepath.Join(dir, s.URI), s.Offset, s.Limit)
			require.Equal(t, []string{"1,I"}, probeFrames(t, f, 0), "%s@%d+%d decodes alone to exactly one key frame", s.URI, s.Offset, s.Limit)
			isizes = append(isizes, s.Limit)
		}
		ipeak := math.Floor(peak(isizes, secs, float64(target)))
		require.GreaterOrEqual(t, float64(iv.Bandwidth), ipeak, iv.URI)
		require.LessOrEqual(t, float64(iv.Bandwidth), 1.1*ipeak, iv.URI)
	}
}

// checkDASH holds the manifest to DASH-IF's rules for a static isoff-live
// presentation over the same segments.
func checkDASH(t *testing.T, dir string, pl *media.Plan) {
	m, err := pack.ReadManifest(filepath.Join(dir, media.ManifestName))
	require.NoError(t, err)
	require.Equal(t, "static", m.GetType())
	require.Contains(t, string(m.Profiles), "urn:mpeg:dash:profile:isoff-live:2011")
	require.Len(t, m.Periods, 1)
	var videoSets, audioSets int
	for _, as := range m.Periods[0].AdaptationSets {
		require.EqualValues(t, 1, as.StartWithSAP, "startWithSAP")
		require.True(t, as.SegmentAlignment, "segmentAlignment")
		var starts [][]float64
		for _, r := range as.Representations {
			st := r.SegmentTemplate
			require.NotNil(t, st, "SegmentTemplate on representation %s", r.Id)
			require.NotNil(t, st.SegmentTimeline)
			init := strings.ReplaceAll(st.Initialization, "$RepresentationID$", r.Id)
			require.Equal(t, codecOf(t, filepath.Join(dir, init)), r.Codecs, "@codecs of %s from its init segment", r.Id)
			starts = append(starts, timeline(st))
			// Every segment the timeline names exists.
			for n := range len(starts[len(starts)-1]) {
				name := strings.ReplaceAll(st.Media, "$RepresentationID$", r.Id)
				name = strings.ReplaceAll(name, "$Number%05d$", fmt.Sprintf("%05d", int(*st.StartNumber)+n))
				require.FileExists(t, filepath.Join(dir, name))
			}
		}
		for _, s := range starts[1:] {
			require.Len(t, s, len(starts[0]))
			for k := range s {
				require.InDelta(t, starts[0][k], s[k], 0.001, "segment %d boundaries differ across representations", k+1)
			}
		}
		switch as.ContentType {
		case "video":
			videoSets++
			require.Len(t, as.Representations, len(pl.Rungs))
		case "audio":
			audioSets++
			require.Equal(t, pl.Audio[audioSets-1].Language, as.Lang)
			require.NotEmpty(t, as.Roles, "Role on the audio set")
			require.Equal(t, "urn:mpeg:dash:role:2011", string(as.Roles[0].SchemeIdUri))
			for _, r := range as.Representations {
				require.Len(t, r.AudioChannelConfigurations, 1)
				require.Equal(t, strconv.Itoa(pl.Audio[audioSets-1].Channels), r.AudioChannelConfigurations[0].Value)
			}
		}
	}
	require.Equal(t, 1, videoSets)
	require.Equal(t, len(pl.Audio), audioSets)
}

// timeline lists a SegmentTemplate's segment start times in seconds.
func timeline(st *mpd.SegmentTemplateType) []float64 {
	var out []float64
	var t uint64
	for _, s := range st.SegmentTimeline.S {
		if s.T != nil {
			t = *s.T
		}
		for range s.R + 1 {
			out = append(out, float64(t)/float64(st.GetTimescale()))
			t += s.D
		}
	}
	return out
}

// peak is RFC 8216bis's peak segment bit rate, by brute force over every
// contiguous run of segments lasting 0.5–1.5 target durations.
func peak(sizes []int64, secs []float64, target float64) float64 {
	best := 0.0
	for i := range sizes {
		for j := i; j < len(sizes); j++ {
			var b, d float64
			for k := i; k <= j; k++ {
				b += float64(sizes[k])
				d += secs[k]
			}
			if d >= 0.5*target && d <= 1.5*target {
				best = math.Max(best, b*8/d)
			}
		}
	}
	if best == 0 { // the whole stream is shorter than half a target duration
		return average(sizes, secs)
	}
	return best
}

func average(sizes []int64, secs []float64) float64 {
	var b, d float64
	for i := range sizes {
		b += float64(sizes[i])
		d += secs[i]
	}
	return b * 8 / d
}

// segmentRates is a media playlist's segment sizes (on disk) and durations
// (EXTINF).
func segmentRates(t *testing.T, dir, uri string) ([]int64, []float64) {
	p, err := pack.ReadMedia(filepath.Join(dir, uri))
	require.NoError(t, err)
	var sizes []int64
	var secs []float64
	for _, s := range pack.Segments(p) {
		fi, err := os.Stat(filepath.Join(dir, s.URI))
		require.NoError(t, err)
		sizes = append(sizes, fi.Size())
		secs = append(secs, s.Duration)
	}
	return sizes, secs
}

// initCodec is the codecs string of the init segment a media playlist maps.
func initCodec(t *testing.T, dir, uri string) string {
	p, err := pack.ReadMedia(filepath.Join(dir, uri))
	require.NoError(t, err)
	return codecOf(t, filepath.Join(dir, p.Map.URI))
}

// codecOf builds the RFC 6381 string from the sample entry's own fields
// (avcC's profile, compatibility and level bytes; hvcC's profile space,
// profile, compatibility flags, tier, level and constraint bytes; esds's
// audio object type), not from the SPS as package pack does.
func codecOf(t *testing.T, path string) string {
	data, err := os.ReadFile(path)
	require.NoError(t, err)
	f, err := mp4.DecodeFile(bytes.NewReader(data))
	require.NoError(t, err)
	stsd := f.Init.Moov.Trak.Mdia.Minf.Stbl.Stsd
	switch {
	case stsd.AvcX != nil:
		c := stsd.AvcX.AvcC
		return fmt.Sprintf("%s.%02X%02X%02X", stsd.AvcX.Type(), c.AVCProfileIndication, c.ProfileCompatibility, c.AVCLevelIndication)
	case stsd.HvcX != nil:
		c := stsd.HvcX.HvcC
		tier := "L"
		if c.GeneralTierFlag {
			tier = "H"
		}
		var rev uint32
		for i := range 32 {
			if c.GeneralProfileCompatibilityFlags&(1<<i) != 0 {
				rev |= 1 << (31 - i)
			}
		}
		s := fmt.Sprintf("%s.%d.%X.%s%d", stsd.HvcX.Type(), c.GeneralProfileIDC, rev, tier, c.GeneralLevelIDC)
		cons := c.GeneralConstraintIndicatorFlags
		var bs []string
		for i := 5; i >= 0; i-- {
			bs = append(bs, fmt.Sprintf("%X", byte(cons>>(8*i))))
		}
		for len(bs) > 0 && bs[len(bs)-1] == "0" {
			bs = bs[:len(bs)-1]
		}
		if len(bs) > 0 {
			s += "." + strings.Join(bs, ".")
		}
		return s
	case stsd.Mp4a != nil:
		asc, err := aac.DecodeAudioSpecificConfig(bytes.NewReader(stsd.Mp4a.Esds.DecConfigDescriptor.DecSpecificInfo.DecConfig))
		require.NoError(t, err)
		return fmt.Sprintf("mp4a.40.%d", asc.ObjectType)
	}
	t.Fatalf("%s: unexpected sample entry", path)
	return ""
}

// joined writes an init segment and a byte range of a media segment
// (length -1: to its end) into one file ffprobe reads.
func joined(t *testing.T, init, seg string, off, n int64) string {
	a, err := os.ReadFile(init)
	require.NoError(t, err)
	b, err := os.ReadFile(seg)
	require.NoError(t, err)
	if n >= 0 {
		b = b[off : off+n]
	}
	path := filepath.Join(t.TempDir(), "joined.mp4")
	require.NoError(t, os.WriteFile(path, slices.Concat(a, b), 0o644))
	return path
}

// probeFrames decodes path's video and lists "key_frame,pict_type" per frame
// (the first n only, if n > 0).
func probeFrames(t *testing.T, path string, n int) []string {
	args := []string{"-v", "error", "-select_streams", "v:0", "-show_entries", "frame=key_frame,pict_type", "-of", "csv=p=0"}
	if n > 0 {
		args = append(args, "-read_intervals", "%+#"+strconv.Itoa(n))
	}
	out, err := exec.Command("ffprobe", append(args, path)...).Output()
	require.NoError(t, err)
	lines := strings.Fields(strings.ReplaceAll(string(out), ",\n", "\n"))
	require.NotEmpty(t, lines, "%s: no frame decoded", path)
	return lines
}

func probeSize(t *testing.T, path string) string {
	out, err := exec.Command("ffprobe", "-v", "error", "-select_streams", "v:0", "-show_entries", "stream=width,height", "-of", "csv=p=0:s=x", path).Output()
	require.NoError(t, err)
	return strings.TrimSpace(string(out))
}
