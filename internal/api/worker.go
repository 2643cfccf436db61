package api

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"net/http"
	"os"
	"path"
	"path/filepath"
	"regexp"
	"runtime/debug"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/herdhq/herd/internal/apikey"
	"github.com/herdhq/herd/internal/blob"
	"github.com/herdhq/herd/internal/job"
	"github.com/herdhq/herd/internal/live"
	"github.com/herdhq/herd/internal/pipeline"
	"github.com/herdhq/herd/internal/protocol"
	"github.com/herdhq/herd/internal/queue"
	"github.com/herdhq/herd/internal/store"
)

// The worker protocol (package protocol): remote workers dial out to these
// routes with a worker key. Every report carries the lease (owner and
// fencing token); a stale one gets 409 lease_lost and the worker drops that
// task.

// workerAPI serves the worker routes (/api/v1/worker/...): registration,
// claims, reports and the files of the task a worker holds. It has its own
// dependencies, not the whole Server's; the Server's route table registers
// its handlers behind the worker-key check (requireWorker).
type workerAPI struct {
	st       store.Store
	blobs    *blob.Local // scratch space for uploads through the server
	profiles pipeline.Profiles
	queue    *queue.Queue
	files    pipeline.Storage
	live     *live.Hub
	accept   *pipeline.Acceptor
	maxStep  int64   // --max-step-size: most bytes one task's step may upload; 0: its plan alone decides
	budget   budgets // bytes in each remote worker's upload folder
	log      *slog.Logger
	// stillValid checks again the key a request was admitted with: a claim
	// waits for work up to 30 seconds, and its key may be revoked meanwhile.
	stillValid func(ctx context.Context, r *http.Request) bool
}

func newWorkerAPI(d Deps, log *slog.Logger, stillValid func(context.Context, *http.Request) bool) *workerAPI {
	return &workerAPI{st: d.Store, blobs: d.Blobs, profiles: d.Versions, queue: d.Queue, files: d.Files, live: d.Live,
		accept: pipeline.NewAcceptor(d.Versions, d.Limits, d.Files), maxStep: d.MaxStep, log: log, stillValid: stillValid}
}

// internal answers 500 and logs why.
func (s *workerAPI) internal(w http.ResponseWriter, r *http.Request, err error) {
	internalError(s.log, w, r, err)
}

