package api

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/tus/tusd/v2/pkg/filelocker"
	tusd "github.com/tus/tusd/v2/pkg/handler"
	expslog "golang.org/x/exp/slog"

	"github.com/herdhq/herd/internal/blob"
	"github.com/herdhq/herd/internal/ingest"
	"github.com/herdhq/herd/internal/job"
	"github.com/herdhq/herd/internal/label"
)

// Resumable uploads (the tus protocol, served by tusd) under
// /api/v1/uploads/. An upload names its file and profile in its metadata
// (filename, profile), is refused at creation when the profile is unknown or
// it is larger than the upload limit, survives dropped connections and page
// reloads (the client asks for the offset and sends the rest), and when its
// last byte arrives becomes a job before the last response goes out: that
// response carries the job's id in the Herd-Job-Id header. The bytes wait in
// DATA/uploads until then, or, with S3 storage, in the bucket (tusd's S3
// store), where any server replica goes on with an upload another started;
// replicas on PostgreSQL share its locks (pgLocker). An upload finished but
// not yet made into a job when the server died becomes one when it starts
// again, and one left unfinished longer than UploadExpiry is removed.

// UploadsPath is where the tus endpoint lives: uploads are created by a POST
// to it without the trailing slash and live at UploadsPath + id.
const UploadsPath = "/api/v1/uploads/"

// UploadExpiry is how long an unfinished upload may sit without a byte
// arriving before it is removed.
const UploadExpiry = 24 * time.Hour

// HeaderJobID names the job a finished upload became.
const HeaderJobID = "Herd-Job-Id"

type uploads struct {
	space  uploadSpace
	store  hashStore
	locker tusd.Locker
	listen func(context.Context) // pgLocker's: hands release requests to this replica's holders
	h      *tusd.UnroutedHandler

	mu   sync.Mutex
	jobs map[string]madeJob // upload id → the job it became, for a client that missed the answer
}

type madeJob struct {
	id   string
	size int64
	at   time.Time
}

// remembered is how long a finished upload's job is named to a late HEAD.
const remembered = 6 * time.Hour

// remember records the job an upload became, here and beside the upload
// (for the other replicas), until the sweep removes it after remembered.
func (u *uploads) remember(ctx context.Context, upload, jobID string, size int64) error {
	now := time.Now()
	u.mu.Lock()
	for k, v := range u.jobs {
		if now.Sub(v.at) > remembered {
			delete(u.jobs, k)
		}
	}
	u.jobs[upload] = madeJob{id: jobID, size: size, at: now}
	u.mu.Unlock()
	return u.space.writeSide(ctx, upload, sideJob, fmt.Appendf(nil, "%s %d %d", jobID, size, now.Unix()))
}

func (u *uploads) recall(ctx context.Context, upload string) (madeJob, bool) {
	u.mu.Lock()
	m, ok := u.jobs[upload]
	u.mu.Unlock()
	if !ok {
		b, err := u.space.readSide(ctx, upload, sideJob)
		var at int64
		if err != nil {
			return m, false
		}
		if _, err := fmt.Sscanf(string(b), "%s %d %d", &m.id, &m.size, &at); err != nil || !recordedJob.MatchString(m.id) {
			return madeJob{}, false
		}
		m.at = time.Unix(at, 0)
	}
	return m, time.Since(m.at) <= remembered
}

// recordedJob is the form of a job id read back from an upload's record.
var recordedJob = regexp.MustCompile(`^[A-Za-z0-9_-]{1,64}$`)

// uploadID is the form of the ids tusd gives uploads: 32 hex digits, and
// in a bucket the multipart upload's id after a plus (AWS's use
// A-Za-z0-9._-, DigitalOcean's ~, other stores' + and =; an id with a
// slash cannot travel in tus's upload URL, tusd's own limit); nothing else
// may reach the store, whose paths and keys are built from it.
var uploadID = regexp.MustCompile(`^[0-9a-f]{32}(\+[A-Za-z0-9._~=+-]{1,512})?$`)

// UploadsConfig says where unfinished uploads wait.
type UploadsConfig struct {
	// Dir is the folder they wait in, or, with Bucket, where their parts
	// wait until they go to the bucket.
	Dir string
	// Bucket keeps them in the blob store's bucket, where every replica
	// sees them.
	Bucket *blob.S3
	// Postgres, when set, is a pool of the database through which
	// replicas share the uploads' locks (of at most UploadLockConns
	// connections, not the store's own: a request sending bytes holds
	// one); without it, locks are files in Dir (one server).
	Postgres *sql.DB
}

