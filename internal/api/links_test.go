package api_test

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/herdhq/herd/internal/api"
	"github.com/herdhq/herd/internal/job"
	"github.com/herdhq/herd/internal/link"
	"github.com/herdhq/herd/internal/pipeline"
	"github.com/herdhq/herd/internal/protocol"
)

// linkJob stores a finished job with a master playlist and one segment.
func linkJob(t *testing.T, f *fixture, sha string) string {
	t.Helper()
	ctx := context.Background()
	a, err := f.st.PutAsset(ctx, job.Asset{ID: job.NewID("a"), Name: "clip.mp4", Size: 10, SHA256: sha, Key: "sources/" + sha, CreatedAt: time.Now()})
	require.NoError(t, err)
	j := job.Job{ID: job.NewID("j"), Profile: "web-hls", ProfileVersion: 1, IdempotencyKey: job.IdempotencyKey(sha, "web-hls", 1, ""),
		Source: job.Source{AssetID: a.ID, Name: a.Name, Size: a.Size, SHA256: sha}}
	j, _, err = f.st.CreateJob(ctx, j, []job.Task{{ID: job.NewID("t"), Kind: job.KindProbe, MaxAttempts: 1}}, time.Now())
	require.NoError(t, err)
	dir, err := f.blobs.TempDir("out")
	require.NoError(t, err)
	for name, body := range map[string]string{"master.m3u8": "#EXTM3U\n#EXT-X-STREAM-INF:BANDWIDTH=1\nmedia_0.m3u8\n", "chunk-0-00001.m4s": strings.Repeat("m", 100)} {
		require.NoError(t, os.WriteFile(filepath.Join(dir, name), []byte(body), 0o644))
	}
	require.NoError(t, f.blobs.CommitDir(dir, pipeline.OutputsKey(j.ID)))
	return j.ID
}

