package remote_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http/httptest"
	"path/filepath"
	"slices"
	"sync/atomic"
	"testing"
	"time"

	"github.com/herdhq/herd/internal/api"
	"github.com/herdhq/herd/internal/apikey"
	"github.com/herdhq/herd/internal/blob"
	"github.com/herdhq/herd/internal/ingest"
	"github.com/herdhq/herd/internal/job"
	"github.com/herdhq/herd/internal/pipeline"
	"github.com/herdhq/herd/internal/profile"
	"github.com/herdhq/herd/internal/protocol"
	"github.com/herdhq/herd/internal/queue"
	"github.com/herdhq/herd/internal/remote"
	"github.com/herdhq/herd/internal/store"
	"github.com/herdhq/herd/internal/store/sqlstore"
)

type setup struct {
	st      store.Store
	sig     *queue.Signal
	rc      *remote.Client
	url     string
	sub     *ingest.Submitter
	files   pipeline.Storage
	through atomic.Int64 // request and response body bytes that passed through the server
}

// storageFunc picks the server's storage; nil → the local blob folder.
type storageFunc func(tb testing.TB, st store.Store, blobs *blob.Local, log *slog.Logger) (pipeline.Storage, ingest.Blobs)

func newSetup(tb testing.TB) *setup { return newSetupWith(tb, nil) }

func newSetupWith(tb testing.TB, storage storageFunc) *setup {
	tb.Helper()
	dir := tb.TempDir()
	ctx := context.Background()
	st, err := sqlstore.OpenSQLite(ctx, filepath.Join(dir, "herd.db"))
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { _ = st.Close() })
	blobs, err := blob.NewLocal(filepath.Join(dir, "blobs"))
	if err != nil {
		tb.Fatal(err)
	}
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	sig := &queue.Signal{}
	q := queue.New(st, sig, queue.Config{})
	var (
		files   pipeline.Storage = &pipeline.LocalFiles{Blobs: blobs, Log: log}
		sources ingest.Blobs     = blobs
	)
	if storage != nil {
		files, sources = storage(tb, st, blobs, log)
	}
	sub := ingest.New(st, sources, profile.Builtin(), sig, ingest.Config{})
	srv := api.New(api.Deps{Store: st, Blobs: blobs, Profiles: profile.Builtin(), Kick: sig, Log: log, Queue: q,
		Submit: sub, Files: files})
	s := &setup{st: st, sig: sig, sub: sub, files: files}
	hs := httptest.NewServer(countBytes(srv.Handler(), &s.through))
	tb.Cleanup(hs.Close)
	adminKey := "bench-admin-key-0123456789"
	if err := st.CreateKey(ctx, store.Key{ID: "k", Kind: "admin", Hash: apikey.Hash(adminKey), CreatedAt: time.Now()}); err != nil {
		tb.Fatal(err)
	}
	reg := "bench-registration-0123456789"
	if err := st.CreateKey(ctx, store.Key{ID: "r", Kind: "registration", Hash: apikey.Hash(reg), CreatedAt: time.Now()}); err != nil {
		tb.Fatal(err)
	}
	key, err := remote.Register(ctx, hs.URL, reg, "bench")
	if err != nil {
		tb.Fatal(err)
	}
	rc, err := remote.New(remote.Config{Server: hs.URL, Key: key, Slots: 1, Work: filepath.Join(dir, "w")}, log)
	if err != nil {
		tb.Fatal(err)
	}
	s.rc, s.url = rc, hs.URL
	return s
}

func (s *setup) submit(tb testing.TB, i int) {
	tb.Helper()
	ctx := context.Background()
	sha := fmt.Sprintf("wake%06d", i)
	a, err := s.st.PutAsset(ctx, job.Asset{ID: job.NewID("a"), Name: "x", Size: 1, SHA256: sha, Key: "sources/" + sha, CreatedAt: time.Now()})
	if err != nil {
		tb.Fatal(err)
	}
	j := job.Job{ID: job.NewID("j"), Profile: "mp4-library", ProfileVersion: 1, IdempotencyKey: sha, Source: job.Source{AssetID: a.ID}}
	if _, _, err := s.st.CreateJob(ctx, j, []job.Task{{ID: job.NewID("t"), Kind: job.KindProbe, MaxAttempts: 3}}, time.Now()); err != nil {
		tb.Fatal(err)
	}
	s.sig.Kick()
}

// TestLongPollClaimGetsNewWork: an idle worker's pending claim returns the
// task submitted while it waited (no polling tick in between).
func TestLongPollClaimGetsNewWork(t *testing.T) {
	t.Parallel()
	s := newSetup(t)
	got := make(chan *job.Claimed, 1)
	go func() {
		c, err := s.rc.Claim(context.Background(), "worker/bench/0", "bench", []string{"h264"})
		if err != nil {
			t.Error(err)
		}
		got <- c
	}()
	time.Sleep(300 * time.Millisecond) // the claim is now parked on the server
	s.submit(t, 0)
	c := <-got
	if c == nil || c.Task.Kind != job.KindProbe {
		t.Fatalf("the waiting claim did not receive the new task: %+v", c)
	}
	if len(c.Profile) == 0 {
		t.Fatal("the claim carries the job's profile for remote probing")
	}
}

// BenchmarkClaimWakeup measures how fast a newly queued task reaches an idle,
// long-polling worker: p50/p99 from submit to the claim's answer.
func BenchmarkClaimWakeup(b *testing.B) {
	s := newSetup(b)
	var lat []time.Duration
	for i := range b.N {
		got := make(chan time.Time, 1)
		go func() {
			c, err := s.rc.Claim(context.Background(), "worker/bench/0", "bench", []string{"h264"})
			if err != nil || c == nil {
				b.Error("claim returned nothing", err)
			}
			got <- time.Now()
		}()
		time.Sleep(20 * time.Millisecond) // let the claim park
		t0 := time.Now()
		s.submit(b, i)
		lat = append(lat, (<-got).Sub(t0))
	}
	slices.Sort(lat)
	b.ReportMetric(float64(lat[len(lat)/2].Microseconds())/1000, "p50_ms")
	b.ReportMetric(float64(lat[len(lat)*99/100].Microseconds())/1000, "p99_ms")
}

// TestRegistrationCannotTakeOverALiveName: a second registration under a
// registered name is refused (it would inherit the worker's leases), and the
// token is not used up by the refusal.
func TestRegistrationCannotTakeOverALiveName(t *testing.T) {
	t.Parallel()
	s := newSetup(t)
	ctx := context.Background()
	reg := "second-registration-0123456789"
	if err := s.st.CreateKey(ctx, store.Key{ID: "r2", Kind: "registration", Hash: apikey.Hash(reg), CreatedAt: time.Now()}); err != nil {
		t.Fatal(err)
	}
	_, err := remote.Register(ctx, s.url, reg, "bench")
	var se *protocol.Error
	if !errors.As(err, &se) || se.Code != "name_taken" {
		t.Fatalf("want name_taken, got %v", err)
	}
	if _, err := remote.Register(ctx, s.url, reg, "other"); err != nil {
		t.Fatalf("the token still works for a free name: %v", err)
	}
	if _, err := remote.Register(ctx, s.url, reg, "third"); err == nil {
		t.Fatal("a registration token is used once")
	}
}
