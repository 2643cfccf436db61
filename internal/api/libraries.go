package api

import (
	"context"
	"errors"
	"net/http"

	"github.com/herdhq/herd/internal/job"
	"github.com/herdhq/herd/internal/jobview"
	"github.com/herdhq/herd/internal/library"
	"github.com/herdhq/herd/internal/store"
)

func (s *Server) listLibraries(w http.ResponseWriter, r *http.Request) {
	out := []jobview.LibraryView{}
	if s.libraries != nil {
		for _, name := range s.libraries.Names() {
			spec, err := s.libraries.Spec(name)
			if err != nil {
				s.internal(w, r, err)
				return
			}
			rep, err := s.libraries.Status(r.Context(), name)
			if err != nil {
				s.internal(w, r, err)
				return
			}
			v := jobview.LibraryView{Name: name, Path: spec.Path, Rule: spec.Rule.String(), Profile: spec.Profile, Action: spec.Action, Publish: spec.Publish,
				MinSavings: spec.MinSavings, MaxRunning: spec.MaxRunning, Counts: rep.Counts, Saved: rep.Saved, Bytes: rep.Bytes, Estimate: rep.Estimate}
			if spec.KeepOriginals > 0 {
				v.KeepOriginals = spec.KeepOriginals.String()
			}
			out = append(out, v)
		}
	}
	writeJSON(w, http.StatusOK, map[string]any{"libraries": out})
}

// libraryReport answers a library's status, or scans or plans it first.
func (s *Server) libraryReport(what string) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		if s.libraries == nil {
			writeError(w, http.StatusNotFound, "not_found", "this server has no libraries (declare them under libraries: in its configuration file)")
			return
		}
		run := map[string]func(context.Context, string) (library.Report, error){
			"status": s.libraries.Status, "scan": s.libraries.Scan, "plan": s.libraries.Plan, "check": s.libraries.StartCheck,
		}[what]
		rep, err := run(r.Context(), r.PathValue("name"))
		switch {
		case errors.Is(err, library.ErrUnknown):
			writeError(w, http.StatusNotFound, "not_found", err.Error())
			return
		case err != nil:
			s.internal(w, r, err)
			return
		}
		if rep.Checks[library.CheckPending] > 0 {
			// Checks no worker can run would wait forever: say so.
			proven, err := s.proven(r.Context())
			if err != nil {
				s.internal(w, r, err)
				return
			}
			if need := job.LibraryNeed(rep.Library); !proven[need] {
				rep.Waiting = waitingNote([]string{need})
			}
		}
		if state := r.URL.Query().Get("state"); state != "" {
			var files []store.LibraryFile
			for _, f := range rep.Files {
				if f.State == state {
					files = append(files, f)
				}
			}
			rep.Files = append([]store.LibraryFile{}, files...)
		}
		writeJSON(w, http.StatusOK, rep)
	}
}
