package blob_test

import (
	"testing"

	"github.com/herdhq/herd/internal/blob"
)

// TestServingByName covers every name herd writes into a job's outputs.
func TestServingByName(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name, contentType, cacheControl string
		compress                        bool
	}{
		{"master.m3u8", "application/vnd.apple.mpegurl", blob.CacheRevalidate, true},
		{"media_0.m3u8", "application/vnd.apple.mpegurl", blob.CacheRevalidate, true},
		{"media_12.m3u8", "application/vnd.apple.mpegurl", blob.CacheRevalidate, true},
		{"iframe_0.m3u8", "application/vnd.apple.mpegurl", blob.CacheRevalidate, true},
		{"manifest.mpd", "application/dash+xml", blob.CacheRevalidate, true},
		{"thumbnails.vtt", "text/vtt; charset=utf-8", blob.CacheRevalidate, true},
		{"outputs.json", "application/json", blob.CacheRevalidate, true},
		{"init-0.m4s", "video/iso.segment", blob.CacheImmutable, false},
		{"chunk-3-00042.m4s", "video/iso.segment", blob.CacheImmutable, false},
		{"video.mp4", "video/mp4", blob.CacheImmutable, false},
		{"audio.m4a", "audio/mp4", blob.CacheImmutable, false},
		{"video.mkv", "video/x-matroska", blob.CacheImmutable, false},
		{"poster.jpg", "image/jpeg", blob.CacheImmutable, false},
		{"sprite.jpg", "image/jpeg", blob.CacheImmutable, false},
		{"jobs/j1/out/hls/media_1.m3u8", "application/vnd.apple.mpegurl", blob.CacheRevalidate, true},
		// Unknown: served as bytes, revalidated, left alone.
		{"notes.txt", "application/octet-stream", blob.CacheRevalidate, false},
		{"noext", "application/octet-stream", blob.CacheRevalidate, false},
		{"dir.m3u8/seg", "application/octet-stream", blob.CacheRevalidate, false},
	} {
		if got := blob.ContentType(tc.name); got != tc.contentType {
			t.Errorf("ContentType(%q) = %q, want %q", tc.name, got, tc.contentType)
		}
		if got := blob.CacheControl(tc.name); got != tc.cacheControl {
			t.Errorf("CacheControl(%q) = %q, want %q", tc.name, got, tc.cacheControl)
		}
		if got := blob.Compressible(tc.name); got != tc.compress {
			t.Errorf("Compressible(%q) = %v, want %v", tc.name, got, tc.compress)
		}
	}
}
