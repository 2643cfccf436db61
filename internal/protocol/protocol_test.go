package protocol_test

import (
	"encoding/json"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/herdhq/herd/internal/job"
	"github.com/herdhq/herd/internal/protocol"
)

// The JSON field names are the wire format that workers and clients of
// other versions read: a renamed field must fail here, not in the field.
func TestWireShapes(t *testing.T) {
	t.Parallel()
	var eb protocol.ErrorBody
	eb.Error.Code, eb.Error.Message = "lease_lost", "drop it"
	for _, tc := range []struct {
		v    any
		want string
	}{
		{protocol.RegisterRequest{Name: "gpu1", Token: "tok"}, `{"name":"gpu1","registration_token":"tok"}`},
		{protocol.Registered{Key: "k", Name: "gpu1"}, `{"key":"k","name":"gpu1"}`},
		{protocol.ClaimRequest{Slot: "1", Caps: []string{"h264"}, Slots: 2, Version: protocol.Version, WaitSeconds: 25},
			`{"slot":"1","capabilities":["h264"],"slots":2,"version":"8","wait_seconds":25}`},
		{protocol.Report{Lease: job.Lease{TaskID: "t1", Owner: "worker/a/1", Fence: 3}, Progress: 0.5, Message: "m", Code: "c", Permanent: true},
			`{"lease":{"task_id":"t1","owner":"worker/a/1","fence":3},"progress":0.5,"message":"m","code":"c","permanent":true}`},
		{protocol.UploadPlan{Direct: true, Uploads: []protocol.DirectUpload{{Path: "a", UploadID: "u", Parts: []protocol.Part{{Number: 1, Size: 5, URL: "http://s/a", ETag: "e"}}}}},
			`{"direct":true,"uploads":[{"path":"a","upload_id":"u","parts":[{"number":1,"offset":0,"size":5,"url":"http://s/a","etag":"e"}]}]}`},
		{protocol.CommitRequest{Files: []protocol.StagedFile{{Path: "a/b.ts", Size: 7}}}, `{"files":[{"path":"a/b.ts","size":7}]}`},
		{eb, `{"error":{"code":"lease_lost","message":"drop it"}}`},
	} {
		b, err := json.Marshal(tc.v)
		require.NoError(t, err)
		require.Equal(t, tc.want, string(b))
	}
}

// Only the current version is leased every kind; the older versions the
// server speaks get the one kind whose contract they still implement, and
// a version it does not speak gets none.
func TestKinds(t *testing.T) {
	t.Parallel()
	require.Nil(t, protocol.Kinds(protocol.Version))
	for _, v := range []string{"7", "6", "5", "4", "3", "2"} {
		require.True(t, protocol.Speaks(v), v)
		require.Equal(t, []job.Kind{job.KindFinalize}, protocol.Kinds(v), v)
		require.Contains(t, protocol.Outdated(v), "outdated: protocol "+v+", server speaks 8")
	}
	for _, v := range []string{"1", "9", ""} {
		require.False(t, protocol.Speaks(v), v)
		require.NotNil(t, protocol.Kinds(v), v)
		require.Empty(t, protocol.Kinds(v), v)
	}
	require.Empty(t, protocol.Outdated(protocol.Version))
	require.Empty(t, protocol.Outdated(""), "a worker that never claimed")
}
