package main_test

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"io/fs"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"go.yaml.in/yaml/v3"

	"github.com/herdhq/herd/internal/api"
	"github.com/herdhq/herd/internal/apikey"
	"github.com/herdhq/herd/internal/protocol"
)

// credential is one way a caller may present itself.
type credential struct {
	name   string
	bearer string
	cookie string // a session cookie, sent with its CSRF token unless noCSRF
	noCSRF bool
}

// endsLease: the reports that end a lease go last in the matrix.
var endsLease = regexp.MustCompile(`/(complete|fail|release)$`)

// TestAuthorizationMatrix calls every route of the real server with every
// kind of caller: nobody, a wrong key, a worker key, the admin key, a live
// and an expired browser session. Who may call an API route is what
// openapi.yaml says (the api package's test holds the code to the same
// document), so a route whose access changes without its documentation, or
// documentation that promises what the server does not do, fails here. A
// worker key reaches the files and reports of its own leased tasks only.
// Refused calls change nothing. Afterwards no key, token or session secret
// is in the server's output or anywhere in its data folder, database
// included, except the admin key's own 0600 copy.
func TestAuthorizationMatrix(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	// A long lease: w1 holds its task through the whole matrix without heartbeats.
	s := startServer(t, filepath.Join(dir, "data"), "--local-workers", "0", "--lease-ttl", "10m")
	adminKey := s.token()
	secrets := map[string]string{"admin key": adminKey}

	call := func(method, path string, c credential, hdr map[string]string, body []byte) (int, http.Header, []byte) {
		t.Helper()
		req, err := http.NewRequest(method, s.url+path, bytes.NewReader(body))
		require.NoError(t, err)
		if body != nil {
			req.Header.Set("Content-Type", "application/json")
		}
		if c.bearer != "" {
			req.Header.Set("Authorization", "Bearer "+c.bearer)
		}
		if c.cookie != "" {
			req.AddCookie(&http.Cookie{Name: api.SessionCookie, Value: c.cookie})
			if !c.noCSRF {
				req.Header.Set(api.CSRFHeader, api.CSRFToken(c.cookie))
			}
		}
		for k, v := range hdr {
			req.Header.Set(k, v)
		}
		resp, err := noRedirect.Do(req)
		require.NoError(t, err)
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, resp.Header, b
	}
	admin := credential{name: "admin key", bearer: adminKey}
	postJSON := func(path string, c credential, v any) map[string]any {
		t.Helper()
		b, _ := json.Marshal(v)
		status, _, body := call("POST", path, c, nil, b)
		require.Less(t, status, 300, "%s: %s", path, body)
		var out map[string]any
		require.NoError(t, json.Unmarshal(body, &out), string(body))
		return out
	}
	signIn := func(key string) string {
		t.Helper()
		form := url.Values{"key": {key}}
		req, err := http.NewRequest("POST", s.url+"/login", strings.NewReader(form.Encode()))
		require.NoError(t, err)
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		resp, err := noRedirect.Do(req)
		require.NoError(t, err)
		_ = resp.Body.Close()
		require.Equal(t, http.StatusSeeOther, resp.StatusCode)
		for _, c := range resp.Cookies() {
			if c.Name == api.SessionCookie {
				return c.Value
			}
		}
		t.Fatal("signing in set no session cookie")
		return ""
	}

	// Two registered workers: w1 holds the probe task of job 1, w2 holds nothing.
	register := func(name string) string {
		tok := postJSON("/api/v1/tokens", admin, map[string]string{"kind": "registration"})["key"].(string)
		secrets["registration token of "+name] = tok
		key := postJSON("/api/v1/worker/register", credential{}, map[string]string{"registration_token": tok, "name": name})["key"].(string)
		secrets["worker key of "+name] = key
		return key
	}
	w1 := credential{name: "worker key (holds the task)", bearer: register("w1")}
	w2 := credential{name: "worker key", bearer: register("w2")}

	submit := func(src string) string {
		t.Helper()
		stdout, stderr, code := s.herd("submit", src, "--profile", "mp4-library")
		require.Equal(t, 0, code, stderr)
		return strings.TrimSpace(stdout)
	}
	src := clip(t, dir, 2, "160x90")
	job1, job2 := submit(src), submit(clip(t, dir, 3, "160x90"))
	require.NotEqual(t, job1, job2)
	claim := postJSON("/api/v1/worker/claim", w1, map[string]any{"slot": "1", "version": protocol.Version, "wait_seconds": 10})
	lease := claim["lease"].(map[string]any)
	taskID := lease["task_id"].(string)
	leaseHdr := map[string]string{protocol.HeaderLeaseOwner: lease["owner"].(string), protocol.HeaderFence: fmt.Sprint(lease["fence"])}
	leaseBody, _ := json.Marshal(map[string]any{"lease": lease})

	// Browser sessions: a live one, and one that ended with its key.
	live := signIn(adminKey)
	secrets["live session"] = live
	short, stderr, code := s.herd("token", "create", "--ttl", "2s", "--name", "short-lived")
	require.Equal(t, 0, code, stderr)
	short = strings.TrimSpace(short)
	secrets["short-lived admin key"] = short
	ended := signIn(short)
	secrets["ended session"] = ended
	wrong := apikey.New("herd_adm_")
	secrets["wrong key"] = wrong
	unused := postJSON("/api/v1/tokens", admin, map[string]string{"kind": "registration"})["key"].(string)
	secrets["unused registration token"] = unused
	expiredSession := credential{name: "expired session", cookie: ended}
	creds := []credential{
		{name: "no key"},
		{name: "wrong key", bearer: wrong},
		w2,
		admin,
		{name: "live session", cookie: live},
		expiredSession,
		{name: "live session without its CSRF token", cookie: live, noCSRF: true},
		{name: "registration token", bearer: unused},
		{name: "expired admin key", bearer: short},
	}
	deadline := time.Now().Add(30 * time.Second)
	for {
		if st, _, _ := call("GET", "/api/v1/jobs", expiredSession, nil, nil); st == http.StatusUnauthorized {
			break
		}
		require.True(t, time.Now().Before(deadline), "the session of an expired key still works after 30 s")
		time.Sleep(100 * time.Millisecond)
	}

	// Who may call each route, from openapi.yaml.
	var doc struct {
		Paths map[string]map[string]struct {
			Security []map[string][]string `yaml:"security"`
		} `yaml:"paths"`
	}
	require.NoError(t, yaml.Unmarshal(api.OpenAPI(), &doc))
	type route struct{ method, path, access string }
	var routes []route
	for p, ops := range doc.Paths {
		for m, op := range ops {
			access := "public"
			for _, alt := range op.Security {
				for scheme := range alt {
					if scheme != "session" {
						access = scheme
					}
				}
			}
			if strings.HasPrefix(p, api.LinkPrefix) {
				access = "link" // the token in the path is the credential
			}
			routes = append(routes, route{strings.ToUpper(m), p, access})
		}
	}
	routes = append(routes, route{"GET", api.LinkPrefix + "{token}/{job}/", "link"}) // a link's player page
	// The web pages: a session only (everyone else is sent to /login).
	for _, p := range []string{"/", "/upload", "/jobs", "/jobs/{id}", "/workers", "/campaigns", "/libraries"} {
		routes = append(routes, route{"GET", p, "page"})
	}
	routes = append(routes, route{"GET", "/login", "public"}, route{"GET", "/assets/app.js", "public"})
	// The reports that end a lease go last, so the holder's other calls still hold it.
	last := func(r route) bool { return endsLease.MatchString(r.path) }
	slices.SortStableFunc(routes, func(a, b route) int {
		switch {
		case last(a) != last(b) && last(a):
			return 1
		case last(a) != last(b):
			return -1
		}
		return strings.Compare(a.method+a.path, b.method+b.path)
	})
	require.Greater(t, len(routes), 40)
	// What is public is pinned here, not only read from the document: a
	// route made public in both the code and openapi.yaml fails this.
	var public []string
	for _, r := range routes {
		if r.access == "public" {
			public = append(public, r.method+" "+r.path)
		}
	}
	require.ElementsMatch(t, []string{"GET /healthz", "GET /readyz", "GET /metrics", "GET /api/v1/openapi.yaml", "GET /api/v1/queue",
		"POST /api/v1/worker/register", "GET /login", "GET /assets/app.js"}, public)

	// A link's route is refused to every caller without the link's token,
	// keys and sessions included; linkToken is what the matrix sends, a
	// token for job 1 (not job 2, whose files it asks for).
	linkToken := strings.Split(postJSON("/api/v1/jobs/"+job1+"/links", admin, map[string]string{})["path"].(string), "/")[2]
	secrets["playback link token"] = linkToken
	target := func(r route) (string, map[string]string, []byte) {
		task := strings.HasPrefix(r.path, "/api/v1/worker/tasks/")
		id := job2
		if task {
			id = taskID
		} else if strings.HasPrefix(r.path, "/api/v1/uploads/") {
			id = strings.Repeat("0", 32)
		}
		p := strings.NewReplacer("{id}", id, "{name}", "nobody", "{step}", "encode", "{path}", "x.mp4",
			"{token}", linkToken, "{job}", job2, "{asset}", "a_nope", "{profile}", "mp4-library").Replace(r.path)
		if r.path == "/api/v1/events" {
			p += "?view=nope" // a stream that would stay open is refused as a bad request once admitted
		}
		var body []byte
		if r.method == "POST" || r.method == "PUT" || r.method == "PATCH" {
			body = []byte("{}")
		}
		if task {
			return p, leaseHdr, leaseBody
		}
		return p, nil, body
	}
	refused := func(r route, status int, hdr http.Header) bool {
		if r.access == "page" {
			return status == http.StatusSeeOther && strings.HasPrefix(hdr.Get("Location"), "/login")
		}
		return status == http.StatusUnauthorized || status == http.StatusForbidden
	}
	check := func(r route, c credential, wantPass bool) {
		t.Helper()
		p, hdr, body := target(r)
		status, h, respBody := call(r.method, p, c, hdr, body)
		require.Less(t, status, 500, "%s %s as %s: %s", r.method, r.path, c.name, respBody)
		if wantPass {
			require.False(t, refused(r, status, h), "%s %s as %s was refused (%d): %s", r.method, r.path, c.name, status, respBody)
		} else {
			require.True(t, refused(r, status, h), "%s %s as %s was let through (%d): %s", r.method, r.path, c.name, status, respBody)
		}
	}
	mayPass := func(r route, c credential) bool {
		switch r.access {
		case "public":
			return true
		case "admin":
			// A session's state-changing calls need its CSRF token.
			return c.name == "admin key" || c.name == "live session" || (c.noCSRF && (r.method == "GET" || r.method == "HEAD"))
		case "page":
			return c.name == "live session" || c.noCSRF
		case "link":
			return false
		}
		return c.bearer == w1.bearer || c.bearer == w2.bearer
	}

	// First every call that must be refused, then a look that nothing changed.
	countOf := func(path string) int {
		_, body := s.get(path, nil)
		var list struct {
			Jobs    []json.RawMessage `json:"jobs"`
			Workers []json.RawMessage `json:"workers"`
		}
		require.NoError(t, json.Unmarshal(body, &list), string(body))
		return len(list.Jobs) + len(list.Workers)
	}
	jobsBefore, workersBefore := countOf("/api/v1/jobs"), countOf("/api/v1/workers")
	for _, r := range routes {
		for _, c := range creds {
			if !mayPass(r, c) {
				check(r, c, false)
			}
		}
	}
	// Job 2's own link passes with no key at all (its file is not there yet: 404).
	own2 := postJSON("/api/v1/jobs/"+job2+"/links", admin, map[string]string{})["path"].(string)
	secrets["playback link token of job 2"] = strings.Split(own2, "/")[2]
	status, _, linkBody := call("GET", own2+"x.mp4", credential{name: "no key"}, nil, nil)
	require.Equal(t, http.StatusNotFound, status, string(linkBody))
	j2 := s.job(job2)
	require.Equal(t, "queued", j2.State, "refused calls canceled job 2")
	require.Equal(t, jobsBefore, countOf("/api/v1/jobs"), "refused calls made a job")
	require.Equal(t, workersBefore, countOf("/api/v1/workers"), "refused calls changed the workers")
	entries, _ := os.ReadDir(filepath.Join(s.data, "uploads"))
	for _, e := range entries {
		require.False(t, strings.HasSuffix(e.Name(), ".info"), "a refused call started an upload")
	}
	_, body := s.get("/api/v1/workers", nil)
	require.NotContains(t, string(body), "draining")
	require.NotContains(t, string(body), "revoked")

	// Another worker's key reaches none of w1's task, with w1's lease or
	// with the same task and fence under its own name: not its files, not
	// its reports.
	own := strings.Replace(lease["owner"].(string), "/w1/", "/w2/", 1)
	ownHdr := map[string]string{protocol.HeaderLeaseOwner: own, protocol.HeaderFence: fmt.Sprint(lease["fence"])}
	ownBody, _ := json.Marshal(map[string]any{"lease": map[string]any{"task_id": taskID, "owner": own, "fence": lease["fence"]}})
	for _, r := range routes {
		if r.access != "worker" || !strings.HasPrefix(r.path, "/api/v1/worker/tasks/") {
			continue
		}
		p, hdr, body := target(r)
		for _, as := range []struct {
			hdr  map[string]string
			body []byte
		}{{hdr, body}, {ownHdr, ownBody}} {
			status, _, respBody := call(r.method, p, w2, as.hdr, as.body)
			require.Contains(t, []int{http.StatusConflict, http.StatusNotFound}, status,
				"%s %s with another worker's key: %d %s", r.method, r.path, status, respBody)
			require.NotContains(t, string(respBody), "ftyp", "another worker's key got bytes of the source")
		}
	}
	j1 := s.job(job1)
	require.Equal(t, "running", j1.State)
	require.Equal(t, "running", j1.Tasks[0].State)
	require.Equal(t, "w1", j1.Tasks[0].Worker, "another worker's reports moved w1's task")

	// Then the calls that must pass: the holder's own task first (its lease
	// is good: the source comes back whole), then everyone else.
	status, _, srcBytes := call("GET", "/api/v1/worker/tasks/"+taskID+"/source", w1, leaseHdr, nil)
	require.Equal(t, http.StatusOK, status)
	want, err := os.ReadFile(src)
	require.NoError(t, err)
	require.Equal(t, want, srcBytes, "the holder gets its task's source")
	for _, r := range routes {
		for _, c := range append(creds, w1) {
			if mayPass(r, c) && (r.access != "worker" || c.bearer == w1.bearer || !strings.HasPrefix(r.path, "/api/v1/worker/tasks/")) {
				if r.path == "/api/v1/worker/claim" && c.bearer == w2.bearer {
					continue // it would lease job 2's probe: fine, but it is not this test's business
				}
				check(r, c, true)
			}
		}
	}

	// No secret went into the server's output or its data folder.
	require.NoError(t, s.cmd.Process.Signal(syscall.SIGTERM))
	select {
	case <-s.outDone: // stdout reaches its end when the server exits
	case <-time.After(time.Minute):
		t.Fatal("the server did not stop within a minute of SIGTERM")
	}
	_ = s.cmd.Wait()
	output := s.out.String() + s.logs.String()
	require.Contains(t, s.logs.String(), "worker registered", "the log was captured")
	for what, secret := range secrets {
		require.NotContains(t, output, secret, "the %s is in the server's output", what)
	}
	var files int
	require.NoError(t, filepath.WalkDir(s.data, func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() || d.Name() == "admin.token" {
			return err
		}
		b, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		files++
		for what, secret := range secrets {
			require.False(t, bytes.Contains(b, []byte(secret)), "the %s is stored in %s", what, p)
		}
		return nil
	}))
	require.Greater(t, files, 2)
	// Keys are stored as their SHA-256, which is what lets herd check them.
	db, err := os.ReadFile(filepath.Join(s.data, "herd.db"))
	require.NoError(t, err)
	if wal, err := os.ReadFile(filepath.Join(s.data, "herd.db-wal")); err == nil {
		db = append(db, wal...)
	}
	for _, what := range []string{"admin key", "worker key of w1", "live session"} {
		require.True(t, bytes.Contains(db, []byte(apikey.Hash(secrets[what]))), "the %s's hash is not in the database", what)
	}
}

// noRedirect is a client that shows redirects instead of following them.
var noRedirect = &http.Client{
	Timeout:       30 * time.Second,
	CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
}
