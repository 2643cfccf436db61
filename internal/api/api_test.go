package api_test

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"mime/multipart"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"go.yaml.in/yaml/v3"

	"github.com/herdhq/herd/internal/api"
	"github.com/herdhq/herd/internal/apikey"
	"github.com/herdhq/herd/internal/blob"
	"github.com/herdhq/herd/internal/campaign"
	"github.com/herdhq/herd/internal/deliver"
	"github.com/herdhq/herd/internal/ingest"
	"github.com/herdhq/herd/internal/job"
	"github.com/herdhq/herd/internal/jobview"
	"github.com/herdhq/herd/internal/pipeline"
	"github.com/herdhq/herd/internal/profile"
	"github.com/herdhq/herd/internal/protocol"
	"github.com/herdhq/herd/internal/queue"
	"github.com/herdhq/herd/internal/store"
	"github.com/herdhq/herd/internal/testenv"
)

const adminKey = "test-admin-key-0123456789"

type fixture struct {
	dir     string
	api     *api.Server
	srv     *httptest.Server
	st      store.Store
	blobs   *blob.Local
	imports string
}

func setup(t testing.TB, opts ...func(*api.Deps)) *fixture {
	t.Helper()
	dir := t.TempDir()
	st, blobs := testenv.Stores(t, dir)
	require.NoError(t, st.CreateKey(context.Background(), store.Key{ID: "k1", Kind: "admin", Hash: apikey.Hash(adminKey), CreatedAt: time.Now()}))
	require.NoError(t, st.CreateKey(context.Background(), store.Key{ID: "k2", Kind: "worker", Hash: apikey.Hash("worker-key-0123456789"), CreatedAt: time.Now()}))
	imports := filepath.Join(dir, "imports")
	require.NoError(t, os.MkdirAll(imports, 0o755))
	sig := &queue.Signal{}
	profiles := profile.Builtin()
	sub := ingest.New(st, blobs, profiles, sig, ingest.Config{MaxUpload: 1 << 20, ImportRoots: []string{imports}})
	files := &pipeline.LocalFiles{Blobs: blobs}
	camp := campaign.New(campaign.Config{Store: st, Redo: sub, Profiles: profiles, Files: files})
	d := api.Deps{Store: st, Blobs: blobs, Profiles: profiles, Submit: sub, Campaigns: camp, Kick: sig, Files: files,
		Queue:  queue.New(st, sig, queue.Config{LeaseTTL: time.Minute, Backoff: time.Hour}),
		Log:    slog.New(slog.NewTextHandler(io.Discard, nil)),
		Checks: []api.Check{{Name: "database", Fn: st.Ping}}}
	guard, err := deliver.NewGuard(nil)
	require.NoError(t, err)
	guard.Resolver = &net.Resolver{PreferGo: true, Dial: func(context.Context, string, string) (net.Conn, error) {
		return nil, errors.New("tests resolve no names")
	}}
	d.CheckHook = guard.CheckURL
	for _, o := range opts {
		o(&d)
	}
	s := api.New(d)
	require.NoError(t, s.EnableUploads(api.UploadsConfig{Dir: filepath.Join(dir, "uploads")}))
	srv := httptest.NewServer(s.Handler())
	t.Cleanup(srv.Close)
	return &fixture{dir: dir, api: s, srv: srv, st: st, blobs: blobs, imports: imports}
}

func (f *fixture) do(t *testing.T, method, path, key string, body io.Reader, ct string) (*http.Response, []byte) {
	t.Helper()
	req, err := http.NewRequest(method, f.srv.URL+path, body)
	require.NoError(t, err)
	if key != "" {
		req.Header.Set("Authorization", "Bearer "+key)
	}
	if ct != "" {
		req.Header.Set("Content-Type", ct)
	}
	resp, err := http.DefaultClient.Do(req)
	require.NoError(t, err)
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	return resp, b
}

func upload(t testing.TB, fields [][2]string, fileName string, data []byte) (io.Reader, string) {
	t.Helper()
	var buf bytes.Buffer
	mw := multipart.NewWriter(&buf)
	for _, f := range fields {
		require.NoError(t, mw.WriteField(f[0], f[1]))
	}
	if fileName != "" {
		w, err := mw.CreateFormFile("file", fileName)
		require.NoError(t, err)
		_, err = w.Write(data)
		require.NoError(t, err)
	}
	require.NoError(t, mw.Close())
	return &buf, mw.FormDataContentType()
}

func errCode(t *testing.T, body []byte) string {
	t.Helper()
	var e protocol.ErrorBody
	require.NoError(t, json.Unmarshal(body, &e), string(body))
	require.NotEmpty(t, e.Error.Message)
	return e.Error.Code
}

