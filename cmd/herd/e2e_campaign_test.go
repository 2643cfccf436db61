package main_test

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"io/fs"
	"net"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
	"github.com/stretchr/testify/require"

	"github.com/herdhq/herd/internal/testenv"
)

// campaignView is what the test reads of GET /api/v1/campaigns/{id}.
type campaignView struct {
	ID     string `json:"id"`
	State  string `json:"state"`
	Counts struct {
		Total, Pending, Running, Succeeded, Failed, Skipped int
	} `json:"counts"`
	Items []struct {
		JobID    string `json:"job_id"`
		NewJobID string `json:"new_job_id"`
		State    string `json:"state"`
	} `json:"items"`
}

// post sends body (JSON, or nothing) with the admin key.
func (s *server) post(path, body string) (*http.Response, []byte) {
	s.t.Helper()
	return s.request(http.MethodPost, path, strings.NewReader(body), map[string]string{"Content-Type": "application/json"})
}

func (s *server) campaign(id string) campaignView {
	s.t.Helper()
	return getJSON[campaignView](s, "/api/v1/campaigns/"+id)
}

// streamWatch fetches every published output over and over while a
// campaign runs: each web stream's stable path (and the media playlist it
// names) must always answer, and each library file must always be there.
// It records which job (or which content) each served, in order.
type streamWatch struct {
	mu       sync.Mutex
	base     atomic.Pointer[string] // "" while the server is down
	key      string
	streams  []string            // stable paths
	lib      string              // library folder
	served   map[string][]string // stream or library file → the jobs or contents seen, each change once
	problems []string
	stop     chan struct{}
	done     chan struct{}
}

var outputsJob = regexp.MustCompile(`^/api/v1/jobs/([^/]+)/outputs/`)

func (w *streamWatch) see(what, v string) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if h := w.served[what]; len(h) == 0 || h[len(h)-1] != v {
		w.served[what] = append(h, v)
	}
}

func (w *streamWatch) problem(format string, args ...any) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if len(w.problems) < 20 {
		w.problems = append(w.problems, fmt.Sprintf(format, args...))
	}
}

func (w *streamWatch) fetch(u string) (*http.Response, []byte, error) {
	req, err := http.NewRequest("GET", u, nil)
	if err != nil {
		return nil, nil, err
	}
	req.Header.Set("Authorization", "Bearer "+w.key)
	resp, err := http.DefaultClient.Do(req) // follows the stream's redirect, with the key (same host)
	if err != nil {
		return nil, nil, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return resp, b, err
}

func (w *streamWatch) once() {
	if base := *w.base.Load(); base != "" {
		for _, st := range w.streams {
			resp, body, err := w.fetch(base + st + "master.m3u8")
			if err != nil {
				if *w.base.Load() != "" { // not the planned SIGKILL
					w.problem("%s: %v", st, err)
				}
				continue
			}
			if resp.StatusCode != http.StatusOK {
				w.problem("%s: %d %s", st, resp.StatusCode, body)
				continue
			}
			m := outputsJob.FindStringSubmatch(resp.Request.URL.Path)
			if m == nil {
				w.problem("%s: served from %s", st, resp.Request.URL)
				continue
			}
			w.see(st, m[1])
			var media string
			for _, line := range strings.Split(string(body), "\n") {
				if line != "" && !strings.HasPrefix(line, "#") {
					media = line
					break
				}
			}
			ref, _ := url.Parse(media)
			if r2, b2, err := w.fetch(resp.Request.URL.ResolveReference(ref).String()); err == nil && r2.StatusCode != http.StatusOK {
				w.problem("%s: its media playlist %s: %d %s", st, media, r2.StatusCode, b2)
			}
		}
	}
	n := 0
	_ = filepath.WalkDir(w.lib, func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() || strings.HasPrefix(d.Name(), ".herd-") {
			return nil
		}
		b, err := os.ReadFile(p)
		if err != nil {
			w.problem("library file %s: %v", p, err)
			return nil
		}
		sum := sha256.Sum256(b)
		w.see(p, hex.EncodeToString(sum[:8]))
		n++
		return nil
	})
	if n != 5 {
		w.problem("the library holds %d files, not 5", n)
	}
}

