package remote_test

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"sync/atomic"
	"testing"

	"github.com/herdhq/herd/internal/blob"
	"github.com/herdhq/herd/internal/blob/s3test"
	"github.com/herdhq/herd/internal/ingest"
	"github.com/herdhq/herd/internal/job"
	"github.com/herdhq/herd/internal/pipeline"
	"github.com/herdhq/herd/internal/store"
)

func TestMain(m *testing.M) { s3test.Main(m) }

// countBytes counts the body bytes a handler reads and writes.
func countBytes(h http.Handler, n *atomic.Int64) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		r.Body = &countingReader{r: r.Body, n: n}
		h.ServeHTTP(&countingWriter{ResponseWriter: w, n: n}, r)
	})
}

type countingReader struct {
	r io.ReadCloser
	n *atomic.Int64
}

func (c *countingReader) Read(p []byte) (int, error) {
	k, err := c.r.Read(p)
	c.n.Add(int64(k))
	return k, err
}
func (c *countingReader) Close() error { return c.r.Close() }

type countingWriter struct {
	http.ResponseWriter
	n *atomic.Int64
}

func (c *countingWriter) Write(p []byte) (int, error) {
	k, err := c.ResponseWriter.Write(p)
	c.n.Add(int64(k))
	return k, err
}

func (c *countingWriter) Flush() {
	if f, ok := c.ResponseWriter.(http.Flusher); ok {
		f.Flush()
	}
}

const partSize = 5 << 20 // S3's smallest

func onS3(tb testing.TB, st store.Store, blobs *blob.Local, log *slog.Logger) (pipeline.Storage, ingest.Blobs) {
	b := s3test.NewBucket(tb)
	tmp, err := blobs.TempDir("s3")
	if err != nil {
		tb.Fatal(err)
	}
	s3, err := blob.OpenS3(context.Background(), blob.S3Config{URL: "s3://" + b.Name + "/herd", Endpoint: b.Endpoint, PartSize: partSize,
		AccessKey: s3test.AccessKey, SecretKey: s3test.SecretKey}, tmp)
	if err != nil {
		tb.Fatal(err)
	}
	cache, err := blob.NewCache(tb.TempDir(), 0)
	if err != nil {
		tb.Fatal(err)
	}
	return &pipeline.ObjectFiles{Blobs: s3, Cache: cache, Temp: blobs, Log: log, Tasks: st.Tasks}, s3
}

func randomBytes(n int) []byte {
	b := make([]byte, n)
	rand.Read(b)
	return b
}

