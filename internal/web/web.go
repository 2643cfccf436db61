// Package web is herd's browser UI: server-rendered page shells at stable
// addresses (/login, /, /upload, /jobs, /jobs/{id}, /workers) whose scripts
// fill them from the API's live views (Server-Sent Events), upload with tus
// and play with hls.js. A job's page comes with its first state (state,
// progress, chunk strip) already rendered, so it reads without a script.
// Everything it serves is embedded in the binary; the browser libraries
// are pinned npm builds committed under assets/vendor (`make web-vendor`).
// It decides nothing itself: sign-in, sessions and CSRF live in package
// api, like every other check of who may do what.
package web

import (
	"bytes"
	"crypto/sha256"
	"embed"
	"encoding/hex"
	"errors"
	"html/template"
	"io/fs"
	"log/slog"
	"net/http"
	"net/url"
	"path"
	"strings"
	"time"

	"github.com/herdhq/herd/internal/api"
	"github.com/herdhq/herd/internal/profile"
)

//go:embed assets templates
var files embed.FS

// Deps are what the UI needs.
type Deps struct {
	API      *api.Server
	Profiles *profile.Set
	// DefaultProfile is the profile the upload page preselects; empty or
	// not in Profiles: web-hls, whose outputs every browser plays, where
	// the set has it, else the first by name.
	DefaultProfile string
	Version        string
	Log            *slog.Logger
	// Publishers are the configured publishers' names, which an upload
	// may be delivered to.
	Publishers []string
	// FrameOrigins are the sites that may put a playback link's page in an
	// iframe (the server's --cors-origin); none: no site may.
	FrameOrigins []string
}

// UI serves the pages and their assets.
type UI struct {
	d      Deps
	pages  map[string]*template.Template
	assets map[string]asset
}

type asset struct {
	body  []byte
	etag  string
	ctype string
}

// page is what every page template gets.
type page struct {
	Title    string
	Page     string // body data-page: which script part runs
	CSRF     string
	Version  string
	Profiles []*profile.Profile
	// DefaultProfile is the profile the upload page preselects.
	DefaultProfile string
	Publishers     []string // the upload page's delivery choices
	JobID          string
	Job            *jobPage // the job page's first state; nil: its script fills it
	Error          string
	Next           string
}

// New parses the templates and loads the assets.
func New(d Deps) (*UI, error) {
	u := &UI{d: d, pages: map[string]*template.Template{}, assets: map[string]asset{}}
	layout, err := template.ParseFS(files, "templates/layout.html")
	if err != nil {
		return nil, err
	}
	names, err := fs.Glob(files, "templates/*.html")
	if err != nil {
		return nil, err
	}
	for _, n := range names {
		if n == "templates/layout.html" {
			continue
		}
		t, err := template.Must(layout.Clone()).ParseFS(files, n)
		if err != nil {
			return nil, err
		}
		u.pages[strings.TrimSuffix(path.Base(n), ".html")] = t
	}
	err = fs.WalkDir(files, "assets", func(p string, e fs.DirEntry, err error) error {
		if err != nil || e.IsDir() {
			return err
		}
		b, err := files.ReadFile(p)
		if err != nil {
			return err
		}
		sum := sha256.Sum256(b)
		ct := map[string]string{".js": "text/javascript; charset=utf-8", ".css": "text/css; charset=utf-8", ".svg": "image/svg+xml"}[path.Ext(p)]
		if ct == "" {
			ct = "text/plain; charset=utf-8"
		}
		u.assets["/"+p] = asset{body: b, etag: `"` + hex.EncodeToString(sum[:8]) + `"`, ctype: ct}
		return nil
	})
	return u, err
}

