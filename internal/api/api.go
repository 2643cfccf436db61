// Package api is herd's HTTP API under /api/v1 plus /healthz, /readyz and
// /metrics. It checks who may call each route, turns requests into calls on
// the ingest and store layers, and writes errors as
// {"error":{"code","message"}}. It never runs media work itself.
package api

import (
	"bytes"
	"context"
	_ "embed"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"mime"
	"mime/multipart"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/klauspost/compress/gzhttp"
	tusd "github.com/tus/tusd/v2/pkg/handler"

	"github.com/herdhq/herd/internal/apikey"
	"github.com/herdhq/herd/internal/blob"
	"github.com/herdhq/herd/internal/campaign"
	"github.com/herdhq/herd/internal/ingest"
	"github.com/herdhq/herd/internal/job"
	"github.com/herdhq/herd/internal/jobview"
	"github.com/herdhq/herd/internal/label"
	"github.com/herdhq/herd/internal/library"
	"github.com/herdhq/herd/internal/live"
	"github.com/herdhq/herd/internal/media"
	"github.com/herdhq/herd/internal/metrics"
	"github.com/herdhq/herd/internal/pipeline"
	"github.com/herdhq/herd/internal/profile"
	"github.com/herdhq/herd/internal/protocol"
	"github.com/herdhq/herd/internal/queue"
	"github.com/herdhq/herd/internal/store"
)

//go:embed openapi.yaml
var openAPI []byte

// OpenAPI returns the API description served at /api/v1/openapi.yaml.
func OpenAPI() []byte { return openAPI }

// Kicker wakes idle workers.
type Kicker interface{ Kick() }

// Check is one readiness check.
type Check struct {
	Name string
	Fn   func(ctx context.Context) error
}

// Server serves the API.
type Server struct {
	st        store.Store
	playlists *live.Hub // live playlists of running hls jobs
	profiles  *profile.Set
	versions  pipeline.Profiles // every version, for what jobs were submitted with
	sub       *ingest.Submitter
	campaigns *campaign.Service
	libraries *library.Manager
	kick      Kicker
	log       *slog.Logger
	m         *metrics.Metrics
	metrics   http.Handler
	checks    []Check
	files     pipeline.Storage
	workerAPI *workerAPI    // the worker routes
	up        *uploads      // nil: resumable uploads are off
	recheck   time.Duration // how often event streams check their key or session again
	done      chan struct{} // closed by Shutdown: streams end
	live      *liveHub      // one poller per live view, shared by its streams
	stop      sync.Once
	revoking  sync.Mutex                                  // one revoke at a time: the last live admin key is never revoked by two at once
	gzip      func(http.Handler) http.HandlerFunc         // compresses text outputs for clients that accept gzip
	origins   map[string]bool                             // origins whose pages may read playback links (CORS)
	checkHook func(ctx context.Context, url string) error // nil: no webhook subscriptions
	otherCaps []string                                    // Deps.OtherCaps
	// linkPresign: a playback link's media comes from the bucket through
	// presigned URLs (Deps.LinkPresign).
	linkPresign bool
	secretMu    sync.Mutex // guards the link secret read last, and when
	secret      []byte
	secretAt    time.Time
}

// Deps are what the API needs.
type Deps struct {
	Store    store.Store
	Blobs    *blob.Local // scratch space for uploads through the server
	Profiles *profile.Set
	// Versions finds the profile each job was submitted with (nil:
	// Profiles, current versions only).
	Versions pipeline.Profiles
	Submit   *ingest.Submitter
	// Campaigns makes and steers re-encode campaigns (nil: none can be made).
	Campaigns *campaign.Service
	// Libraries runs the configuration's libraries (nil: none).
	Libraries *library.Manager
	Kick      Kicker
	Log       *slog.Logger
	Metrics   *metrics.Metrics
	Scrape    http.Handler     // the /metrics handler
	Checks    []Check          // for /readyz
	Queue     *queue.Queue     // for the worker protocol
	Files     pipeline.Storage // job files: in-process workers and the worker routes
	Limits    media.Limits     // what a remote worker's probe may report
	MaxStep   int64            // most bytes one task's step may upload (0: what its plan makes plausible)
	// Live keeps the live playlists of running hls jobs (nil: none).
	Live *live.Hub
	// CORSOrigins are the origins (scheme://host[:port]) whose pages may
	// read playback links: players on other sites.
	CORSOrigins []string
	// CheckHook checks the URL of a webhook subscription made through the
	// API (deliver.Guard.CheckURL); nil: none can be made.
	CheckHook func(ctx context.Context, url string) error
	// LinkPresign makes a playback link's media come straight from the
	// bucket: its media playlists name presigned URLs, and its other media
	// files answer with a redirect to one. The bucket must then allow the
	// sites' origins itself. Without it (and always with local storage)
	// every byte comes through the server.
	LinkPresign bool
	// OtherCaps are the capabilities of the executors that take tasks
	// without registering as workers: the in-process workers' proven
	// encoders, and what Kubernetes task pods claim. A task that needs one
	// neither they nor a registered worker have says so on its job.
	OtherCaps []string
}

