package publish

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"path/filepath"
	"strings"
	"time"
)

// Event types.
const (
	JobSucceeded = "job.succeeded"
	JobFailed    = "job.failed"
)

// Event is what a notifier is told about a finished job. It is also the
// webhook's JSON body.
type Event struct {
	ID        string          `json:"id"` // the same on every retry of one delivery
	Type      string          `json:"type"`
	CreatedAt time.Time       `json:"created_at"`
	Job       json.RawMessage `json:"job"` // the job as GET /api/v1/jobs/{id} shows it
	// Watch is set for a job that came from a watch folder.
	Watch *WatchInfo `json:"watch,omitempty"`
	// Files are the library files written for this job, by library publisher name.
	Files map[string]string `json:"files,omitempty"`
}

// WatchInfo says which watched file a job came from.
type WatchInfo struct {
	Folder string `json:"folder"`
	File   string `json:"file"` // slash path inside the folder
}

// Notifier tells something outside herd about a finished job. It returns a
// short account of what it did, kept on the job.
type Notifier interface {
	Notify(ctx context.Context, ev Event) (string, error)
	// Wants reports whether the notifier acts on this event type.
	Wants(eventType string) bool
}

// PermanentError is a failure that retrying cannot fix (a refused token, a
// path no library holds): it is recorded and not tried again.
type PermanentError struct{ Err error }

func (e *PermanentError) Error() string { return e.Err.Error() }
func (e *PermanentError) Unwrap() error { return e.Err }

// IsPermanent reports whether err should not be retried.
func IsPermanent(err error) bool {
	var p *PermanentError
	return errors.As(err, &p)
}

// httpError turns a response's status into an error: retryable for 5xx,
// 408, 425 and 429; permanent for redirects and other 4xx, with hint
// appended for 401/403.
func httpError(what string, resp *http.Response, hint string) error {
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 512))
	msg := fmt.Sprintf("%s: HTTP %d", what, resp.StatusCode)
	if b := strings.TrimSpace(string(body)); b != "" {
		msg += ": " + b
	}
	err := errors.New(msg)
	switch {
	case resp.StatusCode == http.StatusUnauthorized || resp.StatusCode == http.StatusForbidden:
		return &PermanentError{fmt.Errorf("%w (%s)", err, hint)}
	case resp.StatusCode == http.StatusRequestTimeout, resp.StatusCode == http.StatusTooEarly, resp.StatusCode == http.StatusTooManyRequests:
		return err
	case resp.StatusCode >= 300 && resp.StatusCode < 400:
		return &PermanentError{fmt.Errorf("%w: redirected to %q; use the final address", err, resp.Header.Get("Location"))}
	case resp.StatusCode >= 400 && resp.StatusCode < 500:
		return &PermanentError{err}
	}
	return err
}

// getJSON fetches url into v with the given headers.
func getJSON(ctx context.Context, hc *http.Client, url string, hdr http.Header, v any, what, hint string) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return &PermanentError{err}
	}
	req.Header = hdr.Clone()
	req.Header.Set("Accept", "application/json")
	resp, err := hc.Do(req)
	if err != nil {
		return fmt.Errorf("%s: %w", what, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return httpError(what, resp, hint)
	}
	if err := json.NewDecoder(io.LimitReader(resp.Body, 64<<20)).Decode(v); err != nil {
		return fmt.Errorf("%s: unreadable answer: %w", what, err)
	}
	return nil
}

// mapPath rewrites a path under from to the same place under to: the
// library as a media server in a container, or on Windows, sees it.
func mapPath(p, from, to string) string {
	if to == "" || from == "" {
		return p
	}
	rel, err := filepath.Rel(from, p)
	if err != nil || !filepath.IsLocal(rel) {
		return p
	}
	sep := "/"
	if strings.Contains(to, `\`) {
		sep = `\`
	}
	return strings.TrimRight(to, `/\`) + sep + strings.ReplaceAll(filepath.ToSlash(rel), "/", sep)
}

// under reports whether p is inside dir (paths as a server sees them, with
// / or \ between names).
func under(p, dir string) bool {
	dir = strings.TrimRight(dir, `/\`)
	return dir != "" && len(p) > len(dir) && strings.HasPrefix(p, dir) && (p[len(dir)] == '/' || p[len(dir)] == '\\')
}

// dirOf is the folder of a path as a server sees it.
func dirOf(p string) string {
	if i := strings.LastIndexAny(p, `/\`); i > 0 {
		return p[:i]
	}
	return p
}

// confirm calls found every interval until it reports true or timeout passes.
func confirm(ctx context.Context, timeout, interval time.Duration, found func() (bool, error)) (time.Duration, error) {
	start := time.Now()
	for {
		ok, err := found()
		if err != nil {
			return time.Since(start), err
		}
		if ok {
			return time.Since(start), nil
		}
		if time.Since(start) >= timeout {
			return time.Since(start), errors.New("timed out")
		}
		t := time.NewTimer(interval)
		select {
		case <-ctx.Done():
			t.Stop()
			return time.Since(start), ctx.Err()
		case <-t.C:
		}
	}
}
