package cli

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/herdhq/herd/internal/api"
	"github.com/herdhq/herd/internal/apikey"
	"github.com/herdhq/herd/internal/protocol"
	"github.com/herdhq/herd/internal/queue"
	"github.com/herdhq/herd/internal/store"
	"github.com/herdhq/herd/internal/testenv"
	"github.com/herdhq/herd/internal/worker"
)

// TestWorkerKeyOnlyFromItsOwnSettings: a worker (and a task pod) reads its
// key from --token or HERD_WORKER_TOKEN only, the flag first. HERD_TOKEN
// (the CLI's admin key, which fromEnv would map to --token) and HERD_DATA
// (the server's folder) never reach it; every other flag still reads
// HERD_<FLAG>.
func TestWorkerKeyOnlyFromItsOwnSettings(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name, cmd         string
		args              []string
		env               map[string]string
		token, from, data string
		registration      string
		maxTasks          int
	}{
		{name: "a new user's shell holds the CLI's admin key", cmd: "worker",
			args: []string{"--registration-token", "reg-token"},
			env:  map[string]string{"HERD_TOKEN": "herd_adm_x", "HERD_DATA": "/srv/herd", "HERD_MAX_TASKS": "3"},
			data: "herd-worker", registration: "reg-token", maxTasks: 3},
		{name: "the worker's own variable", cmd: "worker",
			env:   map[string]string{"HERD_TOKEN": "herd_adm_x", "HERD_WORKER_TOKEN": "herd_wor_y", "HERD_WORKER_DATA": "/var/lib/w"},
			token: "herd_wor_y", from: "HERD_WORKER_TOKEN", data: "/var/lib/w", maxTasks: 1},
		{name: "an explicit flag beats the environment", cmd: "worker",
			args:  []string{"--token", "herd_wor_flag", "--data", "/d", "--max-tasks", "2"},
			env:   map[string]string{"HERD_WORKER_TOKEN": "herd_wor_y", "HERD_WORKER_DATA": "/var/lib/w", "HERD_MAX_TASKS": "3"},
			token: "herd_wor_flag", from: "--token", data: "/d", maxTasks: 2},
		{name: "a task pod", cmd: "run-task",
			env:   map[string]string{"HERD_TOKEN": "herd_adm_x", "HERD_WORKER_TOKEN": "herd_wor_y", "HERD_DATA": "/srv/herd"},
			token: "herd_wor_y", from: "HERD_WORKER_TOKEN", data: "/tmp/herd-task"},
		{name: "a task pod without a key", cmd: "run-task",
			env:  map[string]string{"HERD_TOKEN": "herd_adm_x"},
			from: "HERD_WORKER_TOKEN", data: "/tmp/herd-task"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			e := &env{getenv: func(k string) string { return tc.env[k] }, stdout: io.Discard, stderr: io.Discard}
			cmd, _, err := e.root().Find([]string{tc.cmd})
			require.NoError(t, err)
			require.NoError(t, cmd.ParseFlags(tc.args))
			var cfg worker.DaemonConfig
			if tc.cmd == "worker" {
				e.workerSettings(cmd, &cfg, "HERD_WORKER_DATA", "herd-worker")
				cfg.MaxTasks, _ = cmd.Flags().GetInt("max-tasks")
				cfg.RegistrationToken, _ = cmd.Flags().GetString("registration-token")
			} else {
				e.workerSettings(cmd, &cfg, "HERD_TASK_DATA", "/tmp/herd-task")
			}
			require.Equal(t, tc.token, cfg.Token)
			if tc.token != "" || tc.from != "" {
				require.Equal(t, tc.from, cfg.TokenFrom)
			}
			require.Equal(t, tc.data, cfg.Data)
			require.Equal(t, tc.registration, cfg.RegistrationToken)
			if tc.cmd == "worker" {
				require.Equal(t, tc.maxTasks, cfg.MaxTasks, "other flags still read HERD_<FLAG>")
			}
		})
	}
}

