package api_test

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/herdhq/herd/internal/apikey"
	"github.com/herdhq/herd/internal/job"
	"github.com/herdhq/herd/internal/protocol"
	"github.com/herdhq/herd/internal/store"
)

// leased registers a worker, submits a job and has the worker claim its
// probe task: the worker's key and the claim.
func (f *fixture) leased(t testing.TB) (string, protocol.Claim) {
	t.Helper()
	ctx := context.Background()
	const key = "fixture-worker-key-0123456789"
	require.NoError(t, f.st.CreateKey(ctx, store.Key{ID: "kfx", Kind: "worker", Name: "fx", Hash: apikey.Hash(key), CreatedAt: time.Now()}))
	require.NoError(t, f.st.PutWorker(ctx, store.Worker{Name: "fx", KeyID: "kfx", State: store.WorkerActive, Slots: 1, CreatedAt: time.Now()}))
	form, ct := upload(t, [][2]string{{"profile", "mp4-library"}}, "a.mp4", []byte("bytes"))
	post := func(path, key, ct string, body io.Reader) (int, []byte) {
		req := httptest.NewRequest("POST", path, body)
		req.Header.Set("Authorization", "Bearer "+key)
		req.Header.Set("Content-Type", ct)
		rec := httptest.NewRecorder()
		f.api.Handler().ServeHTTP(rec, req)
		return rec.Code, rec.Body.Bytes()
	}
	code, body := post("/api/v1/jobs", adminKey, ct, form)
	require.Equal(t, http.StatusCreated, code, string(body))
	code, body = post("/api/v1/worker/claim", key, "application/json", strings.NewReader(`{"slot":"1","version":"`+protocol.Version+`"}`))
	require.Equal(t, http.StatusOK, code, string(body))
	var claim protocol.Claim
	require.NoError(t, json.Unmarshal(body, &claim))
	return key, claim
}