// Handler serves the UI; the API and health routes are not its.
func (u *UI) Handler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /assets/", u.serveAsset)
	mux.HandleFunc("GET /login", u.loginPage)
	mux.HandleFunc("POST /login", u.login)
	mux.HandleFunc("POST /logout", u.logout)
	mux.HandleFunc("GET /{$}", u.signedIn("dashboard", "Dashboard"))
	mux.HandleFunc("GET /upload", u.signedIn("upload", "Upload"))
	mux.HandleFunc("GET /jobs", u.signedIn("jobs", "Jobs"))
	mux.HandleFunc("GET /jobs/{id}", u.jobPageHandler)
	mux.HandleFunc("GET /workers", u.signedIn("workers", "Workers"))
	mux.HandleFunc("GET /campaigns", u.signedIn("campaigns", "Campaigns"))
	mux.HandleFunc("GET /libraries", u.signedIn("libraries", "Libraries"))
	mux.HandleFunc("GET "+api.LinkPrefix+"{token}/{job}/{$}", u.embed)
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		u.render(w, r, http.StatusNotFound, "notfound", page{Title: "Not found"})
	})
	return securityHeaders(mux)
}

// securityHeaders keeps pages to their own origin: no inline script, no
// framing, no sniffing.
func securityHeaders(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h := w.Header()
		h.Set("Content-Security-Policy", "default-src 'self'; img-src 'self' data: blob:; media-src 'self' blob:; "+
			"style-src 'self'; script-src 'self'; connect-src 'self'; object-src 'none'; base-uri 'none'; frame-ancestors 'none'; form-action 'self'")
		h.Set("X-Content-Type-Options", "nosniff")
		h.Set("Referrer-Policy", "same-origin")
		h.Set("X-Frame-Options", "DENY")
		next.ServeHTTP(w, r)
	})
}

func (u *UI) serveAsset(w http.ResponseWriter, r *http.Request) {
	a, ok := u.assets[r.URL.Path]
	if !ok {
		http.NotFound(w, r)
		return
	}
	w.Header().Set("Content-Type", a.ctype)
	w.Header().Set("ETag", a.etag)
	w.Header().Set("Cache-Control", "no-cache") // revalidate: the ETag makes that cheap
	http.ServeContent(w, r, "", time.Time{}, bytes.NewReader(a.body))
}

// signedIn serves a page to a signed-in browser and sends others to /login.
func (u *UI) signedIn(name, title string) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		csrf, ok := u.d.API.Session(r)
		if !ok {
			u.toLogin(w, r)
			return
		}
		p := page{Title: title, Page: name, CSRF: csrf, Profiles: u.d.Profiles.All(), DefaultProfile: u.defaultProfile(), Publishers: u.d.Publishers}
		u.render(w, r, http.StatusOK, name, p)
	}
}

// defaultProfile is the profile a new upload gets unless the user picks
// another: the configured one, else web-hls, else the first by name. The
// first by name is archive-hevc, whose Matroska HEVC no browser plays.
func (u *UI) defaultProfile() string {
	for _, name := range []string{u.d.DefaultProfile, "web-hls"} {
		if _, ok := u.d.Profiles.Get(name); ok && name != "" {
			return name
		}
	}
	if all := u.d.Profiles.All(); len(all) > 0 {
		return all[0].Name
	}
	return ""
}

// toLogin sends a browser without a session to sign in, and back here after.
func (u *UI) toLogin(w http.ResponseWriter, r *http.Request) {
	http.Redirect(w, r, "/login?next="+url.QueryEscape(r.URL.RequestURI()), http.StatusSeeOther)
}

func (u *UI) render(w http.ResponseWriter, r *http.Request, status int, name string, p page) {
	t, ok := u.pages[name]
	if !ok {
		http.Error(w, "no such page", http.StatusInternalServerError)
		return
	}
	p.Version = u.d.Version
	if p.Page == "" {
		p.Page = name
	}
	u.write(w, status, t, name, "layout", p)
}

