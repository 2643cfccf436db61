package api_test

import (
	"bytes"
	"compress/gzip"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

// TestOutputServing holds the output route's answer per kind of file:
// playlists, manifests and captions gzipped to a client that asks, media
// never (and its ranges intact), Cache-Control per kind, nosniff, and a
// 404 no cache keeps.
func TestOutputServing(t *testing.T) {
	t.Parallel()
	f := setup(t)

	// Text files well over gzhttp's 1 KiB floor, so each is worth compressing.
	var pl strings.Builder
	pl.WriteString("#EXTM3U\n#EXT-X-VERSION:7\n#EXT-X-TARGETDURATION:4\n#EXT-X-MAP:URI=\"init-0.m4s\"\n")
	for i := 1; i <= 100; i++ {
		fmt.Fprintf(&pl, "#EXTINF:4.000,\nchunk-0-%05d.m4s\n", i)
	}
	pl.WriteString("#EXT-X-ENDLIST\n")
	var vtt strings.Builder
	vtt.WriteString("WEBVTT\n\n")
	for i := range 60 {
		fmt.Fprintf(&vtt, "00:00:%02d.000 --> 00:00:%02d.000\nsprite.jpg#xywh=%d,0,160,90\n\n", i, i+1, i*160)
	}
	media := make([]byte, 5000)
	for i := range media {
		media[i] = byte(i * 7)
	}
	files := map[string][]byte{
		"master.m3u8":              []byte("#EXTM3U\n" + strings.Repeat("#EXT-X-STREAM-INF:BANDWIDTH=1000000,RESOLUTION=1280x720,CODECS=\"avc1.64001f,mp4a.40.2\"\nmedia_0.m3u8\n", 20)),
		"media_0.m3u8":             []byte(pl.String()),
		"manifest.mpd":             []byte(`<?xml version="1.0"?><MPD>` + strings.Repeat(`<Representation id="0" bandwidth="1000000"/>`, 40) + `</MPD>`),
		"thumbnails.vtt":           []byte(vtt.String()),
		"init-0.m4s":               media[:800],
		"chunk-0-00001.m4s":        media,
		"video.mp4":                media,
		"video.mkv":                media,
		"poster.jpg":               media[:2000],
		"sprite.jpg":               media[:3000],
		"hls/media_1.m3u8":         []byte(pl.String()),
		"hls/chunk-1-00001.m4s":    media,
		"small/tiny_playlist.m3u8": []byte("#EXTM3U\n#EXT-X-ENDLIST\n"),
	}
	dir, err := f.blobs.TempDir("out")
	require.NoError(t, err)
	for name, data := range files {
		p := filepath.Join(dir, filepath.FromSlash(name))
		require.NoError(t, os.MkdirAll(filepath.Dir(p), 0o755))
		require.NoError(t, os.WriteFile(p, data, 0o644))
	}
	require.NoError(t, f.blobs.CommitDir(dir, "jobs/j1/out"))

	// The client must not ask for or undo gzip by itself: each case says.
	client := &http.Client{Transport: &http.Transport{DisableCompression: true}}
	do := func(t *testing.T, method, path string, hdr map[string]string) (*http.Response, []byte) {
		t.Helper()
		req, err := http.NewRequest(method, f.srv.URL+"/api/v1/jobs/j1/outputs/"+path, nil)
		require.NoError(t, err)
		req.Header.Set("Authorization", "Bearer "+adminKey)
		for k, v := range hdr {
			req.Header.Set(k, v)
		}
		resp, err := client.Do(req)
		require.NoError(t, err)
		defer resp.Body.Close()
		b, err := io.ReadAll(resp.Body)
		require.NoError(t, err)
		return resp, b
	}
	const (
		revalidate = "private, no-cache"
		immutable  = "private, max-age=31536000, immutable"
		gz         = "gzip"
	)
	type want struct {
		status       int
		contentType  string
		cacheControl string
		gzip         bool   // body is gzip of the stored bytes
		body         []byte // else the plain body
		contentRange string
		vary         bool
	}
	for _, tc := range []struct {
		name, method, path string
		hdr                map[string]string
		want               want
	}{
		{"master playlist gzipped", "GET", "master.m3u8", map[string]string{"Accept-Encoding": gz},
			want{200, "application/vnd.apple.mpegurl", revalidate, true, nil, "", true}},
		{"master playlist plain without Accept-Encoding", "GET", "master.m3u8", nil,
			want{200, "application/vnd.apple.mpegurl", revalidate, false, files["master.m3u8"], "", true}},
		{"media playlist in a folder gzipped", "GET", "hls/media_1.m3u8", map[string]string{"Accept-Encoding": "br;q=1.0, gzip;q=0.8"},
			want{200, "application/vnd.apple.mpegurl", revalidate, true, nil, "", true}},
		{"gzip refused with q=0", "GET", "media_0.m3u8", map[string]string{"Accept-Encoding": "gzip;q=0"},
			want{200, "application/vnd.apple.mpegurl", revalidate, false, files["media_0.m3u8"], "", true}},
		{"DASH manifest gzipped", "GET", "manifest.mpd", map[string]string{"Accept-Encoding": gz},
			want{200, "application/dash+xml", revalidate, true, nil, "", true}},
		{"thumbnail track gzipped", "GET", "thumbnails.vtt", map[string]string{"Accept-Encoding": gz},
			want{200, "text/vtt; charset=utf-8", revalidate, true, nil, "", true}},
		{"a tiny playlist is not worth gzip", "GET", "small/tiny_playlist.m3u8", map[string]string{"Accept-Encoding": gz},
			want{200, "application/vnd.apple.mpegurl", revalidate, false, files["small/tiny_playlist.m3u8"], "", true}},
		{"a range of a playlist is plain bytes", "GET", "media_0.m3u8", map[string]string{"Accept-Encoding": gz, "Range": "bytes=0-6"},
			want{206, "application/vnd.apple.mpegurl", revalidate, false, []byte("#EXTM3U"), fmt.Sprintf("bytes 0-6/%d", len(files["media_0.m3u8"])), true}},
		{"init segment never gzipped", "GET", "init-0.m4s", map[string]string{"Accept-Encoding": gz},
			want{200, "video/iso.segment", immutable, false, files["init-0.m4s"], "", false}},
		{"media segment never gzipped", "GET", "chunk-0-00001.m4s", map[string]string{"Accept-Encoding": gz},
			want{200, "video/iso.segment", immutable, false, media, "", false}},
		{"range of a segment", "GET", "hls/chunk-1-00001.m4s", map[string]string{"Accept-Encoding": gz, "Range": "bytes=10-19"},
			want{206, "video/iso.segment", immutable, false, media[10:20], "bytes 10-19/5000", false}},
		{"range of an mp4", "GET", "video.mp4", map[string]string{"Accept-Encoding": gz, "Range": "bytes=4990-"},
			want{206, "video/mp4", immutable, false, media[4990:], "bytes 4990-4999/5000", false}},
		{"mkv", "GET", "video.mkv", map[string]string{"Accept-Encoding": gz},
			want{200, "video/x-matroska", immutable, false, media, "", false}},
		{"poster", "GET", "poster.jpg", map[string]string{"Accept-Encoding": gz},
			want{200, "image/jpeg", immutable, false, media[:2000], "", false}},
		{"sprite", "GET", "sprite.jpg", nil,
			want{200, "image/jpeg", immutable, false, media[:3000], "", false}},
		{"HEAD of a playlist", "HEAD", "master.m3u8", map[string]string{"Accept-Encoding": gz},
			want{200, "application/vnd.apple.mpegurl", revalidate, false, []byte{}, "", true}},
		{"HEAD of an mp4", "HEAD", "video.mp4", map[string]string{"Accept-Encoding": gz},
			want{200, "video/mp4", immutable, false, []byte{}, "", false}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			resp, b := do(t, tc.method, tc.path, tc.hdr)
			w := tc.want
			require.Equal(t, w.status, resp.StatusCode)
			require.Equal(t, w.contentType, resp.Header.Get("Content-Type"))
			require.Equal(t, w.cacheControl, resp.Header.Get("Cache-Control"))
			require.Equal(t, "nosniff", resp.Header.Get("X-Content-Type-Options"))
			require.NotEmpty(t, resp.Header.Get("Last-Modified"), "a cache revalidates with it")
			require.Equal(t, w.contentRange, resp.Header.Get("Content-Range"))
			if w.vary {
				require.Contains(t, resp.Header.Values("Vary"), "Accept-Encoding")
			} else {
				require.Empty(t, resp.Header.Values("Vary"))
			}
			if !w.gzip {
				require.Empty(t, resp.Header.Get("Content-Encoding"))
				require.Equal(t, w.body, b)
				if tc.method == "HEAD" {
					require.Equal(t, int64(len(files[tc.path])), resp.ContentLength)
				}
				return
			}
			require.Equal(t, "gzip", resp.Header.Get("Content-Encoding"))
			require.Empty(t, resp.Header.Get("Accept-Ranges"), "ranges of the gzip body are not offered")
			zr, err := gzip.NewReader(bytes.NewReader(b))
			require.NoError(t, err)
			plain, err := io.ReadAll(zr)
			require.NoError(t, err)
			require.Equal(t, files[tc.path], plain)
			require.Less(t, len(b), len(plain))
		})
	}

	t.Run("playlist revalidates", func(t *testing.T) {
		t.Parallel()
		resp, _ := do(t, "GET", "master.m3u8", map[string]string{"Accept-Encoding": gz})
		lm := resp.Header.Get("Last-Modified")
		for _, ae := range []string{gz, ""} {
			resp, b := do(t, "GET", "master.m3u8", map[string]string{"Accept-Encoding": ae, "If-Modified-Since": lm})
			require.Equal(t, http.StatusNotModified, resp.StatusCode, ae)
			require.Empty(t, b)
			require.Equal(t, revalidate, resp.Header.Get("Cache-Control"))
		}
	})

	t.Run("missing output is not cached", func(t *testing.T) {
		t.Parallel()
		for _, p := range []string{"nope.m3u8", "nope.m4s", "hls/nope.mp4"} {
			resp, _ := do(t, "GET", p, map[string]string{"Accept-Encoding": gz})
			require.Equal(t, http.StatusNotFound, resp.StatusCode, p)
			require.Equal(t, "no-store", resp.Header.Get("Cache-Control"), p)
			require.Equal(t, "application/json", resp.Header.Get("Content-Type"), p)
		}
	})

	t.Run("unsatisfiable range is not cached", func(t *testing.T) {
		t.Parallel()
		resp, _ := do(t, "GET", "video.mp4", map[string]string{"Range": "bytes=9000-"})
		require.Equal(t, http.StatusRequestedRangeNotSatisfiable, resp.StatusCode)
		require.Empty(t, resp.Header.Get("Cache-Control"))
	})
}