// FuzzRequestBodies sends arbitrary bytes as the body (or, for tus, the
// metadata header; for the job list, the query) of every route that reads
// one, as the caller that route admits, with a live lease where the route
// needs one. Whatever arrives, the answer is a 4xx with the JSON error shape
// or a success, never a 5xx, a panic or a hang (tusd's own refusals are
// plain text).
func FuzzRequestBodies(f *testing.F) {
	fx := setup(f)
	h := fx.api.Handler()
	send := func(method, path, key string, hdr map[string]string, body []byte) *httptest.ResponseRecorder {
		req := httptest.NewRequest(method, path, bytes.NewReader(body))
		req.Header.Set("Authorization", "Bearer "+key)
		for k, v := range hdr {
			req.Header.Set(k, v)
		}
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, req)
		return rec
	}
	workerKey, claim := fx.leased(f)
	lease := map[string]string{protocol.HeaderLeaseOwner: claim.Lease.Owner, protocol.HeaderFence: fmt.Sprint(claim.Lease.Fence)}
	task := "/api/v1/worker/tasks/" + claim.Task.ID

	type target struct {
		method, path, key string
		hdr               map[string]string
		as                string // body | tus-metadata | query | report
		kind              job.Kind
	}
	jsonCT := map[string]string{"Content-Type": "application/json"}
	withLease := map[string]string{"Content-Type": "application/json"}
	for k, v := range lease {
		withLease[k] = v
	}
	targets := []target{
		{"POST", "/api/v1/jobs", adminKey, jsonCT, "body", ""},
		{"POST", "/api/v1/jobs", adminKey, map[string]string{"Content-Type": "multipart/form-data; boundary=herdfuzz"}, "body", ""},
		{"POST", "/api/v1/tokens", adminKey, jsonCT, "body", ""},
		{"POST", "/api/v1/worker/register", "", jsonCT, "body", ""},
		{"POST", "/api/v1/uploads", adminKey, map[string]string{"Tus-Resumable": "1.0.0", "Upload-Length": "10"}, "tus-metadata", ""},
		{"GET", "/api/v1/jobs", adminKey, nil, "query", ""},
		{"POST", task + "/heartbeat", workerKey, jsonCT, "body", ""},
		{"POST", task + "/fail", workerKey, jsonCT, "body", ""},
		{"POST", task + "/uploads/encode", workerKey, withLease, "body", ""},
		{"POST", task + "/commit/encode", workerKey, withLease, "body", ""},
		{"PUT", task + "/files/encode/x.json", workerKey, withLease, "file", ""},
	}
	// A completion of a task of every kind, with a live lease of its own.
	for _, k := range []job.Kind{job.KindProbe, job.KindEncode, job.KindThumbnails, job.KindVerify, job.KindFinalize} {
		targets = append(targets, target{"POST", "/complete", workerKey, jsonCT, "report", k})
	}
	// The key list's filter.
	targets = append(targets, target{"GET", "/api/v1/tokens", adminKey, nil, "query", ""})
	tokensTarget := uint8(len(targets) - 1)
	// A playback link for the leased task's job.
	targets = append(targets, target{"POST", "/api/v1/jobs/" + claim.Task.JobID + "/links", adminKey, jsonCT, "body", ""})
	linksTarget := uint8(len(targets) - 1)
	targets = append(targets, target{"POST", "/api/v1/subscriptions", adminKey, jsonCT, "body", ""})
	subsTarget := uint8(len(targets) - 1)
	targets = append(targets, target{"POST", "/api/v1/campaigns", adminKey, jsonCT, "body", ""})
	campTarget := uint8(len(targets) - 1)
	f.Add(uint8(0), []byte(`{"source_path": "/srv/in/a.mkv", "profile": "web-hls"}`))
	f.Add(uint8(1), []byte("--herdfuzz\r\nContent-Disposition: form-data; name=\"profile\"\r\n\r\nweb-hls\r\n--herdfuzz\r\nContent-Disposition: form-data; name=\"file\"; filename=\"../x.mp4\"\r\n\r\nxx\r\n--herdfuzz--\r\n"))
	f.Add(uint8(2), []byte(`{"kind": "registration", "ttl": "1h"}`))
	f.Add(uint8(3), []byte(`{"registration_token": "x", "name": "w1"}`))
	f.Add(uint8(4), []byte("filename YS5tcDQ=,profile d2ViLWhscw=="))
	f.Add(uint8(5), []byte("state=failed&profile=web-hls&limit=5&before=j1"))
	f.Add(uint8(6), []byte(`{"lease": {"task_id": "t", "owner": "worker/fz/1", "fence": 1}, "progress": 0.5}`))
	f.Add(uint8(7), []byte(`{"lease": {}, "message": "m", "permanent": true}`))
	f.Add(uint8(8), []byte(`{"files": [{"path": "a/b.ts", "size": 3, "sha256": "00"}]}`))
	f.Add(uint8(9), []byte(`{"files": [{"path": "../x", "size": -1}], "uploads": [{}]}`))
	f.Add(uint8(10), []byte(`{}`))
	info := `{"demuxer":"mov","duration":4,"size":5,"bit_rate":0,"format_name":"mov","video":{"index":0,"codec":"h264","width":64,"height":64,"fps":25}}`
	f.Add(uint8(11), []byte(`{"data":{"info":`+info+`},"plan":{"demuxer":"lavfi"}}`))
	f.Add(uint8(11), []byte(`{"data":{"info":{"demuxer":"mov","duration":1e308,"video":{"width":-1,"height":0,"color_transfer":"a,b"}}}}`))
	f.Add(uint8(12), []byte(`{"data":null,"commands":[["ffmpeg","-i","x"]]}`))
	f.Add(uint8(13), []byte(`{"source":{"sha256":"00"}}`))
	f.Add(uint8(14), []byte(`{"data":[{"name":"video","kind":"mp4","path":"video.mp4","ssim":2}]}`))
	f.Add(uint8(15), []byte(`{"data":[],"outputs":[{"path":"../x"}]}`))
	f.Add(tokensTarget, []byte("all=true"))
	f.Add(linksTarget, []byte(`{"ttl": "2h"}`))
	f.Add(linksTarget, []byte(`{"ttl": "9999999999h"}`))
	f.Add(subsTarget, []byte(`{"url": "http://127.0.0.1:1/x", "events": ["job.failed"], "profiles": ["web-hls"]}`))
	f.Add(subsTarget, []byte(`{"url": "http://user@[::ffff:169.254.169.254]/", "events": ["nope"]}`))
	f.Add(campTarget, []byte(`{"profile": "mp4-library", "from_version": 1, "window": "01:00-07:00", "labels": {"team": "web"}, "dry_run": true}`))
	f.Add(campTarget, []byte(`{"profile": "web-hls", "max_running": -3, "window": "99:99-00:00", "library": "../x"}`))
	f.Fuzz(func(t *testing.T, which uint8, data []byte) {
		tg := targets[int(which)%len(targets)]
		path, hdr, body := tg.path, map[string]string{}, data
		for k, v := range tg.hdr {
			hdr[k] = v
		}
		switch tg.as {
		case "tus-metadata":
			hdr["Upload-Metadata"], body = string(data), nil
		case "file": // a whole file in one PUT, announced as such
			hdr[protocol.HeaderOffset], hdr[protocol.HeaderLength] = "0", fmt.Sprint(len(data))
			sum := sha256.Sum256(data)
			hdr[protocol.HeaderSHA256] = hex.EncodeToString(sum[:])
		case "report": // any report, carrying a live lease on a task of that kind
			c := fx.leasedKind(t, workerKey, tg.kind)
			path = "/api/v1/worker/tasks/" + c.Task.ID + "/complete"
			var obj map[string]json.RawMessage
			if json.Unmarshal(data, &obj) == nil && obj != nil {
				obj["lease"], _ = json.Marshal(c.Lease)
				body, _ = json.Marshal(obj)
			}
		case "query":
			q := url.Values{} // any bytes, as a client would escape them
			for _, kv := range strings.Split(string(data), "&") {
				k, v, _ := strings.Cut(kv, "=")
				q.Add(k, v)
			}
			path, body = path+"?"+q.Encode(), nil
		}
		rec := send(tg.method, path, tg.key, hdr, body)
		if rec.Code >= 500 {
			t.Fatalf("%s %s: %d %s", tg.method, tg.path, rec.Code, rec.Body.String())
		}
		if rec.Code >= 400 && tg.as != "tus-metadata" { // tusd answers in plain text
			var e protocol.ErrorBody
			if err := json.Unmarshal(rec.Body.Bytes(), &e); err != nil || e.Error.Code == "" || e.Error.Message == "" {
				t.Fatalf("%s %s: %d without the error shape: %s", tg.method, tg.path, rec.Code, rec.Body.String())
			}
		}
	})
}
