package media

import (
	"bytes"
	"errors"
	"testing"

	"github.com/stretchr/testify/require"
)

func TestSniff(t *testing.T) {
	t.Parallel()
	ts := bytes.Repeat(append([]byte{0x47}, make([]byte, 187)...), 5)
	m2ts := bytes.Repeat(append([]byte{0, 0, 0, 0, 0x47}, make([]byte, 187)...), 5)
	tests := []struct {
		name    string
		head    []byte
		want    string
		wantErr string // rejection code
	}{
		{"mp4 ftyp", []byte("\x00\x00\x00\x20ftypisom\x00\x00\x02\x00isomiso2avc1mp41"), "mov", ""},
		{"mov wide", []byte("\x00\x00\x00\x08wide\x00\x10\x00\x00mdat"), "mov", ""},
		{"mov moov first", []byte("\x00\x00\x10\x00moov\x00\x00\x00\x6cmvhd"), "mov", ""},
		{"ftyp too small", []byte("\x00\x00\x00\x04ftypisom"), "", CodeNotMedia},
		{"matroska", []byte("\x1a\x45\xdf\xa3\x9f\x42\x86\x81\x01"), "matroska", ""},
		{"avi", []byte("RIFF\x00\x10\x00\x00AVI LIST"), "avi", ""},
		{"wav", []byte("RIFF\x00\x10\x00\x00WAVEfmt "), "wav", ""},
		{"mpeg-ps", []byte("\x00\x00\x01\xba\x44\x00\x04\x00\x04\x01"), "mpeg", ""},
		{"mpeg-ts", ts, "mpegts", ""},
		{"m2ts", m2ts, "mpegts", ""},
		{"one sync byte is not ts", append([]byte{0x47}, make([]byte, 400)...), "", CodeNotMedia},
		{"flv", []byte("FLV\x01\x05\x00\x00\x00\x09"), "flv", ""},
		{"ogg", []byte("OggS\x00\x02"), "ogg", ""},
		{"asf", []byte("\x30\x26\xb2\x75\x8e\x66\xcf\x11\xa6\xd9\x00\xaa\x00\x62\xce\x6c"), "asf", ""},
		{"mxf", []byte("\x06\x0e\x2b\x34\x02\x05\x01\x01\x0d\x01\x02\x01\x01\x02\x04\x00"), "mxf", ""},
		{"realmedia", []byte(".RMF\x00\x00\x00\x12"), "rm", ""},
		{"nut", []byte("nut/multimedia container\x00"), "nut", ""},
		{"y4m", []byte("YUV4MPEG2 W320 H180 F25:1"), "yuv4mpegpipe", ""},
		{"empty", nil, "", CodeEmpty},
		{"hls playlist", []byte("#EXTM3U\n#EXT-X-MEDIA-SEQUENCE:0\n#EXTINF:10.0,\nfile:///etc/passwd\n"), "", CodePlaylist},
		{"hls playlist with BOM and blank lines", []byte("\xef\xbb\xbf\n\n  #EXTM3U\n"), "", CodePlaylist},
		{"ffconcat", []byte("ffconcat version 1.0\nfile '/etc/passwd'\n"), "", CodePlaylist},
		{"concat without header", []byte("file 'a.mp4'\nfile 'b.mp4'\n"), "", CodePlaylist},
		{"plain m3u of urls", []byte("http://example.com/a.ts\n"), "", CodePlaylist},
		{"dash manifest", []byte("<?xml version=\"1.0\"?>\n<MPD>"), "", CodePlaylist},
		{"pls", []byte("[playlist]\nFile1=/etc/passwd\n"), "", CodePlaylist},
		{"plain text", []byte("Dear diary, today I renamed a text file to .mp4.\n"), "", CodeNotMedia},
		{"random bytes", []byte{0xde, 0xad, 0xbe, 0xef, 0x00, 0x01, 0x02, 0x03, 0xff, 0xfe}, "", CodeNotMedia},
		{"png", []byte("\x89PNG\r\n\x1a\n\x00\x00\x00\x0dIHDR"), "", CodeNotMedia},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			got, err := Sniff(tc.head)
			if tc.wantErr != "" {
				rej, ok := errors.AsType[*RejectedError](err)
				require.True(t, ok, "want a *RejectedError, got %v (demuxer %q)", err, got)
				require.Equal(t, tc.wantErr, rej.Code)
				require.NotEmpty(t, rej.Reason)
				require.True(t, IsPermanent(err))
				return
			}
			require.NoError(t, err)
			require.Equal(t, tc.want, got)
		})
	}
}

// FuzzSniff checks that the sniffer never panics, and that whatever it
// accepts is on the allow-list and whatever it refuses is a RejectedError.
func FuzzSniff(f *testing.F) {
	for _, s := range []string{
		"\x00\x00\x00\x20ftypisom", "\x1a\x45\xdf\xa3", "RIFF\x00\x00\x00\x00AVI ", "\x00\x00\x01\xba",
		"#EXTM3U\nfile:///etc/passwd\n", "ffconcat version 1.0\n", "OggS", "FLV\x01", "hello",
	} {
		f.Add([]byte(s))
	}
	allowed := map[string]bool{"mov": true, "matroska": true, "avi": true, "wav": true, "mpeg": true, "mpegts": true,
		"flv": true, "ogg": true, "asf": true, "mxf": true, "rm": true, "nut": true, "yuv4mpegpipe": true, "ivf": true,
		"mp3": true, "flac": true}
	f.Fuzz(func(t *testing.T, head []byte) {
		d, err := Sniff(head)
		if err != nil {
			if _, ok := errors.AsType[*RejectedError](err); !ok {
				t.Fatalf("error %v is not a RejectedError", err)
			}
			return
		}
		if !allowed[d] {
			t.Fatalf("demuxer %q is not on the allow-list", d)
		}
		if bytes.HasPrefix(bytes.TrimSpace(head), []byte("#EXTM3U")) {
			t.Fatalf("accepted an HLS playlist as %s", d)
		}
	})
}
