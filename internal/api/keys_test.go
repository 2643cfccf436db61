package api_test

import (
	"bufio"
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/herdhq/herd/internal/api"
	"github.com/herdhq/herd/internal/apikey"
	"github.com/herdhq/herd/internal/job"
	"github.com/herdhq/herd/internal/protocol"
	"github.com/herdhq/herd/internal/store"
)

// issue makes a key through the API and returns it.
func (f *fixture) issue(t *testing.T, kind, name string) protocol.IssuedKey {
	t.Helper()
	resp, body := f.do(t, "POST", "/api/v1/tokens", adminKey, strings.NewReader(`{"kind":"`+kind+`","name":"`+name+`"}`), "application/json")
	require.Equal(t, http.StatusCreated, resp.StatusCode, string(body))
	var k protocol.IssuedKey
	require.NoError(t, json.Unmarshal(body, &k))
	return k
}

// tokens lists the keys through the API.
func (f *fixture) tokens(t *testing.T, query string) []protocol.KeyView {
	t.Helper()
	resp, body := f.do(t, "GET", "/api/v1/tokens"+query, adminKey, nil, "")
	require.Equal(t, http.StatusOK, resp.StatusCode, string(body))
	var out struct {
		Keys []protocol.KeyView `json:"keys"`
	}
	require.NoError(t, json.Unmarshal(body, &out))
	return out.Keys
}

func byID(keys []protocol.KeyView, id string) (protocol.KeyView, bool) {
	for _, k := range keys {
		if k.ID == id {
			return k, true
		}
	}
	return protocol.KeyView{}, false
}

func (f *fixture) revoke(t *testing.T, id string) (int, []byte) {
	t.Helper()
	resp, body := f.do(t, "POST", "/api/v1/tokens/"+id+"/revoke", adminKey, nil, "")
	return resp.StatusCode, body
}

