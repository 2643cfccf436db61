package main_test

import (
	"context"
	"net/http"
	"os"
	"path"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
	"github.com/minio/minio-go/v7"
	"github.com/stretchr/testify/require"

	"github.com/herdhq/herd/internal/blob/s3test"
	"github.com/herdhq/herd/internal/testenv"
)

func listBucket(t *testing.T, b s3test.Bucket, prefix string) map[string]minio.ObjectInfo {
	t.Helper()
	out := map[string]minio.ObjectInfo{}
	for o := range b.Client.ListObjects(context.Background(), b.Name, minio.ListObjectsOptions{Prefix: prefix, Recursive: true}) {
		require.NoError(t, o.Err)
		out[strings.TrimPrefix(o.Key, prefix)] = o
	}
	return out
}

// TestServeOnS3: with --blob s3://, sources and outputs live in the bucket
// (credentials and endpoint from the AWS environment variables), nothing in
// the data folder, and the API serves the outputs from there.
func TestServeOnS3(t *testing.T) {
	t.Parallel()
	b := s3test.NewBucket(t)
	dir := t.TempDir()
	s := startServerEnv(t, filepath.Join(dir, "data"), b.Env(), "--blob", "s3://"+b.Name+"/herd", "--link-presign")
	src := clip(t, dir, 3, "320x180")
	vtt := filepath.Join(dir, "clip.en.vtt")
	require.NoError(t, os.WriteFile(vtt, []byte("WEBVTT\n\n00:00.500 --> 00:01.500\nHello.\n"), 0o644))
	stdout, stderr, code := s.herd("submit", src, "--profile", "web-hls", "--subtitle", "en="+vtt, "--wait")
	require.Equal(t, 0, code, stderr)
	j := s.job(strings.TrimSpace(stdout))
	require.Equal(t, "succeeded", j.State)
	require.Len(t, j.Source.Subtitles, 1)
	require.Contains(t, listBucket(t, b, "herd/subtitles/"), j.Source.Subtitles[0].ID, "the subtitle file is in the bucket")

	out := listBucket(t, b, "herd/jobs/"+j.ID+"/out/")
	require.Contains(t, out, "master.m3u8")
	require.NotEmpty(t, j.Outputs)
	for _, o := range j.Outputs {
		name := o.URL[strings.Index(o.URL, "/outputs/")+len("/outputs/"):]
		require.Contains(t, out, name, "every output is in the bucket")
	}
	require.Empty(t, listBucket(t, b, "herd/jobs/"+j.ID+"/stage"), "staged files are removed once published")
	require.Contains(t, listBucket(t, b, "herd/sources/"), j.Source.SHA256)
	info, err := b.Client.StatObject(context.Background(), b.Name, "herd/jobs/"+j.ID+"/out/master.m3u8", minio.StatObjectOptions{})
	require.NoError(t, err)
	require.Equal(t, "application/vnd.apple.mpegurl", info.ContentType, "a CDN can serve the bucket as it is")
	_, err = os.Stat(filepath.Join(s.data, "blobs", "jobs"))
	require.True(t, os.IsNotExist(err), "no job files on the server's disk")

	resp, body := s.get("/api/v1/jobs/"+j.ID+"/outputs/master.m3u8", nil)
	require.Equal(t, 200, resp.StatusCode)
	require.Contains(t, string(body), "#EXT-X-STREAM-INF")
	require.Contains(t, string(body), `TYPE=SUBTITLES,GROUP-ID="subs",NAME="English",LANGUAGE="en"`)
	for _, o := range j.Outputs {
		if o.Size > 200 {
			resp, body := s.get(o.URL, map[string]string{"Range": "bytes=100-199"})
			require.Equal(t, 206, resp.StatusCode, o.URL)
			require.Len(t, body, 100)
			break
		}
	}
	resp, _ = s.get("/api/v1/jobs/"+j.ID+"/outputs/nope.m3u8", nil)
	require.Equal(t, 404, resp.StatusCode)

	// --link-presign: a playback link's media comes from the bucket. Its
	// media playlists name presigned URLs, and its media files redirect to
	// one; the master playlist and the DASH manifest come from the server.
	stdout, stderr, code = s.herd("share", j.ID)
	require.Equal(t, 0, code, stderr)
	link := strings.TrimSpace(stdout)
	resp, master := rawRead(t, link+"master.m3u8")
	require.Equal(t, 200, resp.StatusCode)
	require.NotContains(t, master, "X-Amz-Signature")
	rung := regexp.MustCompile(`(?m)^[^#\s]\S*\.m3u8$`).FindString(master)
	require.NotEmpty(t, rung, master)
	resp, media := rawRead(t, link+rung)
	require.Equal(t, 200, resp.StatusCode)
	require.Equal(t, "private, no-store", resp.Header.Get("Cache-Control"), "its URLs expire")
	segs := regexp.MustCompile(`(?m)^http\S+X-Amz-Signature=\S+$`).FindAllString(media, -1)
	require.NotEmpty(t, segs, media)
	require.Regexp(t, `#EXT-X-MAP:URI="http[^"]+X-Amz-Signature=`, media)
	resp, segBody := rawRead(t, segs[0])
	require.Equal(t, 200, resp.StatusCode, "a presigned segment reads from the bucket with no key")
	require.NotEmpty(t, segBody)
	seg := segs[0][strings.LastIndex(segs[0][:strings.Index(segs[0], "?")], "/")+1 : strings.Index(segs[0], "?")]
	if d := path.Dir(rung); d != "." {
		seg = d + "/" + seg
	}
	resp = rawGet(t, link+seg, nil)
	require.Equal(t, http.StatusTemporaryRedirect, resp.StatusCode, "a media file redirects to the bucket")
	require.Contains(t, resp.Header.Get("Location"), "X-Amz-Signature=")
	resp, mpd := rawRead(t, link+"manifest.mpd")
	require.Equal(t, 200, resp.StatusCode)
	require.NotContains(t, mpd, "X-Amz-Signature")

	// The link's page plays from the bucket: its policy lets the player
	// fetch the presigned segments.
	resp = rawGet(t, link, nil)
	require.Contains(t, resp.Header.Get("Content-Security-Policy"), "connect-src 'self' http")
	ctx := browser(t)
	require.NoError(t, chromedp.Run(ctx, chromedp.Navigate(link)))
	testenv.WaitJS(t, ctx, "the player", `window.herdEmbed && herdEmbed.video.readyState >= 1`, 20*time.Second)
	require.NoError(t, chromedp.Run(ctx, chromedp.Evaluate(`herdEmbed.video.muted = true; herdEmbed.video.play()`, nil)))
	testenv.WaitJS(t, ctx, "playback from the bucket", `herdEmbed.video.currentTime > 1`, 20*time.Second)
}

