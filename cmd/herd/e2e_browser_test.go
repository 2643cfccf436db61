package main_test

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/cdproto/network"
	"github.com/chromedp/cdproto/runtime"
	"github.com/chromedp/chromedp"
	"github.com/stretchr/testify/require"

	"github.com/herdhq/herd/internal/protocol"
	"github.com/herdhq/herd/internal/testenv"
)

// The web UI in a real browser: Debian's chromium, headless, driven by
// chromedp against a real herd serve. HERD_SCREENSHOTS=DIR keeps a
// screenshot of each page there.

func browser(t *testing.T) context.Context {
	t.Helper()
	return testenv.Browser(t)
}

func shot(t *testing.T, ctx context.Context, name string) {
	dir := os.Getenv("HERD_SCREENSHOTS")
	if dir == "" {
		return
	}
	var b []byte
	require.NoError(t, chromedp.Run(ctx, chromedp.FullScreenshot(&b, 100)))
	require.NoError(t, os.MkdirAll(dir, 0o755))
	require.NoError(t, os.WriteFile(filepath.Join(dir, name+".png"), b, 0o644))
}

func evalJS[T any](t *testing.T, ctx context.Context, expr string) T {
	t.Helper()
	var v T
	require.NoError(t, chromedp.Run(ctx, chromedp.Evaluate(expr, &v)), expr)
	return v
}

// axeAudit runs axe-core (testdata/axe, pinned by make web-vendor) over
// the page open in ctx, and fails the test on any serious or critical
// finding with its rule, what the rule asks for and the elements that
// break it; lesser findings are only logged. Call it once the page is
// filled in: axe checks what the document holds then. name says which
// page in the messages. The page keeps its CSP: a script evaluated through
// DevTools runs under it, and axe uses nothing the policy forbids.
func axeAudit(t *testing.T, ctx context.Context, name string) {
	t.Helper()
	if !evalJS[bool](t, ctx, `typeof window.axe === "object"`) {
		src, err := os.ReadFile("testdata/axe/axe.min.js")
		require.NoError(t, err)
		require.NoError(t, chromedp.Run(ctx, chromedp.Evaluate(string(src), nil)), "load axe-core into %s", name)
	}
	var found []struct {
		ID, Impact, Help, HelpURL string
		Targets                   []string
	}
	require.NoError(t, chromedp.Run(ctx, chromedp.Evaluate(`axe.run(document, {resultTypes: ["violations"]}).then((r) => r.violations.map((v) => ({
		id: v.id, impact: v.impact || "", help: v.help, helpUrl: v.helpUrl, targets: v.nodes.map((n) => n.target.join(" "))})))`, &found,
		func(p *runtime.EvaluateParams) *runtime.EvaluateParams { return p.WithAwaitPromise(true) })), "run axe-core on %s", name)
	var bad []string
	for _, v := range found {
		line := fmt.Sprintf("%s (%s): %s <%s>\n\t\t%s", v.ID, v.Impact, v.Help, v.HelpURL, strings.Join(v.Targets, "\n\t\t"))
		if v.Impact == "serious" || v.Impact == "critical" {
			bad = append(bad, line)
		} else {
			t.Logf("axe on %s, not failing: %s", name, line)
		}
	}
	if len(bad) > 0 {
		t.Errorf("axe-core finds %d serious or critical problems on %s:\n\t%s", len(bad), name, strings.Join(bad, "\n\t"))
	}
}

// awaitJS is evalJS for an expression that gives a promise: its value.
func awaitJS[T any](t *testing.T, ctx context.Context, expr string) T {
	t.Helper()
	var v T
	require.NoError(t, chromedp.Run(ctx, chromedp.Evaluate(expr, &v,
		func(p *runtime.EvaluateParams) *runtime.EvaluateParams { return p.WithAwaitPromise(true) })), expr)
	return v
}

func signIn(t *testing.T, ctx context.Context, s *server, key string) {
	t.Helper()
	require.NoError(t, chromedp.Run(ctx,
		chromedp.Navigate(s.url+"/login"),
		chromedp.WaitVisible(`#key`, chromedp.ByQuery),
		chromedp.SendKeys(`#key`, key, chromedp.ByQuery),
		chromedp.Submit(`#key`, chromedp.ByQuery),
	))
}

