package watch_test

import (
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/herdhq/herd/internal/config"
	"github.com/herdhq/herd/internal/job"
	"github.com/herdhq/herd/internal/publish"
	"github.com/herdhq/herd/internal/publish/publishtest"
	"github.com/herdhq/herd/internal/server"
	"github.com/herdhq/herd/internal/store"
)

// hookReceiver checks every delivery's signature and refuses the first
// attempt of each event (503), so every event is delivered twice.
type hookReceiver struct {
	*httptest.Server
	mu     sync.Mutex
	tries  map[string]int
	events []publish.Event
	bad    []string
}

func newHookReceiver(t *testing.T, secret string) *hookReceiver {
	h := &hookReceiver{tries: map[string]int{}}
	h.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		h.mu.Lock()
		defer h.mu.Unlock()
		if !publish.Verify(secret, body, r.Header.Get(publish.HeaderTimestamp), r.Header.Get(publish.HeaderSignature), time.Now(), publish.ReplayWindow) {
			h.bad = append(h.bad, r.Header.Get(publish.HeaderSignature))
			http.Error(w, "bad signature", http.StatusUnauthorized)
			return
		}
		id := r.Header.Get(publish.HeaderDelivery)
		h.tries[id]++
		if h.tries[id] == 1 {
			http.Error(w, "busy", http.StatusServiceUnavailable)
			return
		}
		var ev publish.Event
		if err := json.Unmarshal(body, &ev); err != nil || ev.ID != id || ev.Type != r.Header.Get(publish.HeaderEvent) {
			h.bad = append(h.bad, "body "+string(body))
			return
		}
		h.events = append(h.events, ev)
		w.WriteHeader(http.StatusNoContent)
	}))
	t.Cleanup(h.Close)
	return h
}

func (h *hookReceiver) received() []publish.Event {
	h.mu.Lock()
	defer h.mu.Unlock()
	return append([]publish.Event(nil), h.events...)
}

type jobView struct {
	ID         string           `json:"id"`
	State      string           `json:"state"`
	Deliveries []store.Delivery `json:"deliveries"`
}

// get reads an admin API path into v.
func (f *farm) get(t *testing.T, path string, v any) {
	t.Helper()
	tok, err := os.ReadFile(filepath.Join(f.data, server.AdminTokenFile))
	require.NoError(t, err)
	req, _ := http.NewRequest(http.MethodGet, "http://"+f.addr+path, nil)
	req.Header.Set("Authorization", "Bearer "+strings.TrimSpace(string(tok)))
	resp, err := http.DefaultClient.Do(req)
	require.NoError(t, err)
	defer resp.Body.Close()
	require.Equal(t, http.StatusOK, resp.StatusCode)
	require.NoError(t, json.NewDecoder(resp.Body).Decode(v))
}

func (f *farm) job(t *testing.T, id string) jobView {
	var v jobView
	f.get(t, "/api/v1/jobs/"+id, &v)
	return v
}

