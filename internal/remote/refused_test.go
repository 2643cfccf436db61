package remote_test

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"path/filepath"
	"sync/atomic"
	"testing"
	"time"

	"github.com/herdhq/herd/internal/apikey"
	"github.com/herdhq/herd/internal/protocol"
	"github.com/herdhq/herd/internal/remote"
	"github.com/herdhq/herd/internal/store"
)

// TestRefusedKeyIsReportedOnce: an answer that refuses the key itself (an
// admin key where a worker key belongs, a revoked worker key) is final and
// reported once, so the worker can stop instead of retrying forever.
func TestRefusedKeyIsReportedOnce(t *testing.T) {
	t.Parallel()
	s := newSetup(t)
	ctx := context.Background()
	client := func(key string, calls *atomic.Int32, got *error) *remote.Client {
		t.Helper()
		rc, err := remote.New(remote.Config{Server: s.url, Key: key, Slots: 1, Work: filepath.Join(t.TempDir(), "w"),
			OnKeyRefused: func(err error) { calls.Add(1); *got = err }}, slog.New(slog.NewTextHandler(io.Discard, nil)))
		if err != nil {
			t.Fatal(err)
		}
		return rc
	}

	// The admin key, presented as a worker's.
	var calls atomic.Int32
	var reported error
	rc := client("bench-admin-key-0123456789", &calls, &reported)
	for range 2 {
		_, err := rc.Claim(ctx, "worker/bench/0", "bench", nil)
		if !errors.Is(err, remote.ErrKeyRefused) {
			t.Fatalf("want a refused key, got %v", err)
		}
	}
	if calls.Load() != 1 || !errors.Is(reported, remote.ErrKeyRefused) {
		t.Fatalf("the refusal is reported once: %d calls, %v", calls.Load(), reported)
	}
	var se *protocol.Error
	if !errors.As(reported, &se) || se.Code != "forbidden" {
		t.Fatalf("the server's answer travels with it: %v", reported)
	}

	// A working worker key is not refused; once revoked, it is.
	var wcalls atomic.Int32
	var wreported error
	if err := s.st.CreateKey(ctx, store.Key{ID: "r3", Kind: "registration", Hash: apikey.Hash("bench-registration-third-01234"), CreatedAt: time.Now()}); err != nil {
		t.Fatal(err)
	}
	key, err := remote.Register(ctx, s.url, "bench-registration-third-01234", "third")
	if err != nil {
		t.Fatal(err)
	}
	wc := client(key, &wcalls, &wreported)
	s.submit(t, 0) // the claim returns at once
	if c, err := wc.Claim(ctx, "worker/third/0", "third", nil); err != nil || c == nil {
		t.Fatalf("a live worker key claims: %v", err)
	}
	if wcalls.Load() != 0 {
		t.Fatal("a live key was reported refused")
	}
	if err := s.st.SetWorkerState(ctx, "third", store.WorkerRevoked, time.Now()); err != nil {
		t.Fatal(err)
	}
	if _, err := wc.Claim(ctx, "worker/third/0", "third", nil); !errors.Is(err, remote.ErrKeyRefused) {
		t.Fatalf("want a refused key once revoked, got %v", err)
	}
	if wcalls.Load() != 1 || !errors.Is(wreported, remote.ErrKeyRefused) {
		t.Fatalf("the revoked key's refusal is reported once, not %d times", wcalls.Load())
	}
}
