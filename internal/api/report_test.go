package api_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/herdhq/herd/internal/api"
	"github.com/herdhq/herd/internal/job"
	"github.com/herdhq/herd/internal/media"
	"github.com/herdhq/herd/internal/pipeline"
	"github.com/herdhq/herd/internal/profile"
	"github.com/herdhq/herd/internal/protocol"
	"github.com/herdhq/herd/internal/queue"
	"github.com/herdhq/herd/internal/store"
)

// leasedKind makes a job of one task of kind k (what the worker routes see
// of any task of that kind) and has the fixture's worker claim it.
func (f *fixture) leasedKind(t testing.TB, key string, k job.Kind) protocol.Claim {
	t.Helper()
	return f.leasedAs(t, key, k, protocol.Version)
}

// leasedAs is leasedKind for a worker of the given protocol version; the
// claim is as that worker sees it.
func (f *fixture) leasedAs(t testing.TB, key string, k job.Kind, version string) protocol.Claim {
	t.Helper()
	return f.leasedVersionWith(t, key, k, version, nil)
}

// leasedWith is leasedKind with the job changed by mod before it is made.
func (f *fixture) leasedWith(t testing.TB, key string, k job.Kind, mod func(*job.Job)) protocol.Claim {
	t.Helper()
	return f.leasedVersionWith(t, key, k, protocol.Version, mod)
}

func (f *fixture) leasedVersionWith(t testing.TB, key string, k job.Kind, version string, mod func(*job.Job)) protocol.Claim {
	t.Helper()
	ctx := context.Background()
	id, sha := job.NewID("j"), strings.Repeat("ab", 32)
	a, err := f.st.PutAsset(ctx, job.Asset{ID: job.NewID("a"), Name: "a.mp4", Size: 5, SHA256: sha, Key: "sources/" + sha, CreatedAt: time.Now()})
	require.NoError(t, err)
	j := job.Job{ID: id, Profile: "mp4-library", ProfileVersion: 1, IdempotencyKey: id,
		Source: job.Source{AssetID: a.ID, Name: a.Name, Size: a.Size, SHA256: sha}}
	if mod != nil {
		mod(&j)
	}
	_, _, err = f.st.CreateJob(ctx, j, []job.Task{{ID: job.NewID("t"), Kind: k, MaxAttempts: 3}}, time.Now())
	require.NoError(t, err)
	for {
		code, body := f.post(key, "/api/v1/worker/claim", `{"slot":"1","version":"`+version+`"}`)
		require.Equal(t, http.StatusOK, code, string(body))
		var c protocol.Claim
		require.NoError(t, json.Unmarshal(body, &c))
		if c.Job.ID == id {
			return c
		}
		// A task an earlier report queued: out of the way.
		b, _ := json.Marshal(map[string]any{"lease": c.Lease, "permanent": true, "message": "not this one"})
		code, body = f.post(key, "/api/v1/worker/tasks/"+c.Task.ID+"/fail", string(b))
		require.Equal(t, http.StatusOK, code, string(body))
	}
}

func (f *fixture) post(key, path, body string) (int, []byte) {
	req := httptest.NewRequest("POST", path, strings.NewReader(body))
	req.Header.Set("Authorization", "Bearer "+key)
	req.Header.Set("Content-Type", "application/json")
	rec := httptest.NewRecorder()
	f.api.Handler().ServeHTTP(rec, req)
	return rec.Code, rec.Body.Bytes()
}

// report sends a completion for c with the given fields added to its lease.
func (f *fixture) complete(t testing.TB, key string, c protocol.Claim, fields map[string]any) (int, []byte) {
	t.Helper()
	fields["lease"] = c.Lease
	b, err := json.Marshal(fields)
	require.NoError(t, err)
	return f.post(key, "/api/v1/worker/tasks/"+c.Task.ID+"/complete", string(b))
}

func goodInfo() *media.Info {
	return &media.Info{Demuxer: "mov", FormatName: "mov,mp4,m4a,3gp,3g2,mj2", Duration: 4, Size: 5,
		Video: &media.VideoStream{Index: 0, Codec: "h264", PixFmt: "yuv420p", Width: 640, Height: 360, FPS: 25, RFPS: 25, BitDepth: 8},
		Audio: []media.AudioStream{{Index: 1, Codec: "aac", Channels: 2, SampleRate: 48000, Default: true}}}
}