// TestTokenListAndRevoke: keys are listed with kind, name and times but
// never their secret or hash; a revoked key stops working at once and leaves
// the default list; the last live admin key is kept.
func TestTokenListAndRevoke(t *testing.T) {
	t.Parallel()
	f := setup(t)
	second := f.issue(t, "admin", "ci")
	reg := f.issue(t, "registration", "")

	resp, body := f.do(t, "GET", "/api/v1/tokens", adminKey, nil, "")
	require.Equal(t, http.StatusOK, resp.StatusCode)
	for _, secret := range []string{adminKey, second.Secret, reg.Secret, apikey.Hash(second.Secret), apikey.Hash(adminKey)} {
		require.NotContains(t, string(body), secret, "the list shows a key's secret or hash")
	}
	keys := f.tokens(t, "")
	k, ok := byID(keys, second.ID)
	require.True(t, ok, "the new admin key is listed")
	require.Equal(t, "admin", k.Kind)
	require.Equal(t, "ci", k.Name)
	require.Equal(t, protocol.KeyLive, k.State)
	require.Nil(t, k.LastUsed, "not used yet")
	require.WithinDuration(t, time.Now(), k.CreatedAt, time.Minute)
	r, ok := byID(keys, reg.ID)
	require.True(t, ok)
	require.Equal(t, "registration", r.Kind)
	require.NotNil(t, r.ExpiresAt, "registration tokens expire")
	first, ok := byID(keys, "k1")
	require.True(t, ok)
	require.NotNil(t, first.LastUsed, "the admin key making these calls records its use")

	// Revoked: refused at once, gone from the default list, shown with ?all=true.
	resp, _ = f.do(t, "GET", "/api/v1/jobs", second.Secret, nil, "")
	require.Equal(t, http.StatusOK, resp.StatusCode)
	code, body := f.revoke(t, second.ID)
	require.Equal(t, http.StatusOK, code, string(body))
	var rv protocol.KeyView
	require.NoError(t, json.Unmarshal(body, &rv))
	require.Equal(t, protocol.KeyRevoked, rv.State)
	resp, body = f.do(t, "GET", "/api/v1/jobs", second.Secret, nil, "")
	require.Equal(t, http.StatusUnauthorized, resp.StatusCode)
	require.Contains(t, string(body), "revoked")
	_, ok = byID(f.tokens(t, ""), second.ID)
	require.False(t, ok, "a revoked key leaves the default list")
	k, ok = byID(f.tokens(t, "?all=true"), second.ID)
	require.True(t, ok)
	require.Equal(t, protocol.KeyRevoked, k.State)
	require.NotNil(t, k.LastUsed, "it was used once")
	code, _ = f.revoke(t, second.ID)
	require.Equal(t, http.StatusOK, code, "revoking twice is no error")

	code, body = f.revoke(t, "k-nope")
	require.Equal(t, http.StatusNotFound, code)
	require.Equal(t, "not_found", errCode(t, body))
	code, body = f.revoke(t, "k1")
	require.Equal(t, http.StatusConflict, code, "the last live admin key is kept")
	require.Equal(t, "last_admin_key", errCode(t, body))
	resp, _ = f.do(t, "GET", "/api/v1/jobs", adminKey, nil, "")
	require.Equal(t, http.StatusOK, resp.StatusCode)

	resp, body = f.do(t, "GET", "/api/v1/tokens?all=maybe", adminKey, nil, "")
	require.Equal(t, http.StatusBadRequest, resp.StatusCode)
	errCode(t, body)
	resp, body = f.do(t, "POST", "/api/v1/tokens", adminKey, strings.NewReader(`{"kind":"admin","name":"`+api.AdminTokenKeyName+`"}`), "application/json")
	require.Equal(t, http.StatusBadRequest, resp.StatusCode, "the --admin-token key's name is kept for it")
	errCode(t, body)
	// Only an admin lists or revokes keys.
	for _, key := range []string{"", "worker-key-0123456789", reg.Secret} {
		resp, _ = f.do(t, "GET", "/api/v1/tokens", key, nil, "")
		require.Contains(t, []int{http.StatusUnauthorized, http.StatusForbidden}, resp.StatusCode)
		resp, _ = f.do(t, "POST", "/api/v1/tokens/k1/revoke", key, nil, "")
		require.Contains(t, []int{http.StatusUnauthorized, http.StatusForbidden}, resp.StatusCode)
	}
}

// TestKeyUseRecordedOncePerMinute: a key's last use is written on first use,
// not again on every request.
func TestKeyUseRecordedOncePerMinute(t *testing.T) {
	t.Parallel()
	f := setup(t)
	ctx := context.Background()
	k, err := f.st.KeyByHash(ctx, apikey.Hash(adminKey))
	require.NoError(t, err)
	require.Nil(t, k.LastUsed)
	resp, _ := f.do(t, "GET", "/api/v1/jobs", adminKey, nil, "")
	require.Equal(t, http.StatusOK, resp.StatusCode)
	k, err = f.st.KeyByHash(ctx, apikey.Hash(adminKey))
	require.NoError(t, err)
	require.NotNil(t, k.LastUsed)
	first := *k.LastUsed
	time.Sleep(5 * time.Millisecond)
	resp, _ = f.do(t, "GET", "/api/v1/jobs", adminKey, nil, "")
	require.Equal(t, http.StatusOK, resp.StatusCode)
	k, err = f.st.KeyByHash(ctx, apikey.Hash(adminKey))
	require.NoError(t, err)
	require.Equal(t, first, *k.LastUsed, "a second use within the minute is not written")
}

