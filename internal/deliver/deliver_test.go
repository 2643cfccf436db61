package deliver

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/herdhq/herd/internal/blob"
	"github.com/herdhq/herd/internal/config"
	"github.com/herdhq/herd/internal/job"
	"github.com/herdhq/herd/internal/pipeline"
	"github.com/herdhq/herd/internal/publish"
	"github.com/herdhq/herd/internal/publish/publishtest"
	"github.com/herdhq/herd/internal/store"
	"github.com/herdhq/herd/internal/store/sqlstore"
	"github.com/herdhq/herd/internal/testenv"
)

func TestGuard(t *testing.T) {
	t.Parallel()
	g, err := NewGuard(nil)
	require.NoError(t, err)
	for addr, ok := range map[string]bool{
		"127.0.0.1": false, "::1": false, "10.1.2.3": false, "172.16.0.1": false, "192.168.1.1": false,
		"169.254.169.254": false, "fe80::1": false, "fd00:ec2::254": false, "100.64.0.1": false, "0.0.0.0": false,
		"::": false, "224.0.0.1": false, "::ffff:127.0.0.1": false, "64:ff9b::a00:1": false, "255.255.255.255": false,
		"93.184.216.34": true, "2606:2800:220:1:248:1893:25c8:1946": true, "8.8.8.8": true,
	} {
		require.Equal(t, ok, g.Allowed(netip.MustParseAddr(addr)), addr)
	}
	ctx := context.Background()
	for _, u := range []string{"http://127.0.0.1:9/x", "http://169.254.169.254/latest/meta-data", "http://[::1]/", "http://localhost/",
		"ftp://example.com/", "http://user:pw@93.184.216.34/", "not a url"} {
		require.ErrorIs(t, g.CheckURL(ctx, u), ErrRefused, u)
	}
	require.NoError(t, g.CheckURL(ctx, "https://93.184.216.34/hook"))

	allowed, err := NewGuard([]string{"127.0.0.0/8", "10.9.8.7"})
	require.NoError(t, err)
	require.True(t, allowed.Allowed(netip.MustParseAddr("127.0.0.2")))
	require.True(t, allowed.Allowed(netip.MustParseAddr("10.9.8.7")))
	require.False(t, allowed.Allowed(netip.MustParseAddr("10.9.8.8")))
	_, err = NewGuard([]string{"nonsense"})
	require.ErrorContains(t, err, "--webhook-allow")

	// The check holds on the connection too: a name that resolves to a
	// refused address later is still refused.
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { w.WriteHeader(http.StatusNoContent) }))
	defer srv.Close()
	_, err = g.Client(5 * time.Second).Get(srv.URL)
	require.ErrorIs(t, err, ErrRefused)
	resp, err := allowed.Client(5 * time.Second).Get(srv.URL)
	require.NoError(t, err)
	_ = resp.Body.Close()
}

// receiver records the events a webhook is sent and answers with status.
type receiver struct {
	mu     sync.Mutex
	secret string
	status int
	got    []publish.Event
	bad    int
	srv    *httptest.Server
}

func newReceiver(t *testing.T, secret string) *receiver {
	r := &receiver{secret: secret, status: http.StatusNoContent}
	r.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		body, _ := io.ReadAll(req.Body)
		r.mu.Lock()
		defer r.mu.Unlock()
		if !publish.Verify(r.secret, body, req.Header.Get(publish.HeaderTimestamp), req.Header.Get(publish.HeaderSignature), time.Now(), publish.ReplayWindow) {
			r.bad++
			w.WriteHeader(http.StatusUnauthorized)
			return
		}
		var ev publish.Event
		_ = json.Unmarshal(body, &ev)
		if r.status < 300 {
			r.got = append(r.got, ev)
		}
		w.WriteHeader(r.status)
	}))
	t.Cleanup(r.srv.Close)
	return r
}

func (r *receiver) events() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []string
	for _, ev := range r.got {
		out = append(out, ev.Type)
	}
	return out
}

type fixture struct {
	st    *sqlstore.Store
	blobs *blob.Local
	svc   *Service
	clock time.Time
	lib   string
	shows string // the folder of library shows (libraries:)
}

