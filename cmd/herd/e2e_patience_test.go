package main_test

import (
	"bufio"
	"context"
	"io"
	"net"
	"net/http"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// TestImpatientServer: with timeouts of a second (set by flag and by
// environment), herd serve closes a trickled upload and an idle connection,
// while everything that moves or waits on herd itself keeps working: an
// upload, a remote worker's long-poll, source download and output upload,
// and an event stream.
func TestImpatientServer(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	s := startServerEnv(t, filepath.Join(dir, "data"), []string{"HERD_IDLE_TIMEOUT=1s"}, "--local-workers", "0",
		"--read-header-timeout", "1s", "--slow-transfer-timeout", "1s", "--min-transfer-rate", "2000")
	addr := strings.TrimPrefix(s.url, "http://")
	const bound = 15 * time.Second

	// closedSoon reports whether the server closes conn within bound while
	// send is called every 100 ms.
	closedSoon := func(conn net.Conn, send func()) bool {
		gone := make(chan struct{})
		go func() {
			_, _ = io.Copy(io.Discard, conn)
			close(gone)
		}()
		stop := time.After(bound)
		for {
			select {
			case <-gone:
				return true
			case <-stop:
				return false
			case <-time.After(100 * time.Millisecond):
				send()
			}
		}
	}
	trickle, err := net.Dial("tcp", addr)
	require.NoError(t, err)
	defer trickle.Close()
	_, err = io.WriteString(trickle, "POST /api/v1/worker/register HTTP/1.1\r\nHost: herd\r\nContent-Type: application/json\r\nContent-Length: 4000\r\n\r\n{")
	require.NoError(t, err)
	require.True(t, closedSoon(trickle, func() { _, _ = io.WriteString(trickle, " ") }), "a trickled request holds the connection")

	idle, err := net.Dial("tcp", addr)
	require.NoError(t, err)
	defer idle.Close()
	_, err = io.WriteString(idle, "GET /healthz HTTP/1.1\r\nHost: herd\r\n\r\n")
	require.NoError(t, err)
	br := bufio.NewReader(idle)
	resp, err := http.ReadResponse(br, nil)
	require.NoError(t, err)
	_, _ = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	require.Equal(t, http.StatusOK, resp.StatusCode)
	require.True(t, closedSoon(idle, func() {}), "an idle keep-alive connection is held")

	// An event stream stays open past every timeout while nothing changes.
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, s.url+"/api/v1/events?view=dashboard", nil)
	require.NoError(t, err)
	req.Header.Set("Authorization", "Bearer "+s.token())
	resp, err = http.DefaultClient.Do(req)
	require.NoError(t, err)
	defer resp.Body.Close()
	require.Equal(t, http.StatusOK, resp.StatusCode)
	stream, err := io.ReadAll(resp.Body)
	require.ErrorIs(t, err, context.DeadlineExceeded, "the stream ended early: %q", stream)
	require.Contains(t, string(stream), "event: dashboard")

	// A remote worker sits in its long-poll (25 s) well past the timeouts,
	// then takes a job and moves its files through the server.
	s.startWorker(t, "patient")
	time.Sleep(2 * time.Second)
	src := clip(t, dir, 2, "256x144")
	stdout, stderr, code := s.herd("submit", src, "--profile", "mp4-library", "--wait")
	require.Equal(t, 0, code, stderr)
	j := s.job(strings.TrimSpace(stdout))
	require.Equal(t, "succeeded", j.State, j.Error)
	for _, task := range j.Tasks {
		require.Equal(t, "patient", task.Worker, "task %s ran on the remote worker", task.Kind)
	}
}
