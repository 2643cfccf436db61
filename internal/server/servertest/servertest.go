// Package servertest runs herd serve in-process for tests of other
// packages (internal/server's own tests cannot import it: it imports
// internal/server).
package servertest

import (
	"context"
	"io"
	"log/slog"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/herdhq/herd/internal/server"
)

// Start runs server.Run with cfg (its log discarded) until the test ends,
// and returns the address it serves on once it is ready; the test fails
// if the server fails to start or does not stop cleanly.
func Start(t testing.TB, cfg server.Config) string {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	ready := make(chan string, 1)
	go func() {
		done <- server.Run(ctx, cfg, slog.New(slog.NewTextHandler(io.Discard, nil)), io.Discard, func(addr string) { ready <- addr })
	}()
	var addr string
	select {
	case addr = <-ready:
	case err := <-done:
		cancel()
		t.Fatalf("serve: %v", err)
	}
	t.Cleanup(func() {
		cancel()
		require.NoError(t, <-done)
	})
	return addr
}