func setup(t *testing.T, pubs map[string]config.Publisher) *fixture {
	t.Helper()
	dir := t.TempDir()
	st, blobs := testenv.Stores(t, dir)
	guard, err := NewGuard([]string{"127.0.0.0/8"})
	require.NoError(t, err)
	f := &fixture{st: st, blobs: blobs, clock: time.Now(), lib: filepath.Join(dir, "library"), shows: filepath.Join(dir, "shows")}
	for name, p := range pubs {
		if p.Type == config.PublishLibrary {
			p.Path = f.lib
			pubs[name] = p
		}
	}
	f.svc, err = New(st, "test", &pipeline.LocalFiles{Blobs: blobs}, pubs, map[string]string{"shows": f.shows}, guard, slog.New(slog.NewTextHandler(io.Discard, nil)))
	require.NoError(t, err)
	f.svc.now = func() time.Time { return f.clock }
	return f
}

// newJob stores a job (probe, then finalize) that names publish.
func (f *fixture) newJob(t *testing.T, sha, profile string, publish ...string) job.Job {
	t.Helper()
	ctx := context.Background()
	a, err := f.st.PutAsset(ctx, job.Asset{ID: job.NewID("a"), Name: "The Movie (2020).mov", Size: 10, SHA256: sha, Key: "sources/" + sha, CreatedAt: f.clock})
	require.NoError(t, err)
	j := job.Job{ID: job.NewID("j"), Profile: profile, ProfileVersion: 1, IdempotencyKey: job.IdempotencyKey(sha, profile, 1, ""),
		Source: job.Source{AssetID: a.ID, Name: a.Name, Size: a.Size, SHA256: sha}, Publish: publish}
	p := job.Task{ID: job.NewID("t"), Kind: job.KindProbe, MaxAttempts: 3}
	fin := job.Task{ID: job.NewID("t"), Kind: job.KindFinalize, MaxAttempts: 3, DependsOn: []string{p.ID}}
	j, _, err = f.st.CreateJob(ctx, j, []job.Task{p, fin}, f.clock)
	require.NoError(t, err)
	return j
}

// succeed runs a job's tasks; its output is video.mp4.
func (f *fixture) succeed(t *testing.T, j job.Job) {
	t.Helper()
	ctx := context.Background()
	dir, err := f.blobs.TempDir("out")
	require.NoError(t, err)
	require.NoError(t, os.WriteFile(filepath.Join(dir, "video.mp4"), []byte("not really a movie"), 0o644))
	require.NoError(t, f.blobs.CommitDir(dir, pipeline.OutputsKey(j.ID)))
	for _, out := range []json.RawMessage{nil, json.RawMessage(`[{"name":"video","kind":"mp4","path":"video.mp4"}]`)} {
		c, err := f.st.Claim(ctx, store.ClaimRequest{Owner: "w", Worker: "w", Now: f.clock, TTL: time.Minute})
		require.NoError(t, err)
		require.NotNil(t, c)
		require.NoError(t, f.st.Complete(ctx, c.Lease, job.Result{Data: json.RawMessage(`{}`), Outputs: out}, f.clock))
	}
	got, err := f.st.GetJob(ctx, j.ID)
	require.NoError(t, err)
	require.Equal(t, job.Succeeded, got.State)
}

// run delivers until nothing is due at the fixture's clock.
func (f *fixture) run(t *testing.T) {
	t.Helper()
	for i := 0; i < 20 && f.svc.round(context.Background()) > 0; i++ {
	}
}

func (f *fixture) deliveries(t *testing.T, id string) []store.Delivery {
	ds, err := f.st.Deliveries(context.Background(), id)
	require.NoError(t, err)
	return ds
}