func (w *streamWatch) run() {
	defer close(w.done)
	for {
		w.once()
		select {
		case <-w.stop:
			return
		case <-time.After(150 * time.Millisecond):
		}
	}
}

// TestCampaignReplacesEachOutputOnce: after a profile edit, a campaign per
// profile (one made with the CLI over a library's files, one with the API
// over web ladders) replaces each of ten published outputs exactly once,
// while every one of them is fetched throughout: a stream's stable path
// always answers, the old version until the new one is verified, then the
// new one; a library file is always there. The server is SIGKILLed halfway
// and resumes without losing or redoing anything. hls.js, paused in the
// middle of the old version of a stream when it is swapped, plays it to
// the end; a new player on the stable path plays the new one; a playback
// link to a replaced job sends its players to the new one. Pause, resume
// and cancel work from the CLI and the API, and a campaign waits for its
// window.
func TestCampaignReplacesEachOutputOnce(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	data := filepath.Join(dir, "data")
	profiles := filepath.Join(data, "profiles")
	lib := filepath.Join(dir, "library")
	require.NoError(t, os.MkdirAll(profiles, 0o755))
	writeProfiles := func(hlsRate string, crf int) {
		t.Helper()
		require.NoError(t, os.WriteFile(filepath.Join(profiles, "camp-hls.yaml"), []byte(`name: camp-hls
description: a small web ladder
format: hls
segment_seconds: 1
video: {codec: h264, preset: ultrafast, rungs: [{height: 90, bitrate: `+hlsRate+`}]}
audio: {codec: aac, bitrate: 64k, channels: 2}
thumbnails: {poster: true}
`), 0o644))
		require.NoError(t, os.WriteFile(filepath.Join(profiles, "camp-mp4.yaml"), fmt.Appendf(nil,
			"name: camp-mp4\ndescription: a small MP4\nformat: mp4\nvideo: {codec: h264, preset: ultrafast, crf: %d, max_height: 90}\naudio: {codec: aac}\n", crf), 0o644))
	}
	writeProfiles("200k", 35)
	cfg := filepath.Join(dir, "herd.yaml")
	require.NoError(t, os.WriteFile(cfg, fmt.Appendf(nil, "publishers:\n  lib: {type: library, path: %s, kind: movies}\n", lib), 0o644))
	l, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	addr := l.Addr().String()
	require.NoError(t, l.Close())
	args := []string{"--config", cfg, "--addr", addr, "--local-workers", "2", "--keep-replaced", "1h"}
	s := startServer(t, data, args...)
	key := s.token()

	// Ten published outputs: five sources, each as a web ladder and as a library file.
	var hlsJobs, mp4Jobs []string
	for i := range 5 {
		src := filepath.Join(dir, fmt.Sprintf("Film %d (2026).mp4", i))
		seconds := 2.0
		if i == 0 {
			seconds = 6 // the one hls.js plays while it is swapped
		}
		require.NoError(t, testenv.Clip{Size: "160x90", Rate: 15, Seconds: seconds, Tone: 300 + 40*i, Stereo: true}.Make(src))
		out, stderr, code := s.herd("submit", src, "--profile", "camp-hls")
		require.Equal(t, 0, code, stderr)
		hlsJobs = append(hlsJobs, strings.TrimSpace(out))
		out, stderr, code = s.herd("submit", src, "--profile", "camp-mp4", "--publish", "lib")
		require.Equal(t, 0, code, stderr)
		mp4Jobs = append(mp4Jobs, strings.TrimSpace(out))
	}
	var streams []string
	for _, id := range append(slices.Clone(hlsJobs), mp4Jobs...) {
		require.Equal(t, "succeeded", s.waitFinal(id).State, id)
	}
	for _, id := range hlsJobs {
		v := getJSON[struct{ Stream string }](s, "/api/v1/jobs/"+id)
		require.NotEmpty(t, v.Stream)
		streams = append(streams, v.Stream)
	}
	require.Eventually(t, func() bool {
		n := 0
		_ = filepath.WalkDir(lib, func(_ string, d fs.DirEntry, err error) error {
			if err == nil && !d.IsDir() {
				n++
			}
			return nil
		})
		return n == 5
	}, time.Minute, 100*time.Millisecond, "the five library files are delivered")
	// A playback link made for an old job, before the campaign.
	out, stderr, code := s.herd("share", hlsJobs[1])
	require.Equal(t, 0, code, stderr)
	oldLink := strings.TrimSpace(out)

	// hls.js plays the first stream's stable path in a signed-in browser,
	// and pauses in the middle of it.
	ctx := browser(t)
	signIn(t, ctx, s, key)
	testenv.WaitJS(t, ctx, "the dashboard", `location.pathname === "/"`, 10*time.Second)
	require.NoError(t, chromedp.Run(ctx, chromedp.Navigate(s.url+"/campaigns")))
	testenv.WaitJS(t, ctx, "the campaigns page", `document.readyState === "complete"`, 10*time.Second)
	hlsjs, err := os.ReadFile("../../internal/web/assets/vendor/hls.min.js")
	require.NoError(t, err)
	start := func(u string) {
		t.Helper()
		require.NoError(t, chromedp.Run(ctx, chromedp.Evaluate(playerHarness, nil)))
		// A one-second buffer: the player fetches the rest as it plays.
		start := strings.Replace(players[0].start, "new Hls()", "new Hls({maxBufferLength: 1, maxMaxBufferLength: 1})", 1)
		require.NotEqual(t, players[0].start, start)
		awaitJS[bool](t, ctx, fmt.Sprintf(`(async () => { const url = %q; await %s; return true; })()`, u, start))
	}
	require.NoError(t, chromedp.Run(ctx, chromedp.Evaluate(string(hlsjs), nil)))
	start(s.url + streams[0] + "master.m3u8")
	untilPlaying(t, ctx, "hls.js", "the duration", `herdTest.v.duration > 0`, 20*time.Second)
	require.NoError(t, chromedp.Run(ctx, chromedp.Evaluate(`herdTest.v.play()`, nil)))
	untilPlaying(t, ctx, "hls.js", "a second of the old version", `herdTest.v.currentTime > 1`, 20*time.Second)
	require.NoError(t, chromedp.Run(ctx, chromedp.Evaluate(`herdTest.v.pause()`, nil)))

	// The profiles change; each becomes version 2.
	writeProfiles("150k", 36)
	require.NoError(t, s.cmd.Process.Signal(syscall.SIGHUP))
	require.Eventually(t, func() bool {
		out, _, _ := s.herd("profiles", "-o", "json")
		var l struct {
			Profiles []struct {
				Name    string
				Version int
			}
		}
		if json.Unmarshal([]byte(out), &l) != nil {
			return false
		}
		n := 0
		for _, p := range l.Profiles {
			if (p.Name == "camp-hls" || p.Name == "camp-mp4") && p.Version == 2 {
				n++
			}
		}
		return n == 2
	}, 30*time.Second, 200*time.Millisecond, "both profiles at version 2")

	watch := &streamWatch{key: key, streams: streams, lib: lib, served: map[string][]string{}, stop: make(chan struct{}), done: make(chan struct{})}
	up := s.url
	watch.base.Store(&up)
	watch.once() // what was served before
	go watch.run()

	// The library's campaign from the CLI, one at a time: paused at once,
	// it queues nothing more; resumed through the API, it goes on.
	out, stderr, code = s.herd("campaign", "create", "--profile", "camp-mp4", "--library", "lib", "--dry-run")
	require.Equal(t, 0, code, stderr)
	require.Contains(t, out, "would redo 5 outputs of camp-mp4")
	out, stderr, code = s.herd("campaign", "create", "--profile", "camp-mp4", "--library", "lib", "--max-running", "1")
	require.Equal(t, 0, code, stderr)
	mp4Camp := strings.TrimSpace(out)
	out, stderr, code = s.herd("campaign", "pause", mp4Camp)
	require.Equal(t, 0, code, stderr)
	require.Contains(t, out, "paused")
	time.Sleep(3 * time.Second) // longer than a step's tick
	c := s.campaign(mp4Camp)
	require.Equal(t, "paused", c.State)
	require.GreaterOrEqual(t, c.Counts.Pending, 4, "paused with at most one queued: %+v", c.Counts)
	resp, body := s.post("/api/v1/campaigns/"+mp4Camp+"/resume", "")
	require.Equal(t, http.StatusOK, resp.StatusCode, string(body))

	// The web ladders' campaign from the API.
	resp, body = s.post("/api/v1/campaigns", `{"profile": "camp-hls", "max_running": 2}`)
	require.Equal(t, http.StatusCreated, resp.StatusCode, string(body))
	var hc campaignView
	require.NoError(t, json.Unmarshal(body, &hc))
	require.Equal(t, 5, hc.Counts.Total)

	// SIGKILL once the first stream is swapped and both campaigns are mid-way.
	require.Eventually(t, func() bool {
		h, m := s.campaign(hc.ID), s.campaign(mp4Camp)
		return h.Counts.Succeeded >= 1 && m.Counts.Succeeded >= 1 && h.Items[0].State == "succeeded"
	}, 3*time.Minute, 100*time.Millisecond, "each campaign replaced its first output")
	require.Less(t, s.campaign(mp4Camp).Counts.Succeeded, 5, "the library's campaign is still under way")
	down := ""
	watch.base.Store(&down)
	require.NoError(t, s.cmd.Process.Kill())
	_, _ = s.cmd.Process.Wait()
	s = startServer(t, data, args...)
	watch.base.Store(&up)
	for _, id := range []string{mp4Camp, hc.ID} {
		require.Eventually(t, func() bool { return s.campaign(id).State == "done" }, 4*time.Minute, 200*time.Millisecond, "campaign %s finishes after the restart", id)
	}
	close(watch.stop)
	<-watch.done
	watch.once() // what is served after

	// Each output was replaced once, by one new job of version 2, and every
	// stream and file answered throughout, switching once from old to new.
	require.Empty(t, watch.problems)
	for i, id := range append(slices.Clone(hlsJobs), mp4Jobs...) {
		camp := s.campaign(hc.ID)
		if i >= 5 {
			camp = s.campaign(mp4Camp)
		}
		require.Equal(t, 5, camp.Counts.Succeeded, "%+v", camp.Counts)
		oldView := getJSON[struct {
			Profile    string
			ReplacedBy string `json:"replaced_by"`
		}](s, "/api/v1/jobs/"+id)
		require.NotEmpty(t, oldView.ReplacedBy, "job %s (%s) was replaced", id, oldView.Profile)
		nj := s.job(oldView.ReplacedBy)
		require.Equal(t, 2, nj.ProfileVersion)
		require.Equal(t, "succeeded", nj.State)
		if i < 5 {
			require.Equal(t, []string{id, oldView.ReplacedBy}, watch.served[streams[i]], "stream %d served the old job, then the new one", i)
		}
	}
	for p, seen := range watch.served {
		if strings.HasPrefix(p, lib) {
			require.Len(t, seen, 2, "library file %s: its old content, then its new one: %v", p, seen)
		}
	}
	var list struct {
		Jobs []jobJSON `json:"jobs"`
	}
	out, stderr, code = s.herd("jobs", "-o", "json", "--limit", "100")
	require.Equal(t, 0, code, stderr)
	require.NoError(t, json.Unmarshal([]byte(out), &list))
	require.Len(t, list.Jobs, 20, "ten outputs, each made once and redone once")

	// The paused player plays the old version to its end; a new one on the
	// stable path plays the new version; the old link leads to the new one.
	resumed := evalJS[float64](t, ctx, `herdTest.st.moved = performance.now(); herdTest.v.play(); herdTest.st.moved`)
	untilPlaying(t, ctx, "hls.js", "the end of the old version", `herdTest.st.ended || herdTest.v.currentTime >= herdTest.v.duration - 0.1`, 30*time.Second)
	require.True(t, evalJS[bool](t, ctx, fmt.Sprintf(`performance.getEntriesByType("resource").some(e => e.startTime > %f && e.name.includes("/jobs/%s/outputs/") && e.name.endsWith(".m4s"))`,
		resumed, hlsJobs[0])), "after the swap, the paused player read on from the old version's segments")
	newFirst := watch.served[streams[0]][1]
	start(s.url + streams[0] + "master.m3u8")
	untilPlaying(t, ctx, "hls.js", "the new version", `herdTest.v.duration > 0`, 20*time.Second)
	require.NoError(t, chromedp.Run(ctx, chromedp.Evaluate(`herdTest.v.play()`, nil)))
	untilPlaying(t, ctx, "hls.js", "playback of the new version", `herdTest.v.currentTime > 1`, 20*time.Second)
	require.True(t, evalJS[bool](t, ctx, fmt.Sprintf(`performance.getEntriesByType("resource").some(e => e.name.includes("/jobs/%s/outputs/"))`, newFirst)),
		"the new player reads the new job's files")
	resp, err = noRedirect.Get(oldLink + "master.m3u8")
	require.NoError(t, err)
	resp.Body.Close()
	require.Equal(t, http.StatusFound, resp.StatusCode)
	require.Contains(t, resp.Header.Get("Location"), "/"+watch.served[streams[1]][1]+"/master.m3u8", "the old link leads to the current job")
	resp, err = http.Get(oldLink + "master.m3u8")
	require.NoError(t, err)
	resp.Body.Close()
	require.Equal(t, http.StatusOK, resp.StatusCode)

	// A campaign outside its window queues nothing; cancel ends it.
	writeProfiles("150k", 37)
	require.NoError(t, s.cmd.Process.Signal(syscall.SIGHUP))
	require.Eventually(t, func() bool {
		out, _, _ := s.herd("profiles", "-o", "json")
		return strings.Contains(out, `"version": 3`)
	}, 30*time.Second, 200*time.Millisecond, "camp-mp4 at version 3")
	later := time.Now().Add(2 * time.Hour)
	window := later.Format("15:04") + "-" + later.Add(time.Hour).Format("15:04")
	out, stderr, code = s.herd("campaign", "create", "--profile", "camp-mp4", "--window", window)
	require.Equal(t, 0, code, stderr)
	late := strings.TrimSpace(out)
	time.Sleep(3 * time.Second)
	require.Equal(t, 5, s.campaign(late).Counts.Pending, "nothing queued outside the window")
	out, stderr, code = s.herd("campaign", "cancel", late)
	require.Equal(t, 0, code, stderr)
	require.Contains(t, out, "canceled")
	_, stderr, code = s.herd("campaign", "resume", late)
	require.NotEqual(t, 0, code)
	require.Contains(t, stderr, "is canceled")
	out, stderr, code = s.herd("campaign", "list")
	require.Equal(t, 0, code, stderr)
	require.Equal(t, 3, strings.Count(out, "camp-"), out)

	// The Campaigns page shows all three, and passes the audit.
	require.NoError(t, chromedp.Run(ctx, chromedp.Navigate(s.url+"/campaigns")))
	testenv.WaitJS(t, ctx, "the campaigns", `document.querySelectorAll("#c-rows tr[data-campaign]").length === 3`, 15*time.Second)
	require.Contains(t, evalJS[string](t, ctx, `document.querySelector("#c-rows").innerText`), "5 of 5 replaced")
	axeAudit(t, ctx, "the campaigns page")
	require.NoError(t, chromedp.Run(ctx, chromedp.Navigate(s.url+"/jobs/"+hlsJobs[0])))
	testenv.WaitJS(t, ctx, "the replaced notice", `!document.querySelector("#j-replaced").hidden`, 15*time.Second)
	require.Contains(t, evalJS[string](t, ctx, `document.querySelector("#j-replaced").innerText`), "Replaced by "+newFirst)
}