// Sign in (a wrong key is refused), upload a real clip through the page
// with the profile it preselects (web-hls), watch it reach succeeded in the
// live list of another tab that never reloads, play the ladder (a picture,
// not only sound; time advances, a chosen rung is what plays, seek previews
// come from the sprite), and see the dashboard and workers. An MP4 plays
// natively; an archive-hevc job's page offers its download instead of a
// black player. Every page passes axe-core's audit.
func TestBrowserUploadWatchPlay(t *testing.T) {
	t.Parallel()
	ctx := browser(t)
	dir := t.TempDir()
	src := filepath.Join(dir, "Browser Clip.mp4")
	require.NoError(t, testenv.Clip{Size: "640x360", Rate: 25, Seconds: 12, Tone: 330, Stereo: true}.Make(src))
	// A webhook publisher, for the upload page's "Deliver to" choice.
	hooks := newHookLog(t, "127.0.0.1:0", map[string]string{"/site": "site-secret"})
	cfg := filepath.Join(dir, "herd.yaml")
	require.NoError(t, os.WriteFile(cfg, []byte("publishers:\n  site: {type: webhook, url: "+hooks.url+"/site, secret: site-secret}\n"), 0o644))
	s := startServer(t, filepath.Join(dir, "data"), "--config", cfg)

	// A wrong key is refused, and the page says what to use instead.
	signIn(t, ctx, s, "herd_adm_not-the-key")
	testenv.WaitJS(t, ctx, "the refusal", `document.querySelector("#login-error")?.textContent.includes("not a valid admin key")`, 10*time.Second)
	require.Contains(t, evalJS[string](t, ctx, `location.pathname`), "/login")
	shot(t, ctx, "login-refused")
	axeAudit(t, ctx, "the sign-in page")
	resp, _ := s.get("/api/v1/jobs", nil) // the API still works with the key
	require.Equal(t, http.StatusOK, resp.StatusCode)

	signIn(t, ctx, s, s.token())
	testenv.WaitJS(t, ctx, "the dashboard", `location.pathname === "/" && document.querySelector("#d-workers").textContent !== "–"`, 15*time.Second)

	// The jobs list, left open: it must update itself.
	require.NoError(t, chromedp.Run(ctx, chromedp.Navigate(s.url+"/jobs")))
	testenv.WaitJS(t, ctx, "the empty list", `document.querySelector("#job-rows").innerText.includes("No jobs yet")`, 15*time.Second)
	require.NoError(t, chromedp.Run(ctx, chromedp.Evaluate(`window.__notReloaded = true`, nil)))

	// Upload in a second tab of the same browser.
	up, cancel := chromedp.NewContext(ctx)
	defer cancel()
	require.NoError(t, chromedp.Run(up, chromedp.Navigate(s.url+"/upload"), chromedp.WaitVisible(`#files`, chromedp.ByQuery)))
	require.Equal(t, "web-hls", evalJS[string](t, up, `document.querySelector("#profile").value`), "the page preselects the profile every browser plays")
	// Deliver it to the webhook, labelled, with French subtitles for the
	// deaf and hard of hearing. A subtitle file that does not parse is
	// refused before the video is sent, naming the line.
	broken := filepath.Join(dir, "broken.fr.srt")
	require.NoError(t, os.WriteFile(broken, []byte("1\n00:00:01,000 --> 00:00:02,000\nUn.\n\n2\n00:00:05,000 --> 00:00:03,000\nDeux.\n"), 0o644))
	require.NoError(t, chromedp.Run(up, chromedp.SetUploadFiles(`#subtitle-file`, []string{broken}, chromedp.ByQuery),
		chromedp.SendKeys(`#subtitle-lang`, "fr", chromedp.ByQuery), chromedp.SetUploadFiles(`#files`, []string{src}, chromedp.ByQuery)))
	testenv.WaitJS(t, up, "the refusal", `document.querySelector('#uploads li[data-state="failed"]')`, 15*time.Second)
	require.Contains(t, evalJS[string](t, up, `document.querySelector('#uploads li[data-state="failed"] .status').textContent`),
		"broken.fr.srt: the subtitle file was refused: line 6: the cue ends (0:00:03.000) before it starts (0:00:05.000)")
	fr := filepath.Join(dir, "clip.fr.srt")
	require.NoError(t, os.WriteFile(fr, []byte("1\n00:00:01,000 --> 00:00:03,000\n[PORTE QUI GRINCE]\n"), 0o644))
	require.NoError(t, chromedp.Run(up, chromedp.Click(`input[name="publish"][value="site"]`, chromedp.ByQuery),
		chromedp.SendKeys(`#labels`, "team=web, tier=gold", chromedp.ByQuery),
		chromedp.SetUploadFiles(`#subtitle-file`, []string{fr}, chromedp.ByQuery), chromedp.SetValue(`#subtitle-kind`, "sdh", chromedp.ByQuery)))
	require.NoError(t, chromedp.Run(up, chromedp.SetUploadFiles(`#files`, []string{src}, chromedp.ByQuery)))
	testenv.WaitJS(t, up, "the upload to finish", `document.querySelector('#uploads li[data-state="done"]')?.dataset.jobId`, 60*time.Second)
	id := evalJS[string](t, up, `document.querySelector('#uploads li[data-state="done"]').dataset.jobId`)
	shot(t, up, "upload")
	axeAudit(t, up, "the upload page")
	_ = chromedp.Cancel(up)
	uploaded := s.job(id)
	require.Equal(t, "web-hls", uploaded.Profile)
	require.Equal(t, []string{"site"}, uploaded.Publish, "the Deliver to box")
	require.Equal(t, map[string]string{"team": "web", "tier": "gold"}, uploaded.Labels, "the Labels field")

	// An archive of a tiny clip, made meanwhile: HEVC in Matroska, which
	// no browser plays. Its page comes later.
	small := filepath.Join(dir, "Archive Clip.mp4")
	require.NoError(t, testenv.Clip{Size: "320x180", Rate: 25, Seconds: 2, Tone: 440}.Make(small))
	stdout, stderr, code := s.herd("submit", small, "--profile", "archive-hevc")
	require.Equal(t, 0, code, stderr)
	archive := strings.TrimSpace(stdout)

	// The first tab saw the job arrive and finish, without reloading.
	row := fmt.Sprintf(`document.querySelector('#job-rows tr[data-job=%q]')`, id)
	testenv.WaitJS(t, ctx, "the job in the live list", row, 15*time.Second)
	testenv.WaitJS(t, ctx, "the job to succeed in the live list", row+`?.dataset.state === "succeeded"`, 3*time.Minute)
	hooks.wait(t, "/site", id, "job.succeeded")
	require.True(t, evalJS[bool](t, ctx, `window.__notReloaded === true`), "the list updated without a reload")
	shot(t, ctx, "jobs")
	axeAudit(t, ctx, "the jobs list")

	// The job page plays the ladder.
	require.NoError(t, chromedp.Run(ctx, chromedp.Navigate(s.url+"/jobs/"+id)))
	testenv.WaitJS(t, ctx, "the player", `!document.querySelector("#player-box").hidden && document.querySelectorAll("#p-quality option").length >= 3`, 20*time.Second)
	require.Equal(t, "Browser Clip.mp4", evalJS[string](t, ctx, `document.querySelector("#j-title").textContent`))
	facts := evalJS[string](t, ctx, `document.querySelector("#j-source").innerText`)
	require.Contains(t, facts, "team=web, tier=gold")
	require.Contains(t, facts, "Publishers")
	require.GreaterOrEqual(t, evalJS[int](t, ctx, `document.querySelectorAll('#j-outputs tr[data-output]').length`), 4, "master, manifest, rungs, audio, thumbnails")
	// Its audio track: the source's loudness, the gain, what came out.
	audio := evalJS[string](t, ctx, `document.querySelector("#j-audio tr[data-track]")?.innerText || ""`)
	require.Regexp(t, `LUFS.*dBTP\s+[+-][0-9.]+ dB\s+-1[5-7]\.[0-9] LUFS`, audio, "the job page's audio table")
	require.Regexp(t, `Français \(SDH\)\s+fr\s+SDH\s+subtitle file given with the source`, evalJS[string](t, ctx, `document.querySelector("#j-subs tr[data-subtitle]")?.innerText || ""`),
		"the subtitle file from the upload page, on the job page")
	require.NoError(t, chromedp.Run(ctx, chromedp.Evaluate(`herdPlayer.video.muted = true; herdPlayer.video.play()`, nil)))
	testenv.WaitJS(t, ctx, "playback", `herdPlayer.video.currentTime > 1`, 30*time.Second)
	require.Empty(t, evalJS[string](t, ctx, `document.querySelector("#player").dataset.error || ""`))
	// A picture, not only sound: frames decoded, and drawn they are not black.
	require.Positive(t, evalJS[int](t, ctx, `herdPlayer.video.videoWidth`))
	require.Greater(t, evalJS[int](t, ctx, `herdPlayer.video.getVideoPlaybackQuality().totalVideoFrames`), 5)
	require.Greater(t, evalJS[int](t, ctx, `(() => { const c = document.createElement("canvas"); c.width = 64; c.height = 36;
		const g = c.getContext("2d"); g.drawImage(herdPlayer.video, 0, 0, 64, 36);
		return Math.max(...g.getImageData(0, 0, 64, 36).data.filter((_, i) => i % 4 !== 3)); })()`), 100, "the brightest pixel of the picture")

	// Choose the smallest rung: it is what plays next.
	levels := evalJS[[]int](t, ctx, `herdPlayer.hls.levels.map(l => l.height)`)
	require.GreaterOrEqual(t, len(levels), 2, "the 360p source gives at least two rungs")
	low := 0
	for i, h := range levels {
		if h < levels[low] {
			low = i
		}
	}
	require.NoError(t, chromedp.Run(ctx, chromedp.SetValue(`#p-quality`, fmt.Sprint(low), chromedp.ByQuery),
		chromedp.Evaluate(`document.querySelector("#p-quality").dispatchEvent(new Event("change"))`, nil)))
	testenv.WaitJS(t, ctx, "the chosen rung to play", fmt.Sprintf(`document.querySelector("#player").dataset.playingLevel === "%d" && herdPlayer.video.videoHeight === %d`, low, levels[low]), 30*time.Second)
	before := evalJS[float64](t, ctx, `herdPlayer.video.currentTime`)
	testenv.WaitJS(t, ctx, "playback to go on", fmt.Sprintf(`herdPlayer.video.currentTime > %f + 0.5`, before), 20*time.Second)
	require.Empty(t, evalJS[string](t, ctx, `document.querySelector("#player").dataset.error || ""`))

	// Seek-bar previews come from the sprite sheet.
	testenv.WaitJS(t, ctx, "the thumbnail track", `Number(document.querySelector("#player").dataset.thumbnails) > 0`, 10*time.Second)
	require.NoError(t, chromedp.Run(ctx, chromedp.Evaluate(`(() => { const s = document.querySelector("#p-seek"), r = s.getBoundingClientRect();
		s.dispatchEvent(new PointerEvent("pointermove", {clientX: r.left + r.width * 0.6, clientY: r.top + 2, bubbles: true})); })()`, nil)))
	testenv.WaitJS(t, ctx, "a seek preview", `(document.querySelector("#player").dataset.preview || "").startsWith("sprite.jpg#")`, 5*time.Second)
	require.False(t, evalJS[bool](t, ctx, `document.querySelector("#p-preview").hidden`))
	shot(t, ctx, "job")

	// Share: the page makes a playback link, which plays with no key.
	require.False(t, evalJS[bool](t, ctx, `document.querySelector("#share-box").hidden`))
	require.NoError(t, chromedp.Run(ctx, chromedp.SetValue(`#share-ttl`, "1h", chromedp.ByQuery), chromedp.Click(`#share-form button`, chromedp.ByQuery)))
	testenv.WaitJS(t, ctx, "the playback link", `!document.querySelector("#share-out").hidden && document.querySelector("#share-url").value.includes("/p/")`, 10*time.Second)
	shareURL := evalJS[string](t, ctx, `document.querySelector("#share-url").value`)
	require.True(t, strings.HasPrefix(shareURL, s.url+"/p/") && strings.HasSuffix(shareURL, "/"+id+"/"), shareURL)
	resp, page := rawRead(t, shareURL)
	require.Equal(t, http.StatusOK, resp.StatusCode)
	require.Contains(t, page, `data-hls="master.m3u8"`)
	resp, _ = rawRead(t, shareURL+"master.m3u8")
	require.Equal(t, http.StatusOK, resp.StatusCode)
	axeAudit(t, ctx, "the job page")

	// Dashboard and workers pages fill from their live views.
	require.NoError(t, chromedp.Run(ctx, chromedp.Navigate(s.url+"/")))
	testenv.WaitJS(t, ctx, "the dashboard's counts", `document.querySelector("#d-states").innerText.includes("succeeded")`, 15*time.Second)
	testenv.WaitJS(t, ctx, "this hour's bar", `[...document.querySelectorAll("#d-hours .bar .ok")].some(b => parseFloat(b.style.height) > 0)`, 15*time.Second)
	shot(t, ctx, "dashboard")
	axeAudit(t, ctx, "the dashboard")
	require.NoError(t, chromedp.Run(ctx, chromedp.Navigate(s.url+"/workers")))
	testenv.WaitJS(t, ctx, "the workers page", `document.querySelector("#w-rows").innerText.includes("No remote workers")`, 15*time.Second)
	shot(t, ctx, "workers")
	axeAudit(t, ctx, "the workers page")
	require.NoError(t, chromedp.Run(ctx, chromedp.Navigate(s.url+"/no-such-page")))
	testenv.WaitJS(t, ctx, "the not-found page", `document.readyState === "complete" && document.querySelector("h1")`, 10*time.Second)
	axeAudit(t, ctx, "the not-found page")

	// An MP4 output plays natively, with its download link.
	stdout, stderr, code = s.herd("submit", src, "--profile", "mp4-library", "--wait")
	require.Equal(t, 0, code, stderr)
	mp4 := strings.TrimSpace(stdout)
	require.NoError(t, chromedp.Run(ctx, chromedp.Navigate(s.url+"/jobs/"+mp4)))
	testenv.WaitJS(t, ctx, "the MP4 player", `!document.querySelector("#player-box").hidden && window.herdPlayer`, 20*time.Second)
	require.True(t, evalJS[bool](t, ctx, `herdPlayer.hls === null && herdPlayer.video.src.endsWith(".mp4")`))
	require.NoError(t, chromedp.Run(ctx, chromedp.Evaluate(`herdPlayer.video.muted = true; herdPlayer.video.play()`, nil)))
	testenv.WaitJS(t, ctx, "MP4 playback", `herdPlayer.video.currentTime > 1`, 30*time.Second)
	require.True(t, evalJS[bool](t, ctx, `[...document.querySelectorAll("#j-outputs a[download]")].some(a => a.href.endsWith(".mp4"))`))

	// The archive's page says the browser cannot play it and offers the
	// file, in the server's first paint already; no black player.
	require.Equal(t, "succeeded", s.waitFinal(archive).State)
	require.NoError(t, chromedp.Run(ctx, chromedp.Navigate(s.url+"/jobs/"+archive)))
	testenv.WaitJS(t, ctx, "the download notice", `document.querySelectorAll("#j-outputs tr[data-output]").length > 0 && !document.querySelector("#j-noplay").hidden`, 20*time.Second)
	require.Regexp(t, `^This browser cannot play \S+\.mkv \(HEVC in Matroska\)\. Download \S+\.mkv, or play it in VLC, mpv, Plex or Jellyfin\.$`,
		evalJS[string](t, ctx, `document.querySelector("#j-noplay").textContent`))
	require.False(t, evalJS[bool](t, ctx, `document.querySelector("#video").checkVisibility()`), "no player")
	require.True(t, evalJS[bool](t, ctx, `window.herdPlayer === undefined || herdPlayer.video === null`), "nothing set up to play")
	require.True(t, awaitJS[bool](t, ctx, `fetch(location.href).then((r) => r.text()).then((h) => {
		const d = new DOMParser().parseFromString(h, "text/html");
		return !d.querySelector("#j-noplay").hidden && d.querySelector("#player").hidden && d.querySelector("#j-noplay a[download]") !== null; })`), "the server's first paint")
	require.Equal(t, http.StatusOK, awaitJS[int](t, ctx, `fetch(document.querySelector("#j-noplay a[download]").href)
		.then(async (r) => r.ok && (await r.arrayBuffer()).byteLength > 0 ? r.status : -r.status)`), "the download link works with the session")
	shot(t, ctx, "job-noplay")
	axeAudit(t, ctx, "the job page of an output no browser plays")
	// Its playback link's page says the same, and its download works with the link.
	stdout, stderr, code = s.herd("share", archive)
	require.Equal(t, 0, code, stderr)
	archiveLink := strings.TrimSpace(stdout)
	require.NoError(t, chromedp.Run(ctx, chromedp.Navigate(archiveLink)))
	require.Contains(t, evalJS[string](t, ctx, `document.body.innerText`), "Browsers cannot play this video (HEVC in Matroska)")
	dl := evalJS[string](t, ctx, `document.querySelector("a[download]").href`)
	require.True(t, strings.HasPrefix(dl, archiveLink) && strings.HasSuffix(dl, ".mkv"), dl)
	resp, _ = rawRead(t, dl)
	require.Equal(t, http.StatusOK, resp.StatusCode)
	axeAudit(t, ctx, "the playback page of an output no browser plays")

	// On a phone-sized screen the pages fit the width.
	require.NoError(t, chromedp.Run(ctx, chromedp.EmulateViewport(390, 844, chromedp.EmulateMobile)))
	for p, filled := range map[string]string{
		"/":           `document.querySelector("#d-workers").textContent !== "–"`,
		"/jobs":       `!document.querySelector("#job-rows").innerText.includes("Loading")`,
		"/upload":     `document.querySelector("#files")`,
		"/workers":    `!document.querySelector("#w-rows").innerText.includes("Loading")`,
		"/jobs/" + id: `document.querySelectorAll("#j-outputs tr[data-output]").length > 0`,
	} {
		require.NoError(t, chromedp.Run(ctx, chromedp.Navigate(s.url+p)))
		testenv.WaitJS(t, ctx, p+" filled", filled, 15*time.Second)
		require.LessOrEqual(t, evalJS[int](t, ctx, `document.documentElement.scrollWidth`), 390, "%s scrolls sideways on a phone; too wide: %s", p,
			evalJS[string](t, ctx, `[...document.querySelectorAll("body *")].filter(e => e.getBoundingClientRect().right > 391 || e.scrollWidth > 391).slice(0, 8).map(e => e.tagName + "#" + e.id + "." + e.className + " " + Math.round(e.getBoundingClientRect().right) + "/" + e.scrollWidth).join(", ") + " cw=" + document.documentElement.clientWidth`))
	}
	shot(t, ctx, "phone-job")
	require.NoError(t, chromedp.Run(ctx, chromedp.EmulateViewport(1280, 900)))

	// Signing out ends the session: its cookie no longer opens the API.
	require.NoError(t, chromedp.Run(ctx, chromedp.Click(`form.logout button`, chromedp.ByQuery)))
	testenv.WaitJS(t, ctx, "the sign-in page", `location.pathname === "/login"`, 10*time.Second)
	var status int
	require.NoError(t, chromedp.Run(ctx, chromedp.Evaluate(`fetch("/api/v1/jobs").then(r => r.status)`, &status,
		func(p *runtime.EvaluateParams) *runtime.EvaluateParams { return p.WithAwaitPromise(true) })))
	require.Equal(t, http.StatusUnauthorized, status)
}