// New returns the API server.
func New(d Deps) *Server {
	if d.Versions == nil && d.Profiles != nil {
		d.Versions = d.Profiles
	}
	s := &Server{st: d.Store, profiles: d.Profiles, versions: d.Versions, sub: d.Submit, campaigns: d.Campaigns, libraries: d.Libraries, kick: d.Kick,
		log: d.Log.With("component", "api"), m: d.Metrics, metrics: d.Scrape, checks: d.Checks,
		files: d.Files, done: make(chan struct{}), recheck: sessionRecheck}
	s.live = newLiveHub(liveEvery, s.log)
	s.workerAPI = newWorkerAPI(d, s.log, s.stillValid)
	s.gzip = newGzip()
	s.linkPresign = d.LinkPresign
	s.playlists = d.Live
	s.checkHook = d.CheckHook
	s.otherCaps = d.OtherCaps
	s.origins = map[string]bool{}
	for _, o := range d.CORSOrigins {
		s.origins[o] = true
	}
	return s
}

// newGzip wraps a handler so that it answers with gzip to a client that
// accepts it, leaving small bodies, HEAD and byte ranges (which name
// offsets in the plain bytes) as they are, and saying Vary: Accept-Encoding.
// Only gzip: every HLS and DASH player takes it; zstd, gzhttp's default
// preference, is not yet everywhere.
func newGzip() func(http.Handler) http.HandlerFunc {
	wrap, err := gzhttp.NewWrapper(gzhttp.EnableZstd(false), gzhttp.ContentTypeFilter(gzhttp.CompressAllContentTypeFilter))
	if err != nil {
		panic(fmt.Sprintf("gzip options: %v", err)) // constant options: only a programming mistake lands here
	}
	return wrap
}

// Shutdown ends the event streams, which would otherwise hold an
// http.Server's Shutdown until its deadline (register it with RegisterOnShutdown).
func (s *Server) Shutdown() { s.stop.Do(func() { close(s.done) }) }

// access says who may call a route.
type access int

const (
	public access = iota
	admin
	worker
	signed // a playback link's token in the path: the handler checks it
)

// Route is one registered endpoint (the OpenAPI test walks these).
type Route struct {
	Method, Path string
	access       access
	h            http.HandlerFunc
}

