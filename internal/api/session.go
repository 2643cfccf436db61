package api

import (
	"crypto/hmac"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"errors"
	"net/http"
	"strings"
	"time"

	"github.com/herdhq/herd/internal/apikey"
	"github.com/herdhq/herd/internal/job"
	"github.com/herdhq/herd/internal/store"
)

// Browser sessions. Signing in with the admin key makes a session: a random
// token in an HttpOnly, SameSite=Strict cookie (Secure over TLS), stored
// like every key, as a hash, with kind "session" and an expiry. A session
// may do what the admin key may, except that every state-changing request
// must also carry the session's CSRF token (header X-CSRF-Token, or form
// field csrf). The token is derived from the cookie's secret, so a page of
// another site, which can neither read the cookie nor the token, cannot
// forge it.
const (
	SessionCookie = "herd_session"
	CSRFHeader    = "X-CSRF-Token"
	// SessionTTL is how long a sign-in lasts.
	SessionTTL  = 12 * time.Hour
	kindSession = "session"
)

// CSRFToken is the anti-forgery token of the session whose cookie holds secret.
func CSRFToken(secret string) string {
	m := hmac.New(sha256.New, []byte(secret))
	m.Write([]byte("herd csrf v1"))
	return base64.RawURLEncoding.EncodeToString(m.Sum(nil))
}

// ErrBadKey is what SignIn returns for a key that is not a valid admin key.
var ErrBadKey = errors.New("that is not a valid admin key")

// SignIn starts a session for the holder of an admin key and sets its cookie.
func (s *Server) SignIn(w http.ResponseWriter, r *http.Request, adminKey string) error {
	k, err := s.st.KeyByHash(r.Context(), apikey.Hash(strings.TrimSpace(adminKey)))
	switch {
	case errors.Is(err, job.ErrNotFound):
		return ErrBadKey
	case err != nil:
		return err
	case k.Kind != "admin" || !k.Usable(time.Now()):
		return ErrBadKey
	}
	secret := apikey.New("herd_ses_")
	now := time.Now().UTC()
	exp := now.Add(SessionTTL)
	if k.ExpiresAt != nil && k.ExpiresAt.Before(exp) {
		exp = k.ExpiresAt.UTC() // a session ends no later than the key that made it
	}
	// The session names the key that made it, and ends when that key is revoked.
	if err := s.st.CreateKey(r.Context(), store.Key{ID: job.NewID("k"), Kind: kindSession, Name: "signed in with " + k.Name,
		Hash: apikey.Hash(secret), CreatedAt: now, ExpiresAt: &exp, Parent: k.ID}); err != nil {
		return err
	}
	s.touchKey(r.Context(), k, now)
	http.SetCookie(w, &http.Cookie{Name: SessionCookie, Value: secret, Path: "/", Expires: exp, MaxAge: int(time.Until(exp) / time.Second), //nolint:gosec // G124: Secure whenever the request came over TLS; herd also serves plain HTTP on a LAN
		HttpOnly: true, Secure: overTLS(r), SameSite: http.SameSiteStrictMode})
	s.log.Info("signed in", "session_of", k.Name, "remote", r.RemoteAddr)
	return nil
}

// SignOut ends the request's session (when it has one) and clears its cookie.
func (s *Server) SignOut(w http.ResponseWriter, r *http.Request) error {
	http.SetCookie(w, &http.Cookie{Name: SessionCookie, Value: "", Path: "/", MaxAge: -1, HttpOnly: true, Secure: overTLS(r), SameSite: http.SameSiteStrictMode}) //nolint:gosec // G124: as in SignIn
	k, _, ok := s.sessionKey(r)
	if !ok {
		return nil
	}
	_, err := s.st.ConsumeKey(r.Context(), k.ID)
	return err
}

// sessionKey finds the session the request's cookie names (live or not).
func (s *Server) sessionKey(r *http.Request) (k store.Key, secret string, ok bool) {
	c, err := r.Cookie(SessionCookie)
	if err != nil || c.Value == "" {
		return k, "", false
	}
	k, err = s.st.KeyByHash(r.Context(), apikey.Hash(c.Value))
	return k, c.Value, err == nil && k.Kind == kindSession
}

// Session reports whether the request carries a live session, and its CSRF token.
func (s *Server) Session(r *http.Request) (csrf string, ok bool) {
	k, secret, ok := s.sessionKey(r)
	if !ok || !k.Usable(time.Now()) {
		return "", false
	}
	return CSRFToken(secret), true
}

// CheckCSRF reports whether a state-changing request made with a session
// cookie carries that session's token (safe methods need none).
func CheckCSRF(r *http.Request) bool {
	switch r.Method {
	case http.MethodGet, http.MethodHead, http.MethodOptions:
		return true
	}
	c, err := r.Cookie(SessionCookie)
	if err != nil {
		return false
	}
	got := r.Header.Get(CSRFHeader)
	if got == "" && strings.HasPrefix(r.Header.Get("Content-Type"), "application/x-www-form-urlencoded") {
		got = r.PostFormValue("csrf")
	}
	return subtle.ConstantTimeCompare([]byte(got), []byte(CSRFToken(c.Value))) == 1
}

// overTLS says whether the browser reached herd over HTTPS (directly, or
// through a proxy that says so; trusting the header only makes the cookie
// stricter).
func overTLS(r *http.Request) bool {
	return r.TLS != nil || strings.EqualFold(r.Header.Get("X-Forwarded-Proto"), "https")
}
