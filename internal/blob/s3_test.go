package blob_test

import (
	"bytes"
	"context"
	"crypto/rand"
	"errors"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/minio/minio-go/v7"

	"github.com/herdhq/herd/internal/blob"
	"github.com/herdhq/herd/internal/blob/s3test"
)

func TestMain(m *testing.M) { s3test.Main(m) }

func openBucket(t *testing.T, partSize int64) (*blob.S3, s3test.Bucket) {
	t.Helper()
	b := s3test.NewBucket(t)
	s, err := blob.OpenS3(context.Background(), blob.S3Config{
		URL: "s3://" + b.Name + "/herd/pfx", Endpoint: b.Endpoint, PartSize: partSize,
		AccessKey: s3test.AccessKey, SecretKey: s3test.SecretKey,
	}, t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	return s, b
}

func TestParseS3URL(t *testing.T) {
	for raw, want := range map[string]string{
		"s3://media":        "media|",
		"s3://media/":       "media|",
		"s3://media/a/b":    "media|a/b/",
		"s3://media/a/b/":   "media|a/b/",
		"http://media/a":    "error",
		"s3:///a":           "error",
		"s3://media/a/../b": "error",
		"s3://media/a?x=1":  "error",
		"s3://media/.tmp/x": "error",
		"media/a":           "error",
	} {
		bucket, prefix, err := blob.ParseS3URL(raw)
		got := bucket + "|" + prefix
		if err != nil {
			got = "error"
		}
		if got != want {
			t.Errorf("ParseS3URL(%q) = %q, want %q (err %v)", raw, got, want, err)
		}
	}
}

func TestS3RefusesMissingBucketAndBadCredentials(t *testing.T) {
	b := s3test.NewBucket(t)
	_, err := blob.OpenS3(context.Background(), blob.S3Config{URL: "s3://no-such-bucket", Endpoint: b.Endpoint, AccessKey: s3test.AccessKey, SecretKey: s3test.SecretKey}, t.TempDir())
	if err == nil || !strings.Contains(err.Error(), "does not exist") {
		t.Fatalf("missing bucket: %v", err)
	}
	_, err = blob.OpenS3(context.Background(), blob.S3Config{URL: "s3://" + b.Name, Endpoint: b.Endpoint, AccessKey: s3test.AccessKey, SecretKey: "wrong-secret-key"}, t.TempDir())
	if err == nil || !strings.Contains(err.Error(), "credentials") {
		t.Fatalf("wrong secret: %v", err)
	}
}

func TestS3StoresUnderItsPrefix(t *testing.T) {
	ctx := context.Background()
	s, b := openBucket(t, 0)

	w, err := s.Create()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := io.WriteString(w, "source bytes"); err != nil {
		t.Fatal(err)
	}
	if has, _ := s.Has(ctx, "sources/x"); has {
		t.Fatal("visible before commit")
	}
	if err := w.Commit("sources/x"); err != nil {
		t.Fatal(err)
	}
	if has, err := s.Has(ctx, "sources/x"); !has || err != nil {
		t.Fatalf("after commit: %v %v", has, err)
	}
	// The object sits under the configured prefix, nowhere else.
	if _, err := b.Client.StatObject(ctx, b.Name, "herd/pfx/sources/x", minioStat); err != nil {
		t.Fatalf("object not under the prefix: %v", err)
	}

	dir := t.TempDir()
	for _, f := range []string{"a/master.m3u8", "a/720p/seg1.m4s", "poster.jpg"} {
		p := filepath.Join(dir, f)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte("data of "+f), 0o644); err != nil {
			t.Fatal(err)
		}
		if err := s.PutFile(ctx, "jobs/j1/stage/"+f, p); err != nil {
			t.Fatal(err)
		}
	}
	list, err := s.List(ctx, "jobs/j1/stage")
	if err != nil {
		t.Fatal(err)
	}
	var keys []string
	for _, i := range list {
		keys = append(keys, i.Key)
	}
	sort.Strings(keys)
	if strings.Join(keys, ",") != "a/720p/seg1.m4s,a/master.m3u8,poster.jpg" {
		t.Fatalf("list = %v", keys)
	}
	if err := s.Copy(ctx, "jobs/j1/stage/a/master.m3u8", "jobs/j1/out/master.m3u8"); err != nil {
		t.Fatal(err)
	}
	o, err := s.Open(ctx, "jobs/j1/out/master.m3u8")
	if err != nil {
		t.Fatal(err)
	}
	got, _ := io.ReadAll(o)
	o.Close()
	if string(got) != "data of a/master.m3u8" {
		t.Fatalf("copy has %q", got)
	}
	info, err := b.Client.StatObject(ctx, b.Name, "herd/pfx/jobs/j1/out/master.m3u8", minioStat)
	if err != nil || info.ContentType != "application/vnd.apple.mpegurl" {
		t.Fatalf("content type %q, %v", info.ContentType, err)
	}
	// A CDN in front of the bucket caches as herd's output route does: the
	// copy into the outputs (finalize), a put and a put of a small blob
	// each carry the Cache-Control of the name.
	if err := s.Copy(ctx, "jobs/j1/stage/a/720p/seg1.m4s", "jobs/j1/out/720p/seg1.m4s"); err != nil {
		t.Fatal(err)
	}
	if err := s.PutBytes(ctx, "jobs/j1/out/manifest.mpd", []byte("<MPD/>")); err != nil {
		t.Fatal(err)
	}
	for key, want := range map[string]string{
		"jobs/j1/out/master.m3u8":     blob.CacheRevalidate,
		"jobs/j1/out/720p/seg1.m4s":   blob.CacheImmutable,
		"jobs/j1/out/manifest.mpd":    blob.CacheRevalidate,
		"jobs/j1/stage/poster.jpg":    blob.CacheImmutable,
		"jobs/j1/stage/a/master.m3u8": blob.CacheRevalidate,
	} {
		info, err := b.Client.StatObject(ctx, b.Name, "herd/pfx/"+key, minioStat)
		if err != nil {
			t.Fatal(err)
		}
		if got := info.Metadata.Get("Cache-Control"); got != want {
			t.Errorf("%s: Cache-Control %q, want %q", key, got, want)
		}
	}
	if err := s.RemoveAll(ctx, "jobs/j1/stage"); err != nil {
		t.Fatal(err)
	}
	if list, _ := s.List(ctx, "jobs/j1/stage"); len(list) != 0 {
		t.Fatalf("left after RemoveAll: %v", list)
	}
	if _, err := s.Open(ctx, "jobs/j1/stage/poster.jpg"); !isNotFound(err) {
		t.Fatalf("open removed: %v", err)
	}
	if _, err := s.Has(ctx, "../escape"); err == nil {
		t.Fatal("a key outside the store was accepted")
	}
}