// Routes lists every endpoint.
func (s *Server) Routes() []Route {
	return []Route{
		{"GET", "/healthz", public, s.healthz},
		{"GET", "/readyz", public, s.readyz},
		{"GET", "/metrics", public, s.scrape},
		{"GET", "/api/v1/openapi.yaml", public, s.openapi},
		{"GET", "/api/v1/queue", public, s.queueDepth},
		{"GET", "/api/v1/profiles", admin, s.listProfiles},
		{"GET", "/api/v1/dashboard", admin, s.getDashboard},
		{"GET", "/api/v1/events", admin, s.events},
		{"POST", "/api/v1/jobs", admin, s.createJob},
		{"POST", "/api/v1/subtitles", admin, s.createSubtitle},
		{"POST", "/api/v1/uploads", admin, s.tus(func(h *tusd.UnroutedHandler) http.HandlerFunc { return h.PostFile })},
		{"HEAD", "/api/v1/uploads/{id}", admin, s.tus(s.tusHead)},
		{"PATCH", "/api/v1/uploads/{id}", admin, s.tus(func(h *tusd.UnroutedHandler) http.HandlerFunc { return h.PatchFile })},
		{"DELETE", "/api/v1/uploads/{id}", admin, s.tus(func(h *tusd.UnroutedHandler) http.HandlerFunc { return h.DelFile })},
		{"GET", "/api/v1/jobs", admin, s.listJobs},
		{"GET", "/api/v1/jobs/{id}", admin, s.getJob},
		{"POST", "/api/v1/jobs/{id}/cancel", admin, s.cancelJob},
		{"POST", "/api/v1/jobs/{id}/retry", admin, s.retryJob},
		{"GET", "/api/v1/jobs/{id}/outputs/{path...}", admin, s.getOutput},
		{"GET", "/api/v1/jobs/{id}/live/{path...}", admin, s.getLive},
		{"POST", "/api/v1/jobs/{id}/links", admin, s.createLink},
		{"POST", "/api/v1/links/revoke", admin, s.revokeLinks},
		{"GET", "/api/v1/streams/{asset}/{profile}/{path...}", admin, s.getStream},
		{"GET", "/api/v1/libraries", admin, s.listLibraries},
		{"GET", "/api/v1/libraries/{name}", admin, s.libraryReport("status")},
		{"POST", "/api/v1/libraries/{name}/scan", admin, s.libraryReport("scan")},
		{"POST", "/api/v1/libraries/{name}/plan", admin, s.libraryReport("plan")},
		{"POST", "/api/v1/libraries/{name}/check", admin, s.libraryReport("check")},
		{"POST", "/api/v1/campaigns", admin, s.createCampaign},
		{"GET", "/api/v1/campaigns", admin, s.listCampaigns},
		{"GET", "/api/v1/campaigns/{id}", admin, s.getCampaign},
		{"POST", "/api/v1/campaigns/{id}/pause", admin, s.steerCampaign("pause")},
		{"POST", "/api/v1/campaigns/{id}/resume", admin, s.steerCampaign("resume")},
		{"POST", "/api/v1/campaigns/{id}/cancel", admin, s.steerCampaign("cancel")},
		{"GET", "/p/{token}/{job}/{path...}", signed, s.withLinkHeaders(s.linkOutput)},
		{"OPTIONS", "/p/{token}/{job}/{path...}", public, s.linkPreflight},
		{"POST", "/api/v1/tokens", admin, s.createToken},
		{"GET", "/api/v1/tokens", admin, s.listTokens},
		{"POST", "/api/v1/tokens/{id}/revoke", admin, s.revokeToken},
		{"POST", "/api/v1/subscriptions", admin, s.createSubscription},
		{"GET", "/api/v1/subscriptions", admin, s.listSubscriptions},
		{"GET", "/api/v1/subscriptions/{id}", admin, s.getSubscription},
		{"DELETE", "/api/v1/subscriptions/{id}", admin, s.deleteSubscription},
		{"POST", "/api/v1/subscriptions/{id}/resume", admin, s.resumeSubscription},
		{"GET", "/api/v1/workers", admin, s.listWorkers},
		{"POST", "/api/v1/workers/{name}/drain", admin, s.setWorkerState(store.WorkerDraining)},
		{"POST", "/api/v1/workers/{name}/resume", admin, s.setWorkerState(store.WorkerActive)},
		{"POST", "/api/v1/workers/{name}/revoke", admin, s.setWorkerState(store.WorkerRevoked)},
		{"POST", "/api/v1/worker/register", public, s.workerAPI.register},
		{"POST", "/api/v1/worker/claim", worker, s.workerAPI.claim},
		{"GET", "/api/v1/worker/tasks/{id}", worker, s.workerAPI.leased},
		{"POST", "/api/v1/worker/tasks/{id}/heartbeat", worker, s.workerAPI.report("heartbeat")},
		{"POST", "/api/v1/worker/tasks/{id}/complete", worker, s.workerAPI.report("complete")},
		{"POST", "/api/v1/worker/tasks/{id}/fail", worker, s.workerAPI.report("fail")},
		{"POST", "/api/v1/worker/tasks/{id}/release", worker, s.workerAPI.report("release")},
		{"GET", "/api/v1/worker/tasks/{id}/source", worker, s.workerAPI.source},
		{"GET", "/api/v1/worker/tasks/{id}/subtitles/{sub}", worker, s.workerAPI.subtitle},
		{"GET", "/api/v1/worker/tasks/{id}/staged/{step}", worker, s.workerAPI.staged},
		{"GET", "/api/v1/worker/tasks/{id}/staged/{step}/{path...}", worker, s.workerAPI.staged},
		{"HEAD", "/api/v1/worker/tasks/{id}/files/{step}/{path...}", worker, s.workerAPI.upload},
		{"PUT", "/api/v1/worker/tasks/{id}/files/{step}/{path...}", worker, s.workerAPI.upload},
		{"POST", "/api/v1/worker/tasks/{id}/uploads/{step}", worker, s.workerAPI.planUpload},
		{"POST", "/api/v1/worker/tasks/{id}/commit/{step}", worker, s.workerAPI.commitStep},
		{"POST", "/api/v1/worker/tasks/{id}/live/{step}/{name}", worker, s.workerAPI.liveSegment},
		{"POST", "/api/v1/worker/tasks/{id}/finalize", worker, s.workerAPI.finalizeStep},
		{"POST", "/api/v1/worker/tasks/{id}/publish", worker, s.workerAPI.finalizeStep}, // protocol version 2's name
	}
}