// TestPublishersOfAnyJob: a job submitted with publishers is copied into
// the library once it succeeds, and its webhook publisher hears of it
// after the copy, with the file; every attempt is on the job.
func TestPublishersOfAnyJob(t *testing.T) {
	t.Parallel()
	hook, quiet := newReceiver(t, "pub-secret"), newReceiver(t, "quiet-secret")
	f := setup(t, map[string]config.Publisher{
		"movies": {Name: "movies", Type: config.PublishLibrary, Kind: "movies"},
		"hook": {Name: "hook", Type: config.PublishWebhook, URL: hook.srv.URL, Secret: "pub-secret", Attempts: 3, RetryAfter: config.Duration(time.Second),
			Events: job.LifeCycle},
		"quiet": {Name: "quiet", Type: config.PublishWebhook, URL: quiet.srv.URL, Secret: "quiet-secret", Attempts: 3, RetryAfter: config.Duration(time.Second)},
	})
	j := f.newJob(t, "sha1", "mp4-library", "movies", "hook", "quiet")
	f.run(t)
	require.Equal(t, []string{job.EventQueued}, hook.events(), "the webhook publisher hears of the events it names; the library waits")
	require.Empty(t, quiet.events(), "by default a webhook publisher hears how jobs end, not that they were queued")
	f.succeed(t, j)
	f.run(t)
	want := filepath.Join(f.lib, "The Movie (2020)", "The Movie (2020).mp4")
	b, err := os.ReadFile(want)
	require.NoError(t, err)
	require.Equal(t, "not really a movie", string(b))
	require.Equal(t, []string{job.EventQueued, job.EventSucceeded}, hook.events())
	require.Equal(t, want, hook.got[1].Files["movies"], "the webhook names the library file")
	ds := f.deliveries(t, j.ID)
	var summary []string
	for _, d := range ds {
		summary = append(summary, d.Publisher+" "+d.Event+" "+map[bool]string{true: "ok", false: "failed"}[d.OK])
	}
	require.ElementsMatch(t, []string{"hook job.queued ok", "movies job.succeeded ok", "hook job.succeeded ok", "quiet job.succeeded ok"}, summary)
	require.Equal(t, "movies job.succeeded ok", summary[1], "the library first")
	require.Equal(t, []string{job.EventSucceeded}, quiet.events())
	f.run(t)
	require.Len(t, hook.events(), 2, "each event once")
}

// TestSubscriptions: a subscription hears of every job's events, signed;
// a failing receiver is retried with backoff and, after a day of
// failures, the subscription is paused with a note.
func TestSubscriptions(t *testing.T) {
	t.Parallel()
	rcv := newReceiver(t, "sub-secret")
	f := setup(t, map[string]config.Publisher{})
	ctx := context.Background()
	require.NoError(t, f.st.PutSubscription(ctx, store.Subscription{ID: "sub_1", Name: "site", URL: rcv.srv.URL, Secret: "sub-secret", Origin: "api", CreatedAt: f.clock}))
	steps := newReceiver(t, "steps-secret")
	require.NoError(t, f.st.PutSubscription(ctx, store.Subscription{ID: "sub_2", Name: "steps", URL: steps.srv.URL, Secret: "steps-secret",
		Events: []string{job.EventProgress}, Origin: "api", CreatedAt: f.clock}))
	j := f.newJob(t, "sha2", "web-hls")
	f.run(t)
	f.succeed(t, j)
	f.run(t)
	require.Equal(t, []string{job.EventProgress}, steps.events(), "half the job's tasks done: one step")
	require.JSONEq(t, `{"progress":0.5}`, string(steps.got[0].Data))
	k := f.newJob(t, "sha3", "web-hls")
	_, err := f.st.CancelJob(ctx, k.ID, f.clock)
	require.NoError(t, err)
	f.run(t)
	require.ElementsMatch(t, []string{job.EventQueued, job.EventSucceeded, job.EventQueued, job.EventCanceled}, rcv.events())
	require.Zero(t, rcv.bad)

	// The receiver fails: tried again with backoff, not forever.
	rcv.mu.Lock()
	rcv.status = http.StatusBadGateway
	rcv.mu.Unlock()
	l := f.newJob(t, "sha4", "web-hls")
	f.run(t)
	ds := f.deliveries(t, l.ID)
	require.Len(t, ds, 1)
	require.False(t, ds[0].OK)
	require.Contains(t, ds[0].Detail, "next try in 5s")
	f.run(t)
	require.Len(t, f.deliveries(t, l.ID), 1, "not before its time")
	f.clock = f.clock.Add(6 * time.Second)
	f.run(t)
	require.Len(t, f.deliveries(t, l.ID), 2)
	sub, err := f.st.GetSubscription(ctx, "sub_1")
	require.NoError(t, err)
	require.NotNil(t, sub.FailingSince)
	require.Nil(t, sub.PausedAt)
	f.clock = f.clock.Add(25 * time.Hour)
	f.run(t)
	sub, err = f.st.GetSubscription(ctx, "sub_1")
	require.NoError(t, err)
	require.NotNil(t, sub.PausedAt, "a day of failures pauses it")
	require.Contains(t, sub.Note, "resume it once the receiver works")
	last := f.deliveries(t, l.ID)
	require.Contains(t, last[len(last)-1].Detail, "the subscription is paused")
	f.newJob(t, "sha5", "web-hls")
	f.clock = f.clock.Add(time.Hour)
	f.run(t)
	require.Len(t, f.deliveries(t, l.ID), len(last), "a paused subscription is sent nothing")
}

