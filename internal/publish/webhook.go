package publish

import (
	"bytes"
	"cmp"
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"time"

	"github.com/herdhq/herd/internal/redirect"
)

// Webhook headers.
const (
	HeaderEvent     = "X-Herd-Event"
	HeaderDelivery  = "X-Herd-Delivery"      // the event's id: the same on every retry, for de-duplication
	HeaderSignature = "X-Herd-Signature-256" // "sha256=" + hex HMAC-SHA256 of the body with the shared secret
)

// Webhook POSTs each event as JSON, signed with HMAC-SHA256.
type Webhook struct {
	URL     string
	Secret  string
	Agent   string // User-Agent
	Timeout time.Duration
	Client  *http.Client // used with herd's redirect policy
}

// Wants: every event.
func (w *Webhook) Wants(string) bool { return true }

// Sign returns the signature header's value for body.
func Sign(secret string, body []byte) string {
	m := hmac.New(sha256.New, []byte(secret))
	m.Write(body)
	return "sha256=" + hex.EncodeToString(m.Sum(nil))
}

// Verify checks a signature header against body in constant time; for
// receivers written in Go.
func Verify(secret string, body []byte, header string) bool {
	return hmac.Equal([]byte(Sign(secret, body)), []byte(strings.TrimSpace(header)))
}

// Notify delivers one event.
func (w *Webhook) Notify(ctx context.Context, ev Event) (string, error) {
	body, err := json.Marshal(ev)
	if err != nil {
		return "", permanent(err)
	}
	ctx, cancel := context.WithTimeout(ctx, cmp.Or(w.Timeout, 30*time.Second))
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, w.URL, bytes.NewReader(body))
	if err != nil {
		return "", permanent(err)
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("User-Agent", w.Agent)
	req.Header.Set(HeaderEvent, ev.Type)
	req.Header.Set(HeaderDelivery, ev.ID)
	req.Header.Set(HeaderSignature, Sign(w.Secret, body))
	// The signature goes nowhere but the receiver: a redirect elsewhere is
	// reported, not followed.
	hc := redirect.Client(w.Client)
	start := time.Now()
	resp, err := hc.Do(req)
	if err != nil {
		return "", fmt.Errorf("POST %s: %w", w.URL, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode/100 != 2 {
		return "", httpError("POST "+w.URL, resp, "the receiver refused the request; check its secret")
	}
	return fmt.Sprintf("HTTP %d in %s", resp.StatusCode, time.Since(start).Round(time.Millisecond)), nil
}
