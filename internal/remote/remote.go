// Package remote is the worker side of the worker protocol (package
// protocol): a worker.Queue and a pipeline.Files that speak HTTP to the
// server, so a `herd worker` needs nothing but the server's API port — no
// database, no shared disk.
// Transient errors are retried with backoff; a 409 lease_lost is final.
package remote

import (
	"bytes"
	"cmp"
	"context"
	"crypto/md5" //nolint:gosec // G501: Content-MD5 of upload parts, an integrity check the storage API asks for, not security
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/herdhq/herd/internal/backoff"
	"github.com/herdhq/herd/internal/blob"
	"github.com/herdhq/herd/internal/job"
	"github.com/herdhq/herd/internal/live"
	"github.com/herdhq/herd/internal/pipeline"
	"github.com/herdhq/herd/internal/protocol"
)

// Client talks to a herd server as one worker.
type Client struct {
	base   string
	key    string
	slots  int
	http   *http.Client
	log    *slog.Logger
	work   string // local folder: source cache and scratch
	cache  *blob.Cache
	seenOK atomic.Int64
	// onRefused is told once that the server refused the key (Config.OnKeyRefused).
	onRefused func(error)
	refused   sync.Once
}

// Config describes the worker.
type Config struct {
	Server string
	Key    string
	Slots  int    // advertised with each claim
	Work   string // local work folder
	// OnKeyRefused, when set, is called once, with an error that wraps
	// ErrKeyRefused, the first time the server refuses the key itself:
	// unknown, revoked, expired, or a key of another kind. Every later
	// request would be refused too, so the worker should stop.
	OnKeyRefused func(error)
}

// New returns a client. Work is created when missing.
func New(cfg Config, log *slog.Logger) (*Client, error) {
	if err := os.MkdirAll(filepath.Join(cfg.Work, "scratch"), 0o750); err != nil {
		return nil, fmt.Errorf("create work folder: %w", err)
	}
	cache, err := blob.NewCache(filepath.Join(cfg.Work, "cache"), blob.DefaultCacheMaxAge)
	if err != nil {
		return nil, err
	}
	return &Client{base: strings.TrimRight(cfg.Server, "/"), key: cfg.Key, slots: cfg.Slots,
		http: &http.Client{CheckRedirect: toStorage}, log: log.With("component", "remote"), work: cfg.Work, cache: cache,
		onRefused: cfg.OnKeyRefused}, nil
}

// toStorage follows the server's redirects to presigned storage URLs
// without the worker key or lease headers: those are for the server only,
// and a store refuses a request that carries two kinds of credentials.
func toStorage(req *http.Request, via []*http.Request) error {
	if len(via) >= 5 {
		return errors.New("too many redirects")
	}
	for k := range req.Header {
		if k == "Authorization" || strings.HasPrefix(k, "X-Herd-") {
			req.Header.Del(k)
		}
	}
	return nil
}

// LastContact is when the server last answered (zero when never).
func (c *Client) LastContact() time.Time {
	n := c.seenOK.Load()
	if n == 0 {
		return time.Time{}
	}
	return time.Unix(0, n)
}

