package main_test

import (
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
	"github.com/stretchr/testify/require"

	"github.com/herdhq/herd/internal/protocol"
	"github.com/herdhq/herd/internal/testenv"
)

// Playback links against the real binary; TestPlayers sets them up and
// plays through them.

// embedPage: the link's own page plays a picture with its quality menu,
// and only the sites in --cors-origin may put it in an iframe.
func embedPage(t *testing.T, ctx context.Context, s *server, site *httptest.Server, l protocol.Link) {
	t.Helper()
	resp := rawGet(t, l.URL, nil)
	require.Equal(t, http.StatusOK, resp.StatusCode)
	csp := resp.Header.Get("Content-Security-Policy")
	require.Contains(t, csp, "frame-ancestors "+site.URL+";")
	require.Contains(t, csp, "script-src 'self';")
	require.Empty(t, resp.Header.Get("X-Frame-Options"), "X-Frame-Options cannot name origins: frame-ancestors does")
	require.Equal(t, "no-referrer", resp.Header.Get("Referrer-Policy"))

	require.NoError(t, chromedp.Run(ctx, chromedp.Navigate(l.URL)))
	testenv.WaitJS(t, ctx, "the player", `window.herdEmbed && herdEmbed.video.readyState >= 1`, 20*time.Second)
	require.NoError(t, chromedp.Run(ctx, chromedp.Evaluate(`herdEmbed.video.muted = true; herdEmbed.video.play()`, nil)))
	testenv.WaitJS(t, ctx, "playback", `herdEmbed.video.currentTime > 1`, 20*time.Second)
	require.Positive(t, evalJS[int](t, ctx, `herdEmbed.video.videoWidth`), "a picture, not only sound")
	require.Positive(t, evalJS[int](t, ctx, `herdEmbed.video.getVideoPlaybackQuality().totalVideoFrames`))
	testenv.WaitJS(t, ctx, "the quality menu: Auto and each rung", `document.getElementById("quality").options.length > 2 && !document.getElementById("quality").hidden`, 10*time.Second)
	axeAudit(t, ctx, "embed")

	// Framed by the allowed site, the player runs; framed by another, the
	// browser shows its error page in the frame instead. The cross-site
	// frame runs in a process of its own: the test attaches to its target.
	framed := func(from *httptest.Server) bool {
		tab, closeTab := chromedp.NewContext(ctx) // a tab of its own, whose frames are all this page's
		defer closeTab()
		ctx, cancel := context.WithTimeout(tab, 40*time.Second)
		defer cancel()
		require.NoError(t, chromedp.Run(ctx, chromedp.Navigate(from.URL+"/frame?src="+url.QueryEscape(l.URL))))
		deadline := time.Now().Add(20 * time.Second)
		var frame context.Context
		for frame == nil && time.Now().Before(deadline) {
			targets, err := chromedp.Targets(ctx)
			require.NoError(t, err)
			for _, tg := range targets {
				if tg.Type == "iframe" && tg.Attached {
					var done context.CancelFunc
					frame, done = chromedp.NewContext(ctx, chromedp.WithTargetID(tg.TargetID))
					defer done() // only once the checks are over: it ends the frame
					break
				}
			}
			time.Sleep(100 * time.Millisecond)
		}
		require.NotNil(t, frame, "the frame from %s never started", from.URL)
		for time.Now().Before(deadline) {
			var st struct {
				Href   string
				Player bool
			}
			err := chromedp.Run(frame, chromedp.Evaluate(`({href: location.href, player: !!(window.herdEmbed && herdEmbed.video.readyState >= 1)})`, &st))
			switch {
			case err != nil:
			case st.Player:
				return true
			case strings.HasPrefix(st.Href, "chrome-error:"):
				return false
			}
			time.Sleep(200 * time.Millisecond)
		}
		t.Fatalf("the frame from %s neither played nor failed", from.URL)
		return false
	}
	require.True(t, framed(site), "the site in --cors-origin frames the player")
	require.False(t, framed(otherSite(t)), "a site not in --cors-origin must not frame the player")
}

