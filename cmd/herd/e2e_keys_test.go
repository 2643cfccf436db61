package main_test

import (
	"encoding/json"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/herdhq/herd/internal/testenv"
)

// waitExit waits for a process to end and returns its exit code; the test
// fails if it is still running after d.
func waitExit(t *testing.T, cmd *exec.Cmd, d time.Duration) int {
	t.Helper()
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	select {
	case <-done: //nolint:errcheck // Wait's error is the exit status, read from ProcessState
		return cmd.ProcessState.ExitCode()
	case <-time.After(d):
		t.Fatalf("%s is still running after %s", filepath.Base(cmd.Path), d)
		return 0
	}
}

// herdAs runs the CLI against s with key in HERD_TOKEN, as an operator
// with a key in their shell would.
func (s *server) herdAs(key string, args ...string) (string, string, int) {
	s.t.Helper()
	return s.herdEnv([]string{"HERD_TOKEN=" + key, "HERD_SERVER=", "HERD_DATA=" + s.t.TempDir()}, args...)
}

type keyJSON struct {
	ID, Kind, Name, State string
	LastUsed              *time.Time `json:"last_used"`
}

func (s *server) keys(admin string, all bool) []keyJSON {
	s.t.Helper()
	args := []string{"token", "list", "-o", "json"}
	if all {
		args = append(args, "--all")
	}
	out, stderr, code := s.herdAs(admin, args...)
	require.Equal(s.t, 0, code, stderr)
	var l struct{ Keys []keyJSON }
	require.NoError(s.t, json.Unmarshal([]byte(out), &l), out)
	return l.Keys
}

func status(t *testing.T, url, key string) int {
	t.Helper()
	req, err := http.NewRequest(http.MethodGet, url+"/api/v1/jobs", nil)
	require.NoError(t, err)
	req.Header.Set("Authorization", "Bearer "+key)
	resp, err := http.DefaultClient.Do(req)
	require.NoError(t, err)
	_ = resp.Body.Close()
	return resp.StatusCode
}

// TestKeyLifecycleThroughCLI: keys are listed (never shown) and revoked with
// herd token, and starting the server with another --admin-token retires
// the key the previous token set.
func TestKeyLifecycleThroughCLI(t *testing.T) {
	t.Parallel()
	data := filepath.Join(t.TempDir(), "data")
	const first, second = "first-automation-key-0123456789", "second-automation-key-0123456789"
	s := startServerEnv(t, data, []string{"HERD_ADMIN_TOKEN=" + first}, "--local-workers", "0")

	ci, stderr, code := s.herdAs(first, "token", "create", "--name", "ci")
	require.Equal(t, 0, code, stderr)
	ci = strings.TrimSpace(ci)
	require.Equal(t, http.StatusOK, status(t, s.url, ci))
	out, stderr, code := s.herdAs(first, "token", "list")
	require.Equal(t, 0, code, stderr)
	require.Contains(t, out, "LAST USED")
	require.Contains(t, out, "from --admin-token")
	require.NotContains(t, out, ci, "a key is never shown")
	require.NotContains(t, out, first, "a key is never shown")
	var ciID string
	for _, k := range s.keys(first, false) {
		if k.Name == "ci" {
			ciID = k.ID
			require.NotNil(t, k.LastUsed, "its use was recorded")
		}
	}
	require.NotEmpty(t, ciID)
	out, stderr, code = s.herdAs(first, "token", "revoke", ciID)
	require.Equal(t, 0, code, stderr)
	require.Contains(t, out, "revoked")
	require.Equal(t, http.StatusUnauthorized, status(t, s.url, ci), "a revoked key is refused at once")

	// Rotation: restart with another token.
	stopCleanly(t, s.cmd, "herd serve")
	s2 := startServerEnv(t, data, []string{"HERD_ADMIN_TOKEN=" + second}, "--local-workers", "0")
	require.Equal(t, http.StatusOK, status(t, s2.url, second))
	require.Equal(t, http.StatusUnauthorized, status(t, s2.url, first), "the previous --admin-token's key was retired")
	states := map[string]int{}
	for _, k := range s2.keys(second, true) {
		if k.Name == "from --admin-token" {
			states[k.State]++
		}
	}
	require.Equal(t, map[string]int{"live": 1, "revoked": 1}, states)
	_, stderr, code = s2.herdAs(first, "jobs")
	require.Equal(t, 1, code)
	require.Contains(t, stderr, "revoked")
	require.NotContains(t, s2.logs.String(), second, "keys never appear in logs")
}

// TestWorkerNeverUsesTheAdminKey: started as a new user would, in a shell
// where HERD_TOKEN holds the CLI's admin key, `herd worker
// --registration-token` registers with its token instead of presenting the
// admin key; and a worker given a key the server refuses (here the admin
// key, as HERD_WORKER_TOKEN) stops at once, non-zero, saying which key it
// used and what to do.
func TestWorkerNeverUsesTheAdminKey(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	s := startServer(t, filepath.Join(dir, "data"), "--local-workers", "0")
	admin := s.token()
	tok, stderr, code := s.herd("token", "create", "--registration")
	require.Equal(t, 0, code, stderr)

	run := func(name string, env []string, args ...string) (*exec.Cmd, *testenv.SyncBuffer) {
		cmd := exec.Command(herdBin, append([]string{"worker", "--server", s.url, "--name", name, "--data", filepath.Join(dir, name),
			"--health-addr", freeAddr(t), "--log-format", "json"}, args...)...)
		cmd.Env = append(os.Environ(), append([]string{"HERD_TOKEN=", "HERD_SERVER=", "HERD_WORKER_TOKEN=", "HERD_DATA="}, env...)...)
		logs := &testenv.SyncBuffer{}
		cmd.Stdout, cmd.Stderr = logs, logs
		require.NoError(t, cmd.Start())
		reap(t, "worker "+name, cmd, logs, 4000)
		return cmd, logs
	}

	cmd, logs := run("newbie", []string{"HERD_TOKEN=" + admin, "HERD_DATA=" + s.data}, "--registration-token", strings.TrimSpace(tok))
	require.Eventually(t, func() bool { return strings.Contains(logs.String(), "is running") }, 60*time.Second, 100*time.Millisecond, logs.String())
	require.Contains(t, logs.String(), "registered as newbie")
	require.FileExists(t, filepath.Join(dir, "newbie", "worker.key"), "the key is saved in the worker's folder, not the server's")
	out, stderr, code := s.herd("workers", "-o", "json")
	require.Equal(t, 0, code, stderr)
	require.Contains(t, out, `"newbie"`)
	stopCleanly(t, cmd, "herd worker")

	cmd, logs = run("confused", []string{"HERD_WORKER_TOKEN=" + admin})
	require.NotEqual(t, 0, waitExit(t, cmd, 90*time.Second), "a refused key ends the worker")
	msg := logs.String()
	require.Contains(t, msg, "refused the worker key from HERD_WORKER_TOKEN")
	require.Contains(t, msg, "this is an admin key")
	require.NotContains(t, msg, admin, "the message names the key's source, never the key")
}
