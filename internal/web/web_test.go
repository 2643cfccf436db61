package web_test

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"html"
	"io"
	"log/slog"
	"net/http"
	"net/http/cookiejar"
	"net/http/httptest"
	"net/url"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/cdproto/runtime"
	"github.com/chromedp/chromedp"
	"github.com/stretchr/testify/require"

	"github.com/herdhq/herd/internal/api"
	"github.com/herdhq/herd/internal/apikey"
	"github.com/herdhq/herd/internal/ingest"
	"github.com/herdhq/herd/internal/job"
	"github.com/herdhq/herd/internal/jobview"
	"github.com/herdhq/herd/internal/pipeline"
	"github.com/herdhq/herd/internal/profile"
	"github.com/herdhq/herd/internal/queue"
	"github.com/herdhq/herd/internal/store"
	"github.com/herdhq/herd/internal/testenv"
	"github.com/herdhq/herd/internal/web"
)

const adminKey = "test-admin-key-0123456789"

type fixture struct {
	url string
	st  store.Store
	api *api.Server
	sub *ingest.Submitter
}

func setup(t *testing.T) *fixture {
	t.Helper()
	dir := t.TempDir()
	ctx := context.Background()
	st, blobs := testenv.Stores(t, dir)
	require.NoError(t, st.CreateKey(ctx, store.Key{ID: "k1", Kind: "admin", Name: "test", Hash: apikey.Hash(adminKey), CreatedAt: time.Now()}))
	require.NoError(t, st.CreateKey(ctx, store.Key{ID: "k2", Kind: "worker", Name: "w1", Hash: apikey.Hash("worker-key-0123456789"), CreatedAt: time.Now()}))
	sig := &queue.Signal{}
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	sub := ingest.New(st, blobs, profile.Builtin(), sig, ingest.Config{MaxUpload: 1 << 20})
	a := api.New(api.Deps{Store: st, Blobs: blobs, Profiles: profile.Builtin(), Submit: sub, Kick: sig, Files: &pipeline.LocalFiles{Blobs: blobs}, Log: log})
	ui, err := web.New(web.Deps{API: a, Profiles: profile.Builtin(), Version: "test", Log: log})
	require.NoError(t, err)
	mux := http.NewServeMux()
	mux.Handle("/api/", a.Handler())
	mux.Handle("/", ui.Handler())
	srv := httptest.NewServer(mux)
	t.Cleanup(srv.Close)
	t.Cleanup(a.Shutdown)
	return &fixture{url: srv.URL, st: st, api: a, sub: sub}
}

