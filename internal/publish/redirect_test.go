package publish_test

import (
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/herdhq/herd/internal/publish"
)

// elsewhere is another server (another origin) that records every request
// reaching it, and a front server that redirects every request there with
// status code.
func elsewhere(t *testing.T, code int) (front string, seen func() []string) {
	t.Helper()
	var mu sync.Mutex
	var got []string
	other := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		mu.Lock()
		defer mu.Unlock()
		got = append(got, r.Method+" "+r.URL.String()+" "+strings.Join([]string{r.Header.Get("X-Plex-Token"), r.Header.Get("Authorization"),
			r.Header.Get(publish.HeaderSignature), string(b)}, "|"))
		w.WriteHeader(http.StatusOK)
	}))
	t.Cleanup(other.Close)
	fr := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		http.Redirect(w, r, other.URL+r.URL.RequestURI(), code)
	}))
	t.Cleanup(fr.Close)
	return fr.URL, func() []string {
		mu.Lock()
		defer mu.Unlock()
		return append([]string(nil), got...)
	}
}

// TestTokensStayWithTheirServer: a media server or webhook receiver that
// redirects to another host (here: another port, which net/http treats as
// the same host) is reported, not followed, so the token, API key or
// signature never reaches the other host.
func TestTokensStayWithTheirServer(t *testing.T) {
	t.Parallel()
	root, file := library(t)
	for _, code := range []int{http.StatusFound, http.StatusTemporaryRedirect, http.StatusPermanentRedirect} {
		ms := func(url string) publish.MediaServer {
			return publish.MediaServer{Name: "m", URL: url, Token: "the-secret-token", Library: "movies", Root: root,
				Confirm: time.Second, Poll: 10 * time.Millisecond}
		}
		notifiers := map[string]publish.Notifier{}
		seen := map[string]func() []string{}
		var url string
		url, seen["plex"] = elsewhere(t, code)
		notifiers["plex"] = &publish.Plex{MediaServer: ms(url)}
		url, seen["jellyfin"] = elsewhere(t, code)
		notifiers["jellyfin"] = &publish.Jellyfin{MediaServer: ms(url)}
		url, seen["webhook"] = elsewhere(t, code)
		notifiers["webhook"] = &publish.Webhook{URL: url, Secret: "the-secret-token", Agent: "herd/test"}
		// A caller's own client gets the same policy.
		url, seen["plex, own client"] = elsewhere(t, code)
		own := ms(url)
		own.Client = &http.Client{Timeout: 5 * time.Second}
		notifiers["plex, own client"] = &publish.Plex{MediaServer: own}

		for name, n := range notifiers {
			_, err := n.Notify(context.Background(), event(file))
			require.Empty(t, seen[name](), "%s %d: nothing reaches the other host", name, code)
			require.True(t, publish.IsPermanent(err), "%s %d: %v", name, code, err)
			require.ErrorContains(t, err, "use the final address", "%s %d", name, code)
		}
	}
}

// TestWebhookFollowsARedirectOnItsOwnServer: a 307/308 to another path of
// the same receiver keeps the method, body and signature, and is followed.
func TestWebhookFollowsARedirectOnItsOwnServer(t *testing.T) {
	t.Parallel()
	var mu sync.Mutex
	var sigs []string
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/old" {
			http.Redirect(w, r, "/new", http.StatusPermanentRedirect)
			return
		}
		b, _ := io.ReadAll(r.Body)
		mu.Lock()
		defer mu.Unlock()
		if publish.Verify("s3cr3t", b, r.Header.Get(publish.HeaderTimestamp), r.Header.Get(publish.HeaderSignature), time.Now(), publish.ReplayWindow) {
			sigs = append(sigs, r.Method+" "+r.URL.Path)
		}
		w.WriteHeader(http.StatusNoContent)
	}))
	defer srv.Close()
	h := &publish.Webhook{URL: srv.URL + "/old", Secret: "s3cr3t", Agent: "herd/test"}
	_, err := h.Notify(context.Background(), event("/lib/x.mp4"))
	require.NoError(t, err)
	mu.Lock()
	defer mu.Unlock()
	require.Equal(t, []string{"POST /new"}, sigs)
}