// A watched file ends in the library; Plex refreshes just the section that
// holds it (after one failed try, retried), Jellyfin is told about the new
// file, and a webhook receives signed job.succeeded and job.failed events,
// each after one refused attempt. Every attempt shows on the job.
func TestPublishersNotifyAndRetry(t *testing.T) {
	in, lib := t.TempDir(), t.TempDir()
	plex := publishtest.Plex(t, "plex-token",
		publishtest.Library{Key: "3", Title: "Movies", Type: "movie", Server: "/data/movies", Local: lib},
		publishtest.Library{Key: "4", Title: "TV", Type: "show", Server: "/data/tv", Local: t.TempDir()})
	plex.Set(func(s *publishtest.Server) { s.FailNext, s.Lag = 1, 1 })
	jf := publishtest.Jellyfin(t, "jf-key", publishtest.Library{Key: "9d7ad6afe9afa2dab1a2f6e00ad28fa6", Title: "Movies", Type: "movies", Server: "/media/movies", Local: lib})
	hook := newHookReceiver(t, "hook-secret")
	fast := config.Duration(200 * time.Millisecond)
	f := serveWith(t, in, lib, func(w *config.Watch) { w.Publish = []string{"movies", "plex", "jf", "hook"} }, map[string]config.Publisher{
		"plex": {Type: config.PublishPlex, URL: plex.URL, Token: "plex-token", Library: "movies", LibraryPath: "/data/movies", Attempts: 5, RetryAfter: fast, ConfirmTimeout: config.Duration(20 * time.Second)},
		"jf":   {Type: config.PublishJellyfin, URL: jf.URL, Token: "jf-key", Library: "movies", LibraryPath: "/media/movies", Attempts: 5, RetryAfter: fast, ConfirmTimeout: config.Duration(20 * time.Second)},
		"hook": {Type: config.PublishWebhook, URL: hook.URL + "/herd", Secret: "hook-secret", Attempts: 5, RetryAfter: fast},
	})
	clip(t, filepath.Join(in, "Notify Me (2022).mp4"), 700)
	require.NoError(t, os.WriteFile(filepath.Join(in, "broken.mkv"), []byte("not a video at all"), 0o644))

	published := filepath.Join(lib, "Notify Me (2022)", "Notify Me (2022).mp4")
	eventually(t, 90*time.Second, "published and both events delivered", func() bool { return len(hook.received()) == 2 })
	var ok, failed publish.Event
	for _, ev := range hook.received() {
		if ev.Type == job.EventSucceeded {
			ok = ev
		} else {
			failed = ev
		}
	}
	require.Equal(t, job.EventSucceeded, ok.Type)
	require.Equal(t, job.EventFailed, failed.Type)
	require.Equal(t, map[string]string{"movies": published}, ok.Files)
	require.Equal(t, "Notify Me (2022).mp4", ok.Watch.File)
	require.Equal(t, "broken.mkv", failed.Watch.File)
	var okJob, failedJob jobView
	require.NoError(t, json.Unmarshal(ok.Job, &okJob))
	require.NoError(t, json.Unmarshal(failed.Job, &failedJob))
	require.Equal(t, "succeeded", okJob.State)
	require.Equal(t, "failed", failedJob.State)

	// The delivery service goes on while the hook has heard both events:
	// Plex is still confirming its second try.
	eventually(t, 30*time.Second, "every delivery of the job ended", func() bool {
		n := 0
		for _, d := range f.job(t, okJob.ID).Deliveries {
			if d.Final {
				n++
			}
		}
		return n == 4
	})
	require.Equal(t, []string{"3 /data/movies/Notify Me (2022)", "3 /data/movies/Notify Me (2022)"}, plex.Calls(), "one refused refresh, then one that worked; only that section and folder")
	require.Equal(t, []string{"/data/movies/Notify Me (2022)/Notify Me (2022).mp4"}, plex.Indexed("3"))
	require.Empty(t, plex.Indexed("4"))
	require.Equal(t, []string{"Created /media/movies/Notify Me (2022)/Notify Me (2022).mp4"}, jf.Calls())
	require.Empty(t, hook.bad, "every delivery verified")

	eventually(t, 10*time.Second, "only the failed item waits in the work area", func() bool { return len(f.items(t)) == 1 })
	type att struct {
		pub   string
		n     int
		ok    bool
		final bool
	}
	var got []att
	for _, d := range f.job(t, okJob.ID).Deliveries {
		require.Equal(t, job.EventSucceeded, d.Event)
		got = append(got, att{d.Publisher, d.Attempt, d.OK, d.Final})
		if d.Publisher == "plex" && !d.OK {
			require.Contains(t, d.Detail, "HTTP 500")
			require.Contains(t, d.Detail, "next try in")
		}
		if d.Publisher == "movies" {
			require.Equal(t, published, d.Detail)
		}
	}
	require.ElementsMatch(t, []att{{"movies", 1, true, true}, {"plex", 1, false, false}, {"plex", 2, true, true},
		{"jf", 1, true, true}, {"hook", 1, false, false}, {"hook", 2, true, true}}, got)
	fd := f.job(t, failedJob.ID).Deliveries
	require.Len(t, fd, 2, "a failed job only goes to the webhook")
	require.Equal(t, "hook", fd[1].Publisher)
	require.True(t, fd[1].OK)
}

// A receiver that never answers is tried `attempts` times; then herd gives
// up and says so on the job. The watched file is finished all the same,
// without waiting for it. The folder
// makes HLS and has no library: the webhook alone is told.
func TestDeliveryGivesUp(t *testing.T) {
	in, lib := t.TempDir(), t.TempDir()
	dead := httptest.NewServer(http.NotFoundHandler())
	dead.Close() // connection refused
	f := serveWith(t, in, lib, func(w *config.Watch) { w.Profile, w.Publish = "web-hls", []string{"hook"} }, map[string]config.Publisher{
		"hook": {Type: config.PublishWebhook, URL: dead.URL, Secret: "s", Attempts: 3, RetryAfter: config.Duration(100 * time.Millisecond)},
	})
	clip(t, filepath.Join(in, "Lonely (2020).mp4"), 800)
	eventually(t, 90*time.Second, "finished", func() bool {
		_, err := os.Stat(filepath.Join(in, "done", "Lonely (2020).mp4"))
		return err == nil && len(f.items(t)) == 0
	})
	require.Empty(t, files(t, lib))
	jobs := listJobs(t, f)
	require.Len(t, jobs, 1)
	// The file is done with once the job succeeded; the delivery service
	// goes on trying the webhook.
	var ds []store.Delivery
	eventually(t, 30*time.Second, "three webhook attempts", func() bool {
		ds = f.job(t, jobs[0]).Deliveries
		return len(ds) == 3
	})
	for i, d := range ds {
		require.Equal(t, "hook", d.Publisher)
		require.Equal(t, i+1, d.Attempt)
		require.False(t, d.OK)
		require.Equal(t, i == 2, d.Final)
	}
	require.Contains(t, ds[2].Detail, "gave up after 3 attempts")
}

func listJobs(t *testing.T, f *farm) []string {
	var page struct {
		Jobs []jobView `json:"jobs"`
	}
	f.get(t, "/api/v1/jobs", &page)
	var ids []string
	for _, j := range page.Jobs {
		ids = append(ids, j.ID)
	}
	return ids
}
