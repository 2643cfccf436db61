package api

import (
	"bytes"
	"context"
	"errors"
	"io"
	"net/http"
	"net/url"
	"path"
	"strings"
	"time"

	"github.com/herdhq/herd/internal/blob"
	"github.com/herdhq/herd/internal/link"
	"github.com/herdhq/herd/internal/pack"
	"github.com/herdhq/herd/internal/pipeline"
	"github.com/herdhq/herd/internal/protocol"
)

// Playback links: /p/{token}/{job}/ and the outputs beneath it, readable
// with the token alone. The token is in the path because players resolve
// a playlist's relative URIs against its URL and drop its query string.

// LinkPrefix is where playback links live.
const LinkPrefix = "/p/"

// linkPath is the path of a link's page, below which its job's outputs are.
func linkPath(token, jobID string) string {
	return LinkPrefix + token + "/" + url.PathEscape(jobID) + "/"
}

// secretFor is how long a server keeps the link secret it read: every
// replica sees a revocation within it, and a player's many segment
// requests cost the store one read in that time.
const secretFor = 5 * time.Second

// linkSecret is the current link secret, made on first use.
func (s *Server) linkSecret(r *http.Request) ([]byte, error) {
	s.secretMu.Lock()
	defer s.secretMu.Unlock()
	if s.secret != nil && time.Since(s.secretAt) < secretFor {
		return s.secret, nil
	}
	b, err := s.st.Secret(r.Context(), link.SecretName, link.NewSecret(), time.Now())
	if err != nil {
		return nil, err
	}
	s.secret, s.secretAt = b, time.Now()
	return b, nil
}

// createLink makes a signed playback link for one job.
func (s *Server) createLink(w http.ResponseWriter, r *http.Request) {
	var body struct {
		TTL string `json:"ttl"`
	}
	if r.ContentLength != 0 && !decodeJSON(w, r, &body) {
		return
	}
	ttl := link.DefaultTTL
	if body.TTL != "" {
		d, err := time.ParseDuration(body.TTL)
		if err != nil || d <= 0 || d > link.MaxTTL {
			writeError(w, http.StatusBadRequest, "bad_request", "ttl is a duration such as 24h or 720h, at most "+link.MaxTTL.String())
			return
		}
		ttl = d
	}
	v, err := s.JobPage(r.Context(), r.PathValue("id"))
	if err != nil {
		s.storeError(w, r, err)
		return
	}
	secret, err := s.linkSecret(r)
	if err != nil {
		s.internal(w, r, err)
		return
	}
	exp := time.Now().Add(ttl).Truncate(time.Second).UTC()
	p := linkPath(link.Sign(secret, v.ID, exp), v.ID)
	base := requestBase(r)
	out := protocol.Link{Job: v.ID, URL: base + p, Path: p, ExpiresAt: exp}
	for _, o := range v.Outputs {
		switch {
		case o.Kind == "hls" && o.Name == "master":
			out.Playlist = base + p + o.Path
		case o.Kind == "dash":
			out.Manifest = base + p + o.Path
		}
	}
	writeJSON(w, http.StatusCreated, out)
}

// requestBase is the scheme and host the caller reached the server at (a
// proxy in front that ends TLS says so in X-Forwarded-Proto).
func requestBase(r *http.Request) string {
	scheme := "http"
	if overTLS(r) {
		scheme = "https"
	}
	return scheme + "://" + r.Host
}

// revokeLinks replaces the link secret: every link made so far stops working.
func (s *Server) revokeLinks(w http.ResponseWriter, r *http.Request) {
	now := time.Now().UTC()
	if err := s.st.RotateSecret(r.Context(), link.SecretName, link.NewSecret(), now); err != nil {
		s.internal(w, r, err)
		return
	}
	s.secretMu.Lock()
	s.secret = nil // this server at once; the others within secretFor
	s.secretMu.Unlock()
	s.log.Info("playback links revoked: the link secret was replaced")
	writeJSON(w, http.StatusOK, map[string]any{"revoked": true, "at": now})
}

// LinkJob checks the request's /p/{token}/{job}/ path and returns the job
// the link is for and when the link expires; an error wrapping a link.Err* says why it is refused.
// The web UI's player page calls it too.
func (s *Server) LinkJob(r *http.Request) (string, time.Time, error) {
	jobID := r.PathValue("job")
	secret, err := s.linkSecret(r)
	if err != nil {
		return "", time.Time{}, err
	}
	exp, err := link.Check(secret, r.PathValue("token"), jobID, time.Now())
	if err != nil {
		return "", time.Time{}, err
	}
	return jobID, exp, nil
}

// LinkRefused reports whether err is a refused link (not a failure of the server's).
func LinkRefused(err error) bool {
	return errors.Is(err, link.ErrMalformed) || errors.Is(err, link.ErrSignature) || errors.Is(err, link.ErrExpired)
}

// checkLink answers a request whose link is refused (403, with why); it
// returns the link's job and expiry.
func (s *Server) checkLink(w http.ResponseWriter, r *http.Request) (string, time.Time, bool) {
	jobID, exp, err := s.LinkJob(r)
	switch {
	case err == nil:
		return jobID, exp, true
	case LinkRefused(err):
		code := "link_invalid"
		if errors.Is(err, link.ErrExpired) {
			code = "link_expired"
		}
		w.Header().Set("Cache-Control", "no-store")
		writeError(w, http.StatusForbidden, code, err.Error())
	default:
		s.internal(w, r, err)
	}
	return "", time.Time{}, false
}