// Handler returns the HTTP handler with auth and metrics.
func (s *Server) Handler() http.Handler {
	mux := http.NewServeMux()
	for _, r := range s.Routes() {
		h := r.h
		switch r.access {
		case admin:
			h = s.requireAdmin(h)
		case worker:
			h = s.requireWorker(h)
		}
		mux.Handle(r.Method+" "+r.Path, h)
	}
	mux.HandleFunc("/api/", func(w http.ResponseWriter, r *http.Request) {
		writeError(w, http.StatusNotFound, "not_found", "no such endpoint; see /api/v1/openapi.yaml")
	})
	mux.HandleFunc(LinkPrefix, s.withLinkHeaders(func(w http.ResponseWriter, r *http.Request) {
		writeError(w, http.StatusNotFound, "not_found", "a playback link is "+LinkPrefix+"TOKEN/JOB/ and the files below it; copy the whole link")
	}))
	var h http.Handler = mux
	if s.m != nil {
		h = s.m.Instrument(mux)
	}
	return h
}

func bearer(r *http.Request) string {
	h := r.Header.Get("Authorization")
	if len(h) > 7 && strings.EqualFold(h[:7], "bearer ") {
		return strings.TrimSpace(h[7:])
	}
	return ""
}

// authenticate finds the caller's key; it answers the request itself when there is none.
func (s *Server) authenticate(w http.ResponseWriter, r *http.Request) (store.Key, bool) {
	tok := bearer(r)
	cookie := false
	if tok == "" {
		if c, err := r.Cookie(SessionCookie); err == nil && c.Value != "" {
			tok, cookie = c.Value, true
		}
	}
	if tok == "" {
		w.Header().Set("WWW-Authenticate", `Bearer realm="herd"`)
		writeError(w, http.StatusUnauthorized, "unauthorized", "send the key as 'Authorization: Bearer KEY' (or sign in at /login)")
		return store.Key{}, false
	}
	k, err := s.st.KeyByHash(r.Context(), apikey.Hash(tok))
	if err == nil && cookie != (k.Kind == kindSession) {
		err = job.ErrNotFound // a cookie holds a session, never a key; a session is only a cookie
	}
	switch {
	case errors.Is(err, job.ErrNotFound):
		writeError(w, http.StatusUnauthorized, "unauthorized", "the key is not valid")
		return k, false
	case err != nil:
		s.internal(w, r, err)
		return k, false
	}
	now := time.Now()
	if !k.Usable(now) {
		writeError(w, http.StatusUnauthorized, "unauthorized", refusedKey(k.Kind))
		return k, false
	}
	if cookie && !CheckCSRF(r) {
		writeError(w, http.StatusForbidden, "csrf", "a request made with a session cookie must carry the page's "+CSRFHeader+" header")
		return k, false
	}
	s.touchKey(r.Context(), k, now)
	return k, true
}

// requireKind lets through callers whose key is of kind, passing the key on.
func (s *Server) requireKind(kind string, next func(w http.ResponseWriter, r *http.Request, k store.Key)) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		k, ok := s.authenticate(w, r)
		if !ok {
			return
		}
		if k.Kind != kind && (kind != "admin" || k.Kind != kindSession) {
			writeError(w, http.StatusForbidden, "forbidden", wrongKind(kind, k.Kind))
			return
		}
		next(w, r, k)
	}
}

func (s *Server) requireAdmin(next http.HandlerFunc) http.HandlerFunc {
	return s.requireKind("admin", func(w http.ResponseWriter, r *http.Request, _ store.Key) { next(w, r) })
}

func writeError(w http.ResponseWriter, status int, code, msg string) {
	var b protocol.ErrorBody
	b.Error.Code, b.Error.Message = code, msg
	writeJSON(w, status, b)
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	_ = enc.Encode(v)
}

