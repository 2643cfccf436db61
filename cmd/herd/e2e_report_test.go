package main_test

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/herdhq/herd/internal/media"
	"github.com/herdhq/herd/internal/profile"
	"github.com/herdhq/herd/internal/protocol"
)

// A hostile remote worker's reports cannot steer what the server runs. It
// holds the probe task of two jobs and reports, for the first, real probe
// facts together with a plan whose pixel format carries a filter that
// would write a canary file and source facts naming another stored file;
// for the second, probe facts whose colour transfer carries a filter. The
// first plan and source facts are ignored (the server plans from the
// facts itself); the second report fails its job at once, naming the
// field. Then the server's own in-process worker runs the next task of the
// first job: it succeeds with the server's plan and the canary never
// appears.
func TestHostileWorkerReports(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	data := filepath.Join(dir, "data")
	s := startServer(t, data, "--local-workers", "0")
	canary := filepath.Join(dir, "canary.trf")

	post := func(path, key string, body any) (int, []byte) {
		t.Helper()
		b, err := json.Marshal(body)
		require.NoError(t, err)
		req, err := http.NewRequest("POST", s.url+path, bytes.NewReader(b))
		require.NoError(t, err)
		req.Header.Set("Authorization", "Bearer "+key)
		req.Header.Set("Content-Type", "application/json")
		resp, err := http.DefaultClient.Do(req)
		require.NoError(t, err)
		defer resp.Body.Close()
		out, err := io.ReadAll(resp.Body)
		require.NoError(t, err)
		return resp.StatusCode, out
	}
	code, body := post("/api/v1/tokens", s.token(), map[string]string{"kind": "registration"})
	require.Equal(t, http.StatusCreated, code, string(body))
	var tok struct{ Key string }
	require.NoError(t, json.Unmarshal(body, &tok))
	code, body = post("/api/v1/worker/register", "", map[string]string{"registration_token": tok.Key, "name": "evil"})
	require.Equal(t, http.StatusCreated, code, string(body))
	var reg struct{ Key string }
	require.NoError(t, json.Unmarshal(body, &reg))

	submit := func(src string) string {
		t.Helper()
		stdout, stderr, code := s.herd("submit", src, "--profile", "mp4-library")
		require.Equal(t, 0, code, stderr)
		return strings.TrimSpace(stdout)
	}
	claimProbe := func(jobID string) protocol.Claim {
		t.Helper()
		code, body := post("/api/v1/worker/claim", reg.Key, map[string]any{"slot": "1", "version": protocol.Version, "wait_seconds": 10})
		require.Equal(t, http.StatusOK, code, string(body))
		var c protocol.Claim
		require.NoError(t, json.Unmarshal(body, &c))
		require.Equal(t, "probe", string(c.Task.Kind))
		require.Equal(t, jobID, c.Job.ID)
		return c
	}
	src1, src2 := clip(t, dir, 2, "160x90"), clip(t, dir, 3, "160x90")
	job1, job2 := submit(src1), submit(src2)
	c1 := claimProbe(job1)
	tools, err := media.Locate("", "", nil)
	require.NoError(t, err)
	info, err := tools.Admit(context.Background(), src1, media.Limits{})
	require.NoError(t, err)

	var plan map[string]any
	p, _ := json.Marshal(mustPlan(t, info))
	require.NoError(t, json.Unmarshal(p, &plan))
	plan["video"].(map[string]any)["pix_fmt"] = "yuv420p,vidstabdetect=result=" + canary
	code, body = post("/api/v1/worker/tasks/"+c1.Task.ID+"/complete", reg.Key, map[string]any{
		"lease": c1.Lease, "data": map[string]any{"info": info}, "plan": plan,
		"source": map[string]any{"sha256": strings.Repeat("0", 64), "size": 1, "asset_id": "a0"},
	})
	require.Equal(t, http.StatusOK, code, string(body))

	c2 := claimProbe(job2)
	info2, err := tools.Admit(context.Background(), src2, media.Limits{})
	require.NoError(t, err)
	info2.Video.ColorTransfer = "bt709,vidstabdetect=result=" + canary
	code, body = post("/api/v1/worker/tasks/"+c2.Task.ID+"/complete", reg.Key, map[string]any{"lease": c2.Lease, "data": map[string]any{"info": info2}})
	require.Equal(t, http.StatusUnprocessableEntity, code, string(body))
	j2 := s.job(job2)
	require.Equal(t, "failed", j2.State)
	require.Contains(t, j2.Error, "info.video.color_transfer")
	require.Equal(t, 1, j2.Attempts)

	// The server's own worker takes over: the first job finishes with the
	// server's plan, from its own stored source.
	require.NoError(t, s.cmd.Process.Signal(syscall.SIGTERM))
	_ = s.cmd.Wait()
	s = startServer(t, data, "--local-workers", "1")
	j1 := s.waitFinal(job1)
	require.Equal(t, "succeeded", j1.State, j1.Error)
	require.InDelta(t, 2.0, j1.Source.Duration, 0.2)
	require.NotEqual(t, strings.Repeat("0", 64), j1.Source.SHA256)
	for _, task := range j1.Tasks {
		for _, cmd := range task.Commands {
			require.NotContains(t, strings.Join(cmd, " "), "vidstab")
		}
	}
	_, err = os.Stat(canary)
	require.ErrorIs(t, err, os.ErrNotExist, "the injected filter never ran")
	require.Equal(t, "failed", s.job(job2).State)
}

func mustPlan(t *testing.T, info *media.Info) *media.Plan {
	t.Helper()
	p, ok := profile.Builtin().Get("mp4-library")
	require.True(t, ok)
	pl, err := media.NewPlan(info, p)
	require.NoError(t, err)
	return pl
}
