package publish_test

import (
	"context"
	"fmt"
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
)

// library makes a library folder here with one published movie in it.
func library(t *testing.T) (root, file string) {
	root = filepath.Join(t.TempDir(), "Movies")
	file = filepath.Join(root, "Big Buck Bunny (2008)", "Big Buck Bunny (2008).mp4")
	require.NoError(t, os.MkdirAll(filepath.Dir(file), 0o755))
	require.NoError(t, os.WriteFile(file, []byte("movie"), 0o644))
	return root, file
}

func event(file string) publish.Event {
	return publish.Event{ID: "evt_1", Type: job.EventSucceeded, CreatedAt: time.Now(), Job: []byte(`{"id":"j1"}`), Files: map[string]string{"movies": file}}
}

func TestPlexRefreshesTheSectionHoldingTheFile(t *testing.T) {
	root, file := library(t)
	other := t.TempDir()
	plex := publishtest.Plex(t, "tok",
		publishtest.Library{Key: "1", Title: "Movies", Type: "movie", Server: "/data/media", Local: filepath.Dir(root)},
		publishtest.Library{Key: "2", Title: "TV Shows", Type: "show", Server: "/data/tv", Local: other},
		publishtest.Library{Key: "7", Title: "Films", Type: "movie", Server: "/data/media/Movies", Local: root}) // nested: the deeper one wins
	plex.Set(func(s *publishtest.Server) { s.Lag = 2 })
	p := &publish.Plex{MediaServer: publish.MediaServer{Name: "plex", URL: plex.URL, Token: "tok", Library: "movies",
		Root: root, ServerRoot: "/data/media/Movies", Confirm: 10 * time.Second, Poll: 20 * time.Millisecond}}
	detail, err := p.Notify(context.Background(), event(file))
	require.NoError(t, err)
	require.Equal(t, []string{"7 /data/media/Movies/Big Buck Bunny (2008)"}, plex.Calls(), "only the folder of the new file, in the deepest section")
	require.Equal(t, []string{"/data/media/Movies/Big Buck Bunny (2008)/Big Buck Bunny (2008).mp4"}, plex.Indexed("7"))
	require.Contains(t, detail, "refreshed Plex section Films (7)")
	require.Empty(t, plex.Indexed("1"), "the other section was not scanned")

	// A file Plex indexed long ago (behind 150 newer ones) is found too: every
	// few polls the whole section is paged through.
	older := filepath.Join(root, "Big Buck Bunny (2008)")
	for i := range 150 {
		require.NoError(t, os.WriteFile(filepath.Join(older, fmt.Sprintf("zz-extra-%03d.mp4", i)), []byte("x"), 0o644))
	}
	plex.Set(func(s *publishtest.Server) { s.Lag = 0 })
	_, err = p.Notify(context.Background(), event(file))
	require.NoError(t, err)
	require.Len(t, plex.Indexed("7"), 151)

	// A wrong token is a permanent error that says what to check.
	p.Token = "nope"
	_, err = p.Notify(context.Background(), event(file))
	require.True(t, publish.IsPermanent(err), "%v", err)
	require.ErrorContains(t, err, "HTTP 401")
	require.ErrorContains(t, err, "check the Plex token")

	// A path no section holds is permanent too, and names the sections.
	p.Token, p.ServerRoot = "tok", "/elsewhere"
	_, err = p.Notify(context.Background(), event(file))
	require.True(t, publish.IsPermanent(err))
	require.ErrorContains(t, err, "no Plex library section holds /elsewhere/Big Buck Bunny (2008)/Big Buck Bunny (2008).mp4")
	require.ErrorContains(t, err, "Films=/data/media/Movies")

	// A server error is retryable.
	p.ServerRoot = "/data/media/Movies"
	plex.Set(func(s *publishtest.Server) { s.FailNext = 1 })
	_, err = p.Notify(context.Background(), event(file))
	require.Error(t, err)
	require.False(t, publish.IsPermanent(err))

	// A refresh that never lists the file times out (retryable).
	require.NoError(t, os.Remove(file))
	gone := filepath.Join(root, "Ghost (1990)", "Ghost (1990).mp4")
	p.Confirm = 100 * time.Millisecond
	_, err = p.Notify(context.Background(), publish.Event{Type: job.EventSucceeded, Files: map[string]string{"movies": gone}})
	require.ErrorContains(t, err, "did not list /data/media/Movies/Ghost (1990)/Ghost (1990).mp4: timed out")
	require.False(t, publish.IsPermanent(err))
	require.False(t, p.Wants(job.EventFailed), "a failed job wrote nothing to index")
}

func TestJellyfinReportsTheNewFile(t *testing.T) {
	root, file := library(t)
	jf := publishtest.Jellyfin(t, "key",
		publishtest.Library{Key: "f137a2dd21bbc1b99aa5c0f6bf02a805", Title: "Movies", Type: "movies", Server: "/media/movies", Local: root},
		publishtest.Library{Key: "a656b907eb3a73532e40e44b968d0225", Title: "Shows", Type: "tvshows", Server: "/media/tv", Local: t.TempDir()})
	jf.Set(func(s *publishtest.Server) { s.Lag = 1 })
	j := &publish.Jellyfin{MediaServer: publish.MediaServer{Name: "jf", URL: jf.URL + "/", Token: "key", Library: "movies",
		Root: root, ServerRoot: "/media/movies", Poll: 20 * time.Millisecond}}
	detail, err := j.Notify(context.Background(), event(file))
	require.NoError(t, err)
	require.Equal(t, []string{"Created /media/movies/Big Buck Bunny (2008)/Big Buck Bunny (2008).mp4"}, jf.Calls())
	require.Contains(t, detail, "updated Jellyfin library Movies")

	j.Token = "wrong"
	_, err = j.Notify(context.Background(), event(file))
	require.True(t, publish.IsPermanent(err))
	require.ErrorContains(t, err, "Jellyfin API key")

	j.Token, j.ServerRoot = "key", ""
	_, err = j.Notify(context.Background(), event(file))
	require.ErrorContains(t, err, "no Jellyfin library holds "+file)
}

