package pack

import (
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"testing"

	"github.com/Eyevinn/mp4ff/mp4"
	"github.com/stretchr/testify/require"

	"github.com/herdhq/herd/internal/testenv"
)

// cmafEncode encodes one second of testsrc2 with encoder (and its options)
// into CMAF segments of 0.5 s with ffmpeg's dash muxer, as herd's hls
// encode does, and returns the folder.
func cmafEncode(t *testing.T, pixFmt string, codecArgs ...string) string {
	t.Helper()
	testenv.NeedFFmpeg(t)
	dir := t.TempDir()
	args := []string{"-f", "lavfi", "-i", "testsrc2=size=320x180:rate=24:duration=1", "-pix_fmt", pixFmt}
	args = append(args, codecArgs...)
	args = append(args, "-g", "12", "-keyint_min", "12", "-sc_threshold", "0", "-force_key_frames", "expr:gte(t,n_forced*0.5)",
		"-f", "dash", "-seg_duration", "0.5", "-use_template", "1", "-use_timeline", "1", "-dash_segment_type", "mp4",
		"-init_seg_name", "init-$RepresentationID$.m4s", "-media_seg_name", "chunk-$RepresentationID$-$Number%05d$.m4s",
		filepath.Join(dir, "ffmpeg.mpd"))
	require.NoError(t, testenv.FFmpeg(args...))
	return dir
}

// readCMAF reads cmafEncode's one representation.
func readCMAF(t *testing.T, dir string) *Stream {
	t.Helper()
	segs, err := filepath.Glob(filepath.Join(dir, "chunk-0-*.m4s"))
	require.NoError(t, err)
	require.Len(t, segs, 2, "two segments of 0.5 s")
	for i := range segs {
		segs[i] = filepath.Base(segs[i])
	}
	s, err := ReadStream(dir, "init-0.m4s", segs)
	require.NoError(t, err)
	return s
}

// ffprobeVideo is what ffprobe says of a representation's video (its init
// and first segments): profile name, level and pixel format.
func ffprobeVideo(t *testing.T, dir string) (profile string, level int, pixFmt string) {
	t.Helper()
	var joined []byte
	for _, name := range []string{"init-0.m4s", "chunk-0-00001.m4s"} {
		b, err := os.ReadFile(filepath.Join(dir, name))
		require.NoError(t, err)
		joined = append(joined, b...)
	}
	path := filepath.Join(t.TempDir(), "joined.mp4")
	require.NoError(t, os.WriteFile(path, joined, 0o644))
	out, err := exec.Command("ffprobe", "-v", "error", "-select_streams", "v:0", "-show_entries", "stream=profile,level,pix_fmt",
		"-of", "json", "file:"+path).Output()
	require.NoError(t, err)
	var r struct {
		Streams []struct {
			Profile string `json:"profile"`
			Level   int    `json:"level"`
			PixFmt  string `json:"pix_fmt"`
		} `json:"streams"`
	}
	require.NoError(t, json.Unmarshal(out, &r))
	require.Len(t, r.Streams, 1)
	return r.Streams[0].Profile, r.Streams[0].Level, r.Streams[0].PixFmt
}

// TestCodecStrings reads the codecs string of real H.264, HEVC and AV1
// CMAF init segments and checks each field against what ffprobe, which
// parses the bitstream's own headers, says of the same file.
func TestCodecStrings(t *testing.T) {
	t.Parallel()
	depth := map[string]string{"yuv420p": "08", "yuv420p10le": "10"}
	for _, tc := range []struct {
		name   string
		pixFmt string
		args   []string
		want   func(level int, pixFmt string) (profile, codecs string)
	}{
		{"h264 high", "yuv420p", []string{"-c:v", "libx264", "-preset", "veryfast", "-profile:v", "high"},
			func(l int, _ string) (string, string) {
				return "High", fmt.Sprintf(`^avc1\.64[0-9A-F]{2}%02X$`, l)
			}},
		{"hevc main, hvc1", "yuv420p", []string{"-c:v", "libx265", "-preset", "ultrafast", "-x265-params", "log-level=error:open-gop=0", "-forced-idr", "1", "-tag:v", "hvc1"},
			func(l int, _ string) (string, string) {
				// Main (1), compatible with Main and Main 10 (6), main tier
				// (L), the constraint flags' first byte.
				return "Main", `^hvc1\.1\.6\.L` + strconv.Itoa(l) + `\.[0-9A-F]{1,2}$`
			}},
		{"hevc main 10, hvc1", "yuv420p10le", []string{"-c:v", "libx265", "-preset", "ultrafast", "-x265-params", "log-level=error:open-gop=0", "-forced-idr", "1", "-tag:v", "hvc1"},
			func(l int, _ string) (string, string) {
				return "Main 10", `^hvc1\.2\.4\.L` + strconv.Itoa(l) + `\.[0-9A-F]{1,2}$`
			}},
		{"av1 main 8-bit", "yuv420p", []string{"-c:v", "libsvtav1", "-preset", "12", "-svtav1-params", "irefresh-type=2"},
			func(l int, pf string) (string, string) {
				return "Main", fmt.Sprintf(`^av01\.0\.%02dM\.%s$`, l, depth[pf])
			}},
		{"av1 main 10-bit", "yuv420p10le", []string{"-c:v", "libsvtav1", "-preset", "12", "-svtav1-params", "irefresh-type=2"},
			func(l int, pf string) (string, string) {
				return "Main", fmt.Sprintf(`^av01\.0\.%02dM\.%s$`, l, depth[pf])
			}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			dir := cmafEncode(t, tc.pixFmt, tc.args...)
			s := readCMAF(t, dir)
			prof, level, pf := ffprobeVideo(t, dir)
			require.Equal(t, tc.pixFmt, pf)
			wantProfile, codecs := tc.want(level, pf)
			require.Equal(t, wantProfile, prof)
			require.Regexp(t, codecs, s.Codec)
			require.Equal(t, 320, s.Width)
			require.Equal(t, 180, s.Height)

			// The manifest herd writes carries the same string.
			l := Ladder{Master: "master.m3u8", Manifest: "manifest.mpd", InitTemplate: "init-$RepresentationID$.m4s",
				MediaTemplate: "chunk-$RepresentationID$-$Number%05d$.m4s", FrameRate: "24", VideoRange: "SDR",
				Video: []Rendition{{ID: "0", Playlist: "media_0.m3u8", IFrames: "iframe_0.m3u8", Init: "init-0.m4s",
					Segments: []string{"chunk-0-00001.m4s", "chunk-0-00002.m4s"}}}}
			_, err := Write(dir, l)
			require.NoError(t, err)
			master, err := os.ReadFile(filepath.Join(dir, "master.m3u8"))
			require.NoError(t, err)
			require.Contains(t, string(master), `CODECS="`+s.Codec+`"`)
			mpd, err := os.ReadFile(filepath.Join(dir, "manifest.mpd"))
			require.NoError(t, err)
			require.Contains(t, string(mpd), `codecs="`+s.Codec+`"`)
		})
	}
}

