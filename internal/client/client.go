// Package client is a small Go client for herd's admin API, used by the CLI.
// It streams uploads (nothing is buffered in memory) and turns API errors
// into *Error values carrying the server's code and message.
package client

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime/multipart"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	herdjob "github.com/herdhq/herd/internal/job"
	"github.com/herdhq/herd/internal/jobview"
	"github.com/herdhq/herd/internal/label"
	"github.com/herdhq/herd/internal/protocol"
	"github.com/herdhq/herd/internal/store"
)

// Client talks to one herd server.
type Client struct {
	base  string
	token string
	http  *http.Client
}

// New returns a client for the server at base (e.g. http://127.0.0.1:8080).
func New(base, token string) *Client {
	return &Client{base: strings.TrimRight(base, "/"), token: token, http: &http.Client{}}
}

func (c *Client) do(ctx context.Context, method, path string, body io.Reader, contentType string, out any) (int, error) {
	req, err := http.NewRequestWithContext(ctx, method, c.base+path, body)
	if err != nil {
		return 0, fmt.Errorf("build request: %w", err)
	}
	if contentType != "" {
		req.Header.Set("Content-Type", contentType)
	}
	if c.token != "" {
		req.Header.Set("Authorization", "Bearer "+c.token)
	}
	resp, err := c.http.Do(req)
	if err != nil {
		return 0, fmt.Errorf("cannot reach the herd server at %s (is `herd serve` running? set --server or HERD_SERVER): %w", c.base, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode >= 400 {
		var eb protocol.ErrorBody
		if json.NewDecoder(io.LimitReader(resp.Body, 1<<20)).Decode(&eb) == nil && eb.Error.Message != "" {
			return resp.StatusCode, &protocol.Error{Status: resp.StatusCode, Code: eb.Error.Code, Message: eb.Error.Message}
		}
		return resp.StatusCode, &protocol.Error{Status: resp.StatusCode, Code: "http", Message: resp.Status}
	}
	if out != nil {
		if err := json.NewDecoder(resp.Body).Decode(out); err != nil {
			return resp.StatusCode, fmt.Errorf("decode response: %w", err)
		}
	}
	return resp.StatusCode, nil
}

// SubmitOptions are a job's own settings besides its profile.
type SubmitOptions struct {
	// ChunkSeconds overrides the profile's chunk_seconds (nil: the profile's; 0: never split).
	ChunkSeconds *float64
	// Publish names the server's publishers the job is delivered to.
	Publish []string
	// Labels are the job's key=value marks.
	Labels map[string]string
	// Subtitles are subtitle files to give with the source, each sent
	// (StoreSubtitle) before the source.
	Subtitles []SubtitleFile
}

// SubtitleFile is a subtitle file to give with a source.
type SubtitleFile struct {
	Path string
	herdjob.SourceSubtitle
}

// StoreSubtitle sends a subtitle file to the server, which converts it
// to WebVTT and stores it, or refuses it naming the line it failed on.
func (c *Client) StoreSubtitle(ctx context.Context, path string) (protocol.StoredSubtitle, error) {
	var st protocol.StoredSubtitle
	f, err := os.Open(path)
	if err != nil {
		return st, fmt.Errorf("open %s: %w", path, err)
	}
	defer f.Close()
	_, err = c.do(ctx, http.MethodPost, "/api/v1/subtitles", f, "application/octet-stream", &st)
	if err != nil {
		return st, fmt.Errorf("%s: %w", path, err)
	}
	return st, nil
}

// Submit uploads a file with a profile and returns the job (created is false
// when the server already had the same request).
func (c *Client) Submit(ctx context.Context, file, profile string, opt SubmitOptions, progress func(sent int64)) (job jobview.JobView, created bool, err error) {
	f, err := os.Open(file)
	if err != nil {
		return job, false, fmt.Errorf("open %s: %w", file, err)
	}
	defer f.Close()
	subs := make([]herdjob.SourceSubtitle, len(opt.Subtitles))
	for i, sf := range opt.Subtitles {
		st, err := c.StoreSubtitle(ctx, sf.Path)
		if err != nil {
			return job, false, err
		}
		subs[i] = sf.SourceSubtitle
		subs[i].ID = st.ID
	}
	pr, pw := io.Pipe()
	mw := multipart.NewWriter(pw)
	go func() {
		err := func() error {
			if err := mw.WriteField("profile", profile); err != nil {
				return err
			}
			if v := opt.ChunkSeconds; v != nil {
				if err := mw.WriteField("chunk_seconds", strconv.FormatFloat(*v, 'g', -1, 64)); err != nil {
					return err
				}
			}
			if len(opt.Publish) > 0 {
				if err := mw.WriteField("publish", strings.Join(opt.Publish, ",")); err != nil {
					return err
				}
			}
			if len(opt.Labels) > 0 {
				if err := mw.WriteField("labels", label.Format(opt.Labels)); err != nil {
					return err
				}
			}
			if len(subs) > 0 {
				if err := mw.WriteField("subtitles", herdjob.FormatSubtitles(subs)); err != nil {
					return err
				}
			}
			part, err := mw.CreateFormFile("file", filepath.Base(file))
			if err != nil {
				return err
			}
			var r io.Reader = f
			if progress != nil {
				r = &countingReader{r: f, fn: progress}
			}
			if _, err := io.Copy(part, r); err != nil {
				return err
			}
			return mw.Close()
		}()
		pw.CloseWithError(err)
	}()
	status, err := c.do(ctx, http.MethodPost, "/api/v1/jobs", pr, mw.FormDataContentType(), &job)
	_ = pr.Close()
	return job, status == http.StatusCreated, err
}

type countingReader struct {
	r  io.Reader
	n  int64
	fn func(int64)
}

func (c *countingReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.n += int64(n)
	c.fn(c.n)
	return n, err
}

// Job returns one job.
func (c *Client) Job(ctx context.Context, id string) (jobview.JobView, error) {
	var j jobview.JobView
	_, err := c.do(ctx, http.MethodGet, "/api/v1/jobs/"+url.PathEscape(id), nil, "", &j)
	return j, err
}

// Queue returns the queue's depth and encode backlog (GET /api/v1/queue).
func (c *Client) Queue(ctx context.Context) (protocol.QueueStats, error) {
	var q protocol.QueueStats
	_, err := c.do(ctx, http.MethodGet, "/api/v1/queue", nil, "", &q)
	return q, err
}

// JobList is one page of jobs.
type JobList struct {
	Jobs []jobview.JobView `json:"jobs"`
	Next string            `json:"next"`
}

// Jobs lists jobs newest first.
func (c *Client) Jobs(ctx context.Context, state, profile string, limit int, cursor string) (JobList, error) {
	q := url.Values{}
	for k, v := range map[string]string{"state": state, "profile": profile, "cursor": cursor} {
		if v != "" {
			q.Set(k, v)
		}
	}
	if limit > 0 {
		q.Set("limit", fmt.Sprint(limit))
	}
	var l JobList
	_, err := c.do(ctx, http.MethodGet, "/api/v1/jobs?"+q.Encode(), nil, "", &l)
	return l, err
}

// Cancel cancels a job.
func (c *Client) Cancel(ctx context.Context, id string) (jobview.JobView, error) {
	var j jobview.JobView
	_, err := c.do(ctx, http.MethodPost, "/api/v1/jobs/"+url.PathEscape(id)+"/cancel", nil, "", &j)
	return j, err
}

// Retry queues a failed or canceled job again.
func (c *Client) Retry(ctx context.Context, id string) (jobview.JobView, error) {
	var j jobview.JobView
	_, err := c.do(ctx, http.MethodPost, "/api/v1/jobs/"+url.PathEscape(id)+"/retry", nil, "", &j)
	return j, err
}

// Profiles lists the server's profiles as raw JSON objects.
func (c *Client) Profiles(ctx context.Context) ([]map[string]any, error) {
	var out struct {
		Profiles []map[string]any `json:"profiles"`
	}
	_, err := c.do(ctx, http.MethodGet, "/api/v1/profiles", nil, "", &out)
	return out.Profiles, err
}

// Wait polls a job until it is final, calling fn (if not nil) on every poll.
func (c *Client) Wait(ctx context.Context, id string, every time.Duration, fn func(jobview.JobView)) (jobview.JobView, error) {
	t := time.NewTicker(every)
	defer t.Stop()
	failures := 0
	for {
		j, err := c.Job(ctx, id)
		if err != nil {
			var apiErr *protocol.Error
			if errors.As(err, &apiErr) || failures >= 30 || ctx.Err() != nil {
				return j, err
			}
			failures++ // the server may be restarting: keep trying for a while
		} else {
			failures = 0
			if fn != nil {
				fn(j)
			}
			if j.State.Final() {
				return j, nil
			}
		}
		select {
		case <-ctx.Done():
			return j, ctx.Err()
		case <-t.C:
		}
	}
}

// CreateToken makes a registration token (or admin key); the secret is in the answer only.
func (c *Client) CreateToken(ctx context.Context, kind, name, ttl string) (protocol.IssuedKey, error) {
	body, _ := json.Marshal(map[string]string{"kind": kind, "name": name, "ttl": ttl})
	var k protocol.IssuedKey
	_, err := c.do(ctx, http.MethodPost, "/api/v1/tokens", strings.NewReader(string(body)), "application/json", &k)
	return k, err
}

// Tokens lists the server's keys (never their secrets); all includes the
// revoked and expired ones not swept yet.
func (c *Client) Tokens(ctx context.Context, all bool) ([]protocol.KeyView, error) {
	var out struct {
		Keys []protocol.KeyView `json:"keys"`
	}
	path := "/api/v1/tokens"
	if all {
		path += "?all=true"
	}
	_, err := c.do(ctx, http.MethodGet, path, nil, "", &out)
	return out.Keys, err
}

// RevokeToken revokes a key by its id.
func (c *Client) RevokeToken(ctx context.Context, id string) (protocol.KeyView, error) {
	var k protocol.KeyView
	_, err := c.do(ctx, http.MethodPost, "/api/v1/tokens/"+url.PathEscape(id)+"/revoke", nil, "", &k)
	return k, err
}

// WorkerView is a worker as the API lists it.
type WorkerView struct {
	Name     string     `json:"name"`
	State    string     `json:"state"`
	Caps     []string   `json:"capabilities"`
	Slots    int        `json:"slots"`
	Version  string     `json:"version"`
	LastSeen *time.Time `json:"last_seen"`
	Tasks    []string   `json:"running_tasks"`
	Outdated string     `json:"outdated"` // set for a worker of an older protocol version: what to do
}

// UnmetNeed is a capability waiting jobs need and no worker has proven.
type UnmetNeed = jobview.UnmetNeed

// Workers lists the registered workers.
func (c *Client) Workers(ctx context.Context) ([]WorkerView, error) {
	ws, _, err := c.WorkersAndNeeds(ctx)
	return ws, err
}

// WorkersAndNeeds lists the registered workers, and what waiting jobs need
// that no worker has proven.
func (c *Client) WorkersAndNeeds(ctx context.Context) ([]WorkerView, []UnmetNeed, error) {
	var out struct {
		Workers []WorkerView `json:"workers"`
		Unmet   []UnmetNeed  `json:"unmet_needs"`
	}
	_, err := c.do(ctx, http.MethodGet, "/api/v1/workers", nil, "", &out)
	return out.Workers, out.Unmet, err
}

// WorkerAction drains, resumes or revokes a worker.
func (c *Client) WorkerAction(ctx context.Context, name, action string) (WorkerView, error) {
	var w WorkerView
	_, err := c.do(ctx, http.MethodPost, "/api/v1/workers/"+url.PathEscape(name)+"/"+action, nil, "", &w)
	return w, err
}

// Share makes a signed playback link for a job; ttl is a duration such as
// 24h ("" for the server's default).
func (c *Client) Share(ctx context.Context, id, ttl string) (protocol.Link, error) {
	var body io.Reader
	ct := ""
	if ttl != "" {
		b, _ := json.Marshal(map[string]string{"ttl": ttl})
		body, ct = strings.NewReader(string(b)), "application/json"
	}
	var l protocol.Link
	_, err := c.do(ctx, http.MethodPost, "/api/v1/jobs/"+url.PathEscape(id)+"/links", body, ct, &l)
	return l, err
}

// RevokeLinks ends every playback link made so far.
func (c *Client) RevokeLinks(ctx context.Context) error {
	_, err := c.do(ctx, http.MethodPost, "/api/v1/links/revoke", nil, "", nil)
	return err
}

// CreateCampaign makes a re-encode campaign (with req.DryRun, lists what it would redo).
func (c *Client) CreateCampaign(ctx context.Context, req jobview.CampaignRequest) (jobview.CampaignView, error) {
	b, err := json.Marshal(req)
	if err != nil {
		return jobview.CampaignView{}, err
	}
	var v jobview.CampaignView
	_, err = c.do(ctx, http.MethodPost, "/api/v1/campaigns", strings.NewReader(string(b)), "application/json", &v)
	return v, err
}

// Campaigns lists the campaigns, newest first.
func (c *Client) Campaigns(ctx context.Context) ([]store.Campaign, error) {
	var out struct {
		Campaigns []store.Campaign `json:"campaigns"`
	}
	_, err := c.do(ctx, http.MethodGet, "/api/v1/campaigns", nil, "", &out)
	return out.Campaigns, err
}

// Campaign returns one campaign with its items.
func (c *Client) Campaign(ctx context.Context, id string) (jobview.CampaignView, error) {
	var v jobview.CampaignView
	_, err := c.do(ctx, http.MethodGet, "/api/v1/campaigns/"+url.PathEscape(id), nil, "", &v)
	return v, err
}

// CampaignAction pauses, resumes or cancels a campaign.
func (c *Client) CampaignAction(ctx context.Context, id, action string) (jobview.CampaignView, error) {
	var v jobview.CampaignView
	_, err := c.do(ctx, http.MethodPost, "/api/v1/campaigns/"+url.PathEscape(id)+"/"+action, nil, "", &v)
	return v, err
}

// Libraries lists the server's libraries.
func (c *Client) Libraries(ctx context.Context) ([]jobview.LibraryView, error) {
	var out struct {
		Libraries []jobview.LibraryView `json:"libraries"`
	}
	_, err := c.do(ctx, http.MethodGet, "/api/v1/libraries", nil, "", &out)
	return out.Libraries, err
}

// Library scans a library ("scan"), plans a scan ("plan") or reads its
// status ("status"); state, where not empty, keeps only its files in that state.
func (c *Client) Library(ctx context.Context, name, what, state string) (jobview.LibraryReport, error) {
	var r jobview.LibraryReport
	method, p := http.MethodPost, "/api/v1/libraries/"+url.PathEscape(name)+"/"+what
	if what == "status" {
		method, p = http.MethodGet, "/api/v1/libraries/"+url.PathEscape(name)
	}
	if state != "" {
		p += "?state=" + url.QueryEscape(state)
	}
	_, err := c.do(ctx, method, p, nil, "", &r)
	return r, err
}
