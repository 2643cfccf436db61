package api_test

import (
	"context"
	"encoding/json"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/herdhq/herd/internal/job"
	"github.com/herdhq/herd/internal/jobview"
	"github.com/herdhq/herd/internal/pipeline"
	"github.com/herdhq/herd/internal/protocol"
	"github.com/herdhq/herd/internal/store"
	"github.com/herdhq/herd/internal/testenv"
)

// newVersion makes, and finishes, a job of the next version for old's asset.
func newVersion(t *testing.T, f *fixture, oldID string) string {
	t.Helper()
	ctx := context.Background()
	old, err := f.st.GetJob(ctx, oldID)
	require.NoError(t, err)
	j := job.Job{ID: job.NewID("j"), Profile: old.Profile, ProfileVersion: old.ProfileVersion + 1, Replaces: old.ID, Source: old.Source,
		IdempotencyKey: job.IdempotencyKey(old.Source.SHA256, old.Profile, old.ProfileVersion+1, "")}
	j, _, err = f.st.CreateJob(ctx, j, []job.Task{{ID: job.NewID("t"), Kind: job.KindProbe, MaxAttempts: 1}}, time.Now())
	require.NoError(t, err)
	return j.ID
}

func noRedirects() *http.Client {
	return &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
}

func get(t *testing.T, f *fixture, path, key string) *http.Response {
	t.Helper()
	req, err := http.NewRequest("GET", f.srv.URL+path, nil)
	require.NoError(t, err)
	if key != "" {
		req.Header.Set("Authorization", "Bearer "+key)
	}
	resp, err := noRedirects().Do(req)
	require.NoError(t, err)
	resp.Body.Close()
	return resp
}

// TestStreamsFollowTheCurrentJob: an asset's outputs with a profile have a
// stable path that sends players to the job current for them; a link to a
// job that was replaced sends a new player to the current job's files and
// lets one in the middle of the old ones finish them; once the old files
// are removed, the job's own path says so (410) and a link moves on.
func TestStreamsFollowTheCurrentJob(t *testing.T) {
	t.Parallel()
	f := setup(t)
	ctx := context.Background()
	oldID := linkJob(t, f, "sha-s")
	old, err := f.st.GetJob(ctx, oldID)
	require.NoError(t, err)
	stream := jobview.StreamPath(old.Source.AssetID, old.Profile)

	resp := get(t, f, stream+"master.m3u8", adminKey)
	require.Equal(t, http.StatusNotFound, resp.StatusCode, "nothing published yet")
	testenv.FinishJob(t, f.st, oldID)
	resp = get(t, f, stream+"master.m3u8", adminKey)
	require.Equal(t, http.StatusFound, resp.StatusCode)
	require.Equal(t, "/api/v1/jobs/"+oldID+"/outputs/master.m3u8", resp.Header.Get("Location"))
	require.Equal(t, "no-store", resp.Header.Get("Cache-Control"))
	require.Equal(t, http.StatusUnauthorized, get(t, f, stream+"master.m3u8", "").StatusCode)
	_, b := f.do(t, "GET", "/api/v1/jobs/"+oldID, adminKey, nil, "")
	var v jobview.JobView
	require.NoError(t, json.Unmarshal(b, &v))
	require.Equal(t, stream, v.Stream)

	_, b = f.do(t, "POST", "/api/v1/jobs/"+oldID+"/links", adminKey, nil, "")
	var l protocol.Link
	require.NoError(t, json.Unmarshal(b, &l))
	require.Equal(t, http.StatusOK, get(t, f, l.Path+"master.m3u8", "").StatusCode, "current: served as it is")

	// A newer version succeeds: the stream and new players move to it.
	newID := newVersion(t, f, oldID)
	resp = get(t, f, stream+"master.m3u8", adminKey)
	require.Equal(t, "/api/v1/jobs/"+oldID+"/outputs/master.m3u8", resp.Header.Get("Location"), "not before it succeeded")
	testenv.FinishJob(t, f.st, newID)
	resp = get(t, f, stream+"sub/dir/master.m3u8", adminKey)
	require.Equal(t, "/api/v1/jobs/"+newID+"/outputs/sub/dir/master.m3u8", resp.Header.Get("Location"))

	resp = get(t, f, l.Path+"master.m3u8", "")
	require.Equal(t, http.StatusFound, resp.StatusCode)
	moved := resp.Header.Get("Location")
	require.True(t, strings.HasSuffix(moved, "/"+newID+"/master.m3u8"), moved)
	require.Equal(t, "no-referrer", resp.Header.Get("Referrer-Policy"))
	resp = get(t, f, moved, "")
	require.Equal(t, http.StatusNotFound, resp.StatusCode, "the moved link is good for the new job (which has no files here)")
	// A player in the middle of the old version reads on.
	require.Equal(t, http.StatusOK, get(t, f, l.Path+"chunk-0-00001.m4s", "").StatusCode)
	require.Equal(t, http.StatusOK, get(t, f, "/api/v1/jobs/"+oldID+"/outputs/chunk-0-00001.m4s", adminKey).StatusCode)

	// The old files are removed: 410 on the job's path, a redirect on the link's.
	require.NoError(t, (&pipeline.LocalFiles{Blobs: f.blobs}).RemoveOutputs(ctx, oldID))
	require.NoError(t, f.st.OutputsRemoved(ctx, oldID, time.Now()))
	resp, b = f.do(t, "GET", "/api/v1/jobs/"+oldID+"/outputs/chunk-0-00001.m4s", adminKey, nil, "")
	require.Equal(t, http.StatusGone, resp.StatusCode)
	require.Contains(t, string(b), newID)
	resp = get(t, f, l.Path+"chunk-0-00001.m4s", "")
	require.Equal(t, http.StatusFound, resp.StatusCode)
	require.True(t, strings.HasSuffix(resp.Header.Get("Location"), "/"+newID+"/chunk-0-00001.m4s"))
}