func TestAuth(t *testing.T) {
	t.Parallel()
	f := setup(t)
	for _, tc := range []struct {
		key    string
		status int
	}{
		{"", http.StatusUnauthorized},
		{"wrong-key", http.StatusUnauthorized},
		{"worker-key-0123456789", http.StatusForbidden},
		{adminKey, http.StatusOK},
	} {
		resp, body := f.do(t, "GET", "/api/v1/jobs", tc.key, nil, "")
		require.Equal(t, tc.status, resp.StatusCode, "key %q", tc.key)
		if tc.status != http.StatusOK {
			errCode(t, body)
		}
	}
	for _, p := range []string{"/healthz", "/readyz", "/api/v1/openapi.yaml"} {
		resp, _ := f.do(t, "GET", p, "", nil, "")
		require.Equal(t, http.StatusOK, resp.StatusCode, p)
	}
	resp, body := f.do(t, "GET", "/api/v1/nope", adminKey, nil, "")
	require.Equal(t, http.StatusNotFound, resp.StatusCode)
	require.Equal(t, "not_found", errCode(t, body))
}

// TestQueueStats: the autoscaling endpoint is public and counts the video
// seconds still to encode.
func TestQueueStats(t *testing.T) {
	t.Parallel()
	f := setup(t)
	ctx := context.Background()
	a, err := f.st.PutAsset(ctx, job.Asset{ID: "a1", Name: "x.mp4", Size: 1, SHA256: "s1", Key: "sources/s1", CreatedAt: time.Now()})
	require.NoError(t, err)
	_, _, err = f.st.CreateJob(ctx, job.Job{ID: "j1", Profile: "web-hls", ProfileVersion: 1, IdempotencyKey: "i1",
		Source: job.Source{AssetID: a.ID, SHA256: "s1", Duration: 90}}, []job.Task{{ID: "t1", Kind: job.KindEncode, MaxAttempts: 3}}, time.Now())
	require.NoError(t, err)
	resp, body := f.do(t, "GET", "/api/v1/queue", "", nil, "")
	require.Equal(t, http.StatusOK, resp.StatusCode, string(body))
	var q protocol.QueueStats
	require.NoError(t, json.Unmarshal(body, &q))
	require.Equal(t, protocol.QueueStats{QueuedTasks: 1, EncodeBacklogSeconds: 90, JobsQueued: 1}, q)
}

func TestSubmitUploadAndIdempotency(t *testing.T) {
	t.Parallel()
	f := setup(t)
	data := []byte("pretend video bytes")
	body, ct := upload(t, [][2]string{{"profile", "web-hls"}}, "../../etc/My Clip.mp4", data)
	resp, b := f.do(t, "POST", "/api/v1/jobs", adminKey, body, ct)
	require.Equal(t, http.StatusCreated, resp.StatusCode, string(b))
	var j jobview.JobView
	require.NoError(t, json.Unmarshal(b, &j))
	require.Equal(t, job.Queued, j.State)
	require.Equal(t, "My Clip.mp4", j.Source.Name, "the name is cleaned, never a path")
	require.Equal(t, int64(len(data)), j.Source.Size)
	require.Equal(t, "/api/v1/jobs/"+j.ID, resp.Header.Get("Location"))
	require.True(t, f.blobs.Exists("sources/"+j.Source.SHA256))

	body, ct = upload(t, [][2]string{{"profile", "web-hls"}}, "again.mp4", data)
	resp, b = f.do(t, "POST", "/api/v1/jobs", adminKey, body, ct)
	require.Equal(t, http.StatusOK, resp.StatusCode, "same bytes, same profile: the existing job")
	var again jobview.JobView
	require.NoError(t, json.Unmarshal(b, &again))
	require.Equal(t, j.ID, again.ID)

	body, ct = upload(t, [][2]string{{"profile", "mp4-library"}}, "again.mp4", data)
	resp, _ = f.do(t, "POST", "/api/v1/jobs", adminKey, body, ct)
	require.Equal(t, http.StatusCreated, resp.StatusCode, "another profile is another job")

	resp, b = f.do(t, "GET", "/api/v1/jobs/"+j.ID, adminKey, nil, "")
	require.Equal(t, http.StatusOK, resp.StatusCode)
	var got jobview.JobView
	require.NoError(t, json.Unmarshal(b, &got))
	require.Len(t, got.Tasks, 5)
	require.Equal(t, job.KindProbe, got.Tasks[0].Kind)
	require.Equal(t, "queued", got.Tasks[0].State)
	require.Nil(t, got.ChunkSeconds, "the profile's chunk length applies")

	body, ct = upload(t, [][2]string{{"profile", "web-hls"}, {"chunk_seconds", "8"}}, "chunked.mp4", []byte("other video bytes"))
	resp, b = f.do(t, "POST", "/api/v1/jobs", adminKey, body, ct)
	require.Equal(t, http.StatusCreated, resp.StatusCode, string(b))
	require.NoError(t, json.Unmarshal(b, &got))
	require.NotNil(t, got.ChunkSeconds, "the job keeps its own chunk length")
	require.InDelta(t, 8, *got.ChunkSeconds, 0)
}

