package api_test

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/herdhq/herd/internal/api"
	"github.com/herdhq/herd/internal/job"
	"github.com/herdhq/herd/internal/profile"
	"github.com/herdhq/herd/internal/protocol"
)

// queueKind makes a job of one queued task of kind k and returns the task's id.
func (f *fixture) queueKind(t *testing.T, k job.Kind) string {
	t.Helper()
	ctx := context.Background()
	id, sha := job.NewID("j"), strings.Repeat("cd", 32)
	a, err := f.st.PutAsset(ctx, job.Asset{ID: job.NewID("a"), Name: "a.mp4", Size: 5, SHA256: sha, Key: "sources/" + sha, CreatedAt: time.Now()})
	require.NoError(t, err)
	tid := job.NewID("t")
	_, _, err = f.st.CreateJob(ctx, job.Job{ID: id, Profile: "mp4-library", ProfileVersion: 1, IdempotencyKey: id,
		Source: job.Source{AssetID: a.ID, Name: a.Name, Size: a.Size, SHA256: sha}},
		[]job.Task{{ID: tid, Kind: k, MaxAttempts: 3}}, time.Now())
	require.NoError(t, err)
	return tid
}

// claimAs claims as a worker that says version in its claim body ("" says
// none): the status and, on 200, the claim.
func (f *fixture) claimAs(t *testing.T, key, version string) (int, protocol.Claim) {
	t.Helper()
	body := `{"slot":"2","capabilities":["h264"]}`
	if version != "" {
		body = `{"slot":"2","capabilities":["h264"],"version":"` + version + `"}`
	}
	code, b := f.post(key, "/api/v1/worker/claim", body)
	var c protocol.Claim
	if code == http.StatusOK {
		require.NoError(t, json.Unmarshal(b, &c))
	}
	return code, c
}

// A worker of an older protocol version (a rolling upgrade: server first)
// is leased only the finalize step, whose contract it still implements: an
// encode or a chunk task waits for an upgraded worker instead of being
// failed (an unknown kind) or done the old way. It long-polls like any
// idle worker, and its in-flight task still reports.
func TestOldWorkersOnlyFinalize(t *testing.T) {
	t.Parallel()
	f := setup(t)
	key, _ := f.leased(t)
	enc := f.queueKind(t, job.KindEncode)
	chunk := f.queueKind(t, job.KindChunk)

	for _, v := range []string{"7", "5", "4", "3", "2", ""} {
		code, c := f.claimAs(t, key, v)
		require.Equal(t, http.StatusNoContent, code, "version %q got %s %s", v, c.Task.Kind, c.Task.ID)
	}
	wk, err := f.st.GetWorker(context.Background(), "fx")
	require.NoError(t, err)
	require.Equal(t, "2", wk.Version, "a claim without a version is taken as the oldest spoken")
	outdated := func() string {
		resp, body := f.do(t, "GET", "/api/v1/workers", adminKey, nil, "")
		require.Equal(t, http.StatusOK, resp.StatusCode, string(body))
		var ws struct {
			Workers []struct {
				Name     string `json:"name"`
				Outdated string `json:"outdated"`
			} `json:"workers"`
		}
		require.NoError(t, json.Unmarshal(body, &ws))
		for _, w := range ws.Workers {
			if w.Name == "fx" {
				return w.Outdated
			}
		}
		t.Fatal("worker fx is not listed")
		return ""
	}
	require.Equal(t, "outdated: protocol 2, server speaks 8 — upgrade it; it only finalizes until then", outdated())

	for _, v := range []string{"7", "5", "4", "3", "2", ""} {
		fin := f.queueKind(t, job.KindFinalize)
		code, c := f.claimAs(t, key, v)
		require.Equal(t, http.StatusOK, code, "version %q", v)
		require.Equal(t, fin, c.Task.ID, "version %q", v)
		want := job.KindFinalize
		if v == "2" || v == "" {
			want = protocol.LegacyFinalizeKind
		}
		require.Equal(t, want, c.Task.Kind, "version %q", v)
		b, err := json.Marshal(map[string]any{"lease": c.Lease, "progress": 0.5})
		require.NoError(t, err)
		code, body := f.post(key, "/api/v1/worker/tasks/"+c.Task.ID+"/heartbeat", string(b))
		require.Equal(t, http.StatusOK, code, "an old worker's task still reports: %s", body)
	}

	got := map[string]job.Kind{}
	for range 2 {
		code, c := f.claimAs(t, key, protocol.Version)
		require.Equal(t, http.StatusOK, code)
		got[c.Task.ID] = c.Task.Kind
	}
	require.Equal(t, map[string]job.Kind{enc: job.KindEncode, chunk: job.KindChunk}, got, "a current worker gets what the old ones were not given")
	require.Empty(t, outdated(), "upgraded")

	code, body := f.post(key, "/api/v1/worker/claim", `{"slot":"2","version":"9"}`)
	require.Equal(t, http.StatusBadRequest, code)
	require.Equal(t, "protocol_version", errCodeOf(t, body))
	require.Contains(t, string(body), "this server speaks 8 (and 7, 6, 5, 4, 3, 2")
}