// linkOutput serves one output of a link's job.
func (s *Server) linkOutput(w http.ResponseWriter, r *http.Request) {
	jobID, exp, ok := s.checkLink(w, r)
	if !ok {
		return
	}
	if r.PathValue("path") == "" {
		// The player page is the web UI's; without it there is no page.
		writeError(w, http.StatusNotFound, "not_found", "open an output below this path, e.g. master.m3u8")
		return
	}
	var presign time.Duration
	if left := time.Until(exp); s.linkPresign && left >= time.Minute {
		// No longer than the link, and at most maxPresign: a URL already
		// handed out outlives a revocation by at most that much.
		presign = min(left, maxPresign)
	}
	p := r.PathValue("path")
	if rest, ok := strings.CutPrefix(p, "live/"); ok {
		s.serveLive(w, r, jobID, rest)
		return
	}
	if entryFile(p) && s.toCurrent(w, r, jobID, exp, p) {
		return
	}
	s.serveOutput(w, r, jobID, p, presign, func() bool { return s.toCurrent(w, r, jobID, exp, p) })
}

// LinkHeaders sets what every response under /p/ carries: no referrer
// (the token must not leak to other sites through it), and CORS for the
// configured origins only. It reports whether the request's origin, if
// it named one, is allowed.
func (s *Server) LinkHeaders(w http.ResponseWriter, r *http.Request) bool {
	h := w.Header()
	h.Set("Referrer-Policy", "no-referrer")
	h.Add("Vary", "Origin")
	o := r.Header.Get("Origin")
	if o == "" {
		return true
	}
	if !s.origins[o] {
		return false
	}
	h.Set("Access-Control-Allow-Origin", o) // never "*", never with credentials: links need none
	h.Set("Access-Control-Expose-Headers", "Content-Length, Content-Range, Accept-Ranges")
	return true
}

// linkPreflight answers a CORS preflight for a link's files.
func (s *Server) linkPreflight(w http.ResponseWriter, r *http.Request) {
	if !s.LinkHeaders(w, r) || r.Header.Get("Origin") == "" {
		writeError(w, http.StatusForbidden, "cors", "this origin may not read herd's playback links; the server's --cors-origin lists the ones that may")
		return
	}
	if m := r.Header.Get("Access-Control-Request-Method"); m != http.MethodGet && m != http.MethodHead {
		writeError(w, http.StatusForbidden, "cors", "playback links are read with GET or HEAD only")
		return
	}
	h := w.Header()
	h.Set("Access-Control-Allow-Methods", "GET, HEAD")
	if want := r.Header.Get("Access-Control-Request-Headers"); want != "" {
		for _, name := range strings.Split(want, ",") {
			switch strings.ToLower(strings.TrimSpace(name)) {
			case "range", "accept", "accept-language", "content-language", "":
			default:
				writeError(w, http.StatusForbidden, "cors", "playback links accept only the Range header from other origins, not "+strings.TrimSpace(name))
				return
			}
		}
		h.Set("Access-Control-Allow-Headers", "Range")
	}
	h.Set("Access-Control-Max-Age", "600")
	w.WriteHeader(http.StatusNoContent)
}

// withLinkHeaders wraps a /p/ route.
func (s *Server) withLinkHeaders(next http.HandlerFunc) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		s.LinkHeaders(w, r)
		next(w, r)
	}
}

// LinkMediaOrigin is the origin a link's media comes from besides this
// server's (the bucket's, with --link-presign), for the player page's
// policy; "" when there is none.
func (s *Server) LinkMediaOrigin(ctx context.Context, jobID string) string {
	if !s.linkPresign {
		return ""
	}
	u, err := s.files.PresignGet(ctx, pipeline.OutputsKey(jobID)+"/master.m3u8", time.Minute)
	if err != nil || u == "" {
		return ""
	}
	p, err := url.Parse(u)
	if err != nil || p.Host == "" {
		return ""
	}
	return p.Scheme + "://" + p.Host
}

// maxPresign is the longest a playback link's presigned URL lasts.
const maxPresign = 6 * time.Hour

// maxPlaylist bounds a media playlist read to rewrite it (a two-hour
// ladder rung of 2 s segments is about 200 KiB).
const maxPlaylist = 32 << 20

// presignedPlaylist answers with the media playlist at key, its segment
// and map URIs presigned for ttl; it reports false, having written
// nothing, when the playlist is not a media playlist or the storage does
// not presign, so that the caller serves it as it is.
func (s *Server) presignedPlaylist(w http.ResponseWriter, r *http.Request, key string, ttl time.Duration, found http.Header) bool {
	f, err := s.files.Open(r.Context(), key)
	if err != nil {
		return false // the caller's own open answers 404 or 500
	}
	body, err := io.ReadAll(io.LimitReader(f, maxPlaylist+1))
	_ = f.Close()
	if err != nil || len(body) > maxPlaylist || !bytes.Contains(body, []byte("#EXTINF:")) {
		return false
	}
	dir := path.Dir(key)
	sign := func(uri string) (string, error) {
		u, err := url.Parse(uri)
		if err != nil || u.IsAbs() || u.Host != "" || u.RawQuery != "" || strings.HasPrefix(uri, "/") {
			return uri, nil // not one of ours
		}
		k := path.Join(dir, u.Path)
		if !blob.ValidKey(k) || !strings.HasPrefix(k, dir+"/") {
			return uri, nil
		}
		return s.files.PresignGet(r.Context(), k, ttl)
	}
	out, err := pack.RewriteMediaURIs(body, sign)
	if err != nil {
		s.internal(w, r, err)
		return true
	}
	if out == nil {
		return false // the storage does not presign
	}
	for k, v := range found {
		w.Header()[k] = v
	}
	w.Header().Set("Cache-Control", "private, no-store") // its URLs expire
	s.gzip(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		http.ServeContent(w, r, "", time.Time{}, bytes.NewReader(out))
	})).ServeHTTP(w, r)
	return true
}