// TestFilesTravel runs the worker side of every file transfer against a real
// server: source download, staged uploads (one file in several parts), staged
// downloads, a stale attempt refused, publish. On the local disk the bytes
// pass through the server; on S3 they go straight to the bucket.
func TestFilesTravel(t *testing.T) {
	for name, storage := range map[string]storageFunc{"local": nil, "s3": onS3} {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			ctx := context.Background()
			s := newSetupWith(t, storage)
			src := randomBytes(3<<20 + 17)
			if _, _, err := s.sub.Upload(ctx, "movie.mkv", "mp4-library", ingest.Options{}, bytes.NewReader(src)); err != nil {
				t.Fatal(err)
			}
			claim := func(kind job.Kind) *job.Claimed {
				t.Helper()
				cl, err := s.rc.Claim(ctx, "worker/bench/0", "bench", []string{"h264"})
				if err != nil || cl == nil || cl.Task.Kind != kind {
					t.Fatalf("claim %s: got %v, %v", kind, cl != nil && cl.Task.Kind == kind, err)
				}
				return cl
			}
			// What each kind reports: the server takes only these fields.
			reports := map[job.Kind]string{
				job.KindProbe: `{"info": {"demuxer": "matroska", "format_name": "matroska,webm", "duration": 2, "size": 3145745, "bit_rate": 0,
					"video": {"index": 0, "codec": "h264", "width": 1280, "height": 720, "fps": 25}}}`,
				job.KindVerify: `[{"name": "master", "kind": "hls", "path": "master.m3u8"}, {"name": "720p", "kind": "hls", "path": "720p/video.mp4"}]`,
			}
			complete := func(cl *job.Claimed) {
				t.Helper()
				var data json.RawMessage
				if r, ok := reports[cl.Task.Kind]; ok {
					data = json.RawMessage(r)
				}
				if err := s.rc.Complete(ctx, cl.Lease, job.Result{Data: data}); err != nil {
					t.Fatal(err)
				}
			}
			cl := claim(job.KindProbe)
			s.through.Store(0)
			p, err := s.rc.Source(ctx, cl)
			if err != nil {
				t.Fatal(err)
			}
			if got, _ := os.ReadFile(p); !bytes.Equal(got, src) {
				t.Fatal("the downloaded source differs")
			}
			complete(cl)

			big, small := randomBytes(2*partSize+1234), []byte("#EXTM3U\n")
			stage := func(dir string) {
				for _, err := range []error{
					os.MkdirAll(filepath.Join(dir, "720p"), 0o755),
					os.WriteFile(filepath.Join(dir, "720p", "video.mp4"), big, 0o644),
					os.WriteFile(filepath.Join(dir, "master.m3u8"), small, 0o644),
				} {
					if err != nil {
						t.Fatal(err)
					}
				}
			}
			cl = claim(job.KindEncode)
			// An attempt that lost its lease cannot upload.
			stale := *cl
			stale.Lease.Fence--
			dir2 := t.TempDir()
			if err := os.WriteFile(filepath.Join(dir2, "master.m3u8"), []byte("late"), 0o644); err != nil {
				t.Fatal(err)
			}
			if err := s.rc.Commit(ctx, &stale, pipeline.StepEncode, dir2); !errors.Is(err, job.ErrLeaseLost) {
				t.Fatalf("a stale attempt's upload: %v", err)
			}
			dir := t.TempDir()
			stage(dir)
			if err := s.rc.Commit(ctx, cl, pipeline.StepEncode, dir); err != nil {
				t.Fatal(err)
			}
			complete(cl)

			cl = claim(job.KindThumbnails)
			dir = t.TempDir()
			if err := os.WriteFile(filepath.Join(dir, "poster.jpg"), []byte("jpeg"), 0o644); err != nil {
				t.Fatal(err)
			}
			if err := s.rc.Commit(ctx, cl, pipeline.StepThumbs, dir); err != nil {
				t.Fatal(err)
			}
			complete(cl)

			cl = claim(job.KindVerify)
			_, files, ok, err := s.files.StagedFiles(ctx, cl.Job.ID, pipeline.StepEncode)
			if err != nil || !ok || len(files) != 2 {
				t.Fatalf("staged: %v %v %v", files, ok, err)
			}
			back := t.TempDir()
			if ok, err := s.rc.Staged(ctx, cl, pipeline.StepEncode, back); err != nil || !ok {
				t.Fatalf("download staged: %v %v", ok, err)
			}
			if got, _ := os.ReadFile(filepath.Join(back, "720p", "video.mp4")); !bytes.Equal(got, big) {
				t.Fatal("the staged file came back different")
			}
			if got, _ := os.ReadFile(filepath.Join(back, "master.m3u8")); !bytes.Equal(got, small) {
				t.Fatal("the staged playlist came back different")
			}
			if ok, err := s.rc.Staged(ctx, cl, pipeline.StepThumbs, back); err != nil || !ok {
				t.Fatalf("download thumbnails: %v %v", ok, err)
			}
			if ok, err := s.rc.Staged(ctx, cl, pipeline.StepVerified, t.TempDir()); err != nil || ok {
				t.Fatalf("a step that staged nothing: %v %v", ok, err)
			}
			dir = t.TempDir()
			stage(dir)
			if err := s.rc.Commit(ctx, cl, pipeline.StepVerified, dir); err != nil {
				t.Fatal(err)
			}
			complete(cl)

			moved := s.through.Load()
			t.Logf("%d bytes of requests and answers passed through the server", moved)
			media := int64(len(src) + 3*len(big))
			switch name {
			case "s3":
				if moved > media/20 {
					t.Fatalf("%d bytes passed through the server for %d bytes of media: they should go straight to the bucket", moved, media)
				}
			case "local":
				if moved < media {
					t.Fatalf("only %d bytes passed through the server for %d bytes of media (the counter is broken?)", moved, media)
				}
			}

			cl = claim(job.KindFinalize)
			if err := s.rc.Finalize(ctx, cl); err != nil {
				t.Fatal(err)
			}
			for path, want := range map[string][]byte{"master.m3u8": small, "720p/video.mp4": big} {
				o, err := s.files.Open(ctx, pipeline.OutputsKey(cl.Job.ID)+"/"+path)
				if err != nil {
					t.Fatal(err)
				}
				got, _ := io.ReadAll(o)
				o.Close()
				if !bytes.Equal(got, want) {
					t.Fatalf("published %s differs", path)
				}
			}
			if _, _, ok, _ := s.files.StagedFiles(ctx, cl.Job.ID, pipeline.StepVerified); ok {
				t.Fatal("the staged files remain after publishing")
			}
			// Publishing again (the answer was lost) finds the outputs in place.
			if err := s.rc.Finalize(ctx, cl); err != nil {
				t.Fatalf("publish again: %v", err)
			}
		})
	}
}