// TestCampaignRoutes: made (and dry-run) through the API, with clear
// refusals; paused, resumed and canceled; 404 for an unknown one.
func TestCampaignRoutes(t *testing.T) {
	t.Parallel()
	f := setup(t)
	post := func(path, body string) (int, string) {
		t.Helper()
		resp, b := f.do(t, "POST", path, adminKey, strings.NewReader(body), "application/json")
		return resp.StatusCode, string(b)
	}
	code, body := post("/api/v1/campaigns", `{"profile": "mp4-library"}`) // at version 1: nothing older
	require.Equal(t, http.StatusBadRequest, code)
	require.Contains(t, body, "edit the profile first")
	code, body = post("/api/v1/campaigns", `{"profile": "nope"}`)
	require.Equal(t, http.StatusBadRequest, code)
	require.Contains(t, body, "invalid_campaign")
	code, _ = post("/api/v1/campaigns/c_nope/pause", ``)
	require.Equal(t, http.StatusNotFound, code)
	resp, _ := f.do(t, "GET", "/api/v1/campaigns/c_nope", adminKey, nil, "")
	require.Equal(t, http.StatusNotFound, resp.StatusCode)

	// One stored as a server would have made it: steered through the API.
	ctx := context.Background()
	oldID := linkJob(t, f, "sha-c")
	testenv.FinishJob(t, f.st, oldID)
	require.NoError(t, f.st.CreateCampaign(ctx, store.Campaign{ID: "c1", Profile: "web-hls", FromVersion: 1, ToVersion: 2, State: store.CampaignRunning,
		MaxRunning: 1, CreatedAt: time.Now()}, []string{oldID}))
	code, body = post("/api/v1/campaigns/c1/pause", ``)
	require.Equal(t, http.StatusOK, code, body)
	require.Contains(t, body, `"state": "paused"`)
	code, body = post("/api/v1/campaigns/c1/resume", ``)
	require.Equal(t, http.StatusOK, code, body)
	code, body = post("/api/v1/campaigns/c1/cancel", ``)
	require.Equal(t, http.StatusOK, code, body)
	require.Contains(t, body, `"state": "canceled"`)
	code, body = post("/api/v1/campaigns/c1/resume", ``)
	require.Equal(t, http.StatusConflict, code)
	require.Contains(t, body, "is canceled")
	resp, b := f.do(t, "GET", "/api/v1/campaigns/c1", adminKey, nil, "")
	require.Equal(t, http.StatusOK, resp.StatusCode)
	var v jobview.CampaignView
	require.NoError(t, json.Unmarshal(b, &v))
	require.Len(t, v.Items, 1)
	require.Equal(t, oldID, v.Items[0].JobID)
	resp, b = f.do(t, "GET", "/api/v1/campaigns", adminKey, nil, "")
	require.Equal(t, http.StatusOK, resp.StatusCode)
	require.Contains(t, string(b), `"id": "c1"`)
}