// Register trades a one-time registration token for a worker key.
func Register(ctx context.Context, server, token, name string) (string, error) {
	body, _ := json.Marshal(protocol.RegisterRequest{Name: name, Token: token})
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, strings.TrimRight(server, "/")+"/api/v1/worker/register", bytes.NewReader(body))
	if err != nil {
		return "", err
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return "", fmt.Errorf("register with %s: %w", server, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusCreated {
		return "", fmt.Errorf("register: %w", apiError(resp))
	}
	var out protocol.Registered
	if err := json.NewDecoder(resp.Body).Decode(&out); err != nil {
		return "", fmt.Errorf("register: %w", err)
	}
	return out.Key, nil
}

// statusError is e with its status and code after the message: how the
// worker's logs and errors show an answer the server (or storage) gave.
// errors.As finds the *protocol.Error inside.
func statusError(e *protocol.Error) error { return fmt.Errorf("%w (%d %s)", e, e.Status, e.Code) }

func apiError(resp *http.Response) error {
	var eb protocol.ErrorBody
	_ = json.NewDecoder(io.LimitReader(resp.Body, 1<<20)).Decode(&eb)
	e := &protocol.Error{Status: resp.StatusCode, Code: eb.Error.Code, Message: eb.Error.Message}
	if e.Message == "" {
		e.Message = resp.Status
	}
	if resp.StatusCode == http.StatusConflict && e.Code == "lease_lost" {
		return fmt.Errorf("%w: %w", job.ErrLeaseLost, statusError(e))
	}
	return statusError(e)
}

// ErrKeyRefused marks the server's refusal of the worker's key itself (401,
// or 403 for a key of another kind), as opposed to a refusal of one request.
var ErrKeyRefused = errors.New("the server refused the worker key")

// keyRefused reports whether herd itself (not storage that a redirect led
// to) refused the key the request carried.
func keyRefused(resp *http.Response, req *http.Request, se *protocol.Error) bool {
	if resp.Request != nil && resp.Request.URL.Host != req.URL.Host {
		return false // a presigned storage URL's answer
	}
	return (se.Status == http.StatusUnauthorized && se.Code == "unauthorized") ||
		(se.Status == http.StatusForbidden && se.Code == "forbidden")
}

// permanentStatus reports answers that retrying the same request cannot change.
func permanentStatus(err error) bool {
	var se *protocol.Error
	return errors.Is(err, job.ErrLeaseLost) || (errors.As(err, &se) && se.Status >= 400 && se.Status < 500 && se.Status != http.StatusTooManyRequests)
}

// do sends one request; the body is rebuilt by mk on every try.
func (c *Client) do(ctx context.Context, method, path string, hdr http.Header, body []byte) (*http.Response, error) {
	req, err := http.NewRequestWithContext(ctx, method, c.base+path, bytes.NewReader(body))
	if err != nil {
		return nil, err
	}
	for k, v := range hdr {
		req.Header[k] = v
	}
	req.Header.Set("Authorization", "Bearer "+c.key)
	req.Header.Set(protocol.HeaderProtocol, protocol.Version)
	if body != nil && req.Header.Get("Content-Type") == "" {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := c.http.Do(req)
	if err != nil {
		return nil, err
	}
	c.seenOK.Store(time.Now().UnixNano())
	if resp.StatusCode >= 400 {
		defer resp.Body.Close()
		err := apiError(resp)
		if se, ok := errors.AsType[*protocol.Error](err); ok && keyRefused(resp, req, se) {
			err = fmt.Errorf("%w: %w", ErrKeyRefused, err)
			if c.onRefused != nil {
				c.refused.Do(func() { c.onRefused(err) })
			}
		}
		return nil, err
	}
	return resp, nil
}

// A request the server did not answer is tried again after firstRetry,
// doubling up to maxRetry, with up to a quarter more at random so that
// workers do not all come back at once.
const (
	firstRetry = 200 * time.Millisecond
	maxRetry   = 30 * time.Second
)

// retry runs fn until it succeeds, fails permanently, or ctx ends, backing
// off from firstRetry to maxRetry: a server that is away is waited for,
// never fatal.
func (c *Client) retry(ctx context.Context, what string, fn func() error) error {
	for failures := 1; ; failures++ {
		err := fn()
		if err == nil || permanentStatus(err) || ctx.Err() != nil {
			return err
		}
		delay := backoff.Delay(firstRetry, maxRetry, failures)
		c.log.Warn("server unreachable; retrying", "op", what, "err", err, "in", delay)
		t := time.NewTimer(delay + time.Duration(rand.Int64N(int64(delay/4)+1))) //nolint:gosec // G404: retry jitter, not a secret
		select {
		case <-ctx.Done():
			t.Stop()
			return ctx.Err()
		case <-t.C:
		}
	}
}

func (c *Client) postJSON(ctx context.Context, path string, in, out any) error {
	body, err := json.Marshal(in)
	if err != nil {
		return err
	}
	return c.retry(ctx, path, func() error {
		resp, err := c.do(ctx, http.MethodPost, path, nil, body)
		if err != nil {
			return err
		}
		defer resp.Body.Close()
		if out != nil && resp.StatusCode != http.StatusNoContent {
			return json.NewDecoder(resp.Body).Decode(out)
		}
		return nil
	})
}

// Claim long-polls the server for a task (worker.Queue).
func (c *Client) Claim(ctx context.Context, owner, _ string, caps []string) (*job.Claimed, error) {
	slot := owner[strings.LastIndex(owner, "/")+1:]
	body, _ := json.Marshal(protocol.ClaimRequest{Slot: slot, Caps: caps, Slots: c.slots, Version: protocol.Version, WaitSeconds: 25})
	var out *job.Claimed
	err := c.retry(ctx, "claim", func() error {
		resp, err := c.do(ctx, http.MethodPost, "/api/v1/worker/claim", nil, body)
		if err != nil {
			return err
		}
		defer resp.Body.Close()
		if resp.StatusCode == http.StatusNoContent {
			return nil
		}
		var cl protocol.Claim
		if err := json.NewDecoder(resp.Body).Decode(&cl); err != nil {
			return fmt.Errorf("decode claim: %w", err)
		}
		out = &job.Claimed{Task: cl.Task, Job: cl.Job, Lease: cl.Lease, Deps: cl.Deps, Profile: cl.Profile}
		return nil
	})
	return out, err
}

// Fetch gets a task that was leased for this worker by someone else (the
// Kubernetes dispatcher), with everything Claim would have returned.
func (c *Client) Fetch(ctx context.Context, l job.Lease) (*job.Claimed, error) {
	var cl protocol.Claim
	err := c.retry(ctx, "fetch task", func() error {
		resp, err := c.do(ctx, http.MethodGet, "/api/v1/worker/tasks/"+url.PathEscape(l.TaskID), leaseHeader(l), nil)
		if err != nil {
			return err
		}
		defer resp.Body.Close()
		return json.NewDecoder(resp.Body).Decode(&cl)
	})
	if err != nil {
		return nil, err
	}
	return &job.Claimed{Task: cl.Task, Job: cl.Job, Lease: cl.Lease, Deps: cl.Deps, Profile: cl.Profile}, nil
}

// Wait returns at once: Claim already long-polls (worker.Queue).
func (c *Client) Wait(context.Context, time.Duration) {}

func reportPath(l job.Lease, what string) string {
	return "/api/v1/worker/tasks/" + url.PathEscape(l.TaskID) + "/" + what
}

// Heartbeat extends the lease (worker.Queue). One try: the pool calls again.
func (c *Client) Heartbeat(ctx context.Context, l job.Lease, p job.Progress) error {
	body, _ := json.Marshal(protocol.Report{Lease: l, Progress: p.Progress, Speed: p.Speed})
	resp, err := c.do(ctx, http.MethodPost, reportPath(l, "heartbeat"), nil, body)
	if err != nil {
		return err
	}
	return resp.Body.Close()
}

// Complete reports success (worker.Queue).
func (c *Client) Complete(ctx context.Context, l job.Lease, r job.Result) error {
	// The plan, source facts and published outputs are the server's to
	// derive (from the probe's data, the job and the verified files).
	return c.postJSON(ctx, reportPath(l, "complete"), protocol.Report{Lease: l, Data: r.Data, Commands: r.Commands}, nil)
}

// Fail reports a failure (worker.Queue).
func (c *Client) Fail(ctx context.Context, l job.Lease, f job.Failure) error {
	return c.postJSON(ctx, reportPath(l, "fail"), protocol.Report{Lease: l, Message: f.Message, Code: f.Code, Permanent: f.Permanent, Commands: f.Commands}, nil)
}

// Release gives the task back (worker.Queue).
func (c *Client) Release(ctx context.Context, l job.Lease) error {
	return c.postJSON(ctx, reportPath(l, "release"), protocol.Report{Lease: l}, nil)
}

func leaseHeader(l job.Lease) http.Header {
	return http.Header{protocol.HeaderLeaseOwner: {l.Owner}, protocol.HeaderFence: {strconv.FormatInt(l.Fence, 10)}}
}

// Source downloads the job's source into the cache (resuming a partial
// download with Range) and checks its SHA-256 (pipeline.Files). The server
// may redirect to a presigned storage URL: the bytes then come from there.
func (c *Client) Source(ctx context.Context, cl *job.Claimed) (string, error) {
	return c.cache.Get(ctx, cl.Job.Source.SHA256, func(ctx context.Context, part string) error {
		return c.retry(ctx, "download source", func() error { return c.download(ctx, cl, "source", part) })
	})
}

// Subtitle downloads a subtitle file given with the job's source into the
// cache, and checks its SHA-256, its id (pipeline.Files).
func (c *Client) Subtitle(ctx context.Context, cl *job.Claimed, id string) (string, error) {
	return c.cache.Get(ctx, id, func(ctx context.Context, part string) error {
		return c.retry(ctx, "download subtitle file", func() error { return c.download(ctx, cl, "subtitles/"+url.PathEscape(id), part) })
	})
}

// download fetches the task's file at what (below the task's route) into
// part, resuming what part holds.
func (c *Client) download(ctx context.Context, cl *job.Claimed, what, part string) error {
	f, err := os.OpenFile(part, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o640)
	if err != nil {
		return err
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return err
	}
	hdr := leaseHeader(cl.Lease)
	if st.Size() > 0 {
		hdr.Set("Range", fmt.Sprintf("bytes=%d-", st.Size()))
	}
	resp, err := c.do(ctx, http.MethodGet, reportPath(cl.Lease, what), hdr, nil)
	if err != nil {
		var se *protocol.Error
		if errors.As(err, &se) && se.Status == http.StatusRequestedRangeNotSatisfiable {
			return nil // we have it all
		}
		return err
	}
	defer resp.Body.Close()
	if st.Size() > 0 && resp.StatusCode == http.StatusOK {
		// The range was ignored: start over.
		if err := f.Truncate(0); err != nil {
			return err
		}
	}
	if _, err := io.Copy(f, resp.Body); err != nil {
		return fmt.Errorf("download %s: %w", what, err)
	}
	return f.Sync()
}

// Scratch makes a local folder for a step (pipeline.Files).
func (c *Client) Scratch(step string) (string, error) {
	return os.MkdirTemp(filepath.Join(c.work, "scratch"), step+"-")
}

// Discard removes a scratch folder (pipeline.Files).
func (c *Client) Discard(dir string) { _ = os.RemoveAll(dir) }

// Staged downloads an earlier step's files into dir (pipeline.Files).
func (c *Client) Staged(ctx context.Context, cl *job.Claimed, step, dir string) (bool, error) {
	var list struct {
		Files []protocol.StagedFile `json:"files"`
	}
	err := c.retry(ctx, "list staged", func() error {
		resp, err := c.do(ctx, http.MethodGet, reportPath(cl.Lease, "staged/"+step), leaseHeader(cl.Lease), nil)
		if err != nil {
			return err
		}
		defer resp.Body.Close()
		return json.NewDecoder(resp.Body).Decode(&list)
	})
	var se *protocol.Error
	if errors.As(err, &se) && se.Status == http.StatusNotFound {
		return false, nil
	}
	if err != nil {
		return false, err
	}
	for _, f := range list.Files {
		dst := filepath.Join(dir, filepath.FromSlash(f.Path))
		if !strings.HasPrefix(dst, filepath.Clean(dir)+string(filepath.Separator)) {
			return false, fmt.Errorf("server listed a path outside the folder: %q", f.Path)
		}
		if err := os.MkdirAll(filepath.Dir(dst), 0o750); err != nil {
			return false, err
		}
		err := c.retry(ctx, "download staged", func() error {
			resp, err := c.do(ctx, http.MethodGet, reportPath(cl.Lease, "staged/"+step+"/"+protocol.EscapePath(f.Path)), leaseHeader(cl.Lease), nil)
			if err != nil {
				return err
			}
			defer resp.Body.Close()
			out, err := os.Create(dst)
			if err != nil {
				return err
			}
			n, err := io.Copy(out, resp.Body)
			if cerr := out.Close(); err == nil {
				err = cerr
			}
			if err == nil && n != f.Size {
				err = fmt.Errorf("staged file %s: got %d bytes, want %d", f.Path, n, f.Size)
			}
			return err
		})
		if err != nil {
			return false, err
		}
	}
	return true, nil
}

// Commit uploads every file of dir, then asks the server to stage them; dir
// is removed afterwards (pipeline.Files). Where the server's storage takes
// direct uploads, the files go straight there in presigned parts; else
// through the server, resumably.
func (c *Client) Commit(ctx context.Context, cl *job.Claimed, step, dir string) error {
	defer os.RemoveAll(dir)
	files, err := pipeline.ListFiles(dir)
	if err != nil {
		return err
	}
	var plan protocol.UploadPlan
	if err := c.postLeased(ctx, cl.Lease, "uploads/"+step, map[string]any{"files": files}, &plan); err != nil {
		return err
	}
	req := protocol.CommitRequest{Files: files}
	if plan.Direct {
		if len(plan.Uploads) != len(files) {
			return fmt.Errorf("the server planned %d uploads for %d files", len(plan.Uploads), len(files))
		}
		for i, up := range plan.Uploads {
			if up.Path != files[i].Path {
				return fmt.Errorf("the server planned an upload of %q, not %q", up.Path, files[i].Path)
			}
			if err := c.uploadDirect(ctx, filepath.Join(dir, filepath.FromSlash(up.Path)), up.Parts); err != nil {
				return fmt.Errorf("upload %s: %w", up.Path, err)
			}
		}
		req.Uploads = plan.Uploads
	} else {
		for _, f := range files {
			if err := c.uploadFile(ctx, cl, step, filepath.Join(dir, filepath.FromSlash(f.Path)), f); err != nil {
				return fmt.Errorf("upload %s: %w", f.Path, err)
			}
		}
	}
	return c.postLeased(ctx, cl.Lease, "commit/"+step, req, nil)
}

// HandOver sends a segment ffmpeg finished, and its init segment, as
// files of the attempt's step, then asks the server to list it in the
// job's live playlist (pipeline.LiveSink). The commit finds them there
// and sends them no more, where the files go through the server.
func (c *Client) HandOver(ctx context.Context, cl *job.Claimed, step, dir, name string) error {
	for _, n := range []string{live.InitOf(name), name} {
		path := filepath.Join(dir, n)
		st, err := os.Stat(path)
		if err != nil {
			return err
		}
		if err := c.uploadFile(ctx, cl, step, path, protocol.StagedFile{Path: n, Size: st.Size()}); err != nil {
			return fmt.Errorf("upload %s: %w", n, err)
		}
	}
	return c.postLeased(ctx, cl.Lease, "live/"+step+"/"+name, struct{}{}, nil)
}

// uploadDirect PUTs each part of a file to its presigned URL, with its MD5
// so the store refuses a damaged part, and records the ETags. A dropped
// connection resends only the part it was sending.
func (c *Client) uploadDirect(ctx context.Context, path string, parts []protocol.Part) error {
	in, err := os.Open(path)
	if err != nil {
		return err
	}
	defer in.Close()
	for i := range parts {
		p := &parts[i]
		sum := md5.New() //nolint:gosec // G401: Content-MD5, see the import
		if _, err := io.Copy(sum, io.NewSectionReader(in, p.Offset, p.Size)); err != nil {
			return err
		}
		md5b64 := base64.StdEncoding.EncodeToString(sum.Sum(nil))
		err := c.retry(ctx, "upload part", func() error {
			req, err := http.NewRequestWithContext(ctx, http.MethodPut, p.URL, io.NewSectionReader(in, p.Offset, p.Size))
			if err != nil {
				return err
			}
			req.ContentLength = p.Size
			req.Header.Set("Content-MD5", md5b64)
			resp, err := c.http.Do(req)
			if err != nil {
				return err
			}
			defer resp.Body.Close()
			if resp.StatusCode != http.StatusOK {
				body, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
				return statusError(&protocol.Error{Status: resp.StatusCode, Code: "storage", Message: "storage refused part " + strconv.Itoa(p.Number) + ": " + strings.TrimSpace(string(body))})
			}
			p.ETag = resp.Header.Get("ETag")
			return nil
		})
		if err != nil {
			return err
		}
	}
	return nil
}

func (c *Client) postLeased(ctx context.Context, l job.Lease, what string, in, out any) error {
	body, err := json.Marshal(in)
	if err != nil {
		return err
	}
	return c.retry(ctx, what, func() error {
		resp, err := c.do(ctx, http.MethodPost, reportPath(l, what), leaseHeader(l), body)
		if err != nil {
			return err
		}
		defer resp.Body.Close()
		if out != nil {
			return json.NewDecoder(resp.Body).Decode(out)
		}
		return nil
	})
}

// uploadFile sends one file from wherever the server's copy stops.
func (c *Client) uploadFile(ctx context.Context, cl *job.Claimed, step, path string, f protocol.StagedFile) error {
	target := reportPath(cl.Lease, "files/"+step+"/"+protocol.EscapePath(f.Path))
	sum := ""         // read only for a file the server does not have whole (a segment handed over live, it has)
	var readErr error // reading the file here failed: no retry helps
	err := c.retry(ctx, "upload", func() error {
		resp, err := c.do(ctx, http.MethodHead, target, leaseHeader(cl.Lease), nil)
		if err != nil {
			return err
		}
		_ = resp.Body.Close()
		if resp.Header.Get(protocol.HeaderComplete) == "true" {
			return nil
		}
		if sum == "" {
			if sum, readErr = blob.FileSHA256(path); readErr != nil {
				return nil
			}
		}
		offset, _ := strconv.ParseInt(resp.Header.Get(protocol.HeaderOffset), 10, 64)
		in, err := os.Open(path)
		if err != nil {
			return err
		}
		defer in.Close()
		if _, err := in.Seek(offset, io.SeekStart); err != nil {
			return err
		}
		req, err := http.NewRequestWithContext(ctx, http.MethodPut, c.base+target, io.NopCloser(in))
		if err != nil {
			return err
		}
		req.ContentLength = f.Size - offset
		req.Header = leaseHeader(cl.Lease)
		req.Header.Set("Authorization", "Bearer "+c.key)
		req.Header.Set("Content-Type", "application/octet-stream")
		req.Header.Set(protocol.HeaderOffset, strconv.FormatInt(offset, 10))
		req.Header.Set(protocol.HeaderLength, strconv.FormatInt(f.Size, 10))
		req.Header.Set(protocol.HeaderSHA256, sum)
		resp, err = c.http.Do(req)
		if err != nil {
			return err
		}
		defer resp.Body.Close()
		c.seenOK.Store(time.Now().UnixNano())
		switch resp.StatusCode {
		case http.StatusCreated, http.StatusOK:
			return nil
		case http.StatusAccepted:
			return errors.New("upload incomplete")
		}
		err = apiError(resp)
		var se *protocol.Error
		if errors.As(err, &se) && (se.Code == "offset_mismatch" || se.Code == "checksum_mismatch" || se.Code == "incomplete") {
			return fmt.Errorf("retry upload: %s", se.Message) // not permanent: HEAD again and resume
		}
		return err
	})
	return cmp.Or(readErr, err)
}

// Finalize asks the server to move the verified outputs into place (pipeline.Files).
func (c *Client) Finalize(ctx context.Context, cl *job.Claimed) error {
	return c.postLeased(ctx, cl.Lease, "finalize", struct{}{}, nil)
}

// CleanScratch removes what an earlier run left in the scratch folder
// (blob.CleanDir).
func (c *Client) CleanScratch() (left []string, err error) {
	return blob.CleanDir(filepath.Join(c.work, "scratch"), nil)
}