// A worker's report can never change what the server runs: the plan and
// source facts are derived from the probe facts it reports, which are
// checked strictly; a report with a field its task kind may not send, or a
// value no probe gives, fails the task permanently, naming the field, and
// nothing after it is queued.
func TestWorkerReportsCannotSteer(t *testing.T) {
	t.Parallel()
	f := setup(t)
	key, probe := f.leased(t)
	ctx := context.Background()
	before, err := f.st.GetJob(ctx, probe.Job.ID)
	require.NoError(t, err)

	// A probe report whose plan and source facts would run a filter graph
	// of the worker's choosing and read another stored file: both are
	// ignored, the plan is the server's own.
	hostilePlan := map[string]any{"format": "mp4", "demuxer": "lavfi", "video_index": 0, "video": map[string]any{"encoder": "libx264", "preset": "veryfast -vf movie=/etc/passwd"},
		"rungs": []map[string]any{{"width": 2, "height": 2}}, "thumbs": map[string]any{"sprite": true, "columns": 0}}
	code, body := f.complete(t, key, probe, map[string]any{
		"data":   map[string]any{"info": goodInfo()},
		"plan":   hostilePlan,
		"source": map[string]any{"sha256": strings.Repeat("00", 32), "size": 1, "asset_id": "a-other", "name": "x"},
	})
	require.Equal(t, http.StatusOK, code, string(body))
	j, err := f.st.GetJob(ctx, probe.Job.ID)
	require.NoError(t, err)
	require.Equal(t, before.Source.SHA256, j.Source.SHA256)
	require.Equal(t, before.Source.Size, j.Source.Size)
	require.Equal(t, before.Source.AssetID, j.Source.AssetID)
	require.Equal(t, before.AssetKey, j.AssetKey)
	require.InDelta(t, 4.0, j.Source.Duration, 1e-9)
	p, _ := profile.Builtin().Get("mp4-library")
	want, err := media.NewPlan(goodInfo(), p)
	require.NoError(t, err)
	want.Herd = j.ID // the herd tag an MP4 carries
	var got media.Plan
	require.NoError(t, json.Unmarshal(j.Plan, &got))
	require.Equal(t, *want, got)

	// The encode task that follows may not report a plan.
	code, body = f.post(key, "/api/v1/worker/claim", `{"slot":"1","version":"`+protocol.Version+`"}`)
	require.Equal(t, http.StatusOK, code, string(body))
	var enc protocol.Claim
	require.NoError(t, json.Unmarshal(body, &enc))
	require.Equal(t, job.KindEncode, enc.Task.Kind)
	code, body = f.complete(t, key, enc, map[string]any{"plan": hostilePlan})
	require.Equal(t, http.StatusUnprocessableEntity, code, string(body))
	require.Equal(t, "report_refused", errCode(t, body))
	requireFailedNaming(t, f, enc, "plan")

	infoWith := func(mod func(*media.Info)) map[string]any {
		i := goodInfo()
		mod(i)
		return map[string]any{"data": map[string]any{"info": i}}
	}
	tests := []struct {
		name   string
		kind   job.Kind
		fields map[string]any
		field  string
	}{
		{"filter injection through a colour", job.KindProbe, infoWith(func(i *media.Info) {
			i.Video.ColorTransfer = "smpte2084:npl=100,movie=/etc/passwd"
		}), "info.video.color_transfer"},
		{"a playlist demuxer", job.KindProbe, infoWith(func(i *media.Info) { i.Demuxer = "hls" }), "info.demuxer"},
		{"zero-size picture ladder", job.KindProbe, infoWith(func(i *media.Info) { i.Video.Rotation = 33 }), "info.video.rotation"},
		{"a field probes never have", job.KindProbe, map[string]any{"data": map[string]any{"info": goodInfo(), "plan": hostilePlan}}, "data"},
		{"no data", job.KindProbe, map[string]any{}, "data"},
		{"terminal escapes in commands", job.KindProbe, map[string]any{"data": map[string]any{"info": goodInfo()}, "commands": [][]string{{"ffmpeg", "\x1b]0;owned\x07"}}}, "commands[0]"},
		{"a bidi override in commands", job.KindProbe, map[string]any{"data": map[string]any{"info": goodInfo()}, "commands": [][]string{{"ffmpeg", "-i", "a\u202egpj.exe"}}}, "commands[0]"},
		{"thumbnails reporting source facts", job.KindThumbnails, map[string]any{"source": map[string]any{"sha256": "x"}}, "source"},
		{"encode reporting outputs", job.KindEncode, map[string]any{"outputs": []any{map[string]any{"path": "../../x"}}}, "outputs"},
		{"encode reporting data", job.KindEncode, map[string]any{"data": map[string]any{"x": 1}}, "data"},
		{"a check result of no known state", job.KindCheck, map[string]any{"data": map[string]any{"state": "fine"}}, "data.state"},
		{"a clean check with an error", job.KindCheck, map[string]any{"data": map[string]any{"state": "ok", "note": "x"}}, "data.note"},
		{"a damaged file without its error", job.KindCheck, map[string]any{"data": map[string]any{"state": "damaged"}}, "data.note"},
		{"an endless check note", job.KindCheck, map[string]any{"data": map[string]any{"state": "damaged", "note": strings.Repeat("x", 5000)}}, "data.note"},
		{"a check note with terminal escapes", job.KindCheck, map[string]any{"data": map[string]any{"state": "damaged", "note": "bad\x1b]0;owned\x07"}}, "data.note"},
		{"a check result with a field results never have", job.KindCheck, map[string]any{"data": map[string]any{"state": "ok", "path": "/etc/passwd"}}, "data"},
		{"verify naming a file it did not stage", job.KindVerify, map[string]any{"data": []map[string]any{{"name": "video", "kind": "mp4", "path": "../../sources/x"}}}, "data"},
	}
	for _, tc := range tests {
		c := f.leasedKind(t, key, tc.kind)
		code, body := f.complete(t, key, c, tc.fields)
		require.Equal(t, http.StatusUnprocessableEntity, code, "%s: %s", tc.name, body)
		requireFailedNaming(t, f, c, tc.field)
	}
	// The server did not go down and the worker still works.
	code, _ = f.post(key, "/api/v1/worker/claim", `{"slot":"1","version":"`+protocol.Version+`"}`)
	require.Equal(t, http.StatusNoContent, code)
}