// TestPlaybackLinks: a link reads its own job's outputs with no key, and
// nothing else; expired, altered and revoked links are refused with a
// reason; CORS answers only the configured origins.
func TestPlaybackLinks(t *testing.T) {
	t.Parallel()
	const site = "https://videos.example"
	f := setup(t, func(d *api.Deps) { d.CORSOrigins = []string{site} })
	j1, j2 := linkJob(t, f, "sha-1"), linkJob(t, f, "sha-2")

	mint := func(id, body string) protocol.Link {
		t.Helper()
		var rd *strings.Reader
		if body != "" {
			rd = strings.NewReader(body)
		}
		var resp *http.Response
		var b []byte
		if rd == nil {
			resp, b = f.do(t, "POST", "/api/v1/jobs/"+id+"/links", adminKey, nil, "")
		} else {
			resp, b = f.do(t, "POST", "/api/v1/jobs/"+id+"/links", adminKey, rd, "application/json")
		}
		require.Equal(t, http.StatusCreated, resp.StatusCode, string(b))
		var l protocol.Link
		require.NoError(t, json.Unmarshal(b, &l))
		return l
	}
	get := func(path string, hdr map[string]string) (*http.Response, []byte) {
		t.Helper()
		req, err := http.NewRequest("GET", f.srv.URL+path, nil)
		require.NoError(t, err)
		for k, v := range hdr {
			req.Header.Set(k, v)
		}
		resp, err := http.DefaultClient.Do(req)
		require.NoError(t, err)
		defer resp.Body.Close()
		b, err := io.ReadAll(resp.Body)
		require.NoError(t, err)
		return resp, b
	}

	l := mint(j1, "")
	require.WithinDuration(t, time.Now().Add(link.DefaultTTL), l.ExpiresAt, time.Minute)
	require.True(t, strings.HasPrefix(l.Path, "/p/") && strings.HasSuffix(l.Path, "/"+j1+"/"), l.Path)
	require.Equal(t, f.srv.URL+l.Path, l.URL)
	require.Empty(t, l.Playlist, "a job that has not finished lists no outputs yet")

	resp, b := get(l.Path+"master.m3u8", nil)
	require.Equal(t, http.StatusOK, resp.StatusCode, string(b))
	require.Contains(t, string(b), "#EXTM3U")
	require.Equal(t, "no-referrer", resp.Header.Get("Referrer-Policy"))
	require.Empty(t, resp.Header.Get("Access-Control-Allow-Origin"), "no Origin, no CORS")
	resp, _ = get(l.Path+"chunk-0-00001.m4s", map[string]string{"Range": "bytes=10-19"})
	require.Equal(t, http.StatusPartialContent, resp.StatusCode)

	// Only that job's outputs: not another job's, not the API, not a path out.
	tok := strings.Split(l.Path, "/")[2]
	for _, p := range []string{"/p/" + tok + "/" + j2 + "/master.m3u8", "/p/" + tok + "/" + j2 + "/"} {
		resp, b := get(p, nil)
		require.Equal(t, http.StatusForbidden, resp.StatusCode, p)
		require.Equal(t, "link_invalid", errCode(t, b))
	}
	for _, p := range []string{l.Path + "../../api/v1/jobs", l.Path + "..%2F..%2Fsources/sha-1", l.Path + ".tmp/x", l.Path + "nope.m4s"} {
		resp, b := get(p, nil)
		require.Contains(t, []int{http.StatusBadRequest, http.StatusForbidden, http.StatusNotFound}, resp.StatusCode, p)
		require.NotContains(t, string(b), `"jobs"`, p)
	}
	for _, p := range []string{"/api/v1/jobs", "/api/v1/jobs/" + j1, "/api/v1/jobs/" + j1 + "/outputs/master.m3u8"} {
		resp, _ := get(p, map[string]string{"Authorization": "Bearer " + tok})
		require.Equal(t, http.StatusUnauthorized, resp.StatusCode, "a link's token is no key: %s", p)
	}

	// Altered: the expiry pushed out, or the signature changed.
	exp, sig, _ := strings.Cut(tok, ".")
	flip := []byte(sig) // one character changed to another of the alphabet
	flip[5] = map[bool]byte{true: 'B', false: 'A'}[flip[5] == 'A']
	for _, bad := range []string{"9" + exp + "." + sig, exp + "." + string(flip), "nonsense"} {
		resp, b := get("/p/"+bad+"/"+j1+"/master.m3u8", nil)
		require.Equal(t, http.StatusForbidden, resp.StatusCode, bad)
		require.Equal(t, "link_invalid", errCode(t, b))
	}
	// Expired: signed by the server's own secret, an hour ago.
	secret, err := f.st.Secret(context.Background(), link.SecretName, nil, time.Now())
	require.NoError(t, err)
	old := link.Sign(secret, j1, time.Now().Add(-time.Hour))
	resp, b = get("/p/"+old+"/"+j1+"/master.m3u8", nil)
	require.Equal(t, http.StatusForbidden, resp.StatusCode)
	require.Equal(t, "link_expired", errCode(t, b))
	require.Contains(t, string(b), "ask for a new one")

	// A ttl is a bounded duration.
	short := mint(j1, `{"ttl":"90m"}`)
	require.WithinDuration(t, time.Now().Add(90*time.Minute), short.ExpiresAt, time.Minute)
	for _, body := range []string{`{"ttl":"-1h"}`, `{"ttl":"forever"}`, `{"ttl":"9000h"}`, `{"nope":1}`} {
		resp, _ := f.do(t, "POST", "/api/v1/jobs/"+j1+"/links", adminKey, strings.NewReader(body), "application/json")
		require.Equal(t, http.StatusBadRequest, resp.StatusCode, body)
	}
	resp, _ = f.do(t, "POST", "/api/v1/jobs/j_nope/links", adminKey, nil, "")
	require.Equal(t, http.StatusNotFound, resp.StatusCode)
	resp, _ = f.do(t, "POST", "/api/v1/jobs/"+j1+"/links", "", nil, "")
	require.Equal(t, http.StatusUnauthorized, resp.StatusCode)
	resp, _ = f.do(t, "POST", "/api/v1/jobs/"+j1+"/links", "worker-key-0123456789", nil, "")
	require.Equal(t, http.StatusForbidden, resp.StatusCode)

	// CORS: the configured origin only, never "*", never credentials.
	resp, _ = get(l.Path+"master.m3u8", map[string]string{"Origin": site})
	require.Equal(t, site, resp.Header.Get("Access-Control-Allow-Origin"))
	require.Empty(t, resp.Header.Get("Access-Control-Allow-Credentials"))
	require.Contains(t, resp.Header.Values("Vary"), "Origin")
	resp, _ = get(l.Path+"master.m3u8", map[string]string{"Origin": "https://evil.example"})
	require.Empty(t, resp.Header.Get("Access-Control-Allow-Origin"))
	resp, b = get("/p/"+old+"/"+j1+"/master.m3u8", map[string]string{"Origin": site})
	require.Equal(t, site, resp.Header.Get("Access-Control-Allow-Origin"), "the player on the site may read why it was refused")
	require.Equal(t, http.StatusForbidden, resp.StatusCode, string(b))

	preflight := func(origin, method, headers string) *http.Response {
		req, err := http.NewRequest("OPTIONS", f.srv.URL+l.Path+"chunk-0-00001.m4s", nil)
		require.NoError(t, err)
		req.Header.Set("Origin", origin)
		req.Header.Set("Access-Control-Request-Method", method)
		if headers != "" {
			req.Header.Set("Access-Control-Request-Headers", headers)
		}
		resp, err := http.DefaultClient.Do(req)
		require.NoError(t, err)
		_ = resp.Body.Close()
		return resp
	}
	resp = preflight(site, "GET", "range")
	require.Equal(t, http.StatusNoContent, resp.StatusCode)
	require.Equal(t, site, resp.Header.Get("Access-Control-Allow-Origin"))
	require.Equal(t, "GET, HEAD", resp.Header.Get("Access-Control-Allow-Methods"))
	require.Equal(t, "Range", resp.Header.Get("Access-Control-Allow-Headers"))
	for _, c := range [][3]string{{"https://evil.example", "GET", "range"}, {site, "DELETE", ""}, {site, "GET", "authorization"}, {"null", "GET", ""}} {
		resp := preflight(c[0], c[1], c[2])
		require.Equal(t, http.StatusForbidden, resp.StatusCode, "%v", c)
		require.NotEqual(t, "*", resp.Header.Get("Access-Control-Allow-Origin"))
	}

	// Revoking replaces the secret: every earlier link is refused, new ones work.
	resp, b = f.do(t, "POST", "/api/v1/links/revoke", adminKey, nil, "")
	require.Equal(t, http.StatusOK, resp.StatusCode, string(b))
	for _, p := range []string{l.Path + "master.m3u8", short.Path + "master.m3u8"} {
		resp, b := get(p, nil)
		require.Equal(t, http.StatusForbidden, resp.StatusCode)
		require.Equal(t, "link_invalid", errCode(t, b))
	}
	fresh := mint(j1, "")
	resp, _ = get(fresh.Path+"master.m3u8", nil)
	require.Equal(t, http.StatusOK, resp.StatusCode)
	resp, _ = f.do(t, "POST", "/api/v1/links/revoke", "", nil, "")
	require.Equal(t, http.StatusUnauthorized, resp.StatusCode)
}