func TestS3PresignedGetNeedsNoCredentials(t *testing.T) {
	ctx := context.Background()
	s, _ := openBucket(t, 0)
	if err := s.PutBytes(ctx, "sources/abc", []byte("0123456789")); err != nil {
		t.Fatal(err)
	}
	u, err := s.PresignGet(ctx, "sources/abc", time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	req, _ := http.NewRequest("GET", u, nil)
	req.Header.Set("Range", "bytes=4-")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusPartialContent || string(body) != "456789" {
		t.Fatalf("ranged presigned GET: %d %q", resp.StatusCode, body)
	}
	// A tampered URL is refused.
	tampered := strings.Replace(u, "sources/abc", "sources/abd", 1)
	if tampered == u {
		t.Fatalf("unexpected presigned URL %s", u)
	}
	resp, err = http.Get(tampered)
	if err == nil {
		resp.Body.Close()
	}
	if err != nil || resp.StatusCode != http.StatusForbidden && resp.StatusCode != http.StatusNotFound {
		t.Fatalf("tampered URL answered %v %v", resp.StatusCode, err)
	}
}

func TestS3DirectUploadSingleAndMultipart(t *testing.T) {
	ctx := context.Background()
	const part = 5 << 20
	s, b := openBucket(t, part)
	for _, size := range []int64{1234, 2*part + 777} {
		data := make([]byte, size)
		rand.Read(data)
		key := "jobs/j/stage/encode/x.mp4"
		up, err := s.PlanUpload(ctx, key, size, time.Minute)
		if err != nil {
			t.Fatal(err)
		}
		wantParts := int((size + part - 1) / part)
		if len(up.Parts) != wantParts || (wantParts > 1) != (up.UploadID != "") {
			t.Fatalf("size %d: %d parts, upload id %q", size, len(up.Parts), up.UploadID)
		}
		// Completing before every part is in is refused.
		if wantParts > 1 {
			if err := s.FinishUpload(ctx, key, up, size); err == nil {
				t.Fatal("finished an upload with no parts sent")
			}
		}
		// A body longer or shorter than the part declared is refused by
		// the store itself: the URL signs its length.
		for _, body := range [][]byte{append(slices.Clone(data[:up.Parts[0].Size]), 'x'), data[:up.Parts[0].Size-1]} {
			req, _ := http.NewRequest("PUT", up.Parts[0].URL, bytes.NewReader(body))
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			if resp.StatusCode != http.StatusForbidden {
				t.Fatalf("size %d: a %d-byte body for a %d-byte part: %s", size, len(body), up.Parts[0].Size, resp.Status)
			}
		}
		for i, p := range up.Parts {
			req, _ := http.NewRequest("PUT", p.URL, bytes.NewReader(data[p.Offset:p.Offset+p.Size]))
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			if resp.StatusCode != http.StatusOK {
				t.Fatalf("part %d: %s", p.Number, resp.Status)
			}
			up.Parts[i].ETag = resp.Header.Get("ETag")
		}
		if err := s.FinishUpload(ctx, key, up, size+1); err == nil {
			t.Fatal("a wrong size was accepted")
		}
		if err := s.FinishUpload(ctx, key, up, size); err != nil {
			t.Fatal(err)
		}
		// Asked again (the first answer was lost): still fine.
		if err := s.FinishUpload(ctx, key, up, size); err != nil {
			t.Fatalf("finish again: %v", err)
		}
		o, err := s.Open(ctx, key)
		if err != nil {
			t.Fatal(err)
		}
		got, _ := io.ReadAll(o)
		o.Close()
		if !bytes.Equal(got, data) {
			t.Fatalf("size %d: stored bytes differ", size)
		}
		// A multipart upload starts with the name's metadata (a single
		// presigned PUT carries none: finalize's copy sets it).
		if wantParts > 1 {
			info, err := b.Client.StatObject(ctx, b.Name, "herd/pfx/"+key, minioStat)
			if err != nil || info.ContentType != "video/mp4" || info.Metadata.Get("Cache-Control") != blob.CacheImmutable {
				t.Fatalf("multipart object: %q %q %v", info.ContentType, info.Metadata.Get("Cache-Control"), err)
			}
		}
	}
}

var minioStat = minio.StatObjectOptions{}

func isNotFound(err error) bool { return errors.Is(err, blob.ErrNotFound) }