func (s *Server) internal(w http.ResponseWriter, r *http.Request, err error) {
	internalError(s.log, w, r, err)
}

// internalError answers 500 without saying why, which goes to the log.
func internalError(log *slog.Logger, w http.ResponseWriter, r *http.Request, err error) {
	log.Error("request failed", "method", r.Method, "route", r.Pattern, "err", err)
	writeError(w, http.StatusInternalServerError, "internal", "the server failed to handle this request; its log has details")
}

// storeError maps store sentinels to statuses.
func (s *Server) storeError(w http.ResponseWriter, r *http.Request, err error) {
	switch {
	case errors.Is(err, job.ErrNotFound):
		writeError(w, http.StatusNotFound, "not_found", "no such job")
	case errors.Is(err, job.ErrConflict):
		msg := err.Error()
		if i := strings.LastIndex(msg, ": conflict"); i > 0 {
			msg = msg[:i]
		}
		writeError(w, http.StatusConflict, "conflict", msg)
	default:
		s.internal(w, r, err)
	}
}

// queueDepth answers from one aggregate over the open work (store.Depth):
// anyone may call it, so a flood of calls must cost the server little.
func (s *Server) queueDepth(w http.ResponseWriter, r *http.Request) {
	d, err := s.st.Depth(r.Context())
	if err != nil {
		s.internal(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, protocol.QueueStats{QueuedTasks: d.QueuedTasks, RunningTasks: d.RunningTasks,
		EncodeBacklogSeconds: d.EncodeBacklog, JobsQueued: d.JobsQueued, JobsRunning: d.JobsRunning})
}

// queueStats is the queue part of the dashboard's numbers.
func queueStats(st store.Stats) protocol.QueueStats {
	out := protocol.QueueStats{RunningTasks: st.RunningTasks, EncodeBacklogSeconds: st.EncodeBacklog,
		JobsQueued: st.JobsByState[job.Queued], JobsRunning: st.JobsByState[job.Running]}
	for _, n := range st.QueueByProfile {
		out.QueuedTasks += n
	}
	return out
}

func (s *Server) healthz(w http.ResponseWriter, _ *http.Request) {
	writeJSON(w, http.StatusOK, map[string]string{"status": "ok"})
}

func (s *Server) readyz(w http.ResponseWriter, r *http.Request) {
	ctx, cancel := context.WithTimeout(r.Context(), 5*time.Second)
	defer cancel()
	res := map[string]string{}
	ok := true
	for _, c := range s.checks {
		if err := c.Fn(ctx); err != nil {
			ok = false
			res[c.Name] = err.Error()
			continue
		}
		res[c.Name] = "ok"
	}
	status := http.StatusOK
	if !ok {
		status = http.StatusServiceUnavailable
	}
	writeJSON(w, status, map[string]any{"ready": ok, "checks": res})
}

func (s *Server) scrape(w http.ResponseWriter, r *http.Request) {
	if s.metrics == nil {
		writeError(w, http.StatusNotFound, "not_found", "metrics are off")
		return
	}
	s.metrics.ServeHTTP(w, r)
}

func (s *Server) openapi(w http.ResponseWriter, _ *http.Request) {
	w.Header().Set("Content-Type", "application/yaml")
	_, _ = w.Write(openAPI)
}

func (s *Server) listProfiles(w http.ResponseWriter, _ *http.Request) {
	writeJSON(w, http.StatusOK, map[string]any{"profiles": s.profiles.All()})
}

func (s *Server) createJob(w http.ResponseWriter, r *http.Request) {
	ct, params, _ := mime.ParseMediaType(r.Header.Get("Content-Type"))
	var (
		j       job.Job
		created bool
		err     error
	)
	switch ct {
	case "multipart/form-data":
		j, created, err = s.createFromUpload(r, params["boundary"])
	case "application/json":
		var body struct {
			SourcePath   string            `json:"source_path"`
			Profile      string            `json:"profile"`
			ChunkSeconds *float64          `json:"chunk_seconds"`
			Publish      []string          `json:"publish"`
			Labels       map[string]string `json:"labels"`
			Subtitles    []struct {
				ID              string `json:"id"`
				Language        string `json:"language"`
				Forced          bool   `json:"forced"`
				HearingImpaired bool   `json:"hearing_impaired"`
			} `json:"subtitles"`
		}
		dec := json.NewDecoder(io.LimitReader(r.Body, 1<<20))
		dec.DisallowUnknownFields()
		if derr := dec.Decode(&body); derr != nil {
			writeError(w, http.StatusBadRequest, "bad_request", "the JSON body must be {\"source_path\": \"/abs/path\", \"profile\": \"name\"}: "+derr.Error())
			return
		}
		if body.SourcePath == "" || body.Profile == "" {
			writeError(w, http.StatusBadRequest, "bad_request", "both source_path and profile are required")
			return
		}
		opt := ingest.Options{ChunkSeconds: body.ChunkSeconds, Publish: ingest.ParsePublish(strings.Join(body.Publish, ",")), Labels: body.Labels}
		for _, st := range body.Subtitles {
			opt.Subtitles = append(opt.Subtitles, job.SourceSubtitle(st))
		}
		j, created, err = s.sub.Import(r.Context(), body.SourcePath, body.Profile, opt)
	default:
		writeError(w, http.StatusUnsupportedMediaType, "unsupported_media_type", "send multipart/form-data with fields 'profile' and 'file', or JSON {\"source_path\",\"profile\"}")
		return
	}
	if err != nil {
		s.submitError(w, r, err)
		return
	}
	status := http.StatusCreated
	if !created {
		status = http.StatusOK
	}
	w.Header().Set("Location", "/api/v1/jobs/"+j.ID)
	writeJSON(w, status, jobview.View(j, nil))
}

// createSubtitle stores a subtitle file a submission will give with its
// source (SRT, WebVTT, ASS/SSA or TTML, the request's body), converted to
// WebVTT, and answers with its id; one that does not parse is refused
// with the line it failed on.
func (s *Server) createSubtitle(w http.ResponseWriter, r *http.Request) {
	st, err := s.sub.StoreSubtitle(r.Context(), &bodyReader{r: http.MaxBytesReader(w, r.Body, media.MaxSidecarBytes+1)})
	if err != nil {
		if be, ok := errors.AsType[*bodyError](err); ok {
			if _, tooLarge := errors.AsType[*http.MaxBytesError](be); tooLarge {
				err = fmt.Errorf("%w: the limit is %d bytes for a subtitle file", ingest.ErrTooLarge, media.MaxSidecarBytes)
			} else {
				err = &badRequest{"the subtitle file was cut off (" + be.err.Error() + "); send it again"}
			}
		}
		s.submitError(w, r, err)
		return
	}
	writeJSON(w, http.StatusCreated, st)
}

// maxSubtitlesField bounds the multipart subtitles field.
const maxSubtitlesField = ingest.MaxSubtitles * 128

// maxLabelsField bounds the multipart labels field: label.Max labels of
// the longest key (253+1+63) and value (63).
const maxLabelsField = label.Max * (253 + 1 + 63 + 1 + 63 + 1)

type badRequest struct{ msg string }

func (e *badRequest) Error() string { return e.msg }

func (s *Server) createFromUpload(r *http.Request, boundary string) (job.Job, bool, error) {
	if boundary == "" {
		return job.Job{}, false, &badRequest{"multipart body without a boundary"}
	}
	if r.ContentLength > s.sub.MaxUpload()+1<<20 {
		return job.Job{}, false, fmt.Errorf("%w: the limit is %d bytes", ingest.ErrTooLarge, s.sub.MaxUpload())
	}
	mr := multipart.NewReader(r.Body, boundary)
	profileName := r.URL.Query().Get("profile")
	var opt ingest.Options
	chunk, err := ingest.ParseChunkSeconds(r.URL.Query().Get("chunk_seconds"))
	if err != nil {
		return job.Job{}, false, err
	}
	opt.ChunkSeconds = chunk
	opt.Publish = ingest.ParsePublish(r.URL.Query().Get("publish"))
	if opt.Labels, err = ingest.ParseLabels(r.URL.Query().Get("labels")); err != nil {
		return job.Job{}, false, err
	}
	if opt.Subtitles, err = ingest.ParseSubtitles(r.URL.Query().Get("subtitles")); err != nil {
		return job.Job{}, false, err
	}
	for {
		part, err := mr.NextPart()
		if errors.Is(err, io.EOF) {
			return job.Job{}, false, &badRequest{"the form has no 'file' field"}
		}
		if err != nil {
			return job.Job{}, false, &badRequest{"malformed multipart body: " + err.Error()}
		}
		switch part.FormName() {
		case "profile":
			b, err := io.ReadAll(io.LimitReader(part, 256))
			if err != nil {
				return job.Job{}, false, &badRequest{"read the profile field: " + err.Error()}
			}
			profileName = strings.TrimSpace(string(b))
		case "publish":
			b, err := io.ReadAll(io.LimitReader(part, 4096))
			if err != nil {
				return job.Job{}, false, &badRequest{"read the publish field: " + err.Error()}
			}
			opt.Publish = ingest.ParsePublish(string(b))
		case "labels":
			v, err := formField(part, maxLabelsField)
			if err == nil {
				opt.Labels, err = ingest.ParseLabels(v)
			}
			if err != nil {
				return job.Job{}, false, err
			}
		case "subtitles":
			v, err := formField(part, maxSubtitlesField)
			if err == nil {
				opt.Subtitles, err = ingest.ParseSubtitles(v)
			}
			if err != nil {
				return job.Job{}, false, err
			}
		case "chunk_seconds":
			b, err := io.ReadAll(io.LimitReader(part, 64))
			if err != nil {
				return job.Job{}, false, &badRequest{"read the chunk_seconds field: " + err.Error()}
			}
			if opt.ChunkSeconds, err = ingest.ParseChunkSeconds(string(b)); err != nil {
				return job.Job{}, false, err
			}
		case "file":
			if profileName == "" {
				return job.Job{}, false, &badRequest{"send the 'profile' field before the 'file' field (or as ?profile=)"}
			}
			j, created, err := s.sub.Upload(r.Context(), part.FileName(), profileName, opt, &bodyReader{r: part})
			if be, ok := errors.AsType[*bodyError](err); ok {
				return j, created, &badRequest{"the upload was cut off or malformed (" + be.err.Error() + "); send it again"}
			}
			return j, created, err
		}
		_ = part.Close()
	}
}

// formField reads a multipart field of at most limit bytes.
func formField(part *multipart.Part, limit int) (string, error) {
	b, err := io.ReadAll(io.LimitReader(part, int64(limit)+1))
	switch {
	case err != nil:
		return "", &badRequest{"read the " + part.FormName() + " field: " + err.Error()}
	case len(b) > limit:
		return "", &badRequest{fmt.Sprintf("the %s field is longer than %d bytes", part.FormName(), limit)}
	}
	return string(b), nil
}

// bodyReader marks errors reading the request body: the client's doing, not
// the server's (a write to the disk failing is the server's).
type bodyReader struct{ r io.Reader }

func (b *bodyReader) Read(p []byte) (int, error) {
	n, err := b.r.Read(p)
	if err != nil && !errors.Is(err, io.EOF) {
		err = &bodyError{err}
	}
	return n, err
}

type bodyError struct{ err error }

func (e *bodyError) Error() string { return "read the request body: " + e.err.Error() }
func (e *bodyError) Unwrap() error { return e.err }

func (s *Server) submitError(w http.ResponseWriter, r *http.Request, err error) {
	var br *badRequest
	switch {
	case errors.As(err, &br):
		writeError(w, http.StatusBadRequest, "bad_request", br.msg)
	case errors.Is(err, ingest.ErrTooLarge):
		writeError(w, http.StatusRequestEntityTooLarge, "too_large", err.Error())
	case errors.Is(err, job.ErrConflict):
		writeError(w, http.StatusConflict, "conflict", strings.TrimSuffix(err.Error(), ": "+job.ErrConflict.Error()))
	case errors.Is(err, ingest.ErrUnknownProfile):
		writeError(w, http.StatusBadRequest, "unknown_profile", err.Error())
	case errors.Is(err, ingest.ErrBadOption):
		writeError(w, http.StatusBadRequest, "bad_request", err.Error())
	case errors.Is(err, ingest.ErrBadSubtitle):
		writeError(w, http.StatusBadRequest, "bad_subtitle", err.Error())
	case errors.Is(err, ingest.ErrBadPath):
		writeError(w, http.StatusForbidden, "path_not_allowed", err.Error())
	case errors.Is(err, ingest.ErrEmpty):
		writeError(w, http.StatusBadRequest, "empty", "the file is empty; nothing to encode")
	default:
		s.internal(w, r, err)
	}
}

func (s *Server) listJobs(w http.ResponseWriter, r *http.Request) {
	opt, err := listOptions(r)
	if err != nil {
		writeError(w, http.StatusBadRequest, "bad_request", err.Error())
		return
	}
	s.serveView(w, r, func(ctx context.Context) (any, error) { return s.jobList(ctx, opt) })
}

func (s *Server) getJob(w http.ResponseWriter, r *http.Request) {
	v, err := s.JobPage(r.Context(), r.PathValue("id"))
	if err != nil {
		s.storeError(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, v)
}

func (s *Server) cancelJob(w http.ResponseWriter, r *http.Request) {
	j, err := s.st.CancelJob(r.Context(), r.PathValue("id"), time.Now())
	if err != nil {
		s.storeError(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, jobview.View(j, nil))
}

func (s *Server) retryJob(w http.ResponseWriter, r *http.Request) {
	if j, err := s.st.GetJob(r.Context(), r.PathValue("id")); err == nil && j.Source.Library != "" {
		// Its library recorded the check's end: a retry would go unheard.
		writeError(w, http.StatusConflict, "conflict", fmt.Sprintf("a health check is run again with its library's: herd library check %s", j.Source.Library))
		return
	}
	j, err := s.st.RetryJob(r.Context(), r.PathValue("id"), time.Now())
	if err != nil {
		s.storeError(w, r, err)
		return
	}
	s.kick.Kick()
	writeJSON(w, http.StatusOK, jobview.View(j, nil))
}

func (s *Server) getOutput(w http.ResponseWriter, r *http.Request) {
	id := r.PathValue("id")
	s.serveOutput(w, r, id, r.PathValue("path"), 0, func() bool { return s.outputsRemoved(w, r, id) })
}

func (s *Server) getLive(w http.ResponseWriter, r *http.Request) {
	s.serveLive(w, r, r.PathValue("id"), r.PathValue("path"))
}

// serveLive serves the file at p below job id's live URL (package live):
// its EVENT playlists while its hls encode runs, and the segments they list.
func (s *Server) serveLive(w http.ResponseWriter, r *http.Request, id, p string) {
	if s.playlists == nil {
		writeError(w, http.StatusNotFound, "not_found", "this server keeps no live playlists")
		return
	}
	f, err := s.playlists.File(r.Context(), id, p)
	if le, ok := errors.AsType[*live.Error](err); ok {
		w.Header().Set("Cache-Control", "no-store")
		if le.Code == "not_ready" {
			w.Header().Set("Retry-After", "2")
		}
		writeError(w, le.Status, le.Code, le.Message)
		return
	}
	if err != nil {
		s.internal(w, r, err)
		return
	}
	h := w.Header()
	h.Set("Content-Type", f.ContentType)
	h.Set("Cache-Control", f.CacheControl)
	h.Set("X-Content-Type-Options", "nosniff")
	http.ServeContent(w, r, "", time.Time{}, bytes.NewReader(f.Body))
}

// serveOutput serves the file at p among job id's outputs. With presign
// (not 0) and a storage that presigns, media comes from the bucket: a
// redirect for a media file, presigned URIs in a media playlist. When the
// file is not there, gone may answer (reporting true) before the plain 404.
func (s *Server) serveOutput(w http.ResponseWriter, r *http.Request, id, p string, presign time.Duration, gone func() bool) {
	key := pipeline.OutputsKey(id) + "/" + p
	if !blob.ValidKey(key) || strings.Contains(id, "/") {
		writeError(w, http.StatusBadRequest, "bad_request", "invalid output path")
		return
	}
	// The headers go on only once the file is open: an error with a
	// max-age could be kept by a cache as if it were the file.
	found := http.Header{
		"Content-Type":           {blob.ContentType(p)},
		"Cache-Control":          {blob.CacheControl(p)},
		"X-Content-Type-Options": {"nosniff"},
	}
	if presign > 0 && blob.Compressible(p) {
		if strings.HasSuffix(p, ".m3u8") && s.presignedPlaylist(w, r, key, presign, found) {
			return
		}
		presign = 0 // manifests, captions and master playlists come from the server: their URIs are relative
	}
	serve := func(w http.ResponseWriter, r *http.Request) {
		serveStored(w, r, s.files, s.log, key, presign, found, func() {
			w.Header().Set("Cache-Control", "no-store") // it may appear once the job finishes
			if gone != nil && gone() {
				return
			}
			writeError(w, http.StatusNotFound, "not_found", "no such output (the job may not have finished)")
		})
	}
	if blob.Compressible(p) {
		s.gzip(http.HandlerFunc(serve)).ServeHTTP(w, r)
		return
	}
	serve(w, r)
}