// TestRefusedTarget: a subscription made through the API whose URL leads
// to a refused network is not delivered to, and not retried.
func TestRefusedTarget(t *testing.T) {
	t.Parallel()
	rcv := newReceiver(t, "s")
	f := setup(t, map[string]config.Publisher{})
	var err error
	guard, err := NewGuard(nil)
	require.NoError(t, err)
	f.svc.hooks = guard.Client(5 * time.Second)
	ctx := context.Background()
	require.NoError(t, f.st.PutSubscription(ctx, store.Subscription{ID: "sub_x", Name: "x", URL: rcv.srv.URL, Secret: "s", Origin: "api", CreatedAt: f.clock}))
	j := f.newJob(t, "sha6", "web-hls")
	f.run(t)
	ds := f.deliveries(t, j.ID)
	require.Len(t, ds, 1)
	require.False(t, ds[0].OK)
	require.True(t, ds[0].Final)
	require.Contains(t, ds[0].Detail, "refused webhook target")
	require.Empty(t, rcv.events())
	// The same URL from the configuration file is the operator's own: it goes.
	require.NoError(t, f.st.PutSubscription(ctx, store.Subscription{ID: "config-y", Name: "y", URL: rcv.srv.URL, Secret: "s", Origin: "config", CreatedAt: f.clock}))
	f.newJob(t, "sha7", "web-hls")
	f.run(t)
	require.Equal(t, []string{job.EventQueued}, rcv.events())
	require.True(t, strings.HasPrefix(rcv.srv.URL, "http://127.0.0.1"))
}

// A library's replacement tells its media server through the outbox: the
// notice names the file, is retried like any delivery (so it survives a
// failing server, and a restart), is recorded on the job, and queuing it
// twice sends it once.
func TestLibraryNoticeIsDurable(t *testing.T) {
	t.Parallel()
	shows := t.TempDir()
	plex := publishtest.Plex(t, "tok", publishtest.Library{Key: "2", Title: "Shows", Type: "show", Server: "/data/shows", Local: shows})
	f := setup(t, map[string]config.Publisher{
		"plex": {Name: "plex", Type: config.PublishPlex, URL: plex.URL, Token: "tok", Library: "shows", LibraryPath: "/data/shows",
			Attempts: 3, RetryAfter: config.Duration(time.Second), ConfirmTimeout: config.Duration(10 * time.Second)},
	})
	f.shows = shows
	guard, err := NewGuard([]string{"127.0.0.0/8"})
	require.NoError(t, err)
	svc, err := New(f.st, "test", &pipeline.LocalFiles{Blobs: f.blobs}, f.svc.pubs, map[string]string{"shows": shows}, guard, f.svc.log)
	require.NoError(t, err)
	svc.now = f.svc.now
	f.svc = svc
	plex.Set(func(s *publishtest.Server) { s.FailNext = 1 })
	ctx := context.Background()
	j := f.newJob(t, "sha-notice", "archive-hevc")
	f.succeed(t, j)
	file := filepath.Join(f.shows, "S01", "Pilot.mkv")
	require.NoError(t, os.MkdirAll(filepath.Dir(file), 0o755))
	require.NoError(t, os.WriteFile(file, []byte("x"), 0o644))
	for range 2 {
		require.NoError(t, f.st.HandOffFiles(ctx, "lib-ev", j.ID, []string{"plex"}, map[string]string{"shows": file}, f.clock))
	}
	f.run(t)
	require.Equal(t, []string{"2 /data/shows/S01"}, plex.Refreshes, "the file's folder, as the server sees it (refused)")
	f.clock = f.clock.Add(time.Minute)
	f.run(t)
	require.Equal(t, []string{"2 /data/shows/S01", "2 /data/shows/S01"}, plex.Refreshes, "asked again, once")
	var got []string
	for _, d := range f.deliveries(t, j.ID) {
		if d.Publisher == "plex" {
			got = append(got, fmt.Sprintf("%d %v", d.Attempt, d.OK))
		}
	}
	require.Equal(t, []string{"1 false", "2 true"}, got)
}
