package blob

import "path"

// How a stored file is served, by its name: the output route and the
// bucket's object metadata take their Content-Type and Cache-Control from
// here, so a client of herd and a CDN in front of the bucket see the same.

// Cache policies. Outputs live under jobs/<job id>/out/, a job id is never
// reused, and the only writer of a job's outputs is its finalize step, which
// moves or copies the verified set into place. A succeeded job cannot be
// retried, and retrying a failed or canceled one keeps the steps that
// succeeded, so the verified set it finalizes is the same bytes. A name under
// a job's outputs therefore never changes content: media can be cached for
// good. Playlists and manifests are small and are what a player re-reads:
// a cache revalidates them (Last-Modified) rather than trusting them for a
// year, which costs a 304 and keeps a client safe should that reasoning ever
// stop holding for them.
// Outputs are behind a key, so neither may sit in a shared cache.
const (
	CacheImmutable  = "private, max-age=31536000, immutable"
	CacheRevalidate = "private, no-cache"
)

type fileType struct {
	contentType string
	text        bool // a playlist, manifest or other text: compress it, and revalidate it
}

var fileTypes = map[string]fileType{
	".m3u8": {"application/vnd.apple.mpegurl", true},
	".mpd":  {"application/dash+xml", true},
	".vtt":  {"text/vtt; charset=utf-8", true},
	".json": {"application/json", true},
	".m4s":  {"video/iso.segment", false},
	".mp4":  {"video/mp4", false},
	".m4a":  {"audio/mp4", false},
	".mkv":  {"video/x-matroska", false},
	".jpg":  {"image/jpeg", false},
}

// ContentType is the MIME type herd serves a stored file with.
func ContentType(name string) string {
	if t, ok := fileTypes[path.Ext(name)]; ok {
		return t.contentType
	}
	return "application/octet-stream"
}

// CacheControl is the Cache-Control herd serves a job's output with:
// CacheImmutable for media (segments, whole files, images), CacheRevalidate
// for playlists, manifests and anything it does not know.
func CacheControl(name string) string {
	if t, ok := fileTypes[path.Ext(name)]; ok && !t.text {
		return CacheImmutable
	}
	return CacheRevalidate
}

// Compressible reports whether a file is text worth compressing on the way
// to a client. Media never is: it is compressed already, and a player reads
// it in byte ranges.
func Compressible(name string) bool {
	return fileTypes[path.Ext(name)].text
}
