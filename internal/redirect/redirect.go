// Package redirect is the redirect policy of herd's outgoing HTTP clients
// (Plex, Jellyfin, webhooks): a redirect is followed only to the origin the
// request was made to (scheme, host and port) and only when it keeps the
// method, so a credential never reaches another server and a POST never
// silently turns into an empty GET. net/http itself drops only
// Authorization, Cookie and WWW-Authenticate, and only when the host name
// changes; it forwards X-Plex-Token, X-Emby-Token, a webhook's signature, a
// token in the query, and everything on a change of port or scheme. It does
// not decide what a client sends, only where a redirect may lead.
package redirect

import (
	"errors"
	"net/http"
	"net/url"
	"strings"
)

// maxHops is how many redirects one request may follow.
const maxHops = 10

// SameOrigin is an http.Client's CheckRedirect: it follows a redirect to the
// origin of the first request with the same method, and otherwise stops and
// hands the caller the redirect response itself (http.ErrUseLastResponse),
// which callers report as "redirected to ...; use the final address".
func SameOrigin(req *http.Request, via []*http.Request) error {
	if len(via) >= maxHops {
		return errors.New("stopped after 10 redirects")
	}
	first := via[0]
	if req.Method != first.Method || originOf(req.URL) != originOf(first.URL) {
		return http.ErrUseLastResponse
	}
	return nil
}

// Client returns a client that follows only SameOrigin redirects.
func Client(base *http.Client) *http.Client {
	c := &http.Client{}
	if base != nil {
		*c = *base
	}
	c.CheckRedirect = SameOrigin
	return c
}

// origin is what a credential is meant for: scheme, host and port (the
// default port written out).
type origin struct{ scheme, host, port string }

func originOf(u *url.URL) origin {
	o := origin{scheme: strings.ToLower(u.Scheme), host: strings.ToLower(u.Hostname()), port: u.Port()}
	if o.port == "" {
		switch o.scheme {
		case "http":
			o.port = "80"
		case "https":
			o.port = "443"
		}
	}
	return o
}
