package main_test

import (
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/herdhq/herd/internal/publish"
)

// hookLog receives webhooks at any path on its own address and records,
// per path, the events that arrived signed with that path's secret.
type hookLog struct {
	mu      sync.Mutex
	url     string
	secrets map[string]string // path -> secret
	got     map[string][]hookHit
	hold    chan struct{} // while not nil, the first job.succeeded at /slow waits for it
	held    chan struct{} // closed when that request arrived
	heldID  string        // its delivery id
}

type hookHit struct {
	Event, Delivery, Job string
	Files                map[string]string
	Data                 json.RawMessage
	OK                   bool // signed right, within the replay window
}

func newHookLog(t *testing.T, addr string, secrets map[string]string) *hookLog {
	t.Helper()
	l, err := net.Listen("tcp", addr)
	require.NoError(t, err)
	h := &hookLog{url: "http://" + l.Addr().String(), secrets: secrets, got: map[string][]hookHit{}}
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/redirect" {
			http.Redirect(w, r, r.URL.Query().Get("to"), http.StatusTemporaryRedirect)
			return
		}
		body, _ := io.ReadAll(r.Body)
		var ev publish.Event
		_ = json.Unmarshal(body, &ev)
		var j struct{ ID string }
		_ = json.Unmarshal(ev.Job, &j)
		hit := hookHit{Event: ev.Type, Delivery: r.Header.Get(publish.HeaderDelivery), Job: j.ID, Files: ev.Files, Data: ev.Data,
			OK: publish.Verify(h.secrets[r.URL.Path], body, r.Header.Get(publish.HeaderTimestamp), r.Header.Get(publish.HeaderSignature), time.Now(), publish.ReplayWindow)}
		h.mu.Lock()
		hold := h.hold
		first := r.URL.Path == "/slow" && ev.Type == "job.succeeded" && hold != nil && h.held != nil
		if first {
			h.heldID = hit.Delivery
			close(h.held)
			h.held = nil
		}
		h.mu.Unlock()
		if first {
			<-hold // the server is killed meanwhile: this answer never reaches it
			http.Error(w, "gone", http.StatusServiceUnavailable)
			return
		}
		h.mu.Lock()
		h.got[r.URL.Path] = append(h.got[r.URL.Path], hit)
		h.mu.Unlock()
		w.WriteHeader(http.StatusNoContent)
	})}
	go func() { _ = srv.Serve(l) }()
	t.Cleanup(func() { _ = srv.Close() })
	return h
}

// events lists path's events of job, as "event" strings in arrival order.
func (h *hookLog) events(path, job string) []string {
	h.mu.Lock()
	defer h.mu.Unlock()
	var out []string
	for _, hit := range h.got[path] {
		if hit.Job == job {
			out = append(out, hit.Event)
		}
	}
	return out
}

func (h *hookLog) hits(path string) []hookHit {
	h.mu.Lock()
	defer h.mu.Unlock()
	return append([]hookHit(nil), h.got[path]...)
}

func (h *hookLog) wait(t *testing.T, path, job string, want ...string) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		got := h.events(path, job)
		if len(got) >= len(want) {
			require.ElementsMatch(t, want, got, "%s heard of job %s", path, job)
			return
		}
		require.True(t, time.Now().Before(deadline), "%s heard only %v of job %s, not %v", path, got, job, want)
		time.Sleep(100 * time.Millisecond)
	}
}