func TestWebhookSignsEveryDelivery(t *testing.T) {
	var mu sync.Mutex
	var got []*http.Request
	var bodies [][]byte
	status := []int{http.StatusServiceUnavailable, http.StatusNoContent, http.StatusBadRequest, http.StatusFound}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		defer mu.Unlock()
		b, _ := io.ReadAll(r.Body)
		got, bodies = append(got, r), append(bodies, b)
		if r.Header.Get("Location") == "" && status[0] == http.StatusFound {
			w.Header().Set("Location", "https://elsewhere/")
		}
		w.WriteHeader(status[0])
		status = status[1:]
	}))
	defer srv.Close()
	h := &publish.Webhook{URL: srv.URL, Secret: "s3cr3t", Agent: "herd/test"}
	ev := event("/lib/x.mp4")
	_, err := h.Notify(context.Background(), ev)
	require.ErrorContains(t, err, "HTTP 503")
	require.False(t, publish.IsPermanent(err), "5xx is retried")
	detail, err := h.Notify(context.Background(), ev)
	require.NoError(t, err)
	require.Contains(t, detail, "HTTP 204")
	_, err = h.Notify(context.Background(), ev)
	require.True(t, publish.IsPermanent(err), "4xx is not retried: %v", err)
	_, err = h.Notify(context.Background(), ev)
	require.True(t, publish.IsPermanent(err), "a redirect is not followed: %v", err)
	require.ErrorContains(t, err, "use the final address")

	for i, r := range got[:2] {
		require.Equal(t, "application/json", r.Header.Get("Content-Type"))
		require.Equal(t, job.EventSucceeded, r.Header.Get(publish.HeaderEvent))
		require.Equal(t, "evt_1", r.Header.Get(publish.HeaderDelivery), "the same id on every retry")
		sig := r.Header.Get(publish.HeaderSignature)
		require.True(t, strings.HasPrefix(sig, "sha256="))
		ts := r.Header.Get(publish.HeaderTimestamp)
		require.True(t, publish.Verify("s3cr3t", bodies[i], ts, sig, time.Now(), publish.ReplayWindow))
		require.False(t, publish.Verify("other", bodies[i], ts, sig, time.Now(), publish.ReplayWindow), "another secret does not verify")
		require.False(t, publish.Verify("s3cr3t", bodies[i], ts, sig, time.Now().Add(time.Hour), publish.ReplayWindow), "a replay an hour later does not verify")
		require.False(t, publish.Verify("s3cr3t", bodies[i], "1"+ts, sig, time.Now(), time.Hour*1e6), "the timestamp is signed")
		require.False(t, publish.Verify("s3cr3t", append([]byte(" "), bodies[i]...), ts, sig, time.Now(), publish.ReplayWindow), "a changed body does not verify")
	}
	require.Contains(t, string(bodies[0]), `"type":"job.succeeded"`)
	require.Contains(t, string(bodies[0]), `"job":{"id":"j1"}`)
}

func TestSweepRemovesOnlyAbandonedTemporaryFiles(t *testing.T) {
	root, file := library(t)
	dir := filepath.Dir(file)
	lib, err := publish.NewLibrary(config.Publisher{Name: "movies", Type: config.PublishLibrary, Path: root})
	require.NoError(t, err)
	host, _ := os.Hostname()
	host = strings.NewReplacer("/", "_", "-", "_").Replace(host)
	earlierRun := filepath.Join(dir, ".herd-"+host+".abc.12-999.tmp") // this machine, a run that crashed
	otherFresh := filepath.Join(dir, ".herd-elsewhere.abc.12-1.tmp")  // another machine, maybe still writing
	otherOld := filepath.Join(dir, ".herd-elsewhere.abd.13-2.tmp")    // another machine, a day old
	notOurs := filepath.Join(dir, ".hidden-by-someone-else")
	for _, p := range []string{earlierRun, otherFresh, otherOld, notOurs} {
		require.NoError(t, os.WriteFile(p, []byte("x"), 0o644))
	}
	long := time.Now().Add(-25 * time.Hour)
	require.NoError(t, os.Chtimes(otherOld, long, long))
	require.NoError(t, os.Chtimes(notOurs, long, long))
	// A write of this run, in progress while the sweep runs.
	pr, pw := io.Pipe()
	put := make(chan error, 1)
	go func() {
		_, err := lib.Put(context.Background(), "In Progress (2024)/In Progress (2024).mp4", pr)
		put <- err
	}()
	_, err = pw.Write([]byte("part of a movie"))
	require.NoError(t, err)

	n, err := lib.Sweep(context.Background())
	require.NoError(t, err)
	require.Equal(t, 2, n)
	require.NoFileExists(t, earlierRun)
	require.NoFileExists(t, otherOld)
	require.FileExists(t, otherFresh, "another machine's recent write is left alone")
	require.FileExists(t, notOurs)
	require.FileExists(t, file)
	require.NoError(t, pw.Close())
	require.NoError(t, <-put, "this run's write was not touched")
	require.FileExists(t, filepath.Join(root, "In Progress (2024)", "In Progress (2024).mp4"))

	missing, _ := publish.NewLibrary(config.Publisher{Name: "m", Type: config.PublishLibrary, Path: filepath.Join(root, "not-yet")})
	n, err = missing.Sweep(context.Background())
	require.NoError(t, err)
	require.Zero(t, n)
}