func TestSubmitErrors(t *testing.T) {
	t.Parallel()
	f := setup(t)
	cases := []struct {
		name   string
		fields [][2]string
		file   string
		data   []byte
		status int
		code   string
	}{
		{"unknown profile", [][2]string{{"profile", "nope"}}, "a.mp4", []byte("x"), 400, "unknown_profile"},
		{"no file", [][2]string{{"profile", "web-hls"}}, "", nil, 400, "bad_request"},
		{"file before profile", nil, "a.mp4", []byte("x"), 400, "bad_request"},
		{"empty file", [][2]string{{"profile", "web-hls"}}, "a.mp4", []byte{}, 400, "empty"},
		{"too large", [][2]string{{"profile", "web-hls"}}, "a.mp4", bytes.Repeat([]byte("x"), 1<<20+1), 413, "too_large"},
		{"negative chunks", [][2]string{{"profile", "web-hls"}, {"chunk_seconds", "-5"}}, "a.mp4", []byte("x"), 400, "bad_request"},
		{"chunks not a number", [][2]string{{"profile", "web-hls"}, {"chunk_seconds", "a minute"}}, "a.mp4", []byte("x"), 400, "bad_request"},
		{"chunks under a segment", [][2]string{{"profile", "web-hls"}, {"chunk_seconds", "1"}}, "a.mp4", []byte("x"), 400, "bad_request"},
		{"chunks NaN", [][2]string{{"profile", "web-hls"}, {"chunk_seconds", "NaN"}}, "a.mp4", []byte("x"), 400, "bad_request"},
		{"mp4 chunks under 10 s", [][2]string{{"profile", "mp4-library"}, {"chunk_seconds", "5"}}, "a.mp4", []byte("x"), 400, "bad_request"},
	}
	for _, tc := range cases {
		body, ct := upload(t, tc.fields, tc.file, tc.data)
		resp, b := f.do(t, "POST", "/api/v1/jobs", adminKey, body, ct)
		require.Equal(t, tc.status, resp.StatusCode, tc.name+": "+string(b))
		require.Equal(t, tc.code, errCode(t, b), tc.name)
		if strings.HasPrefix(tc.name, "chunk") {
			require.Contains(t, string(b), "chunk_seconds", "the message names the field")
		}
	}
	resp, b := f.do(t, "POST", "/api/v1/jobs", adminKey, strings.NewReader(`{"source_path": "/x.mkv", "profile": "web-hls", "chunk_seconds": -1}`), "application/json")
	require.Equal(t, http.StatusBadRequest, resp.StatusCode, string(b))
	require.Contains(t, string(b), "chunk_seconds")
	resp, b = f.do(t, "POST", "/api/v1/jobs", adminKey, strings.NewReader("x"), "text/plain")
	require.Equal(t, http.StatusUnsupportedMediaType, resp.StatusCode)
	errCode(t, b)
	n, err := f.blobs.TempEntries()
	require.NoError(t, err)
	require.Zero(t, n, "refused uploads leave nothing behind")
	jobs, _, err := f.st.ListJobs(context.Background(), store.ListOptions{})
	require.NoError(t, err)
	require.Empty(t, jobs)
}

func TestImportRoots(t *testing.T) {
	t.Parallel()
	f := setup(t)
	inside := filepath.Join(f.imports, "movie.mkv")
	require.NoError(t, os.WriteFile(inside, []byte("movie bytes"), 0o644))
	outside := filepath.Join(t.TempDir(), "secret.mkv")
	require.NoError(t, os.WriteFile(outside, []byte("secret"), 0o644))
	link := filepath.Join(f.imports, "link.mkv")
	require.NoError(t, os.Symlink(outside, link))

	post := func(p string) (*http.Response, []byte) {
		b, _ := json.Marshal(map[string]string{"source_path": p, "profile": "mp4-library"})
		return f.do(t, "POST", "/api/v1/jobs", adminKey, bytes.NewReader(b), "application/json")
	}
	resp, b := post(inside)
	require.Equal(t, http.StatusCreated, resp.StatusCode, string(b))
	require.FileExists(t, inside, "the original is kept")
	for _, p := range []string{outside, link, filepath.Join(f.imports, "..", "x"), "relative.mkv", "/etc/passwd"} {
		resp, b = post(p)
		require.Equal(t, http.StatusForbidden, resp.StatusCode, p)
		require.Equal(t, "path_not_allowed", errCode(t, b))
		require.NotContains(t, string(b), "secret")
	}
	resp, b = f.do(t, "POST", "/api/v1/jobs", adminKey, strings.NewReader(`{"source_path": 1}`), "application/json")
	require.Equal(t, http.StatusBadRequest, resp.StatusCode, string(b))
}