// client is a browser-like client: it keeps cookies and does not follow redirects.
func client(t *testing.T) *http.Client {
	jar, err := cookiejar.New(nil)
	require.NoError(t, err)
	return &http.Client{Jar: jar, CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
}

func send(t *testing.T, c *http.Client, method, u string, body io.Reader, hdr map[string]string) (*http.Response, string) {
	t.Helper()
	req, err := http.NewRequest(method, u, body)
	require.NoError(t, err)
	for k, v := range hdr {
		req.Header.Set(k, v)
	}
	resp, err := c.Do(req)
	require.NoError(t, err)
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	return resp, string(b)
}

func login(t *testing.T, f *fixture, c *http.Client, key string, hdr map[string]string) (*http.Response, string) {
	form := url.Values{"key": {key}, "next": {"/jobs"}}
	h := map[string]string{"Content-Type": "application/x-www-form-urlencoded", "Origin": f.url}
	for k, v := range hdr {
		h[k] = v
	}
	return send(t, c, "POST", f.url+"/login", strings.NewReader(form.Encode()), h)
}

func csrfOf(t *testing.T, f *fixture, c *http.Client) string {
	t.Helper()
	resp, body := send(t, c, "GET", f.url+"/jobs", nil, nil)
	require.Equal(t, http.StatusOK, resp.StatusCode)
	i := strings.Index(body, `name="csrf-token" content="`)
	require.Positive(t, i, body)
	rest := body[i+len(`name="csrf-token" content="`):]
	return rest[:strings.Index(rest, `"`)]
}

func sessionCookie(resp *http.Response) *http.Cookie {
	for _, c := range resp.Cookies() {
		if c.Name == api.SessionCookie {
			return c
		}
	}
	return nil
}

func TestSignInAndCSRF(t *testing.T) {
	f := setup(t)
	c := client(t)

	resp, _ := send(t, c, "GET", f.url+"/jobs?state=failed", nil, nil)
	require.Equal(t, http.StatusSeeOther, resp.StatusCode, "pages need a session")
	require.Equal(t, "/login?next="+url.QueryEscape("/jobs?state=failed"), resp.Header.Get("Location"))

	resp, body := login(t, f, c, "herd_adm_wrong", nil)
	require.Equal(t, http.StatusUnauthorized, resp.StatusCode)
	require.Contains(t, body, "not a valid admin key")
	require.Nil(t, sessionCookie(resp))

	resp, _ = login(t, f, c, "worker-key-0123456789", nil)
	require.Equal(t, http.StatusUnauthorized, resp.StatusCode, "a worker key signs no one in")

	resp, body = login(t, f, c, adminKey, map[string]string{"Origin": "https://evil.example"})
	require.Equal(t, http.StatusForbidden, resp.StatusCode, "a sign-in posted from another site")
	require.Contains(t, body, "another site")
	require.Nil(t, sessionCookie(resp))

	resp, _ = login(t, f, c, adminKey, nil)
	require.Equal(t, http.StatusSeeOther, resp.StatusCode)
	require.Equal(t, "/jobs", resp.Header.Get("Location"))
	ck := sessionCookie(resp)
	require.NotNil(t, ck)
	require.True(t, ck.HttpOnly)
	require.False(t, ck.Secure, "plain HTTP here")
	require.Equal(t, http.SameSiteStrictMode, ck.SameSite)

	// The cookie opens the API for reading; writing needs the page's token too.
	resp, _ = send(t, c, "GET", f.url+"/api/v1/jobs", nil, nil)
	require.Equal(t, http.StatusOK, resp.StatusCode)
	token := csrfOf(t, f, c)
	resp, body = send(t, c, "POST", f.url+"/api/v1/jobs/jnope/cancel", nil, nil)
	require.Equal(t, http.StatusForbidden, resp.StatusCode)
	require.Contains(t, body, `"csrf"`)
	resp, _ = send(t, c, "POST", f.url+"/api/v1/jobs/jnope/cancel", nil, map[string]string{api.CSRFHeader: token + "x"})
	require.Equal(t, http.StatusForbidden, resp.StatusCode)
	resp, _ = send(t, c, "POST", f.url+"/api/v1/jobs/jnope/cancel", nil, map[string]string{api.CSRFHeader: token})
	require.Equal(t, http.StatusNotFound, resp.StatusCode, "past the checks: no such job")
	resp, _ = send(t, c, "POST", f.url+"/api/v1/worker/claim", strings.NewReader("{}"), map[string]string{api.CSRFHeader: token})
	require.Equal(t, http.StatusForbidden, resp.StatusCode, "a session is not a worker")

	// A session's secret works only as a cookie, and a key never as one.
	resp, _ = send(t, http.DefaultClient, "GET", f.url+"/api/v1/jobs", nil, map[string]string{"Authorization": "Bearer " + ck.Value})
	require.Equal(t, http.StatusUnauthorized, resp.StatusCode)
	resp, _ = send(t, http.DefaultClient, "GET", f.url+"/api/v1/jobs", nil, map[string]string{"Cookie": api.SessionCookie + "=" + adminKey})
	require.Equal(t, http.StatusUnauthorized, resp.StatusCode)

	// Sign out needs the token; after it the cookie is dead, even if kept.
	resp, _ = send(t, c, "POST", f.url+"/logout", strings.NewReader("csrf=wrong"), map[string]string{"Content-Type": "application/x-www-form-urlencoded"})
	require.Equal(t, http.StatusForbidden, resp.StatusCode)
	resp, _ = send(t, c, "POST", f.url+"/logout", strings.NewReader("csrf="+url.QueryEscape(token)), map[string]string{"Content-Type": "application/x-www-form-urlencoded"})
	require.Equal(t, http.StatusSeeOther, resp.StatusCode)
	require.Equal(t, "/login", resp.Header.Get("Location"))
	resp, _ = send(t, http.DefaultClient, "GET", f.url+"/api/v1/jobs", nil, map[string]string{"Cookie": api.SessionCookie + "=" + ck.Value})
	require.Equal(t, http.StatusUnauthorized, resp.StatusCode)
	resp, _ = send(t, client(t), "GET", f.url+"/", nil, map[string]string{"Cookie": api.SessionCookie + "=" + ck.Value})
	require.Equal(t, http.StatusSeeOther, resp.StatusCode)
}

func TestSessionEdges(t *testing.T) {
	f := setup(t)
	ctx := context.Background()

	// An expired session opens nothing.
	past := time.Now().Add(-time.Minute)
	require.NoError(t, f.st.CreateKey(ctx, store.Key{ID: "ks", Kind: "session", Name: "old", Hash: apikey.Hash("herd_ses_expired"), CreatedAt: past.Add(-api.SessionTTL), ExpiresAt: &past}))
	resp, body := send(t, http.DefaultClient, "GET", f.url+"/api/v1/jobs", nil, map[string]string{"Cookie": api.SessionCookie + "=herd_ses_expired"})
	require.Equal(t, http.StatusUnauthorized, resp.StatusCode)
	require.Contains(t, body, "sign in again")
	resp, _ = send(t, client(t), "GET", f.url+"/workers", nil, map[string]string{"Cookie": api.SessionCookie + "=herd_ses_expired"})
	require.Equal(t, http.StatusSeeOther, resp.StatusCode)

	// A sign-in with a key that expires soon lasts no longer than the key.
	soon := time.Now().Add(time.Hour)
	require.NoError(t, f.st.CreateKey(ctx, store.Key{ID: "kt", Kind: "admin", Name: "temp", Hash: apikey.Hash("temporary-admin-key-012345"), CreatedAt: time.Now(), ExpiresAt: &soon}))
	resp, _ = login(t, f, client(t), "temporary-admin-key-012345", nil)
	require.Equal(t, http.StatusSeeOther, resp.StatusCode)
	require.WithinDuration(t, soon, sessionCookie(resp).Expires, 2*time.Second)

	// Where sign-in sends the browser stays on this site, however the address is dressed up.
	for next, want := range map[string]string{"/jobs?state=failed": "/jobs?state=failed", "//evil.example/x": "/", "/\t/evil.example": "/",
		"/\\evil.example": "/", "https://evil.example/": "/", "/%2F%2Fevil.example": "/", "jobs": "/", "/ok\n": "/"} {
		resp, _ := send(t, client(t), "GET", f.url+"/login?next="+url.QueryEscape(next), nil, nil)
		require.Equal(t, http.StatusOK, resp.StatusCode)
		form := url.Values{"key": {adminKey}, "next": {next}}
		resp, _ = send(t, client(t), "POST", f.url+"/login", strings.NewReader(form.Encode()), map[string]string{"Content-Type": "application/x-www-form-urlencoded"})
		require.Equal(t, http.StatusSeeOther, resp.StatusCode, next)
		require.Equal(t, want, resp.Header.Get("Location"), next)
	}

	// Behind TLS the cookie is Secure; a redirect after sign-in stays on this site.
	c := client(t)
	form := url.Values{"key": {adminKey}, "next": {"//evil.example/x"}}
	resp, _ = send(t, c, "POST", f.url+"/login", strings.NewReader(form.Encode()), map[string]string{"Content-Type": "application/x-www-form-urlencoded", "X-Forwarded-Proto": "https"})
	require.Equal(t, http.StatusSeeOther, resp.StatusCode)
	require.Equal(t, "/", resp.Header.Get("Location"))
	require.True(t, sessionCookie(resp).Secure)

	// Pages carry a strict content security policy; assets revalidate by ETag.
	resp, _ = send(t, c, "GET", f.url+"/login", nil, nil)
	require.Contains(t, resp.Header.Get("Content-Security-Policy"), "script-src 'self'")
	require.Equal(t, "DENY", resp.Header.Get("X-Frame-Options"))
	resp, _ = send(t, c, "GET", f.url+"/assets/app.js", nil, nil)
	require.Equal(t, http.StatusOK, resp.StatusCode)
	require.Equal(t, "text/javascript; charset=utf-8", resp.Header.Get("Content-Type"))
	resp, _ = send(t, c, "GET", f.url+"/assets/app.js", nil, map[string]string{"If-None-Match": resp.Header.Get("ETag")})
	require.Equal(t, http.StatusNotModified, resp.StatusCode)
	resp, _ = send(t, c, "GET", f.url+"/assets/nope.js", nil, nil)
	require.Equal(t, http.StatusNotFound, resp.StatusCode)
	resp, _ = send(t, c, "GET", f.url+"/no/such/page", nil, nil)
	require.Equal(t, http.StatusNotFound, resp.StatusCode)
}

// sse reads one event (name and data) from a stream, failing after 10 s.
func sse(t *testing.T, r *bufio.Reader) (string, string) {
	t.Helper()
	type ev struct {
		name, data string
		err        error
	}
	got := make(chan ev, 1)
	go func() {
		var e ev
		for {
			line, err := r.ReadString('\n')
			if err != nil {
				got <- ev{err: err}
				return
			}
			line = strings.TrimRight(line, "\n")
			switch {
			case line == "" && e.name != "":
				got <- e
				return
			case strings.HasPrefix(line, "event: "):
				e.name = line[len("event: "):]
			case strings.HasPrefix(line, "data: "):
				e.data = line[len("data: "):]
			}
		}
	}()
	select {
	case e := <-got:
		require.NoError(t, e.err)
		return e.name, e.data
	case <-time.After(10 * time.Second):
		t.Fatal("no event within 10 s")
		return "", ""
	}
}

func TestEventStream(t *testing.T) {
	f := setup(t)
	get := func(q string) *http.Response {
		req, err := http.NewRequest("GET", f.url+"/api/v1/events?"+q, nil)
		require.NoError(t, err)
		req.Header.Set("Authorization", "Bearer "+adminKey)
		resp, err := http.DefaultClient.Do(req)
		require.NoError(t, err)
		return resp
	}
	for q, want := range map[string]int{"view=bogus": 400, "view=job&id=jnope": 404, "view=jobs&state=bogus": 400} {
		resp := get(q)
		_ = resp.Body.Close()
		require.Equal(t, want, resp.StatusCode, q)
	}
	resp := get("view=jobs")
	defer resp.Body.Close()
	require.Equal(t, "text/event-stream", resp.Header.Get("Content-Type"))
	r := bufio.NewReader(resp.Body)
	name, data := sse(t, r)
	require.Equal(t, "jobs", name)
	require.JSONEq(t, `{"jobs": [], "next": ""}`, data)

	// A new job is pushed without asking; so is its cancellation.
	j, _, err := f.sub.Upload(context.Background(), "clip.mp4", "mp4-library", ingest.Options{}, strings.NewReader("not really a video"))
	require.NoError(t, err)
	var list struct{ Jobs []jobview.JobView }
	name, data = sse(t, r)
	require.Equal(t, "jobs", name)
	require.NoError(t, json.Unmarshal([]byte(data), &list))
	require.Len(t, list.Jobs, 1)
	require.Equal(t, j.ID, list.Jobs[0].ID)
	require.Equal(t, job.Queued, list.Jobs[0].State)

	one := get("view=job&id=" + j.ID)
	defer one.Body.Close()
	r1 := bufio.NewReader(one.Body)
	name, _ = sse(t, r1)
	require.Equal(t, "job", name)

	_, err = f.st.CancelJob(context.Background(), j.ID, time.Now())
	require.NoError(t, err)
	_, data = sse(t, r)
	require.NoError(t, json.Unmarshal([]byte(data), &list))
	require.Equal(t, job.Canceled, list.Jobs[0].State)
	var v jobview.JobView
	_, data = sse(t, r1)
	require.NoError(t, json.Unmarshal([]byte(data), &v))
	require.Equal(t, job.Canceled, v.State)
	require.NotEmpty(t, v.Tasks, "the job view carries its tasks")

	for _, view := range []string{"dashboard", "workers"} {
		resp := get("view=" + view)
		name, data := sse(t, bufio.NewReader(resp.Body))
		_ = resp.Body.Close()
		require.Equal(t, view, name)
		require.True(t, json.Valid([]byte(data)))
	}

	// Shutting the API down ends open streams (so an http.Server's Shutdown need not wait).
	done := make(chan error, 1)
	go func() { _, err := io.Copy(io.Discard, r); done <- err }()
	f.api.Shutdown()
	select {
	case <-done: //nolint:errcheck // that the stream ends matters, not how (EOF or a reset)
	case <-time.After(5 * time.Second):
		t.Fatal("the stream did not end at shutdown")
	}
}

// chunkedJob submits a web-hls job and plays its tasks through the store as
// workers would: the probe splits the encode into four chunk tasks (each
// needing its own capability, so a test claims exactly the one it means);
// chunk 2 succeeds, chunk 1 runs on w1, chunk 3 fails once and runs again
// on w2, chunk 4 waits. submitted, when set, sees the job before its probe
// runs. It returns the job and the lease of each running chunk.
func chunkedJob(t *testing.T, f *fixture, submitted func(job.Job)) (job.Job, map[int]job.Lease) {
	t.Helper()
	ctx := context.Background()
	j, _, err := f.sub.Upload(ctx, "long.mp4", "web-hls", ingest.Options{}, strings.NewReader("not really a video"))
	require.NoError(t, err)
	if submitted != nil {
		submitted(j)
	}
	now := time.Now()
	claim := func(worker string, caps ...string) *job.Claimed {
		t.Helper()
		c, err := f.st.Claim(ctx, store.ClaimRequest{Owner: worker + "/0", Worker: worker, Caps: caps, Now: now, TTL: time.Hour})
		require.NoError(t, err)
		require.NotNil(t, c, "nothing to claim for %s %v", worker, caps)
		if len(caps) > 0 {
			require.Equal(t, "c"+strconv.Itoa(c.Task.Chunk), caps[0], "claimed %s %d", c.Task.Kind, c.Task.Chunk)
		}
		return c
	}
	probe := claim("w1")
	require.Equal(t, job.KindProbe, probe.Task.Kind)
	var chunks []job.Task
	for k := 1; k <= 4; k++ {
		chunks = append(chunks, job.Task{ID: fmt.Sprintf("%s-chunk-%d", j.ID, k), Kind: job.KindChunk, Chunk: k, DependsOn: []string{probe.Task.ID},
			MaxAttempts: 3, Needs: []string{fmt.Sprintf("c%d", k)}, Seconds: 60, Weight: job.KindChunk.Weight() / 4})
	}
	src := j.Source
	src.Duration = 240
	require.NoError(t, f.st.Complete(ctx, probe.Lease, job.Result{Source: &src, Expand: &job.Expansion{Replace: job.KindEncode, Tasks: chunks}}, now))

	// Tasks any worker may take (thumbnails) go to one that keeps them.
	for {
		c, err := f.st.Claim(ctx, store.ClaimRequest{Owner: "other/0", Worker: "other", Now: now, TTL: time.Hour})
		require.NoError(t, err)
		if c == nil {
			break
		}
		require.NotEqual(t, job.KindChunk, c.Task.Kind)
	}
	leases := map[int]job.Lease{}
	c2 := claim("w2", "c2")
	require.NoError(t, f.st.Complete(ctx, c2.Lease, job.Result{}, now))
	leases[1] = claim("w1", "c1").Lease
	require.NoError(t, f.st.Heartbeat(ctx, leases[1], job.Progress{Progress: 0.5, Speed: 2.5}, now, time.Hour))
	c3 := claim("w1", "c3")
	require.NoError(t, f.st.Fail(ctx, c3.Lease, job.Failure{Message: "worker lost"}, now))
	now = now.Add(time.Minute) // past any backoff
	leases[3] = claim("w2", "c3").Lease
	require.NoError(t, f.st.Heartbeat(ctx, leases[3], job.Progress{Progress: 0.25, Speed: 1.5}, now, time.Hour))
	return j, leases
}

// cellRE reads one cell of the chunk strip as job.html writes it.
var cellRE = regexp.MustCompile(`<li class="chunk ([a-z]+)" title="([^"]*)" data-chunk="(\d+)" data-state="([a-z]+)" data-attempt="(\d+)">` +
	`<progress max="1" value="([0-9.e+-]+)" aria-label="([^"]*)"></progress>(?:<span class="retry" aria-hidden="true">(\d+)</span>)?</li>`)

type cell struct{ class, title, chunk, state, attempt, value, label, badge string }

func chunkCells(body string) []cell {
	var out []cell
	for _, m := range cellRE.FindAllStringSubmatch(body, -1) {
		out = append(out, cell{m[1], html.UnescapeString(m[2]), m[3], m[4], m[5], m[6], html.UnescapeString(m[7]), m[8]})
	}
	return out
}

func TestJobPageChunkStrip(t *testing.T) {
	t.Parallel()
	f := setup(t)
	c := client(t)
	resp, _ := login(t, f, c, adminKey, nil)
	require.Equal(t, http.StatusSeeOther, resp.StatusCode)

	j, _ := chunkedJob(t, f, nil)
	resp, body := send(t, c, "GET", f.url+"/jobs/"+j.ID, nil, nil)
	require.Equal(t, http.StatusOK, resp.StatusCode)
	require.Equal(t, 4, strings.Count(body, `<li class="chunk `), "one cell per chunk")
	require.Equal(t, []cell{
		{"running", "chunk 1: running, w1, 2.50×, attempt 1", "1", "running", "1", "0.5", "chunk 1: running, w1, 2.50×, attempt 1", ""},
		{"succeeded", "chunk 2: succeeded, w2, attempt 1", "2", "succeeded", "1", "1", "chunk 2: succeeded, w2, attempt 1", ""},
		{"running", "chunk 3: running, w2, 1.50×, attempt 2", "3", "running", "2", "0.25", "chunk 3: running, w2, 1.50×, attempt 2", "2"},
		{"queued", "chunk 4: queued", "4", "queued", "0", "0", "chunk 4: queued", ""},
	}, chunkCells(body), "in chunk order, filled by progress, labelled, the retried one badged")
	require.Contains(t, body, `<section id="j-chunks-box" aria-labelledby="h-chunks">`, "the strip is shown")
	require.Contains(t, body, "4 chunks: 1 done, 2 running, 1 retried")

	// The job's line aggregates the chunks: its speed is theirs summed, and an ETA follows from it.
	v, err := f.api.JobPage(context.Background(), j.ID)
	require.NoError(t, err)
	require.InDelta(t, 4.0, v.Speed, 1e-9)
	require.NotNil(t, v.ETASeconds)
	require.Contains(t, body, `<h1 id="j-title">long.mp4</h1>`)
	require.Contains(t, body, `<span class="state running">running</span>`)
	require.Regexp(t, `<span id="j-progress-text">\d+% at 4\.00×, about \d+:\d\d left</span>`, body)
	require.Contains(t, body, `<title>long.mp4 · herd</title>`)
}

func TestJobPageUnchunked(t *testing.T) {
	t.Parallel()
	f := setup(t)
	c := client(t)
	resp, _ := login(t, f, c, adminKey, nil)
	require.Equal(t, http.StatusSeeOther, resp.StatusCode)

	j, _, err := f.sub.Upload(context.Background(), "short.mp4", "mp4-library", ingest.Options{}, strings.NewReader("not really a video"))
	require.NoError(t, err)
	resp, body := send(t, c, "GET", f.url+"/jobs/"+j.ID, nil, nil)
	require.Equal(t, http.StatusOK, resp.StatusCode)
	require.NotContains(t, body, `<li class="chunk`, "no chunk tasks, no cells")
	require.Contains(t, body, `<section id="j-chunks-box" aria-labelledby="h-chunks" hidden>`, "the strip stays hidden until a probe splits the job")
	require.Contains(t, body, `<span id="j-progress-text">0%</span>`)
	require.Contains(t, body, `<span class="state queued">queued</span>`)

	resp, body = send(t, c, "GET", f.url+"/upload", nil, nil)
	require.Equal(t, http.StatusOK, resp.StatusCode)
	require.Equal(t, 1, strings.Count(body, " selected>"), "one profile preselected")
	require.Contains(t, body, `<option value="web-hls" selected>web-hls`, "the one every browser plays, not the first by name")

	resp, body = send(t, c, "GET", f.url+"/jobs/jnope", nil, nil)
	require.Equal(t, http.StatusNotFound, resp.StatusCode)
	require.Contains(t, body, "Not found")
	resp, _ = send(t, client(t), "GET", f.url+"/jobs/"+j.ID, nil, nil)
	require.Equal(t, http.StatusSeeOther, resp.StatusCode, "the page needs a session")
}

// stripJS reads the chunk strip of a document as JSON.
const stripJS = `((doc) => JSON.stringify([...doc.querySelectorAll("#j-chunks li")].map((li) => [li.className, li.title, li.dataset.chunk,
  li.dataset.state, li.dataset.attempt, li.querySelector("progress").value, li.querySelector("progress").getAttribute("aria-label"),
  li.querySelector(".retry")?.textContent || ""])))`

// The strip in a real browser: the page of a job its probe has not split
// yet shows none; the cells appear when the probe splits it and fill in as
// the chunks report, without a reload, and say what the server's first
// render of the same job says.
func TestJobPageChunkStripLive(t *testing.T) {
	t.Parallel()
	f := setup(t)
	ctx, cancel := context.WithTimeout(testenv.Browser(t), 2*time.Minute)
	t.Cleanup(cancel)
	require.NoError(t, chromedp.Run(ctx,
		chromedp.Navigate(f.url+"/login"),
		chromedp.WaitVisible(`#key`, chromedp.ByQuery),
		chromedp.SendKeys(`#key`, adminKey, chromedp.ByQuery),
		chromedp.Submit(`#key`, chromedp.ByQuery),
		chromedp.WaitVisible(`#d-queued`, chromedp.ByQuery), // signed in: the dashboard
	))

	_, leases := chunkedJob(t, f, func(j job.Job) {
		require.NoError(t, chromedp.Run(ctx, chromedp.Navigate(f.url+"/jobs/"+j.ID), chromedp.Evaluate(`window.notReloaded = true`, nil)))
		waitJS(t, ctx, "the live view", `document.querySelector("#j-tasks tr")`)
		waitJS(t, ctx, "no strip before the split", `document.querySelector("#j-chunks-box").hidden && !document.querySelector("#j-chunks li")`)
	})
	waitJS(t, ctx, "the strip", `window.notReloaded && document.querySelectorAll("#j-chunks li").length === 4 && !document.querySelector("#j-chunks-box").hidden`)
	waitJS(t, ctx, "the retried chunk's badge", `document.querySelector('#j-chunks li[data-chunk="3"] .retry')?.textContent === "2"`)

	ctxb := context.Background()
	require.NoError(t, f.st.Heartbeat(ctxb, leases[1], job.Progress{Progress: 0.9, Speed: 3}, time.Now(), time.Hour))
	require.NoError(t, f.st.Complete(ctxb, leases[3], job.Result{}, time.Now()))
	waitJS(t, ctx, "chunk 1 filling", `(() => { const li = document.querySelector('#j-chunks li[data-chunk="1"]');
		return li.querySelector("progress").value === 0.9 && li.title === "chunk 1: running, w1, 3.00×, attempt 1"; })()`)
	waitJS(t, ctx, "chunk 3 done", `document.querySelector('#j-chunks li[data-chunk="3"]').className === "chunk succeeded"`)
	waitJS(t, ctx, "the job's speed, now chunk 1's alone", `document.querySelector("#j-progress-text").textContent.includes("at 3.00×, about ")`)
	require.Equal(t, "4 chunks: 2 done, 1 running, 1 retried", evalJS[string](t, ctx, `document.querySelector("#j-chunks-summary").textContent`))

	// What the script drew is what the server renders for the same job.
	live := evalJS[string](t, ctx, stripJS+`(document)`)
	var served string
	require.NoError(t, chromedp.Run(ctx, chromedp.Evaluate(`fetch(location.href).then((r) => r.text()).then((h) => `+stripJS+`(new DOMParser().parseFromString(h, "text/html")))`, &served,
		func(p *runtime.EvaluateParams) *runtime.EvaluateParams { return p.WithAwaitPromise(true) })))
	require.JSONEq(t, served, live)
	require.Contains(t, live, `"chunk 3: succeeded, w2, attempt 2"`)
	require.True(t, evalJS[bool](t, ctx, `window.notReloaded === true`), "all of it live, without a reload")
}

func evalJS[T any](t *testing.T, ctx context.Context, expr string) T {
	t.Helper()
	var v T
	require.NoError(t, chromedp.Run(ctx, chromedp.Evaluate(expr, &v)), expr)
	return v
}

// waitJS waits up to 15 s for a condition in the page.
func waitJS(t *testing.T, ctx context.Context, what, cond string) {
	t.Helper()
	testenv.WaitJS(t, ctx, what, cond, 15*time.Second)
}