// TestAV1KeyFrames: every segment of a real SVT-AV1 encode starts with a
// shown KEY_FRAME; the same sample read as a frame that shows an earlier
// one again, or as an inter frame, is refused.
func TestAV1KeyFrames(t *testing.T) {
	t.Parallel()
	dir := cmafEncode(t, "yuv420p", "-c:v", "libsvtav1", "-preset", "12", "-svtav1-params", "irefresh-type=2")
	s := readCMAF(t, dir)
	g := s.Segments[1]
	data, err := os.ReadFile(filepath.Join(dir, g.Name))
	require.NoError(t, err)
	// The first sample is the key frame's range less its moof; find its
	// frame OBU by reading the OBUs of the sample's bytes.
	sample := data[g.KeyEnd-int64(sampleSize(t, s, dir)) : g.KeyEnd]
	require.NoError(t, av1KeyFrame(sample))

	at := frameHeaderAt(t, sample)
	for _, tc := range []struct {
		name string
		set  func(b byte) byte
		want string
	}{
		{"shown again", func(b byte) byte { return b | 0x80 }, "forward key frame"},
		{"inter frame", func(b byte) byte { return b&^0x60 | 0x20 }, "not a KEY_FRAME (frame_type 1)"},
		{"not shown", func(b byte) byte { return b &^ 0x10 }, "not shown"},
	} {
		bad := append([]byte(nil), sample...)
		bad[at] = tc.set(bad[at])
		require.ErrorContains(t, av1KeyFrame(bad), tc.want, tc.name)
	}
	require.ErrorContains(t, av1KeyFrame(sample[:at+2]), "longer than its sample")
	require.ErrorContains(t, av1KeyFrame([]byte{0x32, 0x80}), "cut short", "a size field that does not end")
	require.ErrorContains(t, av1KeyFrame([]byte{0x12, 0x00}), "no frame", "a temporal delimiter alone")

	// A sequence header's first byte: seq_profile (3 bits), still_picture,
	// reduced_still_picture_header (0x08), timing_info_present (0x04), ...
	// Timing info is not a reduced still picture: the inter frame after it
	// is refused; a reduced still picture is a shown key frame.
	seq := func(b byte) []byte { return []byte{0x0A, 0x01, b} } // OBU_SEQUENCE_HEADER with a size
	inter := []byte{0x32, 0x01, 0x30}                           // OBU_FRAME: INTER_FRAME, shown
	require.ErrorContains(t, av1KeyFrame(append(seq(0x04), inter...)), "not a KEY_FRAME (frame_type 1)")
	require.NoError(t, av1KeyFrame(append(seq(0x18), inter...)), "a reduced still picture")
}

// sampleSize is the size of segment 2's first sample, read with mp4ff.
func sampleSize(t *testing.T, s *Stream, dir string) int {
	t.Helper()
	f, err := os.Open(filepath.Join(dir, s.Segments[1].Name))
	require.NoError(t, err)
	defer f.Close()
	mf, err := mp4.DecodeFile(f)
	require.NoError(t, err)
	return int(mf.Segments[0].Fragments[0].Moof.Traf.Truns[0].Samples[0].Size)
}

// frameHeaderAt is the offset in sample of the first frame (header) OBU's
// first payload byte.
func frameHeaderAt(t *testing.T, sample []byte) int {
	t.Helper()
	off := 0
	for off < len(sample) {
		h := sample[off]
		typ, ext := h>>3&0x0f, h&0x04 != 0
		n := 1
		if ext {
			n++
		}
		v, m, err := leb128(sample[off+n:])
		require.NoError(t, err)
		n += m
		if typ == obuFrame || typ == obuFrameHeader {
			return off + n
		}
		off += n + int(v)
	}
	t.Fatal("no frame OBU")
	return 0
}

// FuzzAV1KeyFrame: the key-frame check reads bytes a worker uploaded; no
// sample makes it panic or read past its end.
func FuzzAV1KeyFrame(f *testing.F) {
	f.Add([]byte{0x12, 0x00, 0x0a, 0x0b, 0x00, 0x00, 0x00, 0x04, 0x3c, 0xff, 0xbc, 0xff, 0xf9, 0x80, 0x40, 0x32, 0x03, 0x10, 0x00, 0x00})
	f.Add([]byte{0x32, 0x80})
	f.Add([]byte{0x30, 0x10})
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, sample []byte) {
		_ = av1KeyFrame(sample)
	})
}