func requireFailedNaming(t *testing.T, f *fixture, c protocol.Claim, field string) {
	t.Helper()
	ctx := context.Background()
	tk, err := f.st.GetTask(ctx, c.Task.ID)
	require.NoError(t, err)
	require.Equal(t, job.TaskFailed, tk.State)
	require.Equal(t, 1, tk.Attempt, "a refused report burns no retries")
	require.Contains(t, tk.Error, field+":")
	j, err := f.st.GetJob(ctx, c.Job.ID)
	require.NoError(t, err)
	require.Equal(t, job.Failed, j.State)
	require.Equal(t, "report_refused", j.ErrorCode)
	tasks, err := f.st.Tasks(ctx, c.Job.ID)
	require.NoError(t, err)
	for _, x := range tasks {
		require.NotEqual(t, job.TaskQueued, x.State, "nothing after a refused report runs")
	}
}

// A failure report is stored as text a terminal and the UI can show: no
// control characters, a few KiB at most, a plain code.
func TestWorkerFailureReportIsTamed(t *testing.T) {
	t.Parallel()
	f := setup(t)
	key, c := f.leased(t)
	b, err := json.Marshal(map[string]any{"lease": c.Lease, "permanent": true, "code": "x'; DROP TABLE jobs;--",
		"message": "bad\x1b[2J\x07\u009b\u202e" + strings.Repeat("é", 10000)})
	require.NoError(t, err)
	code, body := f.post(key, "/api/v1/worker/tasks/"+c.Task.ID+"/fail", string(b))
	require.Equal(t, http.StatusOK, code, string(body))
	tk, err := f.st.GetTask(context.Background(), c.Task.ID)
	require.NoError(t, err)
	require.LessOrEqual(t, len(tk.Error), 5000)
	require.False(t, bytes.ContainsAny([]byte(tk.Error), "\x1b\x07\u009b\u202e"))
	require.True(t, strings.HasPrefix(tk.Error, "bad[2J"), tk.Error)
	j, err := f.st.GetJob(context.Background(), c.Job.ID)
	require.NoError(t, err)
	require.Equal(t, "worker_error", j.ErrorCode)
}