// UploadLockConns is how many connections a server's upload locks may hold
// at once (OpenPostgresPool): as many tus requests can work at once; more
// wait for one, and a client whose request waited too long tries again.
const UploadLockConns = 32

func (s *Server) newUploads(cfg UploadsConfig) (*uploads, error) {
	if err := os.MkdirAll(cfg.Dir, 0o700); err != nil {
		return nil, fmt.Errorf("uploads folder: %w", err)
	}
	u := &uploads{jobs: map[string]madeJob{}}
	if cfg.Bucket != nil {
		sp, err := newS3Space(cfg.Bucket, filepath.Join(cfg.Dir, "parts"))
		if err != nil {
			return nil, err
		}
		u.space = sp
	} else {
		u.space = newFileSpace(cfg.Dir)
	}
	u.store = hashStore{coreStore: u.space.core(), space: u.space}
	if cfg.Postgres != nil {
		l := newPGLocker(cfg.Postgres, s.log)
		u.locker, u.listen = l, l.listen
	} else {
		u.locker = filelocker.New(cfg.Dir)
	}
	// Only the extensions herd needs: creation (core) and termination. No
	// concatenation (its Upload-Concat header names other uploads by URL,
	// ids that would reach the file store unchecked) and no deferred length
	// (the web page and the API say the size up front).
	comp := tusd.NewStoreComposer()
	u.store.UseIn(comp)
	comp.UseLocker(u.locker)
	h, err := tusd.NewUnroutedHandler(tusd.Config{
		StoreComposer:           comp,
		BasePath:                UploadsPath,
		MaxSize:                 s.sub.MaxUpload(),
		DisableDownload:         true,
		Cors:                    &tusd.CorsConfig{Disable: true}, // same origin only
		RespectForwardedHeaders: true,
		Logger:                  expslog.New(expslog.NewTextHandler(io.Discard, nil)),
		PreUploadCreateCallback: s.checkUpload,
		PreFinishResponseCallback: func(ev tusd.HookEvent) (tusd.HTTPResponse, error) {
			j, err := s.finishUpload(ev.Context, ev.Upload)
			if err != nil {
				return tusd.HTTPResponse{}, err
			}
			return tusd.HTTPResponse{Header: tusd.HTTPHeader{HeaderJobID: j.ID, "Content-Location": "/api/v1/jobs/" + j.ID}}, nil
		},
	})
	if err != nil {
		return nil, fmt.Errorf("uploads: %w", err)
	}
	u.h = h
	return u, nil
}

// checkUpload refuses, before a byte is stored, an upload that could never become a job.
func (s *Server) checkUpload(ev tusd.HookEvent) (tusd.HTTPResponse, tusd.FileInfoChanges, error) {
	info := ev.Upload
	switch {
	case info.SizeIsDeferred:
		return tusd.HTTPResponse{}, tusd.FileInfoChanges{}, tusd.NewError("ERR_LENGTH_REQUIRED", "say the file's size (Upload-Length) when the upload starts", http.StatusBadRequest)
	case info.Size == 0:
		return tusd.HTTPResponse{}, tusd.FileInfoChanges{}, tusd.NewError("ERR_EMPTY", "the file is empty; nothing to encode", http.StatusBadRequest)
	case strings.TrimSpace(info.MetaData["filename"]) == "":
		return tusd.HTTPResponse{}, tusd.FileInfoChanges{}, tusd.NewError("ERR_NO_FILENAME", "name the file in the upload's metadata (filename)", http.StatusBadRequest)
	}
	opt, err := uploadOptions(info.MetaData)
	if err == nil {
		ctx, cancel := detached(ev.Context)
		_, err = s.sub.Check(ctx, info.MetaData["profile"], opt)
		cancel()
	}
	switch {
	case errors.Is(err, ingest.ErrUnknownProfile):
		return tusd.HTTPResponse{}, tusd.FileInfoChanges{}, tusd.NewError("ERR_UNKNOWN_PROFILE", err.Error(), http.StatusBadRequest)
	case err != nil:
		return tusd.HTTPResponse{}, tusd.FileInfoChanges{}, tusd.NewError("ERR_BAD_OPTION", err.Error(), http.StatusBadRequest)
	}
	// Only what herd reads: a file name, a profile and the job's options.
	meta := tusd.MetaData{"filename": ingest.CleanName(info.MetaData["filename"]), "profile": info.MetaData["profile"]}
	if v := strings.Join(opt.Publish, ","); v != "" {
		meta["publish"] = v
	}
	if v := strings.TrimSpace(info.MetaData["chunk_seconds"]); v != "" {
		meta["chunk_seconds"] = v
	}
	if v := label.Format(opt.Labels); v != "" {
		meta["labels"] = v
	}
	if len(opt.Subtitles) > 0 {
		meta["subtitles"] = job.FormatSubtitles(opt.Subtitles)
	}
	return tusd.HTTPResponse{}, tusd.FileInfoChanges{MetaData: meta}, nil
}

