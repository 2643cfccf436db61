package media

import (
	"context"
	"crypto/rand"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

func TestAdmitRefuses(t *testing.T) {
	t.Parallel()
	needFFmpeg(t)
	dir := t.TempDir()
	file := func(name string, data []byte) string {
		p := filepath.Join(dir, name)
		writeFile(t, p, data)
		return p
	}
	noise := make([]byte, 4096)
	_, _ = rand.Read(noise)
	noise[0] = 0xff // never a valid magic by chance

	// Inputs the sniffer refuses. ffprobe points at a binary that does not
	// exist, so a rejection proves that ffprobe was never started: a playlist
	// named .mp4 must not get the chance to read /etc/passwd.
	noProbe := Tools{FFmpeg: "/nonexistent/ffmpeg", FFprobe: "/nonexistent/ffprobe"}
	sniffed := []struct {
		name, path, code string
	}{
		{"empty", file("empty.mp4", nil), CodeEmpty},
		{"random bytes", file("noise.mp4", noise), CodeNotMedia},
		{"text renamed .mp4", file("notes.mp4", []byte("These are my notes, not a video.\n")), CodeNotMedia},
		{"hls playlist named .mp4", file("evil.mp4", []byte("#EXTM3U\n#EXT-X-TARGETDURATION:10\n#EXTINF:10,\nfile:///etc/passwd\n#EXT-X-ENDLIST\n")), CodePlaylist},
		{"ffconcat", file("list.mp4", []byte("ffconcat version 1.0\nfile /etc/passwd\n")), CodePlaylist},
	}
	for _, tc := range sniffed {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			_, err := noProbe.Admit(context.Background(), tc.path, Limits{})
			rej, ok := errors.AsType[*RejectedError](err)
			require.True(t, ok, "want a rejection, got %v", err)
			require.Equal(t, tc.code, rej.Code)
			require.NotContains(t, rej.Reason, dir, "a reason must not show server paths")
			require.True(t, IsPermanent(err))
		})
	}

	// Inputs that need the probe.
	audioM4A := filepath.Join(dir, "tone.m4a")
	generate(t, "-f", "lavfi", "-i", "sine=duration=1", "-c:a", "aac", audioM4A)
	audioMKV := filepath.Join(dir, "tone.mkv")
	generate(t, "-f", "lavfi", "-i", "sine=duration=1", "-c:a", "libopus", audioMKV)
	huge := filepath.Join(dir, "huge.mp4")
	generate(t, "-f", "lavfi", "-i", "color=size=8200x16:d=0.04", "-c:v", "libx264", "-preset", "ultrafast", huge)
	// An MP4 whose moov (at the end, no faststart) was cut off.
	whole := clip(t, "whole.mp4", "160x90", "2")
	data, err := os.ReadFile(whole)
	require.NoError(t, err)
	truncated := file("truncated.mp4", data[:len(data)/2])

	probed := []struct {
		name, path, code string
		lim              Limits
	}{
		{"audio only m4a", audioM4A, CodeNoVideo, Limits{}},
		{"audio only mkv", audioMKV, CodeNoVideo, Limits{}},
		{"truncated mp4 without moov", truncated, CodeUnreadable, Limits{}},
		{"8200 pixels wide", huge, CodeTooLarge, Limits{}},
		{"longer than the limit", whole, CodeTooLarge, Limits{MaxDuration: time.Second}},
		{"smaller limit", whole, CodeTooLarge, Limits{MaxWidth: 100}},
		{"more pixels than the limit", whole, CodeTooLarge, Limits{MaxPixels: 160*90 - 1}},
	}
	for _, tc := range probed {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			_, err := Tools{}.Admit(context.Background(), tc.path, tc.lim)
			rej, ok := errors.AsType[*RejectedError](err)
			require.True(t, ok, "want a rejection, got %v", err)
			require.Equal(t, tc.code, rej.Code, rej.Reason)
			require.NotContains(t, rej.Reason, dir)
			require.True(t, IsPermanent(err))
		})
	}
}

