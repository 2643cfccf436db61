package api

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/tus/tusd/v2/pkg/filelocker"
	"github.com/tus/tusd/v2/pkg/filestore"
	tusd "github.com/tus/tusd/v2/pkg/handler"
	expslog "golang.org/x/exp/slog"

	"github.com/herdhq/herd/internal/ingest"
	"github.com/herdhq/herd/internal/job"
)

// Resumable uploads (the tus protocol, served by tusd) under
// /api/v1/uploads/. An upload names its file and profile in its metadata
// (filename, profile), is refused at creation when the profile is unknown or
// it is larger than the upload limit, survives dropped connections and page
// reloads (the client asks for the offset and sends the rest), and when its
// last byte arrives becomes a job before the last response goes out: that
// response carries the job's id in the Herd-Job-Id header. The bytes wait in
// DATA/uploads until then; an upload finished but not yet made into a job
// when the server died becomes one when it starts again, and one left
// unfinished longer than UploadExpiry is removed.

// UploadsPath is where the tus endpoint lives: uploads are created by a POST
// to it without the trailing slash and live at UploadsPath + id.
const UploadsPath = "/api/v1/uploads/"

// UploadExpiry is how long an unfinished upload may sit without a byte
// arriving before it is removed.
const UploadExpiry = 24 * time.Hour

// HeaderJobID names the job a finished upload became.
const HeaderJobID = "Herd-Job-Id"

type uploads struct {
	dir   string
	store filestore.FileStore
	h     *tusd.UnroutedHandler
}

func (s *Server) newUploads(dir string) (*uploads, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("uploads folder: %w", err)
	}
	u := &uploads{dir: dir, store: filestore.New(dir)}
	comp := tusd.NewStoreComposer()
	u.store.UseIn(comp)
	filelocker.New(dir).UseIn(comp)
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
	if _, err := s.sub.Profile(info.MetaData["profile"]); err != nil {
		return tusd.HTTPResponse{}, tusd.FileInfoChanges{}, tusd.NewError("ERR_UNKNOWN_PROFILE", err.Error(), http.StatusBadRequest)
	}
	// Only what herd reads: a file name and a profile.
	meta := tusd.MetaData{"filename": ingest.CleanName(info.MetaData["filename"]), "profile": info.MetaData["profile"]}
	return tusd.HTTPResponse{}, tusd.FileInfoChanges{MetaData: meta}, nil
}

// finishUpload makes a finished upload into a job, then removes its bytes.
// The same bytes with the same profile give the same job, so doing this
// twice (a crash between the two steps) makes one job.
func (s *Server) finishUpload(ctx context.Context, info tusd.FileInfo) (job.Job, error) {
	f, err := os.Open(info.Storage["Path"])
	if err != nil {
		return job.Job{}, fmt.Errorf("open upload %s: %w", info.ID, err)
	}
	defer f.Close()
	j, created, err := s.sub.Upload(ctx, info.MetaData["filename"], info.MetaData["profile"], f)
	if err != nil {
		s.log.Warn("an upload did not become a job", "upload", info.ID, "err", err)
		switch {
		case errors.Is(err, ingest.ErrTooLarge):
			return j, tusd.NewError("ERR_TOO_LARGE", err.Error(), http.StatusRequestEntityTooLarge)
		case errors.Is(err, ingest.ErrUnknownProfile):
			return j, tusd.NewError("ERR_UNKNOWN_PROFILE", err.Error(), http.StatusBadRequest)
		}
		return j, tusd.NewError("ERR_HERD", "the upload arrived but could not be stored as a job; the server's log has details, and the upload resumes when tried again", http.StatusInternalServerError)
	}
	s.log.Info("an upload became a job", "upload", info.ID, "job_id", j.ID, "created", created, "bytes", info.Size)
	if err := s.removeUpload(ctx, info.ID); err != nil {
		s.log.Warn("could not remove a finished upload", "upload", info.ID, "err", err)
	}
	return j, nil
}

func (s *Server) removeUpload(ctx context.Context, id string) error {
	up, err := s.up.store.GetUpload(ctx, id)
	if err != nil {
		return err
	}
	return s.up.store.AsTerminatableUpload(up).Terminate(ctx)
}

// RecoverUploads makes a job of every finished upload that has none yet (the
// server stopped between the last byte and the job) and removes unfinished
// uploads that saw no byte for UploadExpiry. Run it at start, before serving.
func (s *Server) RecoverUploads(ctx context.Context) error {
	if s.up == nil {
		return nil
	}
	infos, err := filepath.Glob(filepath.Join(s.up.dir, "*.info"))
	if err != nil {
		return err
	}
	for _, p := range infos {
		b, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		var info tusd.FileInfo
		if err := json.Unmarshal(b, &info); err != nil {
			s.log.Warn("removing an unreadable upload record", "file", p, "err", err)
			_ = os.Remove(p)
			continue
		}
		bin := strings.TrimSuffix(p, ".info")
		st, err := os.Stat(bin)
		switch {
		case err == nil && !info.SizeIsDeferred && st.Size() == info.Size && info.Size > 0:
			info.Offset = st.Size()
			if info.Storage == nil {
				info.Storage = map[string]string{"Path": bin}
			}
			if _, err := s.finishUpload(ctx, info); err != nil {
				s.log.Warn("a finished upload is still not a job; it stays for the next start", "upload", info.ID, "err", err)
			}
		case err != nil || time.Since(st.ModTime()) > UploadExpiry:
			s.log.Info("removing an abandoned upload", "upload", info.ID)
			_ = os.Remove(bin)
			_ = os.Remove(p)
		}
	}
	return nil
}

// EnableUploads turns on resumable uploads, keeping their bytes in dir.
func (s *Server) EnableUploads(dir string) error {
	up, err := s.newUploads(dir)
	if err != nil {
		return err
	}
	s.up = up
	return nil
}

// tus serves one tus request (after authentication).
func (s *Server) tus(fn func(*tusd.UnroutedHandler) http.HandlerFunc) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		if s.up == nil {
			writeError(w, http.StatusNotFound, "not_found", "resumable uploads are off on this server")
			return
		}
		if id := r.PathValue("id"); id != "" {
			// tusd reads the upload's id from the path with its base cut off.
			r2 := *r
			u := *r.URL
			u.Path, u.RawPath = "/"+id, ""
			r2.URL = &u
			r = &r2
		}
		s.up.h.Middleware(fn(s.up.h)).ServeHTTP(w, r)
	}
}