// linkRefused: the link reads its job's outputs and nothing else; CORS
// answers its site only; expired, altered and revoked links are refused.
func linkRefused(t *testing.T, s *server, site *httptest.Server, l protocol.Link) {
	t.Helper()
	tok := strings.Split(l.Path, "/")[2]
	resp := rawGet(t, l.Playlist, map[string]string{"Origin": site.URL})
	require.Equal(t, http.StatusOK, resp.StatusCode)
	require.Equal(t, site.URL, resp.Header.Get("Access-Control-Allow-Origin"))
	resp = rawGet(t, l.Playlist, map[string]string{"Origin": "http://evil.example"})
	require.Empty(t, resp.Header.Get("Access-Control-Allow-Origin"))
	for _, origin := range []string{site.URL, "http://evil.example"} {
		req, err := http.NewRequest(http.MethodOptions, l.Playlist, nil)
		require.NoError(t, err)
		req.Header.Set("Origin", origin)
		req.Header.Set("Access-Control-Request-Method", "GET")
		req.Header.Set("Access-Control-Request-Headers", "range")
		resp, err := http.DefaultClient.Do(req)
		require.NoError(t, err)
		_ = resp.Body.Close()
		if origin == site.URL {
			require.Equal(t, http.StatusNoContent, resp.StatusCode)
			require.Equal(t, "Range", resp.Header.Get("Access-Control-Allow-Headers"))
		} else {
			require.Equal(t, http.StatusForbidden, resp.StatusCode)
		}
	}

	// Not another job's files, not the API, not the UI, however the path
	// is spelled on its way through the server's routes.
	for _, p := range []string{"../../api/v1/jobs", "..%2F..%2Fapi%2Fv1%2Fjobs", "%2e%2e/%2e%2e/api/v1/jobs", "%2e%2e%2f%2e%2e%2fapi/v1/jobs",
		"..%2f" + l.Job + "%2fmaster.m3u8", "../../../api/v1/jobs/" + l.Job + "/outputs/master.m3u8"} {
		resp, body := rawRead(t, l.URL+p) // a path the server cleans is redirected, to where a link's token is no key
		require.Contains(t, []int{http.StatusBadRequest, http.StatusUnauthorized, http.StatusForbidden, http.StatusNotFound}, resp.StatusCode, p)
		require.NotContains(t, body, `"jobs"`, p)
		require.NotContains(t, body, "#EXTM3U", p)
	}
	resp = rawGet(t, s.url+"/p/"+tok+"/"+url.PathEscape(l.Job+"/../x")+"/master.m3u8", nil)
	require.Contains(t, []int{http.StatusBadRequest, http.StatusForbidden, http.StatusNotFound}, resp.StatusCode)
	resp = rawGet(t, s.url+"/p/"+tok+"/j_0123456789abcdef01234567/master.m3u8", nil)
	require.Equal(t, http.StatusForbidden, resp.StatusCode)
	for _, p := range []string{"/api/v1/jobs", "/api/v1/jobs/" + l.Job + "/outputs/master.m3u8"} {
		resp := rawGet(t, s.url+p, map[string]string{"Authorization": "Bearer " + tok})
		require.Equal(t, http.StatusUnauthorized, resp.StatusCode, p)
	}
	resp = rawGet(t, s.url+"/jobs/"+l.Job, map[string]string{"Authorization": "Bearer " + tok})
	require.Equal(t, http.StatusSeeOther, resp.StatusCode, "the UI sends a link's holder to sign in")

	// Altered and expired.
	resp = rawGet(t, s.url+"/p/1"+tok+"/"+l.Job+"/master.m3u8", nil)
	require.Equal(t, http.StatusForbidden, resp.StatusCode)
	stdout, stderr, code := s.herd("share", l.Job, "--ttl", "1s")
	require.Equal(t, 0, code, stderr)
	short := strings.TrimSpace(stdout)
	time.Sleep(1100 * time.Millisecond)
	resp, body := rawRead(t, short+"master.m3u8")
	require.Equal(t, http.StatusForbidden, resp.StatusCode)
	require.Contains(t, body, "link_expired")
	resp, body = rawRead(t, short)
	require.Equal(t, http.StatusForbidden, resp.StatusCode)
	require.Contains(t, body, "expired", "the page says why")

	// Revoked: every link made before stops; a new one works.
	_, stderr, code = s.herd("share", "--revoke")
	require.Equal(t, 0, code, stderr)
	resp, body = rawRead(t, l.Playlist)
	require.Equal(t, http.StatusForbidden, resp.StatusCode)
	require.Contains(t, body, "link_invalid")
	stdout, stderr, code = s.herd("share", l.Job)
	require.Equal(t, 0, code, stderr)
	resp = rawGet(t, strings.TrimSpace(stdout)+"master.m3u8", nil)
	require.Equal(t, http.StatusOK, resp.StatusCode)
	_, stderr, code = s.herd("share")
	require.Equal(t, 1, code)
	require.Contains(t, stderr, "--revoke")
}

// rawGet fetches u with no key and no redirects followed.
func rawGet(t *testing.T, u string, hdr map[string]string) *http.Response {
	t.Helper()
	req, err := http.NewRequest(http.MethodGet, u, nil)
	require.NoError(t, err)
	for k, v := range hdr {
		req.Header.Set(k, v)
	}
	c := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	resp, err := c.Do(req)
	require.NoError(t, err)
	_ = resp.Body.Close()
	return resp
}

func rawRead(t *testing.T, u string) (*http.Response, string) {
	t.Helper()
	resp, err := http.Get(u)
	require.NoError(t, err)
	defer resp.Body.Close()
	var b strings.Builder
	_, err = io.Copy(&b, resp.Body)
	require.NoError(t, err)
	return resp, b.String()
}