func TestListCancelRetry(t *testing.T) {
	t.Parallel()
	f := setup(t)
	var ids []string
	for i := range 3 {
		body, ct := upload(t, [][2]string{{"profile", "web-hls"}}, "a.mp4", []byte{byte(i), 1, 2})
		resp, b := f.do(t, "POST", "/api/v1/jobs", adminKey, body, ct)
		require.Equal(t, http.StatusCreated, resp.StatusCode)
		var j jobview.JobView
		require.NoError(t, json.Unmarshal(b, &j))
		ids = append(ids, j.ID)
		time.Sleep(2 * time.Millisecond)
	}
	resp, b := f.do(t, "GET", "/api/v1/jobs?limit=2", adminKey, nil, "")
	require.Equal(t, http.StatusOK, resp.StatusCode)
	var page struct {
		Jobs []jobview.JobView `json:"jobs"`
		Next string            `json:"next"`
	}
	require.NoError(t, json.Unmarshal(b, &page))
	require.Len(t, page.Jobs, 2)
	require.Equal(t, ids[2], page.Jobs[0].ID, "newest first")
	require.NotEmpty(t, page.Next)
	_, b = f.do(t, "GET", "/api/v1/jobs?limit=2&cursor="+page.Next, adminKey, nil, "")
	require.NoError(t, json.Unmarshal(b, &page))
	require.Len(t, page.Jobs, 1)
	require.Equal(t, ids[0], page.Jobs[0].ID)
	require.Empty(t, page.Next)

	resp, b = f.do(t, "POST", "/api/v1/jobs/"+ids[0]+"/retry", adminKey, nil, "")
	require.Equal(t, http.StatusConflict, resp.StatusCode)
	require.Equal(t, "conflict", errCode(t, b))
	resp, _ = f.do(t, "POST", "/api/v1/jobs/"+ids[0]+"/cancel", adminKey, nil, "")
	require.Equal(t, http.StatusOK, resp.StatusCode)
	resp, b = f.do(t, "GET", "/api/v1/jobs?state=canceled", adminKey, nil, "")
	require.Equal(t, http.StatusOK, resp.StatusCode)
	require.NoError(t, json.Unmarshal(b, &page))
	require.Len(t, page.Jobs, 1)
	resp, _ = f.do(t, "POST", "/api/v1/jobs/"+ids[0]+"/retry", adminKey, nil, "")
	require.Equal(t, http.StatusOK, resp.StatusCode)
	resp, b = f.do(t, "GET", "/api/v1/jobs?state=bogus", adminKey, nil, "")
	require.Equal(t, http.StatusBadRequest, resp.StatusCode)
	errCode(t, b)
	resp, _ = f.do(t, "GET", "/api/v1/jobs/nope", adminKey, nil, "")
	require.Equal(t, http.StatusNotFound, resp.StatusCode)
}

func TestOutputs(t *testing.T) {
	t.Parallel()
	f := setup(t)
	dir, err := f.blobs.TempDir("out")
	require.NoError(t, err)
	require.NoError(t, os.WriteFile(filepath.Join(dir, "master.m3u8"), []byte("#EXTM3U\n"), 0o644))
	require.NoError(t, os.WriteFile(filepath.Join(dir, "seg.m4s"), bytes.Repeat([]byte("a"), 1000), 0o644))
	require.NoError(t, f.blobs.CommitDir(dir, "jobs/j1/out"))

	resp, b := f.do(t, "GET", "/api/v1/jobs/j1/outputs/master.m3u8", adminKey, nil, "")
	require.Equal(t, http.StatusOK, resp.StatusCode)
	require.Equal(t, "application/vnd.apple.mpegurl", resp.Header.Get("Content-Type"))
	require.Equal(t, "#EXTM3U\n", string(b))

	req, _ := http.NewRequest("GET", f.srv.URL+"/api/v1/jobs/j1/outputs/seg.m4s", nil)
	req.Header.Set("Authorization", "Bearer "+adminKey)
	req.Header.Set("Range", "bytes=10-19")
	r2, err := http.DefaultClient.Do(req)
	require.NoError(t, err)
	defer r2.Body.Close()
	require.Equal(t, http.StatusPartialContent, r2.StatusCode)
	require.Equal(t, "bytes 10-19/1000", r2.Header.Get("Content-Range"))

	for _, p := range []string{"../../../herd.db", "..%2F..%2Fsources", "nope.mp4", ".tmp/x"} {
		resp, _ := f.do(t, "GET", "/api/v1/jobs/j1/outputs/"+p, adminKey, nil, "")
		require.Contains(t, []int{http.StatusBadRequest, http.StatusNotFound}, resp.StatusCode, p)
	}
	resp, _ = f.do(t, "GET", "/api/v1/jobs/j1/outputs/master.m3u8", "", nil, "")
	require.Equal(t, http.StatusUnauthorized, resp.StatusCode)
}