// finishUpload makes a finished upload into a job, then removes its bytes.
// The same bytes with the same profile give the same job, so doing this
// twice (a crash between the two steps) makes one job. It goes on when the
// request that brought the last byte goes away. An upload that can never
// become a job is removed; one that failed otherwise stays, to be tried
// again by the client's next HEAD or the next sweep.
func (s *Server) finishUpload(_ context.Context, info tusd.FileInfo) (job.Job, error) {
	// Not the request's context, which tusd writes to (detached): and
	// the job is made even when the request goes away.
	ctx := context.Background()
	up, err := s.up.store.GetUpload(ctx, info.ID)
	if err != nil {
		return job.Job{}, s.notYet(info.ID, err)
	}
	opt, err := uploadOptions(info.MetaData)
	if err != nil {
		return job.Job{}, tusd.NewError("ERR_BAD_OPTION", err.Error(), http.StatusBadRequest)
	}
	// The bytes in their final place (a bucket's multipart upload
	// completed), then their digest: they were hashed as they arrived, or
	// are read once now. They become the source by a link (a copy across
	// file systems, or inside the bucket).
	src, err := s.up.space.stored(ctx, up, info)
	if errors.Is(err, errPartsGone) {
		s.log.Warn("an upload's parts are gone from the bucket; it is removed", "upload", info.ID, "err", err)
		if rerr := s.removeUpload(ctx, info.ID); rerr != nil {
			s.log.Warn("could not remove an upload", "upload", info.ID, "err", rerr)
		}
		return job.Job{}, tusd.NewError("ERR_GONE", "the upload's bytes are gone from the bucket (a lifecycle rule that aborts multipart uploads?); upload the file again", http.StatusGone)
	}
	if err != nil {
		return job.Job{}, s.notYet(info.ID, err)
	}
	if src.SHA256, err = up.(*hashUpload).sum(ctx, info.Size); err != nil {
		return job.Job{}, s.notYet(info.ID, err)
	}
	j, created, err := s.sub.Adopt(ctx, src, info.MetaData["filename"], info.MetaData["profile"], opt)
	if err != nil {
		s.log.Warn("an upload did not become a job", "upload", info.ID, "err", err)
		var refuse error
		switch {
		case errors.Is(err, ingest.ErrTooLarge):
			refuse = tusd.NewError("ERR_TOO_LARGE", err.Error(), http.StatusRequestEntityTooLarge)
		case errors.Is(err, ingest.ErrUnknownProfile):
			refuse = tusd.NewError("ERR_UNKNOWN_PROFILE", err.Error(), http.StatusBadRequest)
		case errors.Is(err, ingest.ErrBadOption):
			refuse = tusd.NewError("ERR_BAD_OPTION", err.Error(), http.StatusBadRequest)
		case errors.Is(err, job.ErrConflict):
			refuse = tusd.NewError("ERR_CONFLICT", err.Error(), http.StatusConflict)
		case errors.Is(err, ingest.ErrEmpty):
			refuse = tusd.NewError("ERR_EMPTY", "the file is empty; nothing to encode", http.StatusBadRequest)
		default:
			return j, s.notYet(info.ID, err)
		}
		if rerr := s.removeUpload(ctx, info.ID); rerr != nil {
			s.log.Warn("could not remove a refused upload", "upload", info.ID, "err", rerr)
		}
		return j, refuse
	}
	s.log.Info("an upload became a job", "upload", info.ID, "job_id", j.ID, "created", created, "bytes", info.Size)
	if err := s.up.remember(ctx, info.ID, j.ID, info.Size); err != nil {
		// The job is made; only a late HEAD on another replica misses it.
		s.log.Warn("could not record the job an upload became", "upload", info.ID, "job_id", j.ID, "err", err)
	}
	if err := s.removeUpload(ctx, info.ID); err != nil {
		s.log.Warn("could not remove a finished upload", "upload", info.ID, "err", err)
	}
	return j, nil
}