// A worker key reaches only its lease's own step: each task kind writes its
// one step (a thumbnails task cannot stage the verified set that publishing
// makes the outputs) and reads only what it is built from; and what it
// uploads is bounded by what that step can plausibly weigh.
func TestWorkerStepsAreTiedToTheirTask(t *testing.T) {
	t.Parallel()
	f := setup(t)
	key, _ := f.leased(t)
	send := func(c protocol.Claim, method, path string, hdr map[string]string, body string) int {
		req := httptest.NewRequest(method, "/api/v1/worker/tasks/"+c.Task.ID+path, strings.NewReader(body))
		req.Header.Set("Authorization", "Bearer "+key)
		req.Header.Set(protocol.HeaderLeaseOwner, c.Lease.Owner)
		req.Header.Set(protocol.HeaderFence, fmt.Sprint(c.Lease.Fence))
		for k, v := range hdr {
			req.Header.Set(k, v)
		}
		rec := httptest.NewRecorder()
		f.api.Handler().ServeHTTP(rec, req)
		return rec.Code
	}
	put := func(n int64) map[string]string {
		return map[string]string{protocol.HeaderOffset: "0", protocol.HeaderLength: fmt.Sprint(n), protocol.HeaderSHA256: strings.Repeat("0", 64)}
	}
	files := func(n int64) string { return fmt.Sprintf(`{"files":[{"path":"a.m4s","size":%d}]}`, n) }

	th := f.leasedKind(t, key, job.KindThumbnails)
	require.Equal(t, http.StatusConflict, send(th, "PUT", "/files/verified/video.mp4", put(1), "x"))
	require.Equal(t, http.StatusConflict, send(th, "PUT", "/files/encode/video.mp4", put(1), "x"))
	require.Equal(t, http.StatusConflict, send(th, "POST", "/commit/verified", nil, files(1)))
	require.Equal(t, http.StatusConflict, send(th, "POST", "/uploads/verified", nil, files(1)))
	require.Equal(t, http.StatusConflict, send(th, "GET", "/staged/encode", nil, ""))
	require.Equal(t, http.StatusCreated, send(th, "PUT", "/files/thumbs/poster.jpg", map[string]string{protocol.HeaderOffset: "0", protocol.HeaderLength: "1",
		protocol.HeaderSHA256: "2d711642b726b04401627ca9fbac32f5c8530fb1903cc4db02258717921a4881"}, "x"))

	// This job's source is 5 bytes and has no plan yet: its steps may weigh
	// a few tens of MiB, not a GiB, however the bytes are sent.
	enc := f.leasedKind(t, key, job.KindEncode)
	require.Equal(t, http.StatusRequestEntityTooLarge, send(enc, "PUT", "/files/encode/a.m4s", put(1<<30), "x"))
	require.Equal(t, http.StatusRequestEntityTooLarge, send(enc, "POST", "/uploads/encode", nil, files(1<<30)))
	require.Equal(t, http.StatusRequestEntityTooLarge, send(enc, "POST", "/commit/encode", nil, files(1<<30)))
	// Many files each under the budget add up: the second is refused.
	require.Equal(t, http.StatusUnprocessableEntity, send(enc, "PUT", "/files/encode/a.m4s", put(40<<20), strings.Repeat("x", 40<<20)), "all arrived, checksum wrong")
	require.Equal(t, http.StatusAccepted, send(enc, "PUT", "/files/encode/a.m4s", put(40<<20), strings.Repeat("x", 30<<20)))
	require.Equal(t, http.StatusRequestEntityTooLarge, send(enc, "PUT", "/files/encode/b.m4s", put(40<<20), "x"))
	ver := f.leasedKind(t, key, job.KindVerify)
	require.Equal(t, http.StatusNotFound, send(ver, "GET", "/staged/encode", nil, ""), "verify reads encode (nothing staged here)")
}

// flakyWorkers is a store whose worker lookups fail, as a database failing
// over does.
type flakyWorkers struct{ store.Store }

func (flakyWorkers) GetWorker(context.Context, string) (store.Worker, error) {
	return store.Worker{}, errors.New("database is failing over")
}

// A database that does not answer is not a refused key: the worker is told
// to try again (5xx), never 401, which would make it exit.
func TestWorkerNotRefusedWhenDatabaseFails(t *testing.T) {
	t.Parallel()
	f := setup(t)
	key, _ := f.leased(t)
	sig := &queue.Signal{}
	s := api.New(api.Deps{Store: flakyWorkers{f.st}, Blobs: f.blobs, Profiles: profile.Builtin(), Kick: sig, Files: &pipeline.LocalFiles{Blobs: f.blobs},
		Queue: queue.New(f.st, sig, queue.Config{}), Log: slog.New(slog.NewTextHandler(io.Discard, nil))})
	req := httptest.NewRequest("POST", "/api/v1/worker/claim", strings.NewReader(`{"slot":"1"}`))
	req.Header.Set("Authorization", "Bearer "+key)
	rec := httptest.NewRecorder()
	s.Handler().ServeHTTP(rec, req)
	require.Equal(t, http.StatusInternalServerError, rec.Code, rec.Body.String())
}