// TestTokenListAndRevoke: herd token list shows kind, name, state and times,
// never a key; herd token revoke ID ends a key at once; the last admin key
// is kept, with a message that says what to do.
func TestTokenListAndRevoke(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	st := testenv.SQLite(t)
	const adminKey = "cli-test-admin-key-0123456789"
	require.NoError(t, st.CreateKey(ctx, store.Key{ID: "kadm", Kind: "admin", Name: "generated at first start", Hash: apikey.Hash(adminKey), CreatedAt: time.Now()}))
	srv := httptest.NewServer(api.New(api.Deps{Store: st, Kick: &queue.Signal{}, Log: slog.New(slog.NewTextHandler(io.Discard, nil))}).Handler())
	t.Cleanup(srv.Close)
	herd := func(key string, args ...string) (string, string, int) {
		t.Helper()
		var out, errb bytes.Buffer
		getenv := func(k string) string { return map[string]string{"HERD_TOKEN": key, "HERD_DATA": t.TempDir()}[k] }
		code := Run(ctx, append([]string{"--server", srv.URL}, args...), getenv, func() []string { return nil }, &out, &errb)
		return out.String(), errb.String(), code
	}

	ci, stderr, code := herd(adminKey, "token", "create", "--name", "ci")
	require.Equal(t, 0, code, stderr)
	ci = strings.TrimSpace(ci)
	reg, stderr, code := herd(adminKey, "token", "create", "--registration")
	require.Equal(t, 0, code, stderr)
	reg = strings.TrimSpace(reg)
	_, _, code = herd(ci, "jobs")
	require.Equal(t, 0, code, "the new admin key works")

	out, stderr, code := herd(adminKey, "token", "list")
	require.Equal(t, 0, code, stderr)
	lines := strings.Split(strings.TrimSpace(out), "\n")
	require.Len(t, lines, 4, out)
	require.Regexp(t, `^ID\s+KIND\s+NAME\s+STATE\s+CREATED\s+EXPIRES\s+LAST USED$`, lines[0])
	require.Contains(t, out, "registration")
	for _, secret := range []string{adminKey, ci, reg} {
		require.NotContains(t, out, secret, "a key is never shown")
	}
	out, stderr, code = herd(adminKey, "token", "list", "-o", "json")
	require.Equal(t, 0, code, stderr)
	var list struct {
		Keys []protocol.KeyView `json:"keys"`
	}
	require.NoError(t, json.Unmarshal([]byte(out), &list))
	var ciID string
	for _, k := range list.Keys {
		if k.Name == "ci" {
			ciID = k.ID
			require.Equal(t, "admin", k.Kind)
			require.NotNil(t, k.LastUsed, "herd jobs used it")
			require.Nil(t, k.ExpiresAt)
		}
	}
	require.NotEmpty(t, ciID)

	out, stderr, code = herd(adminKey, "token", "revoke", ciID)
	require.Equal(t, 0, code, stderr)
	require.Equal(t, ciID+" revoked (admin key \"ci\")\n", out)
	_, stderr, code = herd(ci, "jobs")
	require.Equal(t, 1, code, "a revoked key is refused at once")
	require.Contains(t, stderr, "revoked")
	out, _, _ = herd(adminKey, "token", "list")
	require.NotContains(t, out, ciID)
	out, _, _ = herd(adminKey, "token", "list", "--all")
	require.Regexp(t, ciID+`\s+admin\s+ci\s+revoked`, out)

	_, stderr, code = herd(adminKey, "token", "revoke", "kadm")
	require.Equal(t, 1, code, "the last admin key is kept")
	require.Contains(t, stderr, "herd token create")
	_, stderr, code = herd(adminKey, "token", "revoke", "k-nope")
	require.Equal(t, 1, code)
	require.Contains(t, stderr, "herd token list")
}