// An upload cut off by a page reload resumes from where it stopped when the
// same file is chosen again, and one cut off by a dropped connection goes
// on by itself when the network is back; each becomes one job.
func TestBrowserUploadResumes(t *testing.T) {
	t.Parallel()
	ctx := browser(t)
	dir := t.TempDir()
	mk := func(name string, seconds int) string {
		p := filepath.Join(dir, name)
		require.NoError(t, testenv.Clip{Size: "640x360", Rate: 25, Seconds: float64(seconds), Extra: []string{"-qp", "8"}}.Make(p))
		return p
	}
	big, big2 := mk("Reloaded.mp4", 6), mk("Dropped.mp4", 7)
	st, err := os.Stat(big)
	require.NoError(t, err)
	t.Logf("clip of %d bytes", st.Size())
	s := startServer(t, filepath.Join(dir, "data"), "--local-workers", "0") // only uploads matter here
	signIn(t, ctx, s, s.token())
	testenv.WaitJS(t, ctx, "the dashboard", `location.pathname === "/"`, 15*time.Second)

	// Slow the upload down, so there is a middle to cut it in.
	throttle := func(bytesPerSec float64, offline bool) {
		require.NoError(t, chromedp.Run(ctx, network.Enable(), network.EmulateNetworkConditions(offline, 0, -1, bytesPerSec)))
	}
	throttle(float64(st.Size())/8, false)
	require.NoError(t, chromedp.Run(ctx, chromedp.Navigate(s.url+"/upload"), chromedp.WaitVisible(`#files`, chromedp.ByQuery),
		chromedp.SetValue(`#profile`, "mp4-library", chromedp.ByQuery), chromedp.SetUploadFiles(`#files`, []string{big}, chromedp.ByQuery)))
	testenv.WaitJS(t, ctx, "a third of the upload", `document.querySelector('#uploads li progress')?.value > 0.3`, 30*time.Second)
	require.NoError(t, chromedp.Run(ctx, chromedp.Reload()))
	throttle(-1, false)
	testenv.WaitJS(t, ctx, "the unfinished upload listed", `document.querySelector('#pending li[data-pending="Reloaded.mp4"]')`, 15*time.Second)
	shot(t, ctx, "upload-pending")
	axeAudit(t, ctx, "the upload page with an unfinished upload")
	require.NoError(t, chromedp.Run(ctx, chromedp.SetValue(`#profile`, "mp4-library", chromedp.ByQuery), chromedp.SetUploadFiles(`#files`, []string{big}, chromedp.ByQuery)))
	testenv.WaitJS(t, ctx, "the resumed upload to finish", `document.querySelector('#uploads li[data-state="done"]')?.dataset.jobId`, 60*time.Second)
	from := evalJS[string](t, ctx, `document.querySelector('#uploads li[data-state="done"]').dataset.resumedFrom || ""`)
	require.NotEmpty(t, from, "the upload asked the server where it stopped")
	require.NotEqual(t, "0", from, "and went on from there")
	t.Logf("resumed from byte %s of %d", from, st.Size())
	testenv.WaitJS(t, ctx, "the pending list to empty", `document.querySelector('#pending-box').hidden`, 10*time.Second)

	// A dropped connection: the server is killed mid-upload and comes back
	// on the same address; the page's retries find where it stopped and go on.
	throttle(float64(st.Size())/8, false)
	require.NoError(t, chromedp.Run(ctx, chromedp.SetUploadFiles(`#files`, []string{big2}, chromedp.ByQuery)))
	testenv.WaitJS(t, ctx, "a third of the second upload", `document.querySelector('#uploads li[data-upload="Dropped.mp4"] progress')?.value > 0.3`, 30*time.Second)
	require.NoError(t, s.cmd.Process.Kill())
	_ = s.cmd.Wait()
	throttle(-1, false)
	s = startServer(t, s.data, "--local-workers", "0", "--addr", strings.TrimPrefix(s.url, "http://"))
	// The page retries by itself for about 40 s; should the restart take
	// longer on a loaded machine, the upload pauses and Resume goes on.
	li := `document.querySelector('#uploads li[data-upload="Dropped.mp4"]')`
	testenv.WaitJS(t, ctx, "the second upload to finish or pause", li+`.dataset.state === "done" || `+li+`.dataset.state === "paused"`, 90*time.Second)
	if evalJS[string](t, ctx, li+`.dataset.state`) == "paused" {
		require.NoError(t, chromedp.Run(ctx, chromedp.Evaluate(li+`.querySelector("button").click()`, nil)))
	}
	testenv.WaitJS(t, ctx, "the second upload to finish", li+`.dataset.state === "done"`, 60*time.Second)
	from = evalJS[string](t, ctx, `document.querySelector('#uploads li[data-upload="Dropped.mp4"]').dataset.resumedFrom || ""`)
	require.NotEmpty(t, from, "the upload asked the restarted server where it stopped")
	require.NotEqual(t, "0", from)
	t.Logf("after the server was killed, resumed from byte %s", from)
	shot(t, ctx, "upload-resumed")

	// Two uploads, two jobs, each whole.
	_, body := s.get("/api/v1/jobs", nil)
	var list struct{ Jobs []jobJSON }
	require.NoError(t, json.Unmarshal(body, &list))
	require.Len(t, list.Jobs, 2, "%s", body)
	sizes := map[string]int64{}
	for _, j := range list.Jobs {
		var full struct {
			Source struct {
				Name string
				Size int64
			}
		}
		_, b := s.get("/api/v1/jobs/"+j.ID, nil)
		require.NoError(t, json.Unmarshal(b, &full))
		sizes[full.Source.Name] = full.Source.Size
	}
	st2, err := os.Stat(big2)
	require.NoError(t, err)
	require.Equal(t, map[string]int64{"Reloaded.mp4": st.Size(), "Dropped.mp4": st2.Size()}, sizes)
	// With no worker the jobs wait: cancel one from the list, then retry it.
	require.NoError(t, chromedp.Run(ctx, chromedp.Navigate(s.url+"/jobs")))
	jid := list.Jobs[0].ID
	row := fmt.Sprintf(`#job-rows tr[data-job=%q]`, jid)
	testenv.WaitJS(t, ctx, "the queued job", fmt.Sprintf(`document.querySelector('%s')?.dataset.state === "queued"`, row), 15*time.Second)
	require.NoError(t, chromedp.Run(ctx, chromedp.Click(row+` button.danger`, chromedp.ByQuery)))
	testenv.WaitJS(t, ctx, "the job canceled", fmt.Sprintf(`document.querySelector('%s')?.dataset.state === "canceled"`, row), 15*time.Second)
	require.NoError(t, chromedp.Run(ctx, chromedp.Click(row+` button`, chromedp.ByQuery)))
	testenv.WaitJS(t, ctx, "the job queued again", fmt.Sprintf(`document.querySelector('%s')?.dataset.state === "queued"`, row), 15*time.Second)

	// A registered worker can be drained, resumed and revoked from its page.
	tok, stderr, code := s.herd("token", "create", "--registration")
	require.Equal(t, 0, code, stderr)
	regBody := fmt.Sprintf(`{"registration_token": %q, "name": "gpu-box-1"}`, strings.TrimSpace(tok))
	reg, err := http.Post(s.url+"/api/v1/worker/register", "application/json", strings.NewReader(regBody))
	require.NoError(t, err)
	_ = reg.Body.Close()
	require.Equal(t, http.StatusCreated, reg.StatusCode)
	require.NoError(t, chromedp.Run(ctx, chromedp.Navigate(s.url+"/workers")))
	w := `document.querySelector('#w-rows tr[data-worker="gpu-box-1"]')`
	testenv.WaitJS(t, ctx, "the worker", w+`?.dataset.state === "active"`, 15*time.Second)
	require.NoError(t, chromedp.Run(ctx, chromedp.Click(`button[aria-label="Drain gpu-box-1"]`, chromedp.ByQuery)))
	testenv.WaitJS(t, ctx, "the worker draining", w+`?.dataset.state === "draining"`, 15*time.Second)
	require.NoError(t, chromedp.Run(ctx, chromedp.Click(`button[aria-label="Resume gpu-box-1"]`, chromedp.ByQuery)))
	testenv.WaitJS(t, ctx, "the worker active again", w+`?.dataset.state === "active"`, 15*time.Second)
	require.NoError(t, chromedp.Run(ctx, chromedp.Evaluate(`window.confirm = () => true`, nil),
		chromedp.Click(`button[aria-label="Revoke gpu-box-1"]`, chromedp.ByQuery)))
	testenv.WaitJS(t, ctx, "the worker revoked", w+`?.dataset.state === "revoked"`, 15*time.Second)
	shot(t, ctx, "workers-revoked")
	axeAudit(t, ctx, "the workers page with a worker")

	entries, err := os.ReadDir(filepath.Join(s.data, "uploads"))
	require.NoError(t, err)
	var left []string
	var records int
	for _, e := range entries {
		switch {
		case strings.HasSuffix(e.Name(), ".job"):
			records++ // the job it became, for a late HEAD on any replica
		case !strings.HasSuffix(e.Name(), ".lock"):
			left = append(left, e.Name())
		}
	}
	require.Empty(t, left, "finished uploads leave no bytes behind")
	require.Equal(t, 2, records, "each finished upload names its job")
}