// A worker's upload is written inside its attempt's folder through a root:
// a link in that folder (however it got there) leads nowhere outside.
func TestWorkerUploadStaysInItsFolder(t *testing.T) {
	t.Parallel()
	f := setup(t)
	key, _ := f.leased(t)
	c := f.leasedKind(t, key, job.KindThumbnails)
	outside := t.TempDir()
	dir, err := f.blobs.NamedTempDir(fmt.Sprintf("w-%s-%d-%s", c.Task.ID, c.Lease.Fence, "thumbs"))
	require.NoError(t, err)
	require.NoError(t, os.Symlink(outside, filepath.Join(dir, ".partial")))
	require.NoError(t, os.Symlink(outside, filepath.Join(dir, "sub")))
	for _, p := range []string{"poster.jpg", "sub/poster.jpg"} {
		req := httptest.NewRequest("PUT", "/api/v1/worker/tasks/"+c.Task.ID+"/files/thumbs/"+p, strings.NewReader("x"))
		req.Header.Set("Authorization", "Bearer "+key)
		req.Header.Set(protocol.HeaderLeaseOwner, c.Lease.Owner)
		req.Header.Set(protocol.HeaderFence, fmt.Sprint(c.Lease.Fence))
		req.Header.Set(protocol.HeaderOffset, "0")
		req.Header.Set(protocol.HeaderLength, "1")
		req.Header.Set(protocol.HeaderSHA256, "2d711642b726b04401627ca9fbac32f5c8530fb1903cc4db02258717921a4881")
		rec := httptest.NewRecorder()
		f.api.Handler().ServeHTTP(rec, req)
		require.NotEqual(t, http.StatusCreated, rec.Code, p)
	}
	entries, err := os.ReadDir(outside)
	require.NoError(t, err)
	require.Empty(t, entries, "nothing was written outside the attempt's folder")
}

// A worker fetches only the subtitle files its task's job was given with,
// not one another job was, whatever id it names.
func TestWorkerSubtitleFilesAreTheJobs(t *testing.T) {
	t.Parallel()
	f := setup(t)
	key, _ := f.leased(t)
	req := httptest.NewRequest("POST", "/api/v1/subtitles", strings.NewReader("1\n00:00:01,000 --> 00:00:02,000\nBonjour.\n"))
	req.Header.Set("Authorization", "Bearer "+adminKey)
	rec := httptest.NewRecorder()
	f.api.Handler().ServeHTTP(rec, req)
	require.Equal(t, http.StatusCreated, rec.Code, rec.Body.String())
	var stored protocol.StoredSubtitle
	require.NoError(t, json.Unmarshal(rec.Body.Bytes(), &stored))
	get := func(c protocol.Claim, id string) (int, string) {
		req := httptest.NewRequest("GET", "/api/v1/worker/tasks/"+c.Task.ID+"/subtitles/"+id, nil)
		req.Header.Set("Authorization", "Bearer "+key)
		req.Header.Set(protocol.HeaderLeaseOwner, c.Lease.Owner)
		req.Header.Set(protocol.HeaderFence, fmt.Sprint(c.Lease.Fence))
		rec := httptest.NewRecorder()
		f.api.Handler().ServeHTTP(rec, req)
		return rec.Code, rec.Body.String()
	}
	other := f.leasedKind(t, key, job.KindEncode) // a job given no subtitle file
	for _, id := range []string{stored.ID, "..%2F..%2Fherd.db", strings.Repeat("0", 64)} {
		code, body := get(other, id)
		require.Equal(t, http.StatusNotFound, code, "%s: %s", id, body)
	}
	c := f.leasedWith(t, key, job.KindEncode, func(j *job.Job) {
		j.Source.Subtitles = []job.SourceSubtitle{{ID: stored.ID, Language: "fr"}}
	})
	code, body := get(c, stored.ID)
	require.Equal(t, http.StatusOK, code, body)
	require.Contains(t, body, "WEBVTT")
	require.Contains(t, body, "Bonjour.")
}