// TestSessionEndsWithItsKey: a browser session signed in with an admin key
// ends when that key is revoked.
func TestSessionEndsWithItsKey(t *testing.T) {
	t.Parallel()
	f := setup(t)
	other := f.issue(t, "admin", "laptop")
	rec := httptest.NewRecorder()
	require.NoError(t, f.api.SignIn(rec, httptest.NewRequest("POST", "/login", nil), other.Secret))
	var cookie *http.Cookie
	for _, c := range rec.Result().Cookies() {
		if c.Name == api.SessionCookie {
			cookie = c
		}
	}
	require.NotNil(t, cookie)
	get := func() int {
		req, err := http.NewRequest("GET", f.srv.URL+"/api/v1/jobs", nil)
		require.NoError(t, err)
		req.AddCookie(cookie)
		resp, err := http.DefaultClient.Do(req)
		require.NoError(t, err)
		_ = resp.Body.Close()
		return resp.StatusCode
	}
	require.Equal(t, http.StatusOK, get())
	s, ok := byID(f.tokens(t, ""), func() string {
		k, err := f.st.KeyByHash(context.Background(), apikey.Hash(cookie.Value))
		require.NoError(t, err)
		return k.ID
	}())
	require.True(t, ok, "the session is listed")
	require.Equal(t, "session", s.Kind)
	require.Equal(t, other.ID, s.MadeWith)

	code, body := f.revoke(t, other.ID)
	require.Equal(t, http.StatusOK, code, string(body))
	require.Equal(t, http.StatusUnauthorized, get(), "the session ended with its admin key")
	s, ok = byID(f.tokens(t, "?all=true"), s.ID)
	require.True(t, ok)
	require.Equal(t, protocol.KeyRevoked, s.State)
}

// TestRevokedKeyEndsEventStream: a stream opened with a bearer key ends
// once the key is revoked, as one opened with a session does when it ends.
func TestRevokedKeyEndsEventStream(t *testing.T) {
	t.Parallel()
	f := setup(t)
	f.api.SetRecheck(50 * time.Millisecond)
	srv := httptest.NewServer(f.api.Handler()) // started after SetRecheck
	t.Cleanup(srv.Close)
	key := f.issue(t, "admin", "dashboard")

	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, "GET", srv.URL+"/api/v1/events?view=dashboard", nil)
	require.NoError(t, err)
	req.Header.Set("Authorization", "Bearer "+key.Secret)
	resp, err := http.DefaultClient.Do(req)
	require.NoError(t, err)
	defer resp.Body.Close()
	require.Equal(t, http.StatusOK, resp.StatusCode)
	sc := bufio.NewScanner(resp.Body)
	for sc.Scan() && !strings.HasPrefix(sc.Text(), "event: dashboard") {
	}
	code, body := f.revoke(t, key.ID)
	require.Equal(t, http.StatusOK, code, string(body))
	for sc.Scan() {
	}
	require.NoError(t, ctx.Err(), "the stream went on after its key was revoked")
}