var workerNameRe = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$`)

// ValidWorkerName reports whether a worker name is acceptable.
func ValidWorkerName(n string) bool { return workerNameRe.MatchString(n) }

type ctxKey int

const workerNameKey ctxKey = iota

func workerName(r *http.Request) string { s, _ := r.Context().Value(workerNameKey).(string); return s }

func (s *Server) requireWorker(next http.HandlerFunc) http.HandlerFunc {
	return s.requireKind("worker", func(w http.ResponseWriter, r *http.Request, k store.Key) {
		wk, err := s.st.GetWorker(r.Context(), k.Name)
		if err != nil && !errors.Is(err, job.ErrNotFound) {
			// The database did not answer: the worker tries again; a 401
			// would end it (its key is fine).
			s.internal(w, r, err)
			return
		}
		if err != nil || wk.State == store.WorkerRevoked || wk.KeyID != k.ID {
			writeError(w, http.StatusUnauthorized, "unauthorized", "this worker is not registered, or was revoked; register it again with a new registration token (herd token create --registration)")
			return
		}
		next(w, r.WithContext(context.WithValue(r.Context(), workerNameKey, k.Name)))
	})
}

func decodeJSON(w http.ResponseWriter, r *http.Request, v any) bool {
	dec := json.NewDecoder(io.LimitReader(r.Body, 8<<20))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		writeError(w, http.StatusBadRequest, "bad_request", "malformed JSON body: "+err.Error())
		return false
	}
	return true
}

// register trades a one-time registration token for a worker key.
func (s *workerAPI) register(w http.ResponseWriter, r *http.Request) {
	var body protocol.RegisterRequest
	if !decodeJSON(w, r, &body) {
		return
	}
	if !ValidWorkerName(body.Name) {
		writeError(w, http.StatusBadRequest, "bad_request", "a worker name is 1-64 letters, digits, '.', '_' or '-'")
		return
	}
	k, err := s.st.KeyByHash(r.Context(), apikey.Hash(body.Token))
	if err != nil || k.Kind != "registration" || !k.Usable(time.Now()) {
		writeError(w, http.StatusUnauthorized, "unauthorized", "the registration token is not valid, was used already, or expired; ask an admin for a new one (herd token create --registration)")
		return
	}
	if prev, err := s.st.GetWorker(r.Context(), body.Name); err == nil && prev.State != store.WorkerRevoked {
		// Taking over a live worker's name would take over its leases too.
		writeError(w, http.StatusConflict, "name_taken", fmt.Sprintf("a worker named %s is registered; revoke it first (herd workers revoke %s) or choose another --name", body.Name, body.Name))
		return
	}
	if ok, err := s.st.ConsumeKey(r.Context(), k.ID); err != nil || !ok {
		writeError(w, http.StatusUnauthorized, "unauthorized", "the registration token was used already")
		return
	}
	key, err := issueKey(r.Context(), s.st, "worker", body.Name, nil)
	if err != nil {
		s.internal(w, r, err)
		return
	}
	if err := s.st.PutWorker(r.Context(), store.Worker{Name: body.Name, KeyID: key.ID, State: store.WorkerActive, Slots: 1, CreatedAt: time.Now().UTC()}); err != nil {
		s.internal(w, r, err)
		return
	}
	s.log.Info("worker registered", "worker", body.Name)
	writeJSON(w, http.StatusCreated, protocol.Registered{Key: key.Secret, Name: body.Name})
}

// claim hands the worker one task, holding the request until one is runnable
// (or wait_seconds pass): a new task reaches an idle worker at once.
func (s *workerAPI) claim(w http.ResponseWriter, r *http.Request) {
	var req protocol.ClaimRequest
	if !decodeJSON(w, r, &req) {
		return
	}
	name := workerName(r)
	if req.Slot == "" || strings.ContainsAny(req.Slot, "/%_\\") || len(req.Slot) > 16 {
		writeError(w, http.StatusBadRequest, "bad_request", "slot must be a short name without / % _ or \\")
		return
	}
	// Every released worker has said its version in the claim body (only
	// version 2's fetch of a leased task lacked it, see leased): a claim
	// without one is taken as the oldest version spoken, which is leased
	// the least.
	version := cmp.Or(req.Version, protocol.LegacyVersion)
	if !protocol.Speaks(version) {
		writeError(w, http.StatusBadRequest, "protocol_version", fmt.Sprintf("this worker speaks worker protocol %s; this server speaks %s: upgrade the worker or the server so they match", version, protocol.Spoken))
		return
	}
	if err := s.st.SeenWorker(r.Context(), name, req.Caps, max(req.Slots, 1), version, time.Now()); err != nil {
		s.internal(w, r, err)
		return
	}
	wait := time.Duration(min(max(req.WaitSeconds, 0), 30) * float64(time.Second))
	deadline := time.Now().Add(wait)
	owner := store.WorkerOwnerPrefix(name) + req.Slot
	var keyID string
	for first := true; ; first = false {
		wk, err := s.st.GetWorker(r.Context(), name)
		if err != nil {
			s.internal(w, r, err)
			return
		}
		// The key, or the worker, may have been revoked while the claim
		// waited (requireWorker checked both when it came in).
		if first {
			keyID = wk.KeyID // requireWorker checked it is the caller's
		}
		if !first && (wk.State == store.WorkerRevoked || wk.KeyID != keyID || !s.stillValid(r.Context(), r)) {
			writeError(w, http.StatusUnauthorized, "unauthorized", refusedKey("worker"))
			return
		}
		if wk.State == store.WorkerActive {
			// A worker of an older version is leased only what it still
			// implements; finding nothing else, it long-polls as usual.
			c, err := s.queue.ClaimKinds(r.Context(), owner, name, req.Caps, protocol.Kinds(version))
			if err != nil {
				s.internal(w, r, err)
				return
			}
			if c != nil {
				body, err := s.claimBody(r.Context(), c, version == protocol.LegacyVersion)
				if err != nil {
					// Never a task without its profile: hand it back for
					// the next claim.
					if rerr := s.queue.Release(context.WithoutCancel(r.Context()), c.Lease); rerr != nil {
						err = errors.Join(err, rerr)
					}
					s.internal(w, r, err)
					return
				}
				writeJSON(w, http.StatusOK, body)
				return
			}
		}
		left := time.Until(deadline)
		if left <= 0 || r.Context().Err() != nil {
			w.WriteHeader(http.StatusNoContent)
			return
		}
		s.queue.Wait(r.Context(), left)
	}
}

// claimBody is what a worker is sent for a task it claimed: with the
// job's profile at the version the job was submitted with. A worker's own
// profiles know only the built-ins' files, so a claim never goes without
// it: an error reading it (a database that is away) fails the request.
func (s *workerAPI) claimBody(ctx context.Context, c *job.Claimed, legacy bool) (protocol.Claim, error) {
	cl := protocol.Claim{Task: c.Task, Job: c.Job, Lease: c.Lease, Deps: c.Deps}
	if legacy && cl.Task.Kind == job.KindFinalize {
		cl.Task.Kind = protocol.LegacyFinalizeKind
	}
	if c.Task.Kind == job.KindCheck {
		return cl, nil // a health check has no profile
	}
	p, err := s.profiles.At(ctx, c.Job.Profile, c.Job.ProfileVersion)
	if err != nil {
		return cl, err
	}
	if p != nil {
		cl.Profile, _ = json.Marshal(p)
	}
	return cl, nil
}

// leased hands a worker a task that was leased to it by someone else: the
// Kubernetes dispatcher claims a task, then starts a pod that runs
// `herd run-task` with the lease, and that pod fetches the task here. The
// dispatcher claims any kind, so a pod whose image does not match the
// server (a version it does not speak, or one older than the task's kind)
// would fail the task, or do the old thing: its task fails permanently
// instead, with a message that names the fix, rather than using up its
// attempts on pods of the same image.
func (s *workerAPI) leased(w http.ResponseWriter, r *http.Request) {
	c, ok := s.leasedClaim(w, r)
	if !ok {
		return
	}
	// A version 2 run-task pod sent no version header.
	version := cmp.Or(r.Header.Get(protocol.HeaderProtocol), protocol.LegacyVersion)
	if kinds := protocol.Kinds(version); !protocol.Speaks(version) || (kinds != nil && !slices.Contains(kinds, c.Task.Kind)) {
		s.wrongImage(w, r, c, version)
		return
	}
	if len(c.Task.DependsOn) > 0 {
		all, err := s.st.Tasks(r.Context(), c.Task.JobID)
		if err != nil {
			s.internal(w, r, err)
			return
		}
		c.Deps = job.DepResults(c.Task, all)
	}
	body, err := s.claimBody(r.Context(), c, version == protocol.LegacyVersion)
	if err != nil {
		s.internal(w, r, err) // the pod asks again; its lease stays
		return
	}
	writeJSON(w, http.StatusOK, body)
}

// wrongImage fails a leased task whose pod cannot run it (see leased) and
// tells the pod why.
func (s *workerAPI) wrongImage(w http.ResponseWriter, r *http.Request, c *job.Claimed, version string) {
	status, why := http.StatusConflict, fmt.Sprintf("is older than the server's (worker protocol %s; the server speaks %s) and cannot run a %s task", version, protocol.Version, c.Task.Kind)
	if !protocol.Speaks(version) {
		status, why = http.StatusBadRequest, fmt.Sprintf("speaks worker protocol %s, which the server does not (it speaks %s)", version, protocol.Spoken)
	}
	msg := fmt.Sprintf("the task's pod runs a herd image that %s: set the server's --kube-image to an image of the server's own version, then retry the job", why)
	f := job.Failure{Code: "worker_image", Permanent: true, Message: msg}
	if err := s.queue.Fail(r.Context(), c.Lease, f); err != nil && !errors.Is(err, job.ErrLeaseLost) {
		s.internal(w, r, err)
		return
	}
	s.log.Error("a task pod's image does not match the server; its task failed", "task_id", c.Task.ID, "kind", c.Task.Kind, "pod_protocol", version, "worker", workerName(r))
	writeError(w, status, "protocol_version", msg)
}

// leaseError answers a report whose lease is no longer valid.
func (s *workerAPI) leaseError(w http.ResponseWriter, r *http.Request, err error) {
	switch {
	case errors.Is(err, job.ErrLeaseLost):
		writeError(w, http.StatusConflict, "lease_lost", "this task is no longer yours (canceled, or reassigned after a timeout); drop it")
	case errors.Is(err, job.ErrNotFound):
		writeError(w, http.StatusNotFound, "not_found", "no such task")
	default:
		s.internal(w, r, err)
	}
}

// ownLease checks that the lease in a report belongs to the calling worker.
func ownLease(r *http.Request, l job.Lease) bool {
	return l.TaskID == r.PathValue("id") && strings.HasPrefix(l.Owner, store.WorkerOwnerPrefix(workerName(r)))
}

func (s *workerAPI) report(kind string) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		var rep protocol.Report
		if !decodeJSON(w, r, &rep) {
			return
		}
		if !ownLease(r, rep.Lease) {
			s.leaseError(w, r, job.ErrLeaseLost)
			return
		}
		ctx := r.Context()
		var err error
		switch kind {
		case "heartbeat":
			err = s.queue.Heartbeat(ctx, rep.Lease, job.Progress{Progress: min(max(rep.Progress, 0), 1), Speed: min(max(rep.Speed, 0), maxSpeed)})
			if err == nil {
				// A busy worker does not claim; its heartbeats say it is alive.
				if serr := s.st.SeenWorker(ctx, workerName(r), nil, 0, "", time.Now()); serr != nil {
					s.log.Warn("record worker contact", "err", serr)
				}
			}
		case "complete":
			s.completeTask(w, r, rep)
			return
		case "fail":
			err = s.queue.Fail(ctx, rep.Lease, reportedFailure(rep))
		case "release":
			err = s.queue.Release(ctx, rep.Lease)
		}
		if err != nil {
			s.leaseError(w, r, err)
			return
		}
		writeJSON(w, http.StatusOK, map[string]string{"status": "ok"})
	}
}

// maxSpeed bounds the encode speed a worker may report (× realtime).
const maxSpeed = 10_000

// completeTask records a finished task with what the server accepts of the
// report (pipeline.Acceptor): a report it refuses fails the task
// permanently with a message that names the refused field, and the worker
// is answered 422.
func (s *workerAPI) completeTask(w http.ResponseWriter, r *http.Request, rep protocol.Report) {
	ctx := r.Context()
	t, err := s.st.GetTask(ctx, rep.Lease.TaskID)
	if err != nil {
		s.leaseError(w, r, err)
		return
	}
	if t.State != job.TaskRunning || t.Fence != rep.Lease.Fence || t.LeaseOwner != rep.Lease.Owner {
		s.leaseError(w, r, job.ErrLeaseLost)
		return
	}
	j, err := s.st.GetJob(ctx, t.JobID)
	if err != nil {
		s.internal(w, r, err)
		return
	}
	c := &job.Claimed{Task: t, Job: j, Lease: rep.Lease, Deps: map[job.Kind]json.RawMessage{}}
	if len(t.DependsOn) > 0 {
		all, err := s.st.Tasks(ctx, t.JobID)
		if err != nil {
			s.internal(w, r, err)
			return
		}
		c.Deps = job.DepResults(t, all)
	}
	res, err := s.acceptReport(ctx, c, job.Result{Data: rep.Data, Commands: rep.Commands, Source: rep.Source, Plan: rep.Plan, Outputs: rep.Outputs})
	var refused *pipeline.ReportError
	code, permanent := job.IsPermanent(err)
	switch {
	case errors.As(err, &refused) || permanent:
		msg := job.UserMessage(err, "")
		if refused != nil {
			code, msg = "report_refused", refused.Error()
			s.log.Warn("refused a worker's report", "worker", workerName(r), "task_id", t.ID, "kind", t.Kind, "field", refused.Field, "reason", refused.Msg)
		}
		if ferr := s.queue.Fail(ctx, rep.Lease, job.Failure{Message: msg, Code: code, Permanent: true, Commands: res.Commands}); ferr != nil {
			s.leaseError(w, r, ferr)
			return
		}
		writeError(w, http.StatusUnprocessableEntity, "report_refused", msg)
		return
	case err != nil:
		s.internal(w, r, err)
		return
	}
	if err := s.queue.Complete(ctx, rep.Lease, res); err != nil {
		s.leaseError(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, map[string]string{"status": "ok"})
}

// acceptReport is the Acceptor's verdict, with a panic in it (planning from
// the reported facts) failing that task alone instead of the request.
func (s *workerAPI) acceptReport(ctx context.Context, c *job.Claimed, r job.Result) (res job.Result, err error) {
	defer func() {
		if p := recover(); p != nil {
			s.log.Error("accepting a report panicked", "task_id", c.Task.ID, "panic", fmt.Sprint(p), "stack", string(debug.Stack()))
			err = job.Permanent("internal_error", job.Userf(fmt.Errorf("panic: %v", p),
				"herd hit an internal error accepting the %s step's result (a bug: the server log has the details; please report it)", c.Task.Kind))
		}
	}()
	return s.accept.Accept(ctx, c, r)
}

// Bounds on a failure a worker reports: its message is shown to users.
const maxFailureMessage = 4 << 10

var failureCodeRe = regexp.MustCompile(`^[a-z][a-z0-9_]{0,39}$`)

// reportedFailure is a worker's failure report as stored: the message cut
// to a few KiB of printable text, the code one of the plain identifiers
// herd uses (else "worker_error"), the commands dropped when they are not
// within pipeline's bounds.
func reportedFailure(rep protocol.Report) job.Failure {
	msg := job.Printable(rep.Message)
	if len(msg) > maxFailureMessage {
		msg = strings.ToValidUTF8(msg[:maxFailureMessage], "") + " …"
	}
	code := rep.Code
	if code != "" && !failureCodeRe.MatchString(code) {
		code = "worker_error"
	}
	cmds := rep.Commands
	if pipeline.CheckCommands(cmds) != nil {
		cmds = nil
	}
	return job.Failure{Message: cmp.Or(msg, "the worker reported a failure"), Code: code, Permanent: rep.Permanent, Commands: cmds}
}

// leasedTask checks the lease headers of a file route against the task.
func (s *workerAPI) leasedTask(w http.ResponseWriter, r *http.Request) (job.Task, bool) {
	fence, err := strconv.ParseInt(r.Header.Get(protocol.HeaderFence), 10, 64)
	l := job.Lease{TaskID: r.PathValue("id"), Owner: r.Header.Get(protocol.HeaderLeaseOwner), Fence: fence}
	if err != nil || !ownLease(r, l) {
		s.leaseError(w, r, job.ErrLeaseLost)
		return job.Task{}, false
	}
	t, err := s.st.GetTask(r.Context(), l.TaskID)
	if err != nil {
		s.leaseError(w, r, err)
		return t, false
	}
	if t.State != job.TaskRunning || t.Fence != l.Fence || t.LeaseOwner != l.Owner {
		s.leaseError(w, r, job.ErrLeaseLost)
		return t, false
	}
	return t, true
}

// leasedClaim is leasedTask with the task's job.
func (s *workerAPI) leasedClaim(w http.ResponseWriter, r *http.Request) (*job.Claimed, bool) {
	t, ok := s.leasedTask(w, r)
	if !ok {
		return nil, false
	}
	j, err := s.st.GetJob(r.Context(), t.JobID)
	if err != nil {
		s.internal(w, r, err)
		return nil, false
	}
	return &job.Claimed{Task: t, Job: j, Lease: job.Lease{TaskID: t.ID, Owner: t.LeaseOwner, Fence: t.Fence}}, true
}

// source hands the worker the job's source file: a redirect to a presigned
// URL when the storage gives one (the bytes then never pass through the
// server), else the bytes, with Range so downloads resume.
func (s *workerAPI) source(w http.ResponseWriter, r *http.Request) {
	c, ok := s.leasedClaim(w, r)
	if !ok {
		return
	}
	if c.Job.Source.Library != "" {
		writeError(w, http.StatusConflict, "conflict", "a health check reads its library's file where the worker mounts the library; it has no stored source")
		return
	}
	w.Header().Set(protocol.HeaderSHA256, c.Job.Source.SHA256)
	serveStored(w, r, s.files, s.log, c.Job.AssetKey, pipeline.PresignTTL, octetStream, func() {
		writeError(w, http.StatusGone, "source_missing", "the source file is missing from storage")
	})
}

// subtitle hands the worker a subtitle file given with the job's source,
// as source does the source: only one the job names.
func (s *workerAPI) subtitle(w http.ResponseWriter, r *http.Request) {
	c, ok := s.leasedClaim(w, r)
	if !ok {
		return
	}
	id := r.PathValue("sub")
	if !slices.ContainsFunc(c.Job.Source.Subtitles, func(st job.SourceSubtitle) bool { return st.ID == id }) {
		writeError(w, http.StatusNotFound, "not_found", "the task's job has no subtitle file "+strconv.Quote(id))
		return
	}
	w.Header().Set(protocol.HeaderSHA256, id)
	serveStored(w, r, s.files, s.log, job.SubtitleKey(id), pipeline.PresignTTL, octetStream, func() {
		writeError(w, http.StatusGone, "source_missing", "the subtitle file is missing from storage")
	})
}

// octetStream is what a worker's downloads are served as.
var octetStream = http.Header{"Content-Type": {"application/octet-stream"}}

// serveStored answers with a stored file: a redirect to a URL presigned
// for presign when that is not 0 and the storage can presign, else the
// bytes with Range support and the headers in found (which an error or a
// missing file does not get).
func serveStored(w http.ResponseWriter, r *http.Request, files pipeline.Storage, log *slog.Logger, key string, presign time.Duration, found http.Header, missing func()) {
	if presign > 0 {
		u, err := files.PresignGet(r.Context(), key, presign)
		if err != nil {
			internalError(log, w, r, err)
			return
		}
		if u != "" {
			http.Redirect(w, r, u, http.StatusTemporaryRedirect)
			return
		}
	}
	f, err := files.Open(r.Context(), key)
	if errors.Is(err, blob.ErrNotFound) {
		missing()
		return
	}
	if err != nil {
		internalError(log, w, r, err)
		return
	}
	defer f.Close()
	for k, v := range found {
		w.Header()[k] = v
	}
	http.ServeContent(w, r, "", f.ModTime(), f)
}

// Bounds on the files a step lists.
const (
	maxStepFiles = 100_000
	maxFileSize  = 1 << 50
)

// staged lists, or with a path serves, the files an earlier step of the job committed.
func (s *workerAPI) staged(w http.ResponseWriter, r *http.Request) {
	t, ok := s.leasedTask(w, r)
	if !ok {
		return
	}
	step, rel := r.PathValue("step"), r.PathValue("path")
	if !s.validStep(w, step) || !mayRead(w, t, step) {
		return
	}
	if rel == "" {
		_, files, ok, err := s.files.StagedFiles(r.Context(), t.JobID, step)
		if err != nil {
			s.internal(w, r, err)
			return
		}
		if !ok {
			writeError(w, http.StatusNotFound, "not_found", "that step staged nothing")
			return
		}
		writeJSON(w, http.StatusOK, map[string]any{"files": files})
		return
	}
	if !validRel(rel) {
		writeError(w, http.StatusBadRequest, "bad_request", "invalid path")
		return
	}
	prefix, ok, err := s.files.StagePrefix(r.Context(), t.JobID, step)
	if err != nil {
		s.internal(w, r, err)
		return
	}
	if !ok {
		writeError(w, http.StatusNotFound, "not_found", "that step staged nothing")
		return
	}
	serveStored(w, r, s.files, s.log, prefix+"/"+rel, pipeline.PresignTTL, octetStream, func() {
		writeError(w, http.StatusNotFound, "not_found", "no such staged file")
	})
}

// planUpload tells a worker how to upload a step's files: straight to
// storage with presigned requests where the storage allows, else through
// the server.
func (s *workerAPI) planUpload(w http.ResponseWriter, r *http.Request) {
	c, ok := s.leasedClaim(w, r)
	if !ok {
		return
	}
	step := r.PathValue("step")
	var body struct {
		Files []protocol.StagedFile `json:"files"`
	}
	if !s.validStep(w, step) || !mayWrite(w, c.Task, step) || !decodeJSON(w, r, &body) || !validFiles(w, body.Files) || !s.withinBudget(w, c.Job, step, sumSizes(body.Files)) {
		return
	}
	du, ok := s.files.(pipeline.DirectUploader)
	if !ok {
		writeJSON(w, http.StatusOK, protocol.UploadPlan{})
		return
	}
	// Every plan of this attempt's step together: asking again and again
	// for new URLs does not buy more room.
	if !s.budget.plan(uploadName(c.Task, step), body.Files, s.stepBudget(c.Job, step)) {
		writeError(w, http.StatusRequestEntityTooLarge, "too_large", fmt.Sprintf("the %s step of this job may upload at most %d bytes (its plan and --max-step-size say so)", step, s.stepBudget(c.Job, step)))
		return
	}
	ups, err := du.PlanUploads(r.Context(), c, step, body.Files)
	if err != nil {
		s.internal(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, protocol.UploadPlan{Direct: true, Uploads: ups})
}

func (s *workerAPI) validStep(w http.ResponseWriter, step string) bool {
	ok := pipeline.ValidStep(step)
	if !ok {
		writeError(w, http.StatusBadRequest, "bad_request", "unknown step")
	}
	return ok
}

// withinBudget answers 413 when size is more than step may weigh.
func (s *workerAPI) withinBudget(w http.ResponseWriter, j job.Job, step string, size int64) bool {
	if limit := s.stepBudget(j, step); size > limit {
		writeError(w, http.StatusRequestEntityTooLarge, "too_large", fmt.Sprintf("the %s step of this job may upload at most %d bytes (its plan and --max-step-size say so); %d is more", step, limit, size))
		return false
	}
	return true
}

func validFiles(w http.ResponseWriter, files []protocol.StagedFile) bool {
	if len(files) > maxStepFiles {
		writeError(w, http.StatusBadRequest, "bad_request", fmt.Sprintf("a step has at most %d files", maxStepFiles))
		return false
	}
	for _, f := range files {
		if !validRel(f.Path) || f.Size < 0 || f.Size > maxFileSize {
			writeError(w, http.StatusBadRequest, "bad_request", "invalid path "+f.Path)
			return false
		}
	}
	return true
}

// uploadDir is the server-side scratch folder for one attempt's step: the
// same for every request of that attempt, so an upload resumes where it stopped.
// uploadRoot is the folder a task's attempt uploads a step into, and a
// root of it: everything a worker names is resolved inside it, so nothing
// it sends can lead outside. The caller closes the root.
func (s *workerAPI) uploadRoot(t job.Task, step string) (string, *os.Root, error) {
	dir, err := s.blobs.NamedTempDir(uploadName(t, step))
	if err != nil {
		return "", nil, err
	}
	root, err := os.OpenRoot(dir)
	return dir, root, err
}

func uploadName(t job.Task, step string) string {
	return fmt.Sprintf("w-%s-%d-%s", t.ID, t.Fence, step)
}

// uploadNameRe is uploadName's shape: task ids are "t" and hex, steps are
// pipeline.ValidStep's.
var uploadNameRe = regexp.MustCompile(`^w-(t[0-9a-f]+)-([0-9]+)-([a-z]+(?:-[0-9]+)?)$`)

// parseUploadName is uploadName backwards.
func parseUploadName(name string) (taskID string, fence int64, ok bool) {
	m := uploadNameRe.FindStringSubmatch(name)
	if m == nil || !pipeline.ValidStep(m[3]) {
		return "", 0, false
	}
	fence, err := strconv.ParseInt(m[2], 10, 64)
	return m[1], fence, err == nil
}

// IsUploadScratch reports whether a scratch entry holds a remote worker's
// upload. A server restart keeps these: the worker's lease may outlive the
// restart, and its upload goes on where it was.
func IsUploadScratch(name string) bool {
	_, _, ok := parseUploadName(name)
	return ok
}

// TendScratch removes the uploads of attempts that will never commit them
// (the worker died, failed or gave the task back; the lease moved on): at
// start and every minute, leaving alone folders written to in the last
// minute. FinalSweep does the rest at shutdown.
func (s *Server) TendScratch(ctx context.Context) error {
	every(ctx, time.Minute, func(ctx context.Context) { s.workerAPI.sweepScratch(ctx, scratchIdle) })
	return nil
}

// FinalSweep removes every upload whose attempt ended, however recent.
// Call it once the HTTP server has shut down: then no request can write.
func (s *Server) FinalSweep(ctx context.Context) { s.workerAPI.sweepScratch(ctx, 0) }

// scratchIdle is how long an upload folder must have been left alone before
// the sweep removes it.
const scratchIdle = time.Minute

func (s *workerAPI) sweepScratch(ctx context.Context, idle time.Duration) {
	names, err := s.blobs.TempNames()
	if err != nil {
		s.log.Warn("list scratch", "err", err)
		return
	}
	for _, name := range names {
		if ctx.Err() != nil {
			return
		}
		id, fence, ok := parseUploadName(name)
		if !ok || (idle > 0 && s.blobs.TempIdle(name) < idle) {
			continue // not an upload, or one that got bytes lately: left to a later sweep
		}
		t, err := s.st.GetTask(ctx, id)
		switch {
		case err == nil && t.State == job.TaskRunning && t.Fence == fence:
			continue // its attempt may still commit it
		case err != nil && !errors.Is(err, job.ErrNotFound):
			s.log.Warn("sweep scratch", "upload", name, "err", err)
			continue
		}
		// The attempt ended, so it can no longer pass the lease check. One
		// that passed it just before could still write here (the next sweep
		// takes that) or commit the folder; leaving folders that got bytes
		// in the last scratchIdle makes that a request stalled for minutes.
		if err := s.blobs.RemoveTemp(name); err != nil {
			s.log.Warn("sweep scratch", "upload", name, "err", err)
			continue
		}
		s.budget.forget(name)
		s.log.Info("removed the upload of an attempt that ended", "upload", name, "task_id", id)
	}
}

func validRel(p string) bool {
	return p != "" && blob.ValidKey("x/"+p) && !strings.HasPrefix(path.Base(p), ".partial")
}

// upload receives one output file, resumably: HEAD tells how many bytes the
// server has; PUT with Upload-Offset appends from there. When Upload-Length
// bytes are in, the SHA-256 is checked and the file takes its final name.
func (s *workerAPI) upload(w http.ResponseWriter, r *http.Request) {
	t, ok := s.leasedTask(w, r)
	if !ok {
		return
	}
	step, rel := r.PathValue("step"), r.PathValue("path")
	if !pipeline.ValidStep(step) || !validRel(rel) {
		writeError(w, http.StatusBadRequest, "bad_request", "invalid step or path")
		return
	}
	if !mayWrite(w, t, step) {
		return
	}
	// Everything below happens inside the attempt's folder, through a
	// root: nothing a worker names can lead outside it.
	dir, root, err := s.uploadRoot(t, step)
	if err != nil {
		s.internal(w, r, err)
		return
	}
	defer root.Close()
	final := filepath.FromSlash(rel)
	part := filepath.Join(".partial", final)
	have := int64(0)
	if st, err := root.Stat(final); err == nil {
		w.Header().Set(protocol.HeaderOffset, strconv.FormatInt(st.Size(), 10))
		w.Header().Set(protocol.HeaderComplete, "true")
		w.WriteHeader(http.StatusOK)
		return
	}
	if st, err := root.Stat(part); err == nil {
		have = st.Size()
	}
	if r.Method == http.MethodHead {
		w.Header().Set(protocol.HeaderOffset, strconv.FormatInt(have, 10))
		w.WriteHeader(http.StatusOK)
		return
	}
	offset, err1 := strconv.ParseInt(cmp.Or(r.Header.Get(protocol.HeaderOffset), "0"), 10, 64)
	length, err2 := strconv.ParseInt(r.Header.Get(protocol.HeaderLength), 10, 64)
	sum := r.Header.Get(protocol.HeaderSHA256)
	if err1 != nil || err2 != nil || offset < 0 || length < offset || len(sum) != 64 {
		writeError(w, http.StatusBadRequest, "bad_request", "send Upload-Offset, Upload-Length and X-Herd-SHA256")
		return
	}
	if offset != have {
		w.Header().Set(protocol.HeaderOffset, strconv.FormatInt(have, 10))
		writeError(w, http.StatusConflict, "offset_mismatch", fmt.Sprintf("the server has %d bytes of this file; resume from there", have))
		return
	}
	j, err := s.st.GetJob(r.Context(), t.JobID)
	if err != nil {
		s.internal(w, r, err)
		return
	}
	name, want := uploadName(t, step), length-offset
	if !s.budget.reserve(name, dir, want, s.stepBudget(j, step)) {
		writeError(w, http.StatusRequestEntityTooLarge, "too_large", fmt.Sprintf("the %s step of this job may upload at most %d bytes (its plan and --max-step-size say so)", step, s.stepBudget(j, step)))
		return
	}
	if err := root.MkdirAll(filepath.Dir(part), 0o750); err != nil {
		s.budget.release(name, want)
		s.internal(w, r, err)
		return
	}
	f, err := root.OpenFile(part, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o640)
	if err != nil {
		s.budget.release(name, want)
		s.internal(w, r, err)
		return
	}
	n, cerr := io.Copy(f, io.LimitReader(r.Body, length-offset))
	s.budget.release(name, want-n)
	serr := f.Sync()
	if err := f.Close(); err != nil && cerr == nil {
		cerr = err
	}
	have += n
	w.Header().Set(protocol.HeaderOffset, strconv.FormatInt(have, 10))
	if cerr != nil || serr != nil {
		writeError(w, http.StatusBadRequest, "incomplete", "the upload stopped early; resume from Upload-Offset")
		return
	}
	if have < length {
		writeJSON(w, http.StatusAccepted, map[string]int64{"offset": have})
		return
	}
	got, err := blob.RootFileSHA256(root, part)
	if err != nil {
		s.internal(w, r, err)
		return
	}
	if got != strings.ToLower(sum) {
		_ = root.Remove(part)
		s.budget.release(uploadName(t, step), have)
		writeError(w, http.StatusUnprocessableEntity, "checksum_mismatch", "the file arrived damaged (SHA-256 differs); send it again from the start")
		return
	}
	if err := root.MkdirAll(filepath.Dir(final), 0o750); err != nil {
		s.internal(w, r, err)
		return
	}
	if err := root.Rename(part, final); err != nil {
		s.internal(w, r, err)
		return
	}
	writeJSON(w, http.StatusCreated, map[string]int64{"offset": have})
}

// commitStep makes the uploaded files the job's staged step, after checking
// that every file the worker lists arrived whole.
func (s *workerAPI) commitStep(w http.ResponseWriter, r *http.Request) {
	c, ok := s.leasedClaim(w, r)
	if !ok {
		return
	}
	step := r.PathValue("step")
	var body protocol.CommitRequest
	if !s.validStep(w, step) || !mayWrite(w, c.Task, step) || !decodeJSON(w, r, &body) || !validFiles(w, body.Files) || !s.withinBudget(w, c.Job, step, sumSizes(body.Files)) {
		return
	}
	if len(body.Uploads) > 0 {
		du, ok := s.files.(pipeline.DirectUploader)
		if !ok {
			writeError(w, http.StatusBadRequest, "bad_request", "this server takes uploads through its file routes, not directly")
			return
		}
		if err := du.FinishUploads(r.Context(), c, step, body.Files, body.Uploads); err != nil {
			writeError(w, http.StatusConflict, "incomplete", "the files have not all arrived whole: "+err.Error())
			return
		}
		s.budget.forget(uploadName(c.Task, step))
		writeJSON(w, http.StatusOK, map[string]string{"status": "ok"})
		return
	}
	name := uploadName(c.Task, step)
	if _, staged, err := s.files.StagePrefix(r.Context(), c.Job.ID, step); err == nil && staged && !s.blobs.TempExists(name) {
		// Committed already: the answer to an earlier try was lost.
		writeJSON(w, http.StatusOK, map[string]string{"status": "ok"})
		return
	}
	dir, root, err := s.uploadRoot(c.Task, step)
	if err != nil {
		s.internal(w, r, err)
		return
	}
	defer root.Close()
	for _, f := range body.Files {
		st, err := root.Lstat(filepath.FromSlash(f.Path))
		if err != nil || !st.Mode().IsRegular() || st.Size() != f.Size {
			writeError(w, http.StatusConflict, "incomplete", "file "+f.Path+" has not fully arrived; upload it first")
			return
		}
	}
	if err := os.RemoveAll(filepath.Join(dir, ".partial")); err != nil {
		s.internal(w, r, err)
		return
	}
	if err := s.files.Commit(r.Context(), c, step, dir); err != nil {
		s.internal(w, r, err)
		return
	}
	s.budget.forget(name)
	writeJSON(w, http.StatusOK, map[string]string{"status": "ok"})
}

// liveSegment lists, in the job's live playlist, a segment the worker
// sent as a file of its step (with its init segment) while the encode
// runs: the same resumable, fenced upload as every file, then this. The
// commit finds the file there and it is not sent again.
func (s *workerAPI) liveSegment(w http.ResponseWriter, r *http.Request) {
	c, ok := s.leasedClaim(w, r)
	if !ok {
		return
	}
	step, name := r.PathValue("step"), r.PathValue("name")
	if !s.validStep(w, step) || !mayWrite(w, c.Task, step) {
		return
	}
	if s.live == nil {
		writeError(w, http.StatusNotFound, "not_found", "this server keeps no live playlists")
		return
	}
	if !live.IsSegment(name) {
		writeError(w, http.StatusBadRequest, "bad_request", "not a media segment's name")
		return
	}
	dir, root, err := s.uploadRoot(c.Task, step)
	if err != nil {
		s.internal(w, r, err)
		return
	}
	_ = root.Close()
	err = s.live.HandOver(r.Context(), c, step, dir, name)
	switch {
	case err == nil:
		writeJSON(w, http.StatusOK, map[string]string{"status": "ok"})
	case errors.Is(err, job.ErrLeaseLost):
		s.leaseError(w, r, err)
	case errors.Is(err, live.ErrRefused):
		writeError(w, http.StatusUnprocessableEntity, "refused", err.Error())
	case errors.Is(err, fs.ErrNotExist):
		writeError(w, http.StatusConflict, "incomplete", "upload the segment and its init segment as files of the step first")
	default:
		s.internal(w, r, err)
	}
}

// finalizeStep makes a job's verified files its outputs (server side: one
// rename). Version 2 workers ask for it on .../publish.
func (s *workerAPI) finalizeStep(w http.ResponseWriter, r *http.Request) {
	c, ok := s.leasedClaim(w, r)
	if !ok {
		return
	}
	if c.Task.Kind != job.KindFinalize {
		writeError(w, http.StatusConflict, "wrong_task", fmt.Sprintf("task %s is a %s task; only a finalize task moves the outputs into place", c.Task.ID, c.Task.Kind))
		return
	}
	if err := s.files.Finalize(r.Context(), c); err != nil {
		writeError(w, http.StatusInternalServerError, "finalize_failed", job.UserMessage(err, "moving the verified outputs into place failed"))
		return
	}
	writeJSON(w, http.StatusOK, map[string]string{"status": "ok"})
}
