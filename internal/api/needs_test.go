package api_test

import (
	"context"
	"encoding/json"
	"net/http"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/herdhq/herd/internal/api"
	"github.com/herdhq/herd/internal/jobview"
	"github.com/herdhq/herd/internal/protocol"
	"github.com/herdhq/herd/internal/store"
)

// TestUnmetNeeds: a web-cmaf-av1 job on a server whose in-process workers
// lack libsvtav1 says on its page, and the workers list says, that no
// worker can encode it, until a worker that proved av1 registers; a
// drained worker takes no new tasks, so it does not count.
func TestUnmetNeeds(t *testing.T) {
	t.Parallel()
	f := setup(t, func(d *api.Deps) { d.OtherCaps = []string{"h264", "hevc"} })
	submit := func(profile string, data string) jobview.JobView {
		body, ct := upload(t, [][2]string{{"profile", profile}}, "clip.mp4", []byte(data))
		resp, b := f.do(t, "POST", "/api/v1/jobs", adminKey, body, ct)
		require.Equal(t, http.StatusCreated, resp.StatusCode, string(b))
		var j jobview.JobView
		require.NoError(t, json.Unmarshal(b, &j))
		return j
	}
	getJob := func(id string) jobview.JobView {
		resp, b := f.do(t, "GET", "/api/v1/jobs/"+id, adminKey, nil, "")
		require.Equal(t, http.StatusOK, resp.StatusCode, string(b))
		var j jobview.JobView
		require.NoError(t, json.Unmarshal(b, &j))
		return j
	}
	workers := func() api.Workers {
		resp, b := f.do(t, "GET", "/api/v1/workers", adminKey, nil, "")
		require.Equal(t, http.StatusOK, resp.StatusCode, string(b))
		var w api.Workers
		require.NoError(t, json.Unmarshal(b, &w))
		return w
	}
	av1 := submit("web-cmaf-av1", "an av1 ladder")
	h264 := submit("web-hls", "an h264 ladder")

	require.Contains(t, getJob(av1.ID).Waiting, "av1 (the libsvtav1 encoder)")
	require.Empty(t, getJob(h264.ID).Waiting, "H.264 needs nothing")
	require.Equal(t, []api.UnmetNeed{{Capability: "av1", Encoder: "libsvtav1", Jobs: []string{av1.ID},
		Hint: "start a worker whose ffmpeg has it (herd worker --check lists what a worker proves)"}}, workers().Unmet)

	ctx := context.Background()
	require.NoError(t, f.st.PutWorker(ctx, store.Worker{Name: "svt", State: store.WorkerActive, Caps: []string{"h264", "av1"}, Slots: 1, CreatedAt: time.Now()}))
	// It proves nothing until it is heard from, and then only while it is
	// alive and speaks the server's protocol.
	require.Contains(t, getJob(av1.ID).Waiting, "libsvtav1", "never heard from")
	require.NoError(t, f.st.SeenWorker(ctx, "svt", []string{"h264", "av1"}, 1, "4", time.Now()))
	require.Contains(t, getJob(av1.ID).Waiting, "libsvtav1", "an outdated worker only finalizes")
	require.NoError(t, f.st.SeenWorker(ctx, "svt", []string{"h264", "av1"}, 1, protocol.Version, time.Now().Add(-time.Hour)))
	require.Contains(t, getJob(av1.ID).Waiting, "libsvtav1", "not heard from for an hour")
	require.NoError(t, f.st.SeenWorker(ctx, "svt", []string{"h264", "av1"}, 1, protocol.Version, time.Now()))
	require.Empty(t, getJob(av1.ID).Waiting)
	require.Empty(t, workers().Unmet)

	require.NoError(t, f.st.SetWorkerState(ctx, "svt", store.WorkerDraining, time.Now()))
	require.Contains(t, getJob(av1.ID).Waiting, "libsvtav1")
	require.Len(t, workers().Unmet, 1)
}
