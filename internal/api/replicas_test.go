package api_test

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/minio/minio-go/v7"
	"github.com/stretchr/testify/require"

	"github.com/herdhq/herd/internal/api"
	"github.com/herdhq/herd/internal/apikey"
	"github.com/herdhq/herd/internal/blob"
	"github.com/herdhq/herd/internal/blob/s3test"
	"github.com/herdhq/herd/internal/ingest"
	"github.com/herdhq/herd/internal/pipeline"
	"github.com/herdhq/herd/internal/profile"
	"github.com/herdhq/herd/internal/queue"
	"github.com/herdhq/herd/internal/store"
	"github.com/herdhq/herd/internal/store/pgtest"
	"github.com/herdhq/herd/internal/store/sqlstore"
	"github.com/herdhq/herd/internal/testenv"
)

func TestMain(m *testing.M) {
	code := m.Run()
	pgtest.Stop()
	s3test.Stop()
	os.Exit(code)
}

// replica is one server replica of several on one PostgreSQL database and
// one bucket, as the ha overlay runs them.
type replica struct {
	api *api.Server
	srv *httptest.Server
}

func newReplica(t *testing.T, st *sqlstore.Store, dsn string, b *blob.S3) replica {
	t.Helper()
	dir := t.TempDir()
	locks, err := sqlstore.OpenPostgresPool(dsn, api.UploadLockConns)
	require.NoError(t, err)
	t.Cleanup(func() { _ = locks.Close() })
	local, err := blob.NewLocal(filepath.Join(dir, "blobs"))
	require.NoError(t, err)
	sig := &queue.Signal{}
	profiles := profile.Builtin()
	sub := ingest.New(st, b, profiles, sig, ingest.Config{MaxUpload: 64 << 20})
	s := api.New(api.Deps{Store: st, Blobs: local, Profiles: profiles, Submit: sub, Kick: sig,
		Files:  &pipeline.LocalFiles{Blobs: local},
		Queue:  queue.New(st, sig, queue.Config{LeaseTTL: time.Minute, Backoff: time.Hour}),
		Log:    slog.New(slog.NewTextHandler(io.Discard, nil)),
		Checks: []api.Check{{Name: "database", Fn: st.Ping}}})
	require.NoError(t, s.EnableUploads(api.UploadsConfig{Dir: filepath.Join(dir, "uploads"), Bucket: b, Postgres: locks}))
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { _ = s.TendUploads(ctx); close(done) }()
	srv := httptest.NewServer(s.Handler())
	t.Cleanup(func() { srv.Close(); cancel(); <-done })
	return replica{api: s, srv: srv}
}

func (r replica) tus(t *testing.T, method, path string, hdr map[string]string, body []byte) *http.Response {
	t.Helper()
	return testenv.Tus(t, adminKey, method, r.srv.URL+path, hdr, body)
}

// With S3 storage and PostgreSQL, an upload started on one replica goes on
// on another (no sticky sessions): its parts are in the bucket, its hash's
// state beside them, its lock in the database. The finished upload becomes
// the job's source by a copy inside the bucket, hashed as it arrived; a
// replica that did not finish it still names the job to a late HEAD.
// bucketFarm is a PostgreSQL database with the admin key and a bucket,
// under the prefix herd, for server replicas.
func bucketFarm(t *testing.T) (st *sqlstore.Store, dsn string, b *blob.S3, bucket s3test.Bucket) {
	ctx := t.Context()
	dsn = pgtest.DSN(t)
	st, err := sqlstore.OpenPostgres(ctx, dsn)
	require.NoError(t, err)
	t.Cleanup(func() { _ = st.Close() })
	require.NoError(t, st.CreateKey(ctx, store.Key{ID: "k1", Kind: "admin", Hash: apikey.Hash(adminKey), CreatedAt: time.Now()}))
	bucket = s3test.NewBucket(t)
	b, err = blob.OpenS3(ctx, blob.S3Config{URL: "s3://" + bucket.Name + "/herd", Endpoint: bucket.Endpoint,
		AccessKey: s3test.AccessKey, SecretKey: s3test.SecretKey}, t.TempDir())
	require.NoError(t, err)
	return st, dsn, b, bucket
}