// TestRevokedKeyEndsParkedClaim: a worker's long-polled claim looks at its
// key again when it wakes: revoking the key (or the worker) ends it with a
// 401 instead of an empty answer, and a refused key never claims a task.
func TestRevokedKeyEndsParkedClaim(t *testing.T) {
	t.Parallel()
	for _, how := range []string{"token", "worker"} {
		t.Run(how, func(t *testing.T) {
			t.Parallel()
			f := setup(t)
			ctx := context.Background()
			const key = "parked-worker-key-0123456789"
			require.NoError(t, f.st.CreateKey(ctx, store.Key{ID: "kpw", Kind: "worker", Name: "pw", Hash: apikey.Hash(key), CreatedAt: time.Now()}))
			require.NoError(t, f.st.PutWorker(ctx, store.Worker{Name: "pw", KeyID: "kpw", State: store.WorkerActive, Slots: 1, CreatedAt: time.Now()}))
			type answer struct {
				code int
				body []byte
			}
			got := make(chan answer, 1)
			start := time.Now()
			go func() {
				req, _ := http.NewRequest("POST", f.srv.URL+"/api/v1/worker/claim", strings.NewReader(`{"slot":"1","version":"`+protocol.Version+`","wait_seconds":20}`))
				req.Header.Set("Authorization", "Bearer "+key)
				req.Header.Set("Content-Type", "application/json")
				resp, err := http.DefaultClient.Do(req)
				if err != nil {
					got <- answer{}
					return
				}
				defer resp.Body.Close()
				var b strings.Builder
				_, _ = bufio.NewReader(resp.Body).WriteTo(&b)
				got <- answer{resp.StatusCode, []byte(b.String())}
			}()
			time.Sleep(300 * time.Millisecond) // the claim is parked
			var code int
			var body []byte
			if how == "token" {
				code, body = f.revoke(t, "kpw")
			} else {
				resp, b := f.do(t, "POST", "/api/v1/workers/pw/revoke", adminKey, nil, "")
				code, body = resp.StatusCode, b
			}
			require.Equal(t, http.StatusOK, code, string(body))
			a := <-got
			require.Equal(t, http.StatusUnauthorized, a.code, "the parked claim ended with: %s", a.body)
			require.Less(t, time.Since(start), 15*time.Second, "the claim waited out its long poll")
			wk, err := f.st.GetWorker(ctx, "pw")
			require.NoError(t, err)
			require.Equal(t, store.WorkerRevoked, wk.State, "revoking a worker's key revokes the worker")
			// A job queued now is not handed to the revoked key.
			form, ct := upload(t, [][2]string{{"profile", "mp4-library"}}, "a.mp4", []byte("bytes"))
			resp, b := f.do(t, "POST", "/api/v1/jobs", adminKey, form, ct)
			require.Equal(t, http.StatusCreated, resp.StatusCode, string(b))
			resp, b = f.do(t, "POST", "/api/v1/worker/claim", key, strings.NewReader(`{"slot":"1","version":"`+protocol.Version+`"}`), "application/json")
			require.Equal(t, http.StatusUnauthorized, resp.StatusCode, string(b))
		})
	}
}

// TestWrongKindOfKey: a key of one kind never stands in for another, and
// the refusal says which kind was sent and what to do.
func TestWrongKindOfKey(t *testing.T) {
	t.Parallel()
	f := setup(t)
	resp, body := f.do(t, "POST", "/api/v1/worker/claim", adminKey, strings.NewReader(`{"slot":"1"}`), "application/json")
	require.Equal(t, http.StatusForbidden, resp.StatusCode)
	var e protocol.ErrorBody
	require.NoError(t, json.Unmarshal(body, &e))
	require.Contains(t, e.Error.Message, "this is an admin key")
	require.Contains(t, e.Error.Message, "HERD_WORKER_TOKEN")
	resp, body = f.do(t, "GET", "/api/v1/jobs", "worker-key-0123456789", nil, "")
	require.Equal(t, http.StatusForbidden, resp.StatusCode)
	require.NoError(t, json.Unmarshal(body, &e))
	require.Contains(t, e.Error.Message, "this is a worker key")
}

// TestSweepKeys: expired keys and sessions are deleted from the database;
// live ones and keys without an expiry stay.
func TestSweepKeys(t *testing.T) {
	t.Parallel()
	f := setup(t)
	ctx := context.Background()
	past, future := time.Now().Add(-time.Minute), time.Now().Add(time.Hour)
	require.NoError(t, f.st.CreateKey(ctx, store.Key{ID: "old", Kind: "session", Hash: "h-old", CreatedAt: past.Add(-time.Hour), ExpiresAt: &past}))
	require.NoError(t, f.st.CreateKey(ctx, store.Key{ID: "new", Kind: "registration", Hash: "h-new", CreatedAt: past, ExpiresAt: &future}))
	f.api.SweepKeysOnce(ctx)
	_, err := f.st.KeyByHash(ctx, "h-old")
	require.ErrorIs(t, err, job.ErrNotFound, "the expired session was swept")
	for _, h := range []string{"h-new", apikey.Hash(adminKey)} {
		_, err = f.st.KeyByHash(ctx, h)
		require.NoError(t, err)
	}
}