// TestOpenAPICoversRoutes keeps openapi.yaml true: every route is documented
// with its method, and every documented operation is served.
func TestOpenAPICoversRoutes(t *testing.T) {
	t.Parallel()
	var doc struct {
		Paths map[string]map[string]struct {
			Security *[]map[string][]string `yaml:"security"`
		} `yaml:"paths"`
	}
	require.NoError(t, yaml.Unmarshal(api.OpenAPI(), &doc))
	served := map[string]bool{}
	s := api.New(api.Deps{Log: slog.Default()})
	for _, r := range s.Routes() {
		p := strings.ReplaceAll(r.Path, "...}", "}")
		key := strings.ToLower(r.Method) + " " + p
		served[key] = true
		ops, ok := doc.Paths[p]
		require.True(t, ok, "route %s is not in openapi.yaml", key)
		op, ok := ops[strings.ToLower(r.Method)]
		require.True(t, ok, "route %s is not in openapi.yaml", key)
		// Who may call it is documented, and is what the code enforces.
		require.NotNil(t, op.Security, "openapi.yaml must say who may call %s (security: [] when public)", key)
		var schemes []string
		for _, alt := range *op.Security {
			for name := range alt {
				schemes = append(schemes, name)
			}
		}
		// A playback link's token is a path parameter, which OpenAPI has no
		// scheme for: such routes are documented as needing no key.
		want := map[string][]string{"public": nil, "signed": nil, "admin": {"admin", "session"}, "worker": {"worker"}}[r.Access()]
		require.ElementsMatch(t, want, schemes, "%s is %s in the code", key, r.Access())
	}
	for p, ops := range doc.Paths {
		for m := range ops {
			require.True(t, served[m+" "+p], "openapi.yaml documents %s %s, which is not served", m, p)
		}
	}
}

// tus is one request of the tus protocol.
func (f *fixture) tus(t *testing.T, method, url string, hdr map[string]string, body []byte) *http.Response {
	t.Helper()
	if !strings.HasPrefix(url, "http") {
		url = f.srv.URL + url
	}
	return testenv.Tus(t, adminKey, method, url, hdr, body)
}

func tusMeta(name, profile string) string {
	b64 := func(s string) string { return base64.StdEncoding.EncodeToString([]byte(s)) }
	return "filename " + b64(name) + ",profile " + b64(profile)
}

// A resumable upload is refused early when it could never become a job, is
// resumed from the server's offset, and becomes one job when its last byte
// arrives; a finished upload the server died holding becomes a job at start.
// Uploads use only the tus extensions herd needs, so that no request can
// name a file outside the uploads folder: ids in the path that tusd did not
// make, and ids in an Upload-Concat header, never reach the file store.
func TestTusExtensionsLimited(t *testing.T) {
	t.Parallel()
	f := setup(t)
	// A file beside the uploads folder that a traversing id would name.
	outside := filepath.Join(f.dir, "victim")
	require.NoError(t, os.WriteFile(outside, []byte("keep"), 0o600))
	require.NoError(t, os.WriteFile(outside+".info", []byte(`{"ID":"../victim","Size":4,"Offset":4,"IsPartial":true,"MetaData":{"filename":"a.mp4","profile":"mp4-library"}}`), 0o600))

	meta := tusMeta("a.mp4", "mp4-library")
	for _, hdr := range []map[string]string{
		{"Upload-Concat": "final;/api/v1/uploads/../victim /api/v1/uploads/../victim", "Upload-Metadata": meta},
		{"Upload-Concat": "final;" + f.srv.URL + "/api/v1/uploads/..%2Fvictim", "Upload-Metadata": meta},
		{"Upload-Concat": "partial", "Upload-Length": "4", "Upload-Metadata": meta},
		{"Upload-Defer-Length": "1", "Upload-Metadata": meta},
	} {
		resp := f.tus(t, "POST", "/api/v1/uploads", hdr, nil)
		require.Equal(t, http.StatusBadRequest, resp.StatusCode, "%v", hdr)
	}
	for _, id := range []string{"..%2Fvictim", "..", "victim", strings.Repeat("a", 31) + "/"} {
		for _, m := range []string{"HEAD", "PATCH", "DELETE"} {
			resp := f.tus(t, m, "/api/v1/uploads/"+id, map[string]string{"Upload-Offset": "0", "Content-Type": "application/offset+octet-stream"}, []byte("x"))
			require.GreaterOrEqual(t, resp.StatusCode, 400, "%s %s", m, id)
			require.Less(t, resp.StatusCode, 500, "%s %s", m, id)
		}
	}
	b, err := os.ReadFile(outside)
	require.NoError(t, err)
	require.Equal(t, "keep", string(b))
	_, err = os.Stat(outside + ".info")
	require.NoError(t, err)
	entries, _ := os.ReadDir(filepath.Join(f.dir, "uploads"))
	require.Empty(t, entries, "refused uploads store nothing")
	jobs, _, err := f.st.ListJobs(context.Background(), store.ListOptions{})
	require.NoError(t, err)
	require.Empty(t, jobs)
}