func TestAdmitMissingFileIsNotARejection(t *testing.T) {
	t.Parallel()
	_, err := Tools{}.Admit(context.Background(), filepath.Join(t.TempDir(), "gone.mp4"), Limits{})
	require.ErrorIs(t, err, os.ErrNotExist)
	require.False(t, IsPermanent(err))
}

func TestAdmitAccepts(t *testing.T) {
	t.Parallel()
	needFFmpeg(t)
	dir := t.TempDir()
	rotated := filepath.Join(dir, "rotated.mp4")
	generate(t, "-i", clip(t, "plain.mp4", "320x180", "1"), "-c", "copy", "-metadata:s:v:0", "rotate=90", rotated)
	interlaced := filepath.Join(dir, "interlaced.mpg")
	generate(t, "-f", "lavfi", "-i", "testsrc2=size=320x180:rate=25:duration=1", "-c:v", "mpeg2video",
		"-flags", "+ilme+ildct", "-top", "1", interlaced)
	ts := filepath.Join(dir, "clip.ts")
	generate(t, "-i", clip(t, "for-ts.mp4", "320x180", "1"), "-c", "copy", ts)
	surround := clip(t, "surround.mkv", "320x180", "1", "-af", "aformat=channel_layouts=5.1", "-ac", "6")
	png := filepath.Join(dir, "cover.png")
	generate(t, "-f", "lavfi", "-i", "color=size=64x64:d=0.04", "-frames:v", "1", png)
	cover := filepath.Join(dir, "cover.mp4")
	generate(t, "-i", png, "-i", clip(t, "base.mp4", "320x180", "1"), "-map", "0", "-map", "1", "-c", "copy",
		"-disposition:v:0", "attached_pic", cover)

	tests := []struct {
		name    string
		path    string
		demuxer string
		check   func(t *testing.T, info *Info)
	}{
		{"testsrc2 mp4", clip(t, "a.mp4", "320x180", "1"), "mov", func(t *testing.T, info *Info) {
			require.Equal(t, 320, info.Video.Width)
			require.InDelta(t, 25, info.Video.FPS, 0.01)
			require.Len(t, info.Audio, 1)
			require.Equal(t, "aac", info.Audio[0].Codec)
		}},
		{"real h264 720p", filepath.Join("testdata", "movie-hello.mp4"), "mov", func(t *testing.T, info *Info) {
			require.Equal(t, 1280, info.Video.Width)
			require.Equal(t, 720, info.Video.Height)
			require.InDelta(t, 8.3, info.Duration, 0.1)
		}},
		{"real mpeg-2 program stream", filepath.Join("testdata", "cityCC0.mpg"), "mpeg", func(t *testing.T, info *Info) {
			require.Equal(t, "mpeg2video", info.Video.Codec)
			require.Equal(t, 405, info.Video.Height)
			require.Empty(t, info.Audio)
		}},
		{"real mpeg-4 part 2 + ac3 in avi", filepath.Join("testdata", "Megamind.avi"), "avi", func(t *testing.T, info *Info) {
			require.Equal(t, "mpeg4", info.Video.Codec)
			require.Equal(t, "ac3", info.Audio[0].Codec)
		}},
		{"rotated", rotated, "mov", func(t *testing.T, info *Info) {
			require.Contains(t, []int{90, 270}, info.Video.Rotation)
		}},
		{"interlaced", interlaced, "mpeg", func(t *testing.T, info *Info) { require.True(t, info.Video.Interlaced) }},
		{"mpeg-ts", ts, "mpegts", nil},
		{"5.1 audio", surround, "matroska", func(t *testing.T, info *Info) {
			require.Equal(t, 6, info.Audio[0].Channels)
			require.Equal(t, "5.1", info.Audio[0].Layout)
		}},
		{"cover art is not the video", cover, "mov", func(t *testing.T, info *Info) {
			require.Equal(t, 320, info.Video.Width)
		}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			info, err := Tools{}.Admit(context.Background(), tc.path, Limits{})
			require.NoError(t, err)
			require.Equal(t, tc.demuxer, info.Demuxer)
			require.NotNil(t, info.Video)
			require.Positive(t, info.Duration)
			require.Positive(t, info.Size)
			if tc.check != nil {
				tc.check(t, info)
			}
			data, err := json.Marshal(info)
			require.NoError(t, err)
			require.True(t, strings.Contains(string(data), `"format_name"`), "snake_case JSON: %s", data)
		})
	}
}