// TestRemoteWorkerOnS3: a remote worker with no storage credentials moves
// media straight to and from the bucket through presigned URLs; only the
// API's small JSON passes through the server (measured with a proxy in front
// of it that counts bytes).
func TestRemoteWorkerOnS3(t *testing.T) {
	t.Parallel()
	b := s3test.NewBucket(t)
	dir := t.TempDir()
	s := startServerEnv(t, filepath.Join(dir, "data"), b.Env(), "--blob", "s3://"+b.Name, "--local-workers", "0")
	p := startProxy(t, strings.TrimPrefix(s.url, "http://"))
	direct := s.url
	s.url = "http://" + p.addr()
	s.startWorker(t, "box-s3")
	s.url = direct

	src := clip(t, dir, 6, "1280x720")
	st, err := os.Stat(src)
	require.NoError(t, err)
	before := p.moved.Load()
	stdout, stderr, code := s.herd("submit", src, "--profile", "mp4-library", "--wait")
	require.Equal(t, 0, code, stderr)
	j := s.job(strings.TrimSpace(stdout))
	require.Equal(t, "succeeded", j.State)
	for _, task := range j.Tasks {
		require.Equal(t, "box-s3", task.Worker)
	}
	moved := p.moved.Load() - before
	media := st.Size()
	for _, o := range j.Outputs {
		media += 2 * o.Size // uploaded after encoding, downloaded again to verify
	}
	t.Logf("worker <-> server: %d bytes for %d bytes of media", moved, media)
	require.Less(t, moved, st.Size()/4, "media bytes passed through the server")
	require.NotEmpty(t, listBucket(t, b, "jobs/"+j.ID+"/out/"))
}
