package media

import (
	"bytes"
	"strings"
	"unicode/utf8"
)

// sniffBytes is how much of a file Sniff wants to see.
const sniffBytes = 64 << 10

// supportedContainers is the list shown to users whose file was refused.
const supportedContainers = "MP4/MOV, Matroska/WebM, AVI, MPEG-PS (VOB/MPG), MPEG-TS (TS/M2TS), FLV, Ogg, ASF/WMV, MXF, RealMedia, NUT, Y4M and IVF"

// Sniff detects the container of a file from its first bytes (ideally
// sniffBytes of them) and returns the ffmpeg demuxer to force for it. It never
// guesses: unknown bytes, text and playlists are refused with a
// *RejectedError. The demuxers it returns are herd's allow-list: none of them
// opens other files or URLs named inside the input.
func Sniff(head []byte) (string, error) {
	if len(head) == 0 {
		return "", reject(CodeEmpty, "the file is empty (0 bytes); it needs a complete copy: upload it again, or replace the file in its folder")
	}
	if d := sniffBinary(head); d != "" {
		return d, nil
	}
	if looksLikeText(head) {
		if looksLikePlaylist(head) {
			return "", reject(CodePlaylist, "the file is a playlist or a list of other files, not a video; upload the video file itself")
		}
		return "", reject(CodeNotMedia, "the file is text, not a video file herd can read; supported containers are %s", supportedContainers)
	}
	return "", reject(CodeNotMedia, "not a video file herd can read; supported containers are %s", supportedContainers)
}

func sniffBinary(b []byte) string {
	has := func(off int, magic string) bool {
		return len(b) >= off+len(magic) && string(b[off:off+len(magic)]) == magic
	}
	switch {
	case isISOBMFF(b):
		return "mov"
	case has(0, "\x1a\x45\xdf\xa3"):
		return "matroska"
	case has(0, "RIFF") && has(8, "AVI "):
		return "avi"
	case has(0, "RIFF") && has(8, "WAVE"):
		return "wav" // audio only: admitted as far as the probe, which refuses it with no_video
	case has(0, "\x00\x00\x01\xba"):
		return "mpeg"
	case isTransportStream(b, 0, 188), isTransportStream(b, 4, 192):
		return "mpegts"
	case has(0, "FLV\x01"):
		return "flv"
	case has(0, "OggS"):
		return "ogg"
	case has(0, "\x30\x26\xb2\x75\x8e\x66\xcf\x11\xa6\xd9\x00\xaa\x00\x62\xce\x6c"):
		return "asf"
	case has(0, "\x06\x0e\x2b\x34\x02\x05\x01\x01\x0d\x01\x02"):
		return "mxf"
	case has(0, ".RMF"):
		return "rm"
	case has(0, "nut/multimedia container\x00"):
		return "nut"
	case has(0, "YUV4MPEG2 "):
		return "yuv4mpegpipe"
	case has(0, "DKIF") && len(b) >= 32:
		return "ivf"
	case has(0, "ID3"):
		return "mp3" // audio only, refused by the probe with no_video
	case has(0, "fLaC"):
		return "flac" // audio only, refused by the probe with no_video
	}
	return ""
}

// isISOBMFF reports whether b starts with an ISO base media (MP4, MOV, 3GP)
// box whose type is one that begins such files and whose size is plausible.
func isISOBMFF(b []byte) bool {
	if len(b) < 8 {
		return false
	}
	switch string(b[4:8]) {
	case "ftyp", "moov", "mdat", "free", "wide", "skip", "pnot", "junk", "uuid":
	default:
		return false
	}
	size := uint32(b[0])<<24 | uint32(b[1])<<16 | uint32(b[2])<<8 | uint32(b[3])
	switch {
	case size == 0 || size == 1: // to the end of the file, or a 64-bit size follows
		return true
	case string(b[4:8]) == "ftyp":
		return size >= 12
	default:
		return size >= 8
	}
}

// isTransportStream reports whether b has the 0x47 sync byte at off and every
// stride bytes after it, for as many packets as b holds (at least three).
func isTransportStream(b []byte, off, stride int) bool {
	n := 0
	for i := off; i < len(b) && n < 32; i += stride {
		if b[i] != 0x47 {
			return false
		}
		n++
	}
	return n >= 3
}

// looksLikeText reports whether b is (a prefix of) UTF-8 text without control
// characters other than whitespace.
func looksLikeText(b []byte) bool {
	b = bytes.TrimPrefix(b, []byte("\xef\xbb\xbf"))
	for len(b) > 0 {
		r, size := utf8.DecodeRune(b)
		if r == utf8.RuneError && size <= 1 {
			// A rune cut off at the end of the sample is still text.
			return len(b) < utf8.UTFMax && !utf8.FullRune(b)
		}
		if r < 0x20 && r != '\n' && r != '\r' && r != '\t' && r != '\f' {
			return false
		}
		if r == 0x7f {
			return false
		}
		b = b[size:]
	}
	return true
}

// looksLikePlaylist reports whether text names other files or URLs, as HLS,
// ffconcat, PLS, ASX, SMIL, DASH manifests and plain M3U lists do.
func looksLikePlaylist(b []byte) bool {
	s := strings.TrimPrefix(string(b), "\ufeff")
	trimmed := strings.ToLower(strings.TrimSpace(s))
	for _, p := range []string{"#extm3u", "#ext", "ffconcat", "[playlist]", "<asx", "<smil", "<mpd", "<?xml", "<!doctype smil"} {
		if strings.HasPrefix(trimmed, p) {
			return true
		}
	}
	for line := range strings.Lines(s) {
		l := strings.ToLower(strings.TrimSpace(line))
		if strings.HasPrefix(l, "file ") || strings.HasPrefix(l, "file:") || strings.HasPrefix(l, "/") ||
			strings.Contains(l, "://") || strings.HasPrefix(l, "#ext") {
			return true
		}
	}
	return false
}