// notYet is the answer for an upload that arrived whole but could not be
// made a job yet (the store or the bucket failed): it stays, and the
// client's next HEAD or the sweep tries again. The cause goes to the log,
// not to the client.
func (s *Server) notYet(id string, err error) error {
	s.log.Warn("an upload could not be made a job yet; it stays", "upload", id, "err", err)
	return tusd.NewError("ERR_HERD", "the upload arrived but could not be stored as a job yet; it stays, and asking again (HEAD) tries again", http.StatusServiceUnavailable)
}

// uploadOptions reads a job's options from an upload's metadata.
func uploadOptions(meta tusd.MetaData) (ingest.Options, error) {
	chunk, err := ingest.ParseChunkSeconds(meta["chunk_seconds"])
	if err != nil {
		return ingest.Options{}, err
	}
	labels, err := ingest.ParseLabels(meta["labels"])
	if err != nil {
		return ingest.Options{}, err
	}
	subs, err := ingest.ParseSubtitles(meta["subtitles"])
	return ingest.Options{ChunkSeconds: chunk, Publish: ingest.ParsePublish(meta["publish"]), Labels: labels, Subtitles: subs}, err
}

func (s *Server) removeUpload(ctx context.Context, id string) error {
	up, err := s.up.store.GetUpload(ctx, id)
	if err != nil {
		return err
	}
	return s.up.store.AsTerminatableUpload(up).Terminate(ctx)
}

// withUploadLock runs fn holding the upload's lock (tusd's own, so no
// request of tusd works on the upload meanwhile).
func (s *Server) withUploadLock(ctx context.Context, id string, wait time.Duration, fn func() error) error {
	l, err := s.up.locker.NewLock(id)
	if err != nil {
		return err
	}
	lctx, cancel := context.WithTimeout(ctx, wait)
	defer cancel()
	if err := l.Lock(lctx, func() {}); err != nil {
		return err
	}
	defer func() { _ = l.Unlock() }()
	return fn()
}

// errIncomplete says an upload still waits for bytes.
var errIncomplete = errors.New("upload not complete")

// complete reads an upload's record and says whether every byte is stored.
func (s *Server) complete(ctx context.Context, id string) (tusd.FileInfo, error) {
	up, err := s.up.store.GetUpload(ctx, id)
	if err != nil {
		return tusd.FileInfo{}, err
	}
	info, err := up.GetInfo(ctx)
	if err != nil {
		return info, err
	}
	if info.SizeIsDeferred || info.Size == 0 || info.Offset < info.Size {
		return info, errIncomplete
	}
	return info, nil
}

// finishIfComplete makes a job of an upload whose every byte is stored. It
// takes the upload's lock only then: asking for a lock a request holds makes
// tusd stop that request.
func (s *Server) finishIfComplete(ctx context.Context, id string, wait time.Duration) error {
	if _, err := s.complete(ctx, id); err != nil {
		return err
	}
	return s.withUploadLock(ctx, id, wait, func() error {
		info, err := s.complete(ctx, id) // again, under the lock: a request may have finished it
		if err != nil {
			return err
		}
		_, err = s.finishUpload(ctx, info)
		return err
	})
}

// TendUploads makes a job of every finished upload that has none yet (the
// server stopped between the last byte and the job, or making the job
// failed) and removes unfinished uploads that saw no byte for UploadExpiry:
// at once, then every 15 minutes, until ctx ends. Uploads a request is
// working on are left to it.
func (s *Server) TendUploads(ctx context.Context) error {
	if s.up == nil {
		return nil
	}
	if s.up.listen != nil {
		go s.up.listen(ctx)
	}
	every(ctx, 15*time.Minute, s.sweepUploads)
	return nil
}

// every runs fn now and then every d until ctx ends.
func every(ctx context.Context, d time.Duration, fn func(context.Context)) {
	for {
		fn(ctx)
		select {
		case <-ctx.Done():
			return
		case <-time.After(d):
		}
	}
}

func (s *Server) sweepUploads(ctx context.Context) { s.sweepUploadsAt(ctx, time.Now()) }