// write answers with page name's template tmpl run on data, never cached.
func (u *UI) write(w http.ResponseWriter, status int, t *template.Template, name, tmpl string, data any) {
	var b bytes.Buffer
	if err := t.ExecuteTemplate(&b, tmpl, data); err != nil {
		u.d.Log.Error("render page", "page", name, "err", err)
		http.Error(w, "the page failed to render; the server's log has details", http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	_, _ = w.Write(b.Bytes())
}

// localNext keeps a post-sign-in redirect on this site: a path on this
// host, rebuilt from its parsed parts (browsers drop tabs and newlines and
// read a backslash as a slash, so "/\t/evil.example" would leave it).
func localNext(next string) string {
	for _, c := range next {
		if c < 0x20 || c == 0x7f || c == '\\' {
			return "/"
		}
	}
	u, err := url.Parse(next)
	if err != nil || u.Scheme != "" || u.Host != "" || u.User != nil || !strings.HasPrefix(u.Path, "/") || strings.HasPrefix(u.Path, "//") {
		return "/"
	}
	out := u.EscapedPath()
	if u.RawQuery != "" {
		out += "?" + u.RawQuery
	}
	return out
}

func (u *UI) loginPage(w http.ResponseWriter, r *http.Request) {
	next := localNext(r.URL.Query().Get("next"))
	if _, ok := u.d.API.Session(r); ok {
		http.Redirect(w, r, next, http.StatusSeeOther) //nolint:gosec // G710: localNext keeps only a path on this server
		return
	}
	u.render(w, r, http.StatusOK, "login", page{Title: "Sign in", Next: next})
}

// login trades the admin key for a session. A sign-in form posted from
// another site is refused (login CSRF): browsers name the page's origin.
func (u *UI) login(w http.ResponseWriter, r *http.Request) {
	r.Body = http.MaxBytesReader(w, r.Body, 16<<10)
	next := localNext(r.PostFormValue("next"))
	if !sameOrigin(r) {
		u.render(w, r, http.StatusForbidden, "login", page{Title: "Sign in", Next: next, Error: "This sign-in came from another site and was refused. Open /login on this server and sign in there."})
		return
	}
	err := u.d.API.SignIn(w, r, r.PostFormValue("key"))
	switch {
	case errors.Is(err, api.ErrBadKey):
		u.render(w, r, http.StatusUnauthorized, "login", page{Title: "Sign in", Next: next,
			Error: "That key is not a valid admin key. Use the key herd printed when it first started (also in DATA/admin.token), or a new one from `herd token create`."})
		return
	case err != nil:
		u.d.Log.Error("sign in", "err", err)
		u.render(w, r, http.StatusInternalServerError, "login", page{Title: "Sign in", Next: next, Error: "Signing in failed on the server; its log has details."})
		return
	}
	http.Redirect(w, r, next, http.StatusSeeOther) //nolint:gosec // G710: localNext keeps only a path on this server
}

func (u *UI) logout(w http.ResponseWriter, r *http.Request) {
	r.Body = http.MaxBytesReader(w, r.Body, 16<<10)
	if !sameOrigin(r) {
		http.Error(w, "sign out from herd's own page", http.StatusForbidden)
		return
	}
	if _, ok := u.d.API.Session(r); ok && !api.CheckCSRF(r) {
		http.Error(w, "sign out from herd's own page", http.StatusForbidden)
		return
	}
	if err := u.d.API.SignOut(w, r); err != nil {
		u.d.Log.Error("sign out", "err", err)
	}
	http.Redirect(w, r, "/login", http.StatusSeeOther)
}

// sameOrigin reports whether a form post came from this site (or from a
// client that names no origin, which no browser form is).
func sameOrigin(r *http.Request) bool {
	if site := r.Header.Get("Sec-Fetch-Site"); site != "" && site != "same-origin" && site != "none" {
		return false
	}
	o := r.Header.Get("Origin")
	if o == "" {
		return true
	}
	ou, err := url.Parse(o) // "null" (an opaque origin) has no host: refused
	return err == nil && ou.Host == r.Host
}