func TestResumableUpload(t *testing.T) {
	f := setup(t)
	body := []byte(strings.Repeat("herd resumable upload ", 1000))
	n := fmt.Sprint(len(body))
	for _, c := range []struct {
		hdr  map[string]string
		want int
	}{
		{map[string]string{"Upload-Length": n, "Upload-Metadata": tusMeta("a.mp4", "nope")}, http.StatusBadRequest},
		{map[string]string{"Upload-Length": n, "Upload-Metadata": tusMeta("", "mp4-library")}, http.StatusBadRequest},
		{map[string]string{"Upload-Length": "0", "Upload-Metadata": tusMeta("a.mp4", "mp4-library")}, http.StatusBadRequest},
		{map[string]string{"Upload-Length": fmt.Sprint(2 << 20), "Upload-Metadata": tusMeta("a.mp4", "mp4-library")}, http.StatusRequestEntityTooLarge},
		{map[string]string{"Upload-Defer-Length": "1", "Upload-Metadata": tusMeta("a.mp4", "mp4-library")}, http.StatusBadRequest},
		{map[string]string{"Upload-Length": n, "Upload-Metadata": tusMeta("a.mp4", "web-hls") + ",chunk_seconds " + base64.StdEncoding.EncodeToString([]byte("-1"))}, http.StatusBadRequest},
	} {
		require.Equal(t, c.want, f.tus(t, "POST", "/api/v1/uploads", c.hdr, nil).StatusCode, "%v", c.hdr)
	}
	entries, _ := os.ReadDir(filepath.Join(f.dir, "uploads"))
	require.Empty(t, entries, "refused uploads store nothing")

	resp := f.tus(t, "POST", "/api/v1/uploads", map[string]string{"Upload-Length": n, "Upload-Metadata": tusMeta("../../Movie (2020).mp4", "mp4-library")}, nil)
	require.Equal(t, http.StatusCreated, resp.StatusCode)
	loc := resp.Header.Get("Location")
	require.Contains(t, loc, "/api/v1/uploads/")
	patch := func(off int, b []byte) *http.Response {
		return f.tus(t, "PATCH", loc, map[string]string{"Upload-Offset": fmt.Sprint(off), "Content-Type": "application/offset+octet-stream"}, b)
	}
	require.Equal(t, http.StatusNoContent, patch(0, body[:5000]).StatusCode)
	// The bytes are hashed as they arrive; the hash's state waits beside
	// them for the next PATCH.
	bin := filepath.Join(f.dir, "uploads", loc[strings.LastIndex(loc, "/")+1:])
	require.FileExists(t, bin+".sha256")
	binInfo, err := os.Stat(bin)
	require.NoError(t, err)
	require.Equal(t, http.StatusConflict, patch(4000, body[4000:]).StatusCode, "a wrong offset is refused")
	head := f.tus(t, "HEAD", loc, nil, nil)
	require.Equal(t, "5000", head.Header.Get("Upload-Offset"))
	resp = patch(5000, body[5000:])
	require.Equal(t, http.StatusNoContent, resp.StatusCode)
	id := resp.Header.Get(api.HeaderJobID)
	require.NotEmpty(t, id)
	j, err := f.st.GetJob(context.Background(), id)
	require.NoError(t, err)
	require.Equal(t, "Movie (2020).mp4", j.Source.Name, "only the base name is kept")
	require.Equal(t, int64(len(body)), j.Source.Size)
	sum := sha256.Sum256(body)
	require.Equal(t, hex.EncodeToString(sum[:]), j.Source.SHA256, "hashed across both PATCHes")
	stored, err := os.Stat(filepath.Join(f.dir, "blobs", "sources", j.Source.SHA256))
	require.NoError(t, err)
	require.True(t, os.SameFile(binInfo, stored), "the upload became the source by a link, not a copy")
	late := f.tus(t, "HEAD", loc, nil, nil)
	require.Equal(t, http.StatusOK, late.StatusCode, "a client that lost the last answer asks again")
	require.Equal(t, id, late.Header.Get(api.HeaderJobID), "and learns its job")
	require.Equal(t, n, late.Header.Get("Upload-Offset"))
	entries, _ = os.ReadDir(filepath.Join(f.dir, "uploads"))
	for _, e := range entries {
		require.True(t, strings.HasSuffix(e.Name(), ".lock") || e.Name() == loc[strings.LastIndex(loc, "/")+1:]+".job",
			"the bytes are gone once they are a job, but for the record of the job: %s", e.Name())
	}
	require.FileExists(t, bin+".job", "the job is recorded beside the upload, for a HEAD on another replica")
	for _, bad := range []string{"..%2F..%2Fherd.db", "0123", "..%2F" + strings.Repeat("a", 27)} {
		require.Equal(t, http.StatusNotFound, f.tus(t, "HEAD", "/api/v1/uploads/"+bad, nil, nil).StatusCode, bad)
		require.Equal(t, http.StatusNotFound, f.tus(t, "DELETE", "/api/v1/uploads/"+bad, nil, nil).StatusCode, bad)
	}
	_, err = os.Stat(filepath.Join(f.dir, "herd.db"))
	require.NoError(t, err, "an id is never a path")
	require.Equal(t, http.StatusUnauthorized, func() int {
		req, _ := http.NewRequest("HEAD", loc, nil)
		req.Header.Set("Tus-Resumable", "1.0.0")
		r, err := http.DefaultClient.Do(req)
		require.NoError(t, err)
		_ = r.Body.Close()
		return r.StatusCode
	}(), "uploads need the admin key")

	// Every byte arrived but the job was not made (the server died in
	// between): the client's HEAD makes it and names it.
	third := []byte(strings.Repeat("a third file ", 400))
	resp = f.tus(t, "POST", "/api/v1/uploads", map[string]string{"Upload-Length": fmt.Sprint(len(third)), "Upload-Metadata": tusMeta("third.mkv", "mp4-library")}, nil)
	require.Equal(t, http.StatusCreated, resp.StatusCode)
	loc3 := resp.Header.Get("Location")
	require.NoError(t, os.WriteFile(filepath.Join(f.dir, "uploads", loc3[strings.LastIndex(loc3, "/")+1:]), third, 0o600))
	resp = f.tus(t, "HEAD", loc3, nil, nil)
	require.Equal(t, http.StatusOK, resp.StatusCode)
	third3, err := f.st.GetJob(context.Background(), resp.Header.Get(api.HeaderJobID))
	require.NoError(t, err)
	require.Equal(t, "third.mkv", third3.Source.Name)

	// The same, with no client left to ask: the sweep makes the job.
	other := []byte(strings.Repeat("another file ", 500))
	resp = f.tus(t, "POST", "/api/v1/uploads", map[string]string{"Upload-Length": fmt.Sprint(len(other)), "Upload-Metadata": tusMeta("late.mp4", "web-hls")}, nil)
	require.Equal(t, http.StatusCreated, resp.StatusCode)
	upID := resp.Header.Get("Location")[strings.LastIndex(resp.Header.Get("Location"), "/")+1:]
	require.NoError(t, os.WriteFile(filepath.Join(f.dir, "uploads", upID), other, 0o600)) // as if the last PATCH's response was lost
	f.api.SweepUploads(context.Background())
	require.FileExists(t, filepath.Join(f.dir, "uploads", upID), "bytes that arrived lately are a request's to finish")
	lately := time.Now().Add(-10 * time.Minute)
	require.NoError(t, os.Chtimes(filepath.Join(f.dir, "uploads", upID), lately, lately))
	f.api.SweepUploads(context.Background())
	jobs, _, err := f.st.ListJobs(context.Background(), store.ListOptions{})
	require.NoError(t, err)
	require.Len(t, jobs, 3)
	require.Equal(t, "late.mp4", jobs[0].Source.Name)
	require.Equal(t, "web-hls", jobs[0].Profile)
	_, err = os.Stat(filepath.Join(f.dir, "uploads", upID))
	require.ErrorIs(t, err, os.ErrNotExist)

	// An upload left half-done for longer than UploadExpiry is removed; a fresh one stays.
	resp = f.tus(t, "POST", "/api/v1/uploads", map[string]string{"Upload-Length": "100", "Upload-Metadata": tusMeta("old.mp4", "mp4-library")}, nil)
	oldID := resp.Header.Get("Location")[strings.LastIndex(resp.Header.Get("Location"), "/")+1:]
	resp = f.tus(t, "POST", "/api/v1/uploads", map[string]string{"Upload-Length": "100", "Upload-Metadata": tusMeta("new.mp4", "mp4-library")}, nil)
	newID := resp.Header.Get("Location")[strings.LastIndex(resp.Header.Get("Location"), "/")+1:]
	long := time.Now().Add(-api.UploadExpiry - time.Hour)
	require.NoError(t, os.Chtimes(filepath.Join(f.dir, "uploads", oldID), long, long))
	f.api.SweepUploads(context.Background())
	_, err = os.Stat(filepath.Join(f.dir, "uploads", oldID+".info"))
	require.ErrorIs(t, err, os.ErrNotExist, "the abandoned upload is gone")
	require.FileExists(t, filepath.Join(f.dir, "uploads", newID+".info"))
}