// sweepUploadsAt is one pass of the sweep as at now.
func (s *Server) sweepUploadsAt(ctx context.Context, now time.Time) {
	// The sweep waits for a lock a request holds rather than stopping it.
	ctx = quietly(ctx)
	ups, jobs, err := s.up.space.list(ctx)
	if err != nil {
		s.log.Warn("list uploads", "err", err)
		return
	}
	for _, e := range ups {
		id := e.id
		if !uploadID.MatchString(id) || ctx.Err() != nil {
			continue
		}
		// An upload that got bytes lately belongs to a request: leave it to it.
		if now.Sub(e.at) < 2*time.Minute {
			continue
		}
		err := s.finishIfComplete(ctx, id, time.Second)
		if errors.Is(err, errIncomplete) && now.Sub(e.at) >= UploadExpiry {
			err = s.withUploadLock(ctx, id, time.Second, func() error {
				s.log.Info("removing an abandoned upload", "upload", id)
				return s.removeUpload(ctx, id)
			})
		}
		if err != nil && !errors.Is(err, errIncomplete) && !errors.Is(err, tusd.ErrLockTimeout) && !errors.Is(err, tusd.ErrNotFound) {
			s.log.Warn("an upload could not be tended; it stays for the next sweep", "upload", id, "err", err)
		}
	}
	s.up.space.clean()
	for _, e := range jobs {
		if now.Sub(e.at) > remembered {
			if err := s.up.space.removeSide(ctx, e.id, sideJob); err != nil {
				s.log.Warn("could not remove an upload's job record", "upload", e.id, "err", err)
			}
		}
	}
}

// EnableUploads turns on resumable uploads, kept where cfg says.
func (s *Server) EnableUploads(cfg UploadsConfig) error {
	up, err := s.newUploads(cfg)
	if err != nil {
		return err
	}
	s.up = up
	return nil
}

// tus serves one tus request (after authentication). Ids that tusd did not
// make are refused before they reach a path; a request still sending bytes
// when the server shuts down stops at once (tusd keeps what arrived).
func (s *Server) tus(fn func(*tusd.UnroutedHandler) http.HandlerFunc) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		if s.up == nil {
			writeError(w, http.StatusNotFound, "not_found", "resumable uploads are off on this server")
			return
		}
		// Extensions herd does not offer are refused, not ignored: a client
		// that asks for them would otherwise get something it did not ask for.
		switch {
		case r.Header.Get("Upload-Concat") != "":
			w.Header().Set("Tus-Resumable", "1.0.0")
			writeError(w, http.StatusBadRequest, "bad_request", "herd does not join uploads (tus concatenation); upload the file as one upload")
			return
		case r.Header.Get("Upload-Defer-Length") != "":
			w.Header().Set("Tus-Resumable", "1.0.0")
			writeError(w, http.StatusBadRequest, "bad_request", "say the file's size (Upload-Length) when the upload starts")
			return
		}
		if id := r.PathValue("id"); id != "" {
			if !uploadID.MatchString(id) {
				writeError(w, http.StatusNotFound, "not_found", "no such upload")
				return
			}
			// tusd reads the upload's id from the path with its base cut off.
			r2 := *r
			u := *r.URL
			u.Path, u.RawPath = "/"+id, ""
			r2.URL = &u
			r = &r2
		}
		ctx, cancel := context.WithCancelCause(r.Context())
		defer cancel(nil)
		go func() {
			select {
			case <-s.done:
				cancel(tusd.ErrServerShutdown)
			case <-ctx.Done():
			}
		}()
		s.up.h.Middleware(fn(s.up.h)).ServeHTTP(w, r.WithContext(ctx))
	}
}

// tusHead answers a client asking where its upload stands. For an upload
// whose every byte arrived it first makes the job, if the last PATCH could
// not, and names it in Herd-Job-Id; for one that already became a job it
// names that job, so a client that lost the last answer still learns it.
func (s *Server) tusHead(h *tusd.UnroutedHandler) http.HandlerFunc {
	head := h.HeadFile
	return func(w http.ResponseWriter, r *http.Request) {
		id := strings.TrimPrefix(r.URL.Path, "/")
		ctx, cancel := detached(r.Context())
		defer cancel()
		m, ok := s.up.recall(ctx, id)
		if !ok {
			err := s.finishIfComplete(ctx, id, 20*time.Second)
			var te tusd.Error
			if errors.As(err, &te) && te.HTTPResponse.StatusCode >= 500 {
				w.Header().Set("Tus-Resumable", "1.0.0")
				writeError(w, te.HTTPResponse.StatusCode, "unavailable", te.Message)
				return
			}
			if err == nil { // made the job now
				m, ok = s.up.recall(ctx, id)
			}
		}
		if ok {
			h := w.Header()
			h.Set("Tus-Resumable", "1.0.0")
			h.Set("Cache-Control", "no-store")
			h.Set("Upload-Offset", strconv.FormatInt(m.size, 10))
			h.Set("Upload-Length", strconv.FormatInt(m.size, 10))
			h.Set(HeaderJobID, m.id)
			h.Set("Content-Location", "/api/v1/jobs/"+m.id)
			w.WriteHeader(http.StatusOK)
			return
		}
		head(w, r)
	}
}