func TestInfoCheck(t *testing.T) {
	t.Parallel()
	lim := Limits{}.withDefaults()
	zero := src(320, 180, 25, func(i *Info) { i.Duration = 0 })
	rej, ok := errors.AsType[*RejectedError](zero.check(lim))
	require.True(t, ok)
	require.Equal(t, CodeZeroDuration, rej.Code)
	require.NoError(t, src(8192, 4320, 25).check(lim))
}

func TestParseProbeRotation(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		json string
		want int
	}{
		{`{"streams":[{"codec_type":"video","width":2,"height":2,"side_data_list":[{"rotation":-90}]}]}`, 90},
		{`{"streams":[{"codec_type":"video","width":2,"height":2,"side_data_list":[{"rotation":90}]}]}`, 270},
		{`{"streams":[{"codec_type":"video","width":2,"height":2,"side_data_list":[{"rotation":180}]}]}`, 180},
		{`{"streams":[{"codec_type":"video","width":2,"height":2,"tags":{"rotate":"90"}}]}`, 90},
		{`{"streams":[{"codec_type":"video","width":2,"height":2,"tags":{"rotate":"-270"}}]}`, 90},
		{`{"streams":[{"codec_type":"video","width":2,"height":2}]}`, 0},
	} {
		info, err := parseProbe([]byte(tc.json), "mov")
		require.NoError(t, err)
		require.Equal(t, tc.want, info.Video.Rotation, tc.json)
	}
}

func TestParseProbeSkipsAttachedPicture(t *testing.T) {
	t.Parallel()
	info, err := parseProbe([]byte(`{"format":{"duration":"2.5"},"streams":[
		{"index":0,"codec_type":"video","codec_name":"mjpeg","width":600,"height":600,"disposition":{"default":1,"attached_pic":1}},
		{"index":1,"codec_type":"video","codec_name":"h264","width":320,"height":180,"avg_frame_rate":"0/0","r_frame_rate":"25/1"},
		{"index":2,"codec_type":"video","codec_name":"h264","width":640,"height":360,"avg_frame_rate":"25/1","r_frame_rate":"25/1","disposition":{"default":1}},
		{"index":3,"codec_type":"audio","codec_name":"aac","channels":2,"tags":{"language":"und"}},
		{"index":4,"codec_type":"subtitle","codec_name":"hdmv_pgs_subtitle","disposition":{"forced":1}}]}`), "mov")
	require.NoError(t, err)
	require.Equal(t, 2, info.Video.Index, "the default non-picture video stream")
	require.InDelta(t, 2.5, info.Duration, 1e-9)
	require.Equal(t, int64(63), info.Video.Frames)
	require.Empty(t, info.Audio[0].Language)
	require.Equal(t, []SubtitleStream{{Index: 4, Codec: "hdmv_pgs_subtitle", Forced: true}}, info.Subtitles)
}

func FuzzParseProbe(f *testing.F) {
	f.Add([]byte(`{"format":{"duration":"1.0"},"streams":[{"index":0,"codec_type":"video","width":320,"height":180,"avg_frame_rate":"25/1","r_frame_rate":"0/0","sample_aspect_ratio":"32:27","side_data_list":[{"rotation":-90}]}]}`))
	f.Add([]byte(`{"streams":[{"codec_type":"audio","channels":6},{"codec_type":"subtitle","codec_name":"subrip"}]}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		info, err := parseProbe(data, "mov")
		if err != nil {
			return
		}
		if v := info.Video; v != nil {
			if v.Rotation%90 != 0 || v.Rotation < 0 || v.Rotation >= 360 {
				t.Fatalf("rotation %d", v.Rotation)
			}
			if v.FPS < 0 || v.RFPS < 0 {
				t.Fatalf("negative rate")
			}
		}
		_ = info.check(Limits{}.withDefaults())
	})
}
