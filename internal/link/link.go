// Package link signs and checks playback links: a token that lets whoever
// holds it read one job's outputs until it expires, with no key. The token
// is the expiry and an HMAC-SHA256 over the job id and that expiry under
// the server's link secret; replacing the secret (herd share --revoke)
// ends every link made with the old one. Tokens go in a URL's path, where
// players keep them when they resolve a playlist's relative URIs.
package link

import (
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"
)

// SecretName is the store's name for the link secret.
const SecretName = "links"

// SecretSize is how many random bytes a new secret has.
const SecretSize = 32

// Bounds on a link's life.
const (
	DefaultTTL = 24 * time.Hour
	MaxTTL     = 366 * 24 * time.Hour
)

// Why a token is refused.
var (
	ErrMalformed = errors.New("the link is malformed: copy the whole URL")
	ErrSignature = errors.New("the link is not valid: it was altered, made for another job, or revoked")
	ErrExpired   = errors.New("the link has expired: ask for a new one")
)

// NewSecret returns a fresh random secret.
func NewSecret() []byte {
	b := make([]byte, SecretSize)
	_, _ = rand.Read(b) // crypto/rand.Read never fails (Go 1.24+)
	return b
}

// Sign returns the token for job that is good until exp (to the second).
func Sign(secret []byte, job string, exp time.Time) string {
	e := strconv.FormatInt(exp.Unix(), 10)
	return e + "." + base64.RawURLEncoding.EncodeToString(mac(secret, job, e))
}

// Check says whether token lets its holder read job's outputs at now. It
// returns the token's expiry when it does.
func Check(secret []byte, token, job string, now time.Time) (time.Time, error) {
	e, sig, ok := strings.Cut(token, ".")
	if !ok || len(e) == 0 || len(e) > 19 || len(sig) != base64.RawURLEncoding.EncodedLen(sha256.Size) {
		return time.Time{}, ErrMalformed
	}
	unix, err := strconv.ParseInt(e, 10, 64)
	if err != nil || unix <= 0 || strconv.FormatInt(unix, 10) != e {
		return time.Time{}, ErrMalformed
	}
	got, err := base64.RawURLEncoding.Strict().DecodeString(sig) // one spelling per signature
	if err != nil {
		return time.Time{}, ErrMalformed
	}
	if !hmac.Equal(got, mac(secret, job, e)) {
		return time.Time{}, ErrSignature
	}
	exp := time.Unix(unix, 0).UTC()
	if !now.Before(exp) {
		return exp, fmt.Errorf("%w (it expired at %s)", ErrExpired, exp.Format(time.RFC3339))
	}
	return exp, nil
}

// mac is the signature over a link's job and expiry; the prefix keeps it
// apart from any other use of the secret.
func mac(secret []byte, job, exp string) []byte {
	m := hmac.New(sha256.New, secret)
	m.Write([]byte("herd-link-v1\x00" + job + "\x00" + exp))
	return m.Sum(nil)
}