// uploadObjects lists what is under the bucket's uploads folder.
func uploadObjects(t *testing.T, bucket s3test.Bucket) []string {
	var left []string
	for obj := range bucket.Client.ListObjects(t.Context(), bucket.Name, minio.ListObjectsOptions{Prefix: "herd/uploads/", Recursive: true}) {
		require.NoError(t, obj.Err)
		left = append(left, strings.TrimPrefix(obj.Key, "herd/uploads/"))
	}
	return left
}

func TestUploadMovesBetweenReplicas(t *testing.T) {
	ctx := t.Context()
	st, dsn, b, bucket := bucketFarm(t)
	a, z := newReplica(t, st, dsn, b), newReplica(t, st, dsn, b)

	body := make([]byte, 13<<20+12345) // two full parts and an incomplete one
	_, _ = rand.Read(body)
	sum := sha256.Sum256(body)
	resp := a.tus(t, "POST", "/api/v1/uploads", map[string]string{"Upload-Length": fmt.Sprint(len(body)), "Upload-Metadata": tusMeta("moved.mp4", "mp4-library")}, nil)
	require.Equal(t, http.StatusCreated, resp.StatusCode)
	loc := resp.Header.Get("Location")
	path := loc[strings.Index(loc, "/api/v1/uploads/"):]
	id := path[len("/api/v1/uploads/"):]
	require.Contains(t, id, "+", "the id names the multipart upload in the bucket")
	patch := func(r replica, off, end int) *http.Response {
		return r.tus(t, "PATCH", path, map[string]string{"Upload-Offset": fmt.Sprint(off), "Content-Type": "application/offset+octet-stream"}, body[off:end])
	}
	// The hash's state after each PATCH, in the bucket: the offset, then
	// the state (absent: lost, the upload read again when finished).
	state := func() (int, bool) {
		o, err := bucket.Client.GetObject(ctx, bucket.Name, "herd/uploads/"+id[:strings.Index(id, "+")]+".sha256", minio.GetObjectOptions{})
		require.NoError(t, err)
		b, err := io.ReadAll(o)
		require.NoError(t, err)
		require.GreaterOrEqual(t, len(b), 8)
		return int(binary.BigEndian.Uint64(b)), len(b) > 8
	}
	first := 7<<20 + 3
	require.Equal(t, http.StatusNoContent, patch(a, 0, first).StatusCode)
	off, kept := state()
	require.Equal(t, first, off)
	require.True(t, kept, "the hash's state is saved beside the parts")
	head := z.tus(t, "HEAD", path, nil, nil)
	require.Equal(t, http.StatusOK, head.StatusCode, "the other replica sees the upload")
	require.Equal(t, fmt.Sprint(first), head.Header.Get("Upload-Offset"))
	second := 11 << 20
	require.Equal(t, http.StatusNoContent, patch(z, first, second).StatusCode)
	off, kept = state()
	require.Equal(t, second, off)
	require.True(t, kept, "the other replica went on from the saved state")
	resp = patch(a, second, len(body))
	require.Equal(t, http.StatusNoContent, resp.StatusCode)
	jobID := resp.Header.Get(api.HeaderJobID)
	require.NotEmpty(t, jobID)

	j, err := st.GetJob(ctx, jobID)
	require.NoError(t, err)
	require.Equal(t, hex.EncodeToString(sum[:]), j.Source.SHA256, "hashed across three PATCHes on two replicas")
	o, err := b.Open(ctx, "sources/"+j.Source.SHA256)
	require.NoError(t, err)
	h := sha256.New()
	_, err = io.Copy(h, o)
	require.NoError(t, err)
	_ = o.Close()
	require.Equal(t, hex.EncodeToString(sum[:]), hex.EncodeToString(h.Sum(nil)), "the source holds the uploaded bytes")

	late := z.tus(t, "HEAD", path, nil, nil)
	require.Equal(t, http.StatusOK, late.StatusCode, "a client that lost the last answer asks the other replica")
	require.Equal(t, jobID, late.Header.Get(api.HeaderJobID))
	require.Equal(t, []string{id[:strings.Index(id, "+")] + ".job"}, uploadObjects(t, bucket), "the upload's objects are gone once it is a job, but for the record of the job")

	// A finished upload whose hash's state was lost (a crash between a
	// part and its state) is read once from the bucket instead.
	small := bytes.Repeat([]byte("herd across replicas "), 1000)
	resp = z.tus(t, "POST", "/api/v1/uploads", map[string]string{"Upload-Length": fmt.Sprint(len(small)), "Upload-Metadata": tusMeta("small.mkv", "mp4-library")}, nil)
	require.Equal(t, http.StatusCreated, resp.StatusCode)
	path2 := resp.Header.Get("Location")[strings.Index(resp.Header.Get("Location"), "/api/v1/uploads/"):]
	id2 := path2[len("/api/v1/uploads/"):]
	require.Equal(t, http.StatusNoContent, z.tus(t, "PATCH", path2, map[string]string{"Upload-Offset": "0", "Content-Type": "application/offset+octet-stream"}, small[:1000]).StatusCode)
	require.NoError(t, bucket.Client.RemoveObject(ctx, bucket.Name, "herd/uploads/"+id2[:strings.Index(id2, "+")]+".sha256", minio.RemoveObjectOptions{}))
	resp = a.tus(t, "PATCH", path2, map[string]string{"Upload-Offset": "1000", "Content-Type": "application/offset+octet-stream"}, small[1000:])
	require.Equal(t, http.StatusNoContent, resp.StatusCode)
	j2, err := st.GetJob(ctx, resp.Header.Get(api.HeaderJobID))
	require.NoError(t, err)
	sum2 := sha256.Sum256(small)
	require.Equal(t, hex.EncodeToString(sum2[:]), j2.Source.SHA256)
}