// TestScratchSweep: a remote worker's upload stays while its attempt holds
// the lease; uploads of attempts that ended (an older fence, a task that
// is gone) are removed once nothing wrote to them for a minute; other
// scratch is not the sweep's business.
func TestScratchSweep(t *testing.T) {
	t.Parallel()
	f := setup(t)
	_, claim := f.leased(t)
	names := map[string]bool{ // name -> kept
		fmt.Sprintf("w-%s-%d-encode", claim.Task.ID, claim.Lease.Fence):      true,
		fmt.Sprintf("w-%s-%d-encode", claim.Task.ID, claim.Lease.Fence-1):    false,
		fmt.Sprintf("w-%s-%d-verified", claim.Task.ID, claim.Lease.Fence+10): false,
		"w-t0bad-1-thumbs":  false,
		"w-t0fee1-1-thumbs": true, // written to lately
		"w-t1-2-nostep":     true, // not an upload's name
		"other-scratch":     true,
	}
	old := time.Now().Add(-2 * time.Minute)
	for n := range names {
		d, err := f.blobs.NamedTempDir(n)
		require.NoError(t, err)
		p := filepath.Join(d, ".partial")
		require.NoError(t, os.WriteFile(p, []byte("x"), 0o644))
		if n != "w-t0fee1-1-thumbs" {
			require.NoError(t, os.Chtimes(p, old, old))
			require.NoError(t, os.Chtimes(d, old, old))
		}
	}
	require.True(t, api.IsUploadScratch("w-t0bad-1-thumbs"))
	for _, n := range []string{"other-scratch", "w-t1-2-nostep", "w-t-1-encode", "w-tab-cd-1-encode", "w-t1--1-encode"} {
		require.False(t, api.IsUploadScratch(n), n)
	}
	f.api.SweepScratch(context.Background())
	for n, kept := range names {
		require.Equal(t, kept, f.blobs.TempExists(n), n)
	}
	// At shutdown, once no request can come, recent ones go too.
	f.api.FinalSweep(context.Background())
	require.False(t, f.blobs.TempExists("w-t0fee1-1-thumbs"))
	require.True(t, f.blobs.TempExists(fmt.Sprintf("w-%s-%d-encode", claim.Task.ID, claim.Lease.Fence)), "its attempt still holds the lease")
	// Once the attempt ends, its upload goes too.
	resp, body := f.do(t, "POST", "/api/v1/worker/tasks/"+claim.Task.ID+"/release", "fixture-worker-key-0123456789",
		strings.NewReader(fmt.Sprintf(`{"lease": {"task_id": %q, "owner": %q, "fence": %d}}`, claim.Lease.TaskID, claim.Lease.Owner, claim.Lease.Fence)), "application/json")
	require.Equal(t, http.StatusOK, resp.StatusCode, string(body))
	f.api.SweepScratch(context.Background())
	require.False(t, f.blobs.TempExists(fmt.Sprintf("w-%s-%d-encode", claim.Task.ID, claim.Lease.Fence)))
	require.True(t, f.blobs.TempExists("other-scratch"))
}

