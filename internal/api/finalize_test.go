package api_test

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/herdhq/herd/internal/job"
	"github.com/herdhq/herd/internal/protocol"
)

// The last step is "finalize" from protocol version 3; the server still
// speaks version 2, whose workers know it as "publish" (in the claim and
// in the task fetched by a run-task pod, which sent no version header) and
// ask for it on .../publish. Both routes are the same step, and neither
// finalizes a task of another kind. A version the server does not speak
// is refused with what to do.
func TestFinalizeUnderBothNames(t *testing.T) {
	t.Parallel()
	f := setup(t)
	key, _ := f.leased(t)

	c := f.leasedAs(t, key, job.KindFinalize, protocol.Version)
	require.Equal(t, job.KindFinalize, c.Task.Kind)
	old := f.leasedAs(t, key, job.KindFinalize, "2")
	require.Equal(t, job.Kind("publish"), old.Task.Kind, "a version 2 worker knows the step by its old name")

	fetch := func(c protocol.Claim, version string) job.Kind {
		code, body := f.fetchLeased(key, c, version)
		require.Equal(t, http.StatusOK, code, string(body))
		var got protocol.Claim
		require.NoError(t, json.Unmarshal(body, &got))
		return got.Task.Kind
	}
	require.Equal(t, job.KindFinalize, fetch(c, protocol.Version))
	require.Equal(t, job.Kind("publish"), fetch(c, ""), "a version 2 run-task pod sends no version")

	probe := f.leasedKind(t, key, job.KindProbe)
	for _, route := range []string{"finalize", "publish"} {
		req := httptest.NewRequest("POST", "/api/v1/worker/tasks/"+probe.Task.ID+"/"+route, strings.NewReader(`{}`))
		req.Header.Set("Authorization", "Bearer "+key)
		req.Header.Set("Content-Type", "application/json")
		req.Header.Set(protocol.HeaderLeaseOwner, probe.Lease.Owner)
		req.Header.Set(protocol.HeaderFence, strconv.FormatInt(probe.Lease.Fence, 10))
		rec := httptest.NewRecorder()
		f.api.Handler().ServeHTTP(rec, req)
		require.Equal(t, http.StatusConflict, rec.Code, "%s: %s", route, rec.Body)
		require.Contains(t, rec.Body.String(), "only a finalize task", route)
	}

	code, body := f.post(key, "/api/v1/worker/claim", `{"slot":"1","version":"1"}`)
	require.Equal(t, http.StatusBadRequest, code)
	require.Contains(t, string(body), "upgrade the worker or the server")
}