// A run-task pod of an image older than the server fetching a task its
// version does not implement is refused, telling the operator what to
// set; a finalize task it may still fetch.
// A run-task pod whose image cannot run its task fails the task at once,
// permanently and saying what to fix, instead of using up its attempts on
// more pods of the same image.
func TestLeasedRefusesOldPods(t *testing.T) {
	t.Parallel()
	f := setup(t)
	key, _ := f.leased(t)
	fetch := func(c protocol.Claim, version string) (int, []byte) { return f.fetchLeased(key, c, version) }
	for _, tc := range []struct {
		version string
		status  int
	}{{"5", http.StatusConflict}, {"4", http.StatusConflict}, {"3", http.StatusConflict}, {"", http.StatusConflict}, {"1", http.StatusBadRequest}} {
		chunk := f.leasedKind(t, key, job.KindChunk)
		code, body := fetch(chunk, tc.version)
		require.Equal(t, tc.status, code, "version %q: %s", tc.version, body)
		require.Equal(t, "protocol_version", errCodeOf(t, body))
		require.Contains(t, string(body), "--kube-image")
		task, err := f.st.GetTask(context.Background(), chunk.Task.ID)
		require.NoError(t, err)
		require.Equal(t, job.TaskFailed, task.State, "version %q", tc.version)
		require.Contains(t, task.Error, "--kube-image")
		require.Equal(t, 1, task.Attempt, "one pod, not every attempt")
		j, err := f.st.GetJob(context.Background(), chunk.Job.ID)
		require.NoError(t, err)
		require.Equal(t, job.Failed, j.State)
		require.Equal(t, "worker_image", j.ErrorCode)
		require.Contains(t, j.Error, "--kube-image")
		// The pod's retry of the fetch finds the lease gone.
		code, body = fetch(chunk, tc.version)
		require.Equal(t, http.StatusConflict, code, string(body))
		require.Equal(t, "lease_lost", errCodeOf(t, body))
	}
	code, body := fetch(f.leasedKind(t, key, job.KindChunk), protocol.Version)
	require.Equal(t, http.StatusOK, code, string(body))

	fin := f.leasedKind(t, key, job.KindFinalize)
	code, body = fetch(fin, "4")
	require.Equal(t, http.StatusOK, code, string(body))
}

func errCodeOf(t *testing.T, body []byte) string {
	t.Helper()
	var e protocol.ErrorBody
	require.NoError(t, json.Unmarshal(body, &e), string(body))
	return e.Error.Code
}

// fetchLeased fetches the task leased in c as a run-task pod speaking
// version does ("" sends no version header, as version 2 pods did).
func (f *fixture) fetchLeased(key string, c protocol.Claim, version string) (int, []byte) {
	req := httptest.NewRequest("GET", "/api/v1/worker/tasks/"+c.Task.ID, nil)
	req.Header.Set("Authorization", "Bearer "+key)
	req.Header.Set(protocol.HeaderLeaseOwner, c.Lease.Owner)
	req.Header.Set(protocol.HeaderFence, strconv.FormatInt(c.Lease.Fence, 10))
	if version != "" {
		req.Header.Set(protocol.HeaderProtocol, version)
	}
	rec := httptest.NewRecorder()
	f.api.Handler().ServeHTTP(rec, req)
	return rec.Code, rec.Body.Bytes()
}

// flakyVersions is a profile store whose database is away while down is set.
type flakyVersions struct {
	*profile.Set
	down *atomic.Bool
}

func (f flakyVersions) At(ctx context.Context, name string, version int) (*profile.Profile, error) {
	if f.down.Load() {
		return nil, errors.New("database is away")
	}
	return f.Set.At(ctx, name, version)
}

// A claim never goes out without the job's profile: a worker knows only
// the built-ins' files, and would fail the job for want of it. When the
// profile cannot be read, the claim is answered 500 and the task handed
// back, for the next claim to get it whole.
func TestClaimNeverWithoutTheProfile(t *testing.T) {
	t.Parallel()
	down := &atomic.Bool{}
	f := setup(t, func(d *api.Deps) { d.Versions = flakyVersions{profile.Builtin(), down} })
	key, _ := f.leased(t)
	enc := f.queueKind(t, job.KindEncode)

	down.Store(true)
	code, _ := f.claimAs(t, key, protocol.Version)
	require.Equal(t, http.StatusInternalServerError, code)
	task, err := f.st.GetTask(context.Background(), enc)
	require.NoError(t, err)
	require.Equal(t, job.TaskQueued, task.State, "handed back")

	down.Store(false)
	code, c := f.claimAs(t, key, protocol.Version)
	require.Equal(t, http.StatusOK, code)
	require.Equal(t, enc, c.Task.ID)
	var p profile.Profile
	require.NoError(t, json.Unmarshal(c.Profile, &p))
	require.Equal(t, "mp4-library", p.Name)
}