// The sweep of uploads in the bucket leaves a fresh one alone, removes the
// record of the job an upload became after 6 h, and an upload that got no
// byte for a day with its parts (the multipart upload aborted).
func TestBucketUploadsSwept(t *testing.T) {
	ctx := t.Context()
	st, dsn, b, bucket := bucketFarm(t)
	r := newReplica(t, st, dsn, b)
	post := func(name string, size int) string {
		resp := r.tus(t, "POST", "/api/v1/uploads", map[string]string{"Upload-Length": fmt.Sprint(size), "Upload-Metadata": tusMeta(name, "mp4-library")}, nil)
		require.Equal(t, http.StatusCreated, resp.StatusCode)
		loc := resp.Header.Get("Location")
		return loc[strings.Index(loc, "/api/v1/uploads/"):]
	}
	patch := func(path string, off int, body []byte) *http.Response {
		return r.tus(t, "PATCH", path, map[string]string{"Upload-Offset": fmt.Sprint(off), "Content-Type": "application/offset+octet-stream"}, body)
	}
	body := bytes.Repeat([]byte("swept "), 2000)
	done := post("done.mp4", len(body))
	require.Equal(t, http.StatusNoContent, patch(done, 0, body).StatusCode)
	abandoned := post("abandoned.mp4", 2*len(body))
	require.Equal(t, http.StatusNoContent, patch(abandoned, 0, body).StatusCode)
	objID := func(path string) string { id := path[len("/api/v1/uploads/"):]; return id[:strings.Index(id, "+")] }
	objects := func() (map[string]bool, int) {
		have := map[string]bool{}
		for _, o := range uploadObjects(t, bucket) {
			have[o] = true
		}
		n := 0 // MinIO lists an object's multipart uploads by its whole name
		for u := range bucket.Client.ListIncompleteUploads(ctx, bucket.Name, "herd/uploads/"+objID(abandoned), false) {
			require.NoError(t, u.Err)
			n++
		}
		return have, n
	}

	now := time.Now()
	r.api.SweepUploadsAt(ctx, now.Add(time.Minute))
	have, multipart := objects()
	require.True(t, have[objID(done)+".job"])
	require.True(t, have[objID(abandoned)+".info"])
	require.Equal(t, 1, multipart)

	r.api.SweepUploadsAt(ctx, now.Add(7*time.Hour))
	have, multipart = objects()
	require.False(t, have[objID(done)+".job"], "the job's record goes after 6 h")
	require.True(t, have[objID(abandoned)+".info"], "an upload idle for 7 h stays")
	require.Equal(t, 1, multipart)

	r.api.SweepUploadsAt(ctx, now.Add(25*time.Hour))
	have, multipart = objects()
	require.Empty(t, have, "an upload idle for a day goes, with its records")
	require.Zero(t, multipart, "and its multipart upload")
	require.Equal(t, http.StatusNotFound, r.tus(t, "HEAD", abandoned, nil, nil).StatusCode)
}
