// Package publishtest has stand-ins for Plex and Jellyfin (which cannot run
// here) that follow their HTTP APIs: the same paths, auth headers and JSON
// shapes. Like the real servers they index what is on disk: a refresh
// lists the files in the folder it names, mapping the server's paths to a
// local folder, so a test sees exactly what the server would.
package publishtest

import (
	"cmp"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"path"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"testing"
)

// Library is one library (Plex section, Jellyfin virtual folder).
type Library struct {
	Key    string // Plex section key, Jellyfin ItemId
	Title  string
	Type   string // Plex: movie | show; Jellyfin: movies | tvshows
	Server string // its folder as the server sees it, e.g. /data/movies
	Local  string // the same folder here
}

// Server is the state both fakes share.
type Server struct {
	*httptest.Server
	Token string

	mu        sync.Mutex
	libs      []Library
	indexed   map[string][]string // library key -> server paths, newest last
	Refreshes []string            // "KEY PATH" of every refresh, in order
	Lag       int                 // list calls after a refresh before new files show
	lag       int
	FailNext  int // answer this many refresh calls with 500
}

func newServer(token string, libs []Library) *Server {
	return &Server{Token: token, libs: libs, indexed: map[string][]string{}}
}

// scan indexes the files now in serverDir (mapped to a local folder).
func (s *Server) scan(key, serverDir string) {
	for _, l := range s.libs {
		if l.Key != key {
			continue
		}
		rel := strings.TrimPrefix(strings.TrimPrefix(serverDir, l.Server), "/")
		_ = filepath.WalkDir(filepath.Join(l.Local, filepath.FromSlash(rel)), func(p string, d os.DirEntry, err error) error {
			if err != nil || d.IsDir() || strings.HasPrefix(d.Name(), ".") {
				return nil
			}
			r, _ := filepath.Rel(l.Local, p)
			sp := path.Join(l.Server, filepath.ToSlash(r))
			for _, have := range s.indexed[key] {
				if have == sp {
					return nil
				}
			}
			s.indexed[key] = append(s.indexed[key], sp)
			return nil
		})
	}
	s.lag = s.Lag
}

// listed returns the indexed files of a library, newest first, honouring Lag.
func (s *Server) listed(key string) []string {
	if s.lag > 0 {
		s.lag--
		return nil
	}
	var out []string
	for i := len(s.indexed[key]) - 1; i >= 0; i-- {
		out = append(out, s.indexed[key][i])
	}
	return out
}

func (s *Server) fail() bool {
	if s.FailNext > 0 {
		s.FailNext--
		return true
	}
	return false
}

// Plex starts a fake Plex Media Server.
func Plex(t *testing.T, token string, libs ...Library) *Server {
	s := newServer(token, libs)
	refresh := regexp.MustCompile(`^/library/sections/([^/]+)/refresh$`)
	all := regexp.MustCompile(`^/library/sections/([^/]+)/all$`)
	s.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s.mu.Lock()
		defer s.mu.Unlock()
		// Plex takes the token as a header or a query parameter.
		if tok := cmp.Or(r.Header.Get("X-Plex-Token"), r.URL.Query().Get("X-Plex-Token")); tok != s.Token {
			http.Error(w, "<html><head><title>Unauthorized</title></head><body><h1>401 Unauthorized</h1></body></html>", http.StatusUnauthorized)
			return
		}
		json := strings.Contains(r.Header.Get("Accept"), "application/json")
		switch {
		case r.Method == http.MethodGet && r.URL.Path == "/library/sections":
			var dirs []map[string]any
			for _, l := range s.libs {
				dirs = append(dirs, map[string]any{"key": l.Key, "title": l.Title, "type": l.Type, "agent": "tv.plex.agents.movie",
					"Location": []map[string]any{{"id": len(dirs) + 1, "path": l.Server}}})
			}
			reply(w, json, map[string]any{"MediaContainer": map[string]any{"size": len(dirs), "allowSync": false, "title1": "Plex Library", "Directory": dirs}})
		case r.Method == http.MethodGet && refresh.MatchString(r.URL.Path):
			key := refresh.FindStringSubmatch(r.URL.Path)[1]
			p := r.URL.Query().Get("path")
			s.Refreshes = append(s.Refreshes, key+" "+p)
			if s.fail() {
				http.Error(w, "Internal Server Error", http.StatusInternalServerError)
				return
			}
			if !s.has(key) {
				http.NotFound(w, r)
				return
			}
			if p == "" {
				p = s.lib(key).Server
			}
			s.scan(key, p)
			w.WriteHeader(http.StatusOK) // Plex answers an empty 200 and scans in the background
		case r.Method == http.MethodGet && all.MatchString(r.URL.Path):
			key := all.FindStringSubmatch(r.URL.Path)[1]
			if !s.has(key) {
				http.NotFound(w, r)
				return
			}
			var md []map[string]any
			all := s.listed(key)
			start, _ := strconv.Atoi(r.Header.Get("X-Plex-Container-Start"))
			size, err := strconv.Atoi(r.Header.Get("X-Plex-Container-Size"))
			if err != nil {
				size = len(all)
			}
			for _, f := range page(all, start, size) {
				md = append(md, map[string]any{"ratingKey": fmt.Sprint(len(md) + 100), "title": strings.TrimSuffix(path.Base(f), path.Ext(f)),
					"Media": []map[string]any{{"id": len(md) + 1, "Part": []map[string]any{{"id": len(md) + 1, "file": f}}}}})
			}
			reply(w, json, map[string]any{"MediaContainer": map[string]any{"size": len(md), "totalSize": len(all), "offset": start, "librarySectionID": key, "Metadata": md}})
		default:
			http.NotFound(w, r)
		}
	}))
	t.Cleanup(s.Close)
	return s
}

