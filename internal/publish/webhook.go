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
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/herdhq/herd/internal/redirect"
)

// Webhook headers.
const (
	HeaderEvent     = "X-Herd-Event"
	HeaderDelivery  = "X-Herd-Delivery"      // the event's id: the same on every retry, for de-duplication
	HeaderTimestamp = "X-Herd-Timestamp"     // when it was sent, in Unix seconds; signed with the body
	HeaderSignature = "X-Herd-Signature-256" // "sha256=" + hex HMAC-SHA256 of timestamp + "." + body with the shared secret
)

// ReplayWindow is how far a receiver should accept a timestamp from its
// own clock (Verify's window): a captured request replayed later is refused.
const ReplayWindow = 5 * time.Minute

// Webhook POSTs each event as JSON, signed with HMAC-SHA256.
type Webhook struct {
	URL     string
	Secret  string
	Agent   string // User-Agent
	Timeout time.Duration
	Client  *http.Client // used with herd's redirect policy
	// Events it is sent as a publisher (none: every event).
	Events []string
}

// Wants: the events it names, or every one.
func (w *Webhook) Wants(t string) bool { return len(w.Events) == 0 || slices.Contains(w.Events, t) }

// Sign returns the signature header's value for body sent at ts (the
// timestamp header's value).
func Sign(secret, ts string, body []byte) string {
	m := hmac.New(sha256.New, []byte(secret))
	m.Write([]byte(ts + "."))
	m.Write(body)
	return "sha256=" + hex.EncodeToString(m.Sum(nil))
}

// Verify checks a request's signature against its body and timestamp in
// constant time, and that the timestamp is within window of now; for
// receivers written in Go.
func Verify(secret string, body []byte, ts, sig string, now time.Time, window time.Duration) bool {
	unix, err := strconv.ParseInt(strings.TrimSpace(ts), 10, 64)
	if err != nil || now.Sub(time.Unix(unix, 0)).Abs() > window {
		return false
	}
	return hmac.Equal([]byte(Sign(secret, strings.TrimSpace(ts), body)), []byte(strings.TrimSpace(sig)))
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
	ts := strconv.FormatInt(time.Now().Unix(), 10)
	req.Header.Set(HeaderTimestamp, ts)
	req.Header.Set(HeaderSignature, Sign(w.Secret, ts, body))
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