// The job page plays a web job while it is still running, from its live
// playlist: a remote worker hands each segment over as ffmpeg finishes it.
// The worker is drained while it encodes, so the job waits, encoded but
// not verified, for as long as the test looks; the page then moves to the
// verified outputs once the job succeeds.
func TestBrowserPlaysWhileEncoding(t *testing.T) {
	t.Parallel()
	ctx := browser(t)
	dir := t.TempDir()
	s := startServer(t, filepath.Join(dir, "data"), "--local-workers", "0")
	src := clip(t, dir, 12, "480x270")
	stdout, stderr, code := s.herd("submit", src, "--profile", "web-hls")
	require.Equal(t, 0, code, stderr)
	id := strings.TrimSpace(stdout)

	// No worker yet: the job waits, unplanned. A playback link made now
	// opens a page that says so and looks again by itself.
	stdout, stderr, code = s.herd("share", id, "--ttl", "1h", "-o", "json")
	require.Equal(t, 0, code, stderr)
	var l protocol.Link
	require.NoError(t, json.Unmarshal([]byte(stdout), &l), stdout)
	resp, page := rawRead(t, l.URL)
	require.Equal(t, http.StatusOK, resp.StatusCode)
	require.Contains(t, page, `<meta http-equiv="refresh" content="5">`)
	require.Contains(t, page, "still being encoded")
	s.startWorker(t, "live-box", "--max-tasks", "1")

	// Drained as soon as its encode runs: it finishes that task, then
	// takes no other (verification waits).
	deadline := time.Now().Add(2 * time.Minute)
	for !slices.ContainsFunc(s.job(id).Tasks, func(t taskJSON) bool {
		return t.Kind == "encode" && t.State == "running"
	}) {
		require.True(t, time.Now().Before(deadline), "the encode did not start")
		time.Sleep(10 * time.Millisecond)
	}
	resp, body := s.request(http.MethodPost, "/api/v1/workers/live-box/drain", nil, nil)
	require.Equal(t, http.StatusOK, resp.StatusCode, string(body))
	j := s.waitFor(id, 2*time.Minute, func(j jobJSON) bool {
		return slices.ContainsFunc(j.Tasks, func(t taskJSON) bool {
			return t.Kind == "encode" && t.State == "succeeded"
		})
	})
	require.Equal(t, "running", j.State, "verification waits for a worker")

	signIn(t, ctx, s, s.token())
	testenv.WaitJS(t, ctx, "the dashboard", `location.pathname === "/"`, 15*time.Second)
	require.NoError(t, chromedp.Run(ctx, chromedp.Navigate(s.url+"/jobs/"+id)))
	testenv.WaitJS(t, ctx, "the live player", `document.querySelector("#player").dataset.live === "true" && !document.querySelector("#player-box").hidden && !document.querySelector("#p-live").hidden`, 20*time.Second)
	require.NoError(t, chromedp.Run(ctx, chromedp.Evaluate(`herdPlayer.video.muted = true; herdPlayer.video.play()`, nil)))
	testenv.WaitJS(t, ctx, "live playback", `herdPlayer.video.currentTime > 1`, 30*time.Second)
	shot(t, ctx, "job-live")
	require.Equal(t, "running", s.job(id).State, "it played before the job succeeded")
	require.Empty(t, evalJS[string](t, ctx, `document.querySelector("#player").dataset.error || ""`))

	// The link's page now plays the same live playlist, from its start.
	tab, closeTab := chromedp.NewContext(ctx)
	require.NoError(t, chromedp.Run(tab, chromedp.Navigate(l.URL)))
	testenv.WaitJS(t, tab, "the link's live player", `window.herdEmbed && herdEmbed.live && herdEmbed.video.readyState >= 1 && document.getElementById("live-note").textContent.startsWith("Still encoding")`, 20*time.Second)
	require.NoError(t, chromedp.Run(tab, chromedp.Evaluate(`herdEmbed.video.muted = true; herdEmbed.video.play()`, nil)))
	testenv.WaitJS(t, tab, "live playback through the link", `herdEmbed.video.currentTime > 1`, 30*time.Second)
	require.Less(t, evalJS[float64](t, tab, `herdEmbed.video.played.start(0)`), 0.5, "played from the start, not from near the live end")
	require.True(t, evalJS[bool](t, tab, `document.getElementById("error").hidden`))
	require.True(t, evalJS[bool](t, tab, `document.getElementById("live-note").hidden`), "the encode is done: its playlist ended, and the note went")
	require.Equal(t, "running", s.job(id).State)
	closeTab()

	resp, body = s.request(http.MethodPost, "/api/v1/workers/live-box/resume", nil, nil)
	require.Equal(t, http.StatusOK, resp.StatusCode, string(body))
	require.Equal(t, "succeeded", s.waitFinal(id).State)
	require.NoError(t, chromedp.Run(ctx, chromedp.Evaluate(`herdPlayer.video.pause()`, nil)))
	testenv.WaitJS(t, ctx, "the move to the verified outputs", `document.querySelector("#player").dataset.live === undefined && document.querySelector("#p-live").hidden && herdPlayer.hls.url.includes("/outputs/master.m3u8")`, 30*time.Second)
	require.NoError(t, chromedp.Run(ctx, chromedp.Evaluate(`herdPlayer.video.play()`, nil)))
	before := evalJS[float64](t, ctx, `herdPlayer.video.currentTime`)
	testenv.WaitJS(t, ctx, "playback of the outputs", fmt.Sprintf(`herdPlayer.video.currentTime > %f + 0.5`, before), 30*time.Second)
}