// A health check's job is not retried on its own (its library recorded
// its end, and would not hear of a retry): the answer says what to run.
func TestHealthCheckJobIsNotRetried(t *testing.T) {
	t.Parallel()
	f := setup(t)
	ctx := context.Background()
	a, err := f.st.PutAsset(ctx, job.Asset{ID: job.NewID("a"), Name: "movies", SHA256: "library:movies", CreatedAt: time.Now()})
	require.NoError(t, err)
	j := job.Job{ID: job.NewID("j"), IdempotencyKey: "check:x", Source: job.Source{AssetID: a.ID, Name: "x.mkv", Library: "movies"}}
	_, _, err = f.st.CreateJob(ctx, j, []job.Task{{ID: job.NewID("t"), Kind: job.KindCheck, MaxAttempts: 3, Needs: []string{"library:movies"}}}, time.Now())
	require.NoError(t, err)
	resp, _ := f.do(t, "POST", "/api/v1/jobs/"+j.ID+"/cancel", adminKey, nil, "")
	require.Equal(t, http.StatusOK, resp.StatusCode)
	resp, b := f.do(t, "POST", "/api/v1/jobs/"+j.ID+"/retry", adminKey, nil, "")
	require.Equal(t, http.StatusConflict, resp.StatusCode)
	require.Contains(t, string(b), "herd library check movies")
}