// TestDeliverEveryJob: jobs from the CLI, the API and a tus upload (the
// web page's way) name publishers and reach them; a subscription hears of
// every job's life cycle, signed; webhooks made through the API may not
// reach the server's own networks nor follow a redirect elsewhere; and a
// server killed while a delivery is in flight delivers it after restart,
// once.
func TestDeliverEveryJob(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	data, lib := filepath.Join(dir, "data"), filepath.Join(dir, "lib")
	hooks := newHookLog(t, "127.0.0.1:0", map[string]string{"/pub": "pub-secret", "/sub": "sub-secret", "/slow": "slow-secret", "/news": "news-secret"})
	api := newHookLog(t, "127.0.0.2:0", map[string]string{"/api": "api-secret"})
	cfg := filepath.Join(dir, "herd.yaml")
	require.NoError(t, os.WriteFile(cfg, []byte(fmt.Sprintf(`local_workers: 2
webhook_allow: [127.0.0.2]
publishers:
  movies: {type: library, path: %s, kind: movies}
  hook: {type: webhook, url: %s/pub, secret: pub-secret, retry_after: 1s, events: [job.queued, job.succeeded, job.failed]}
subscriptions:
  site: {url: %s/sub, secret: sub-secret}
  slow: {url: %s/slow, secret: slow-secret, events: [job.succeeded]}
  news: {url: %s/news, secret: news-secret, events: [job.progress, job.succeeded], labels: {team: news}}
`, lib, hooks.url, hooks.url, hooks.url, hooks.url)), 0o644))
	s := startServer(t, data, "--config", cfg)
	src := clip(t, dir, 2, "160x90")
	movie := filepath.Join(dir, "Deliver Me (2021).mp4")
	require.NoError(t, os.Rename(src, movie))

	// API-made subscriptions: the server's own networks are refused, the
	// allowed address is not.
	post := func(path string, body any) (int, map[string]any) {
		b, _ := json.Marshal(body)
		req, err := http.NewRequest("POST", s.url+path, strings.NewReader(string(b)))
		require.NoError(t, err)
		req.Header.Set("Authorization", "Bearer "+s.token())
		req.Header.Set("Content-Type", "application/json")
		resp, err := http.DefaultClient.Do(req)
		require.NoError(t, err)
		defer resp.Body.Close()
		var out map[string]any
		_ = json.NewDecoder(resp.Body).Decode(&out)
		return resp.StatusCode, out
	}
	for _, u := range []string{hooks.url + "/sub", "http://169.254.169.254/latest/meta-data/", "http://[::1]:9/x", "http://localhost:9/"} {
		code, out := post("/api/v1/subscriptions", map[string]any{"url": u})
		require.Equal(t, http.StatusBadRequest, code, u)
		require.Equal(t, "target_refused", out["error"].(map[string]any)["code"], u)
	}
	code, out := post("/api/v1/subscriptions", map[string]any{"name": "api", "url": api.url + "/api", "secret": "api-secret", "events": []string{"job.succeeded"}})
	require.Equal(t, http.StatusCreated, code, out)
	require.Equal(t, "api-secret", out["secret"])
	// One that redirects to another host: reported, not followed.
	code, out = post("/api/v1/subscriptions", map[string]any{"name": "bounce", "url": api.url + "/redirect?to=" + hooks.url + "/stolen", "events": []string{"job.succeeded"}})
	require.Equal(t, http.StatusCreated, code, out)

	// The CLI: into the library, then the webhook publisher with the file.
	stdout, stderr, code2 := s.herd("submit", movie, "--profile", "mp4-library", "--publish", "movies,hook", "--label", "team=news", "-l", "tier=gold", "--wait")
	require.Equal(t, 0, code2, stderr)
	cli := strings.TrimSpace(stdout)
	hooks.wait(t, "/pub", cli, "job.queued", "job.succeeded")
	placed := filepath.Join(lib, "Deliver Me (2021)", "Deliver Me (2021).mp4")
	require.FileExists(t, placed)
	for _, hit := range hooks.hits("/pub") {
		require.True(t, hit.OK, "signed")
		if hit.Event == "job.succeeded" {
			require.Equal(t, placed, hit.Files["movies"])
		}
	}
	hooks.wait(t, "/sub", cli, "job.queued", "job.succeeded")
	api.wait(t, "/api", cli, "job.succeeded")
	j := s.job(cli)
	var kinds []string
	for _, d := range j.Deliveries {
		kinds = append(kinds, d.Publisher+" "+d.Event)
	}
	require.Subset(t, kinds, []string{"movies job.succeeded", "hook job.succeeded", "site job.succeeded", "api job.succeeded", "bounce job.succeeded"})
	for _, d := range j.Deliveries {
		if d.Publisher == "bounce" {
			require.False(t, d.OK)
			require.Contains(t, d.Detail, "redirected")
		}
	}
	require.Empty(t, hooks.hits("/stolen"), "a redirect to another host is not followed")

	// Labels: on the job, and a subscription that asks for them hears of
	// this job only, with its progress (which no other target hears).
	require.Equal(t, map[string]string{"team": "news", "tier": "gold"}, j.Labels)
	shown, _, _ := s.herd("job", cli)
	require.Contains(t, shown, "team=news,tier=gold")
	deadline := time.Now().Add(30 * time.Second)
	for !slices.Contains(hooks.events("/news", cli), "job.succeeded") {
		require.True(t, time.Now().Before(deadline), "the labelled subscription heard %v", hooks.events("/news", cli))
		time.Sleep(100 * time.Millisecond)
	}
	var steps []float64
	for _, hit := range hooks.hits("/news") {
		require.Equal(t, cli, hit.Job, "only the labelled job")
		require.True(t, hit.OK, "signed")
		if hit.Event == "job.progress" {
			var d struct{ Progress float64 }
			require.NoError(t, json.Unmarshal(hit.Data, &d))
			steps = append(steps, d.Progress)
		}
	}
	require.NotEmpty(t, steps, "progress steps")
	for _, f := range steps {
		require.True(t, f > 0 && f < 1, "a step is a tenth short of the end: %v", steps)
	}
	require.NotContains(t, hooks.events("/sub", cli), "job.progress", "only where asked")
	code, out = post("/api/v1/jobs", map[string]any{"source_path": movie, "profile": "mp4-library", "labels": map[string]string{"bad key": "x"}})
	require.Equal(t, http.StatusBadRequest, code)
	require.Contains(t, out["error"].(map[string]any)["message"], `label key "bad key"`)
	_, stderr, code2 = s.herd("submit", movie, "--profile", "mp4-library", "--publish", "movies,hook", "--label", "team=sport")
	require.Equal(t, 1, code2, "the same job, other labels")
	require.Contains(t, stderr, "labelled [team=news,tier=gold], not [team=sport]")

	// The API refuses a publisher it does not have, or a library for a
	// ladder, naming them.
	code, out = post("/api/v1/jobs", map[string]any{"source_path": movie, "profile": "mp4-library", "publish": []string{"nope"}})
	require.Equal(t, http.StatusBadRequest, code)
	require.Contains(t, out["error"].(map[string]any)["message"], `no publisher "nope"; this server has hook, movies`)
	stdout, stderr, code2 = s.herd("submit", movie, "--profile", "web-hls", "--publish", "movies")
	require.Equal(t, 1, code2, stdout)
	require.Contains(t, stderr, "movies is a library, which takes one MP4 or MKV file")
	// The same file and profile again is the same job: asking it for
	// other publishers is refused, not silently ignored.
	stdout, stderr, code2 = s.herd("submit", movie, "--profile", "mp4-library", "--publish", "movies,hook", "--label", "tier=gold,team=news")
	require.Equal(t, 0, code2, stderr)
	require.Equal(t, cli, strings.TrimSpace(stdout))
	code, out = post("/api/v1/jobs", map[string]any{"source_path": movie, "profile": "mp4-library", "publish": []string{"movies"}})
	require.Equal(t, http.StatusForbidden, code, "source_path outside --import-root: %v", out)

	// A tus upload (the web page's way) that fails: job.failed, to the
	// subscription and to the publisher it names.
	b64 := func(v string) string { return base64.StdEncoding.EncodeToString([]byte(v)) }
	// upload sends a whole file in one tus creation-with-upload request.
	upload := func(data []byte, name, meta string) (*http.Response, string) {
		req, err := http.NewRequest("POST", s.url+"/api/v1/uploads", strings.NewReader(string(data)))
		require.NoError(t, err)
		req.Header.Set("Authorization", "Bearer "+s.token())
		req.Header.Set("Tus-Resumable", "1.0.0")
		req.Header.Set("Upload-Length", fmt.Sprint(len(data)))
		req.Header.Set("Content-Type", "application/offset+octet-stream")
		req.Header.Set("Upload-Metadata", "filename "+b64(name)+",profile "+b64("mp4-library")+","+meta)
		resp, err := http.DefaultClient.Do(req)
		require.NoError(t, err)
		body, _ := io.ReadAll(resp.Body)
		_ = resp.Body.Close()
		return resp, string(body)
	}
	junk := []byte(strings.Repeat("not a video ", 100))
	resp, _ := upload(junk, "junk.mp4", "publish "+b64("hook")+",labels "+b64("team=web"))
	require.Equal(t, http.StatusCreated, resp.StatusCode)
	web := resp.Header.Get("Herd-Job-Id")
	require.NotEmpty(t, web)
	require.Equal(t, "failed", s.waitFinal(web).State)
	require.Equal(t, map[string]string{"team": "web"}, s.job(web).Labels, "labels through tus metadata")
	// The same file and profile as the CLI job, with other labels: refused
	// (409) once the upload is whole, not left to be tried again.
	resp, body := upload(mustRead(t, movie), "again.mp4", "publish "+b64("movies,hook")+",labels "+b64("team=sport"))
	require.Equal(t, http.StatusConflict, resp.StatusCode, body)
	require.Contains(t, body, "labelled [team=news,tier=gold]")
	hooks.wait(t, "/sub", web, "job.queued", "job.failed")
	hooks.wait(t, "/pub", web, "job.queued", "job.failed")

	// A canceled job.
	stdout, stderr, code2 = s.herd("submit", clip(t, dir, 20, "640x360"), "--profile", "web-hls")
	require.Equal(t, 0, code2, stderr)
	canceled := strings.TrimSpace(stdout)
	_, stderr, code2 = s.herd("cancel", canceled)
	require.Equal(t, 0, code2, stderr)
	hooks.wait(t, "/sub", canceled, "job.queued", "job.canceled")

	// Killed while a delivery is in flight: after restart it is delivered,
	// with the same delivery id, and every target has each event once.
	hooks.mu.Lock()
	hold := make(chan struct{})
	held := make(chan struct{})
	hooks.hold, hooks.held = hold, held
	hooks.mu.Unlock()
	again := filepath.Join(dir, "Kill Me (2022).mp4")
	require.NoError(t, os.WriteFile(again, append(mustRead(t, movie), 0), 0o644)) // other bytes: another job
	stdout, stderr, code2 = s.herd("submit", again, "--profile", "mp4-library", "--publish", "movies,hook")
	require.Equal(t, 0, code2, stderr)
	killed := strings.TrimSpace(stdout)
	select {
	case <-held:
	case <-time.After(60 * time.Second):
		t.Fatal("the slow subscription never heard of the job's success")
	}
	// The other targets' deliveries of the event end first: a webhook that
	// answered but whose answer the server had not recorded when it died
	// is sent again, under the same delivery id, for the receiver to drop.
	deadline = time.Now().Add(30 * time.Second)
	for {
		ended := map[string]bool{}
		for _, d := range s.job(killed).Deliveries {
			if d.Event == "job.succeeded" && d.OK {
				ended[d.Publisher] = true
			}
		}
		if ended["hook"] && ended["site"] && ended["movies"] {
			break
		}
		require.True(t, time.Now().Before(deadline), "the other deliveries did not end: %v", ended)
		time.Sleep(50 * time.Millisecond)
	}
	time.Sleep(200 * time.Millisecond) // each is settled right after it is recorded
	require.NoError(t, s.cmd.Process.Signal(syscall.SIGKILL))
	_ = s.cmd.Wait()
	close(hold)
	s2 := startServer(t, data, "--config", cfg)
	hooks.wait(t, "/slow", killed, "job.succeeded")
	time.Sleep(3 * time.Second) // anything sent twice would have arrived by now
	for _, path := range []string{"/slow", "/sub", "/pub"} {
		seen := map[string]string{}
		for _, hit := range hooks.hits(path) {
			if hit.Job != killed {
				continue
			}
			require.True(t, hit.OK, path)
			_, dup := seen[hit.Event]
			require.False(t, dup, "%s heard %s of the killed job twice", path, hit.Event)
			seen[hit.Event] = hit.Delivery
		}
		require.Contains(t, seen, "job.succeeded", path)
		if path == "/slow" {
			require.Equal(t, hooks.heldID, seen["job.succeeded"], "the delivery cut off by the kill is sent again under its id")
		}
	}
	require.FileExists(t, filepath.Join(lib, "Kill Me (2022)", "Kill Me (2022).mp4"))
	require.Equal(t, "succeeded", s2.job(killed).State)
}

func mustRead(t *testing.T, p string) []byte {
	t.Helper()
	b, err := os.ReadFile(p)
	require.NoError(t, err)
	return b
}
