package redirect_test

import (
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/herdhq/herd/internal/redirect"
)

func TestSameOrigin(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		from, method, to, toMethod string
		follow                     bool
	}{
		{"http://plex:32400/a", "GET", "http://plex:32400/b", "GET", true},
		{"http://PLEX:32400/a", "GET", "http://plex:32400/b?x=1", "GET", true},
		{"http://plex/a", "GET", "http://plex:80/b", "GET", true},
		{"https://plex/a", "GET", "https://plex:443/b", "GET", true},
		{"http://plex:32400/a", "POST", "http://plex:32400/b", "POST", true}, // 307/308
		{"http://plex:32400/a", "POST", "http://plex:32400/b", "GET", false}, // 302/303: the body would be lost
		{"http://plex:32400/a", "GET", "http://plex:32401/b", "GET", false},  // another port: another server
		{"http://plex:32400/a", "GET", "http://evil:32400/b", "GET", false},
		{"http://plex/a", "GET", "https://plex/b", "GET", false},
		{"https://plex/a", "GET", "http://plex/b", "GET", false},
		{"http://plex.lan/a", "GET", "http://sub.plex.lan/a", "GET", false}, // net/http would keep Authorization here
	} {
		first := httptest.NewRequest(tc.method, tc.from, nil)
		next := httptest.NewRequest(tc.toMethod, tc.to, nil)
		err := redirect.SameOrigin(next, []*http.Request{first})
		if tc.follow {
			require.NoError(t, err, "%s %s -> %s %s", tc.method, tc.from, tc.toMethod, tc.to)
		} else {
			require.ErrorIs(t, err, http.ErrUseLastResponse, "%s %s -> %s %s", tc.method, tc.from, tc.toMethod, tc.to)
		}
	}
	// Hops are compared with the first request, not the last.
	a := httptest.NewRequest("GET", "http://plex/a", nil)
	b := httptest.NewRequest("GET", "http://plex/b", nil)
	require.ErrorIs(t, redirect.SameOrigin(httptest.NewRequest("GET", "http://evil/c", nil), []*http.Request{a, b}), http.ErrUseLastResponse)
	// A loop ends.
	via := make([]*http.Request, 10)
	for i := range via {
		via[i] = a
	}
	err := redirect.SameOrigin(b, via)
	require.Error(t, err)
	require.NotErrorIs(t, err, http.ErrUseLastResponse)
}

// TestClient: the policy is applied to a copy; the caller's client keeps its own.
func TestClient(t *testing.T) {
	t.Parallel()
	base := &http.Client{Timeout: 7}
	c := redirect.Client(base)
	require.NotNil(t, c.CheckRedirect)
	require.Nil(t, base.CheckRedirect)
	require.Equal(t, base.Timeout, c.Timeout)
	require.NotNil(t, redirect.Client(nil).CheckRedirect)
}
