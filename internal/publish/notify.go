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

	"github.com/herdhq/herd/internal/job"
)

// Event is what a notifier is told about a job. It is also the webhook's
// JSON body.
type Event struct {
	ID        string          `json:"id"` // the same on every retry of one delivery
	Type      string          `json:"type"`
	CreatedAt time.Time       `json:"created_at"`
	Job       json.RawMessage `json:"job"` // the job as GET /api/v1/jobs/{id} shows it
	// Data is the event's own: the progress step of job.progress, the
	// chunk of chunk.succeeded.
	Data json.RawMessage `json:"data,omitempty"`
	// Watch is set for a job that came from a watch folder.
	Watch *job.WatchOrigin `json:"watch,omitempty"`
	// Files are the library files written for this job, by library publisher name.
	Files map[string]string `json:"files,omitempty"`
}

// Notifier tells something outside herd about a finished job. It returns a
// short account of what it did, kept on the job.
type Notifier interface {
	Notify(ctx context.Context, ev Event) (string, error)
	// Wants reports whether the notifier acts on this event type.
	Wants(eventType string) bool
}

// permanent marks a failure that retrying cannot fix (a refused token, a
// path no library holds) with job.Permanent, the one "do not retry" mark:
// it is recorded and not tried again.
func permanent(err error) error { return job.Permanent("not_delivered", err) }

// IsPermanent reports whether err should not be retried.
func IsPermanent(err error) bool {
	_, ok := job.IsPermanent(err)
	return ok
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
		return permanent(fmt.Errorf("%w (%s)", err, hint))
	case resp.StatusCode == http.StatusRequestTimeout, resp.StatusCode == http.StatusTooEarly, resp.StatusCode == http.StatusTooManyRequests:
		return err
	case resp.StatusCode >= 300 && resp.StatusCode < 400:
		return permanent(fmt.Errorf("%w: redirected to %q; use the final address", err, resp.Header.Get("Location")))
	case resp.StatusCode >= 400 && resp.StatusCode < 500:
		return permanent(err)
	}
	return err
}

// getJSON fetches url into v with the given headers.
func getJSON(ctx context.Context, hc *http.Client, url string, hdr http.Header, v any, what, hint string) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return permanent(err)
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

// holder returns which of n libraries has a folder that holds file (the
// deepest, when folders nest), or -1; and every "name=folder", for an error
// that says what there is.
func holder(file string, n int, folders func(i int) (name string, paths []string)) (int, string) {
	found, best := -1, ""
	var seen []string
	for i := range n {
		name, paths := folders(i)
		for _, p := range paths {
			seen = append(seen, name+"="+p)
			if under(file, p) && len(p) > len(best) {
				found, best = i, p
			}
		}
	}
	return found, strings.Join(seen, ", ")
}

// listed looks for file in a server's listing, newest first: the first page
// of size, or with all every page. page returns the paths of the page at start.
func listed(file string, size int, all bool, page func(start int) ([]string, error)) (bool, error) {
	for start := 0; ; start += size {
		paths, err := page(start)
		if err != nil {
			return false, err
		}
		for _, p := range paths {
			if p == file {
				return true, nil
			}
		}
		if !all || len(paths) < size {
			return false, nil
		}
	}
}

// fullEvery is how often (in polls) a confirmation reads the whole listing,
// not only the newest page: a file that replaced one the server had keeps
// the old one's date.
const fullEvery = 5

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