// Jellyfin starts a fake Jellyfin server.
func Jellyfin(t *testing.T, token string, libs ...Library) *Server {
	s := newServer(token, libs)
	tokenRe := regexp.MustCompile(`Token="([^"]*)"`)
	s.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s.mu.Lock()
		defer s.mu.Unlock()
		tok := r.Header.Get("X-Emby-Token")
		if m := tokenRe.FindStringSubmatch(r.Header.Get("Authorization")); m != nil && strings.HasPrefix(r.Header.Get("Authorization"), "MediaBrowser ") {
			tok = m[1]
		}
		if tok != s.Token {
			w.WriteHeader(http.StatusUnauthorized)
			return
		}
		switch {
		case r.Method == http.MethodGet && r.URL.Path == "/Library/VirtualFolders":
			var out []map[string]any
			for _, l := range s.libs {
				out = append(out, map[string]any{"Name": l.Title, "Locations": []string{l.Server}, "CollectionType": l.Type, "ItemId": l.Key, "RefreshStatus": "Idle"})
			}
			reply(w, true, out)
		case r.Method == http.MethodPost && r.URL.Path == "/Library/Media/Updated":
			var body struct {
				Updates []struct{ Path, UpdateType string }
			}
			if err := json.NewDecoder(r.Body).Decode(&body); err != nil || len(body.Updates) == 0 {
				http.Error(w, `{"title":"One or more validation errors occurred.","status":400}`, http.StatusBadRequest)
				return
			}
			for _, u := range body.Updates {
				s.Refreshes = append(s.Refreshes, u.UpdateType+" "+u.Path)
			}
			if s.fail() {
				w.WriteHeader(http.StatusInternalServerError)
				return
			}
			for _, u := range body.Updates {
				for _, l := range s.libs {
					if strings.HasPrefix(u.Path, l.Server+"/") {
						s.scan(l.Key, path.Dir(u.Path))
					}
				}
			}
			w.WriteHeader(http.StatusNoContent)
		case r.Method == http.MethodGet && r.URL.Path == "/Items":
			q := r.URL.Query()
			parent := q.Get("parentId")
			if !s.has(parent) {
				http.Error(w, "Error processing request.", http.StatusInternalServerError)
				return
			}
			var items []map[string]any
			all := s.listed(parent)
			start, _ := strconv.Atoi(q.Get("startIndex"))
			limit, err := strconv.Atoi(q.Get("limit"))
			if err != nil {
				limit = len(all)
			}
			for _, f := range page(all, start, limit) {
				it := map[string]any{"Name": strings.TrimSuffix(path.Base(f), path.Ext(f)), "Id": fmt.Sprintf("%032x", len(items)+1), "Type": "Movie"}
				if strings.Contains(q.Get("fields"), "Path") {
					it["Path"] = f
				}
				items = append(items, it)
			}
			reply(w, true, map[string]any{"Items": items, "TotalRecordCount": len(all), "StartIndex": start})
		default:
			http.NotFound(w, r)
		}
	}))
	t.Cleanup(s.Close)
	return s
}

// page is list[start:start+size], clamped.
func page(list []string, start, size int) []string {
	start = min(max(start, 0), len(list))
	return list[start:min(start+max(size, 0), len(list))]
}

func (s *Server) has(key string) bool { return s.lib(key).Key != "" }

func (s *Server) lib(key string) Library {
	for _, l := range s.libs {
		if l.Key == key {
			return l
		}
	}
	return Library{}
}

// Indexed lists what the server has indexed in a library.
func (s *Server) Indexed(key string) []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]string(nil), s.indexed[key]...)
}

// Calls returns the refreshes so far.
func (s *Server) Calls() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]string(nil), s.Refreshes...)
}

// Set changes the fake's behaviour under its lock.
func (s *Server) Set(f func(s *Server)) {
	s.mu.Lock()
	defer s.mu.Unlock()
	f(s)
}

// reply writes v as JSON, or as Plex's default XML when JSON was not asked for.
func reply(w http.ResponseWriter, asJSON bool, v any) {
	if !asJSON {
		w.Header().Set("Content-Type", "text/xml;charset=utf-8")
		fmt.Fprint(w, `<?xml version="1.0" encoding="UTF-8"?><MediaContainer size="0"></MediaContainer>`)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(v)
}
