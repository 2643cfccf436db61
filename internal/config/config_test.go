package config_test

import (
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/herdhq/herd/internal/config"
)

var known = []string{"addr", "database", "local_workers", "import_root"}

// The minimal file from the issue must work exactly as written.
const minimal = `watch:
  - path: /srv/incoming
    profile: mp4-library
    stable_for: 10s
    after_success: move      # keep | move | delete
    publish: [movies]
publishers:
  movies:
    type: library
    path: /srv/library/Movies
`

func TestMinimalFile(t *testing.T) {
	f, err := config.Parse("herd.yaml", []byte(minimal), known, os.Environ())
	if err != nil {
		t.Fatal(err)
	}
	if len(f.Watch) != 1 || len(f.Publishers) != 1 {
		t.Fatalf("%+v", f)
	}
	w := f.Watch[0]
	if w.Path != "/srv/incoming" || w.Profile != "mp4-library" || time.Duration(w.StableFor) != 10*time.Second ||
		w.AfterSuccess != "move" || len(w.Publish) != 1 || time.Duration(w.PollInterval) != config.DefaultPollInterval {
		t.Fatalf("watch %+v", w)
	}
	if p := f.Publishers["movies"]; p.Type != "library" || p.Path != "/srv/library/Movies" {
		t.Fatalf("publisher %+v", p)
	}
}

func TestSettingsAndSecretsFromEnvironment(t *testing.T) {
	t.Setenv("PLEX_TOKEN", "s3cr3t")
	f, err := config.Parse("herd.yaml", []byte(`addr: 0.0.0.0:8080
local_workers: 2
import_root: [/srv/a, /srv/b]
publishers:
  lib: {type: library, path: /srv/lib, mode: "0640"}
  plex: {type: plex, url: "http://plex:32400", token: "${PLEX_TOKEN}", library: lib}
`), known, os.Environ())
	if err != nil {
		t.Fatal(err)
	}
	if len(f.Settings) != 3 || f.Settings[2].Key != "import_root" || strings.Join(f.Settings[2].Values, ",") != "/srv/a,/srv/b" || f.Settings[1].Line != 2 {
		t.Fatalf("settings %+v", f.Settings)
	}
	if f.Publishers["plex"].Token != "s3cr3t" {
		t.Fatal("${PLEX_TOKEN} was not expanded")
	}
}

func TestMistakesNameTheLineAndKey(t *testing.T) {
	for _, tc := range []struct{ yaml, want string }{
		{"adr: x\n", `herd.yaml:1: unknown key "adr"`},
		{"watch:\n  - path: /a\n    profile: p\n    stable_for: soon\n", `herd.yaml:2: watch: "soon" is not a duration`},
		{"watch:\n  - path: /a\n    profil: p\n", `herd.yaml:3: watch: unknown key "profil"`},
		{"watch:\n  - path: a\n    profile: p\n", "herd.yaml:2: watch: path must be absolute"},
		{"watch:\n  - path: /a\n", "herd.yaml:2: watch /a: profile is required"},
		{"watch:\n  - path: /a\n    profile: p\n    after_success: archive\n", "after_success is keep, move or delete"},
		{"watch:\n  - path: /a\n    profile: p\n    publish: [nope]\n", `publisher "nope" is not defined`},
		{"watch:\n  - {path: /a, profile: p}\n  - {path: /a/, profile: q}\n", "herd.yaml:3: watch: /a is already watched (line 2)"},
		{"publishers:\n  m:\n    type: libary\n", "herd.yaml:2: publishers.m: type must be"},
		{"publishers:\n  m:\n    type: library\n    path: /l\n    mode: rw\n", "mode \"rw\" is not an octal"},
		{"publishers:\n  p: {type: plex, url: 'http://x', token: t, library: nope}\n", "library must name a publisher of type library"},
		{"publishers:\n  p: {type: plex, url: 'http://x', library: nope}\n", "token is required"},
		{"publishers:\n  l: {type: library, path: /srv/in/lib}\nwatch:\n  - {path: /srv/in, profile: p, publish: [l]}\n", "must not be inside the watch folder"},
		{"publishers:\n  h: {type: webhook, url: 'https://x/hook'}\n", "secret is required"},
		{"publishers:\n  h: {type: webhook, url: 'https://x', secret: s, attempts: -1}\n", "attempts must be 1 or more"},
		{"publishers:\n  l: {type: library, path: /l}\n  p: {type: jellyfin, url: 'http://j', token: t, library: l, library_path: media}\n", "library_path must be absolute"},
		{"publishers:\n  l: {type: library, path: /l}\n  p: {type: plex, url: 'http://x', token: t, library: l}\nwatch:\n  - {path: /in, profile: p, publish: [p]}\n", "indexes library l, which this folder does not publish to"},
		{"subscriptions:\n  s: {url: 'ftp://x', secret: k}\n", "herd.yaml:2: subscriptions.s: url must be an http(s) address"},
		{"subscriptions:\n  s: {url: 'https://x'}\n", "subscriptions.s: secret is required"},
		{"subscriptions:\n  s: {url: 'https://x', secret: k, events: [job.done]}\n", `events are job.queued, job.succeeded, job.failed, job.canceled, job.progress, chunk.succeeded (none: job.queued, job.succeeded, job.failed, job.canceled), not "job.done"`},
		{"subscriptions:\n  s: {url: 'https://x', secret: k, event: [job.failed]}\n", `unknown key "event"`},
		{"subscriptions: [a]\n", "subscriptions: expected a mapping"},
		{"subscriptions:\n  s: {url: 'https://x', secret: k, labels: {'bad key': v}}\n", `herd.yaml:2: subscriptions.s: labels: label key "bad key"`},
		{"publishers:\n  h: {type: webhook, url: 'https://x', secret: s, events: [job.progress]}\n", `publishers.h: events are job.queued, job.succeeded, job.failed, job.canceled (none: job.succeeded, job.failed), not "job.progress"`},
		{"watch:\n  - {path: /a, profile: p, labels: {team: 'a b'}}\n", `herd.yaml:2: watch /a: labels: label team: value "a b"`},
		{"publishers:\n  l: {type: library, path: /l, events: [job.failed]}\n", "publishers.l: events is for webhooks"},
		{"addr: a\naddr: b\n", "herd.yaml:2: addr is set twice"},
		{"- a\n", "herd.yaml:1: the file must be a mapping"},
		{"addr: [\n", "herd.yaml"},
	} {
		_, err := config.Parse("herd.yaml", []byte(tc.yaml), known, os.Environ())
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%q: got %v, want %q", tc.yaml, err, tc.want)
		}
	}
}

func TestSubscriptions(t *testing.T) {
	f, err := config.Parse("herd.yaml", []byte("subscriptions:\n  site:\n    url: https://site.example/herd\n    secret: ${HOOK_SECRET}\n    events: [job.succeeded, job.failed, chunk.succeeded]\n    profiles: [web-hls]\n    labels: {team: news}\n"),
		known, []string{"HOOK_SECRET=s3cr3t"})
	if err != nil {
		t.Fatal(err)
	}
	s := f.Subscriptions["site"]
	if s.Name != "site" || s.URL != "https://site.example/herd" || s.Secret != "s3cr3t" || strings.Join(s.Events, ",") != "job.succeeded,job.failed,chunk.succeeded" || s.Profiles[0] != "web-hls" || s.Labels["team"] != "news" {
		t.Errorf("got %+v", s)
	}
}

func TestEmptyFileSetsNothing(t *testing.T) {
	f, err := config.Parse("herd.yaml", nil, known, os.Environ())
	if err != nil || len(f.Settings)+len(f.Watch) != 0 {
		t.Fatalf("%+v %v", f, err)
	}
}

func TestNotifierDefaults(t *testing.T) {
	f, err := config.Parse("herd.yaml", []byte(`publishers:
  l: {type: library, path: /srv/l}
  p: {type: plex, url: "http://plex:32400", token: t, library: l, library_path: 'D:\Movies'}
  h: {type: webhook, url: "https://example.com/hook", secret: s, attempts: 3, retry_after: 1s}
`), known, os.Environ())
	if err != nil {
		t.Fatal(err)
	}
	p, h := f.Publishers["p"], f.Publishers["h"]
	if p.Attempts != config.DefaultAttempts || time.Duration(p.RetryAfter) != config.DefaultRetryAfter || time.Duration(p.ConfirmTimeout) != config.DefaultConfirmTimeout {
		t.Fatalf("plex defaults %+v", p)
	}
	if h.Attempts != 3 || time.Duration(h.RetryAfter) != time.Second {
		t.Fatalf("webhook %+v", h)
	}
}

// Every watch folder and publisher key can come from HERD_* variables: they
// change the file's entries, add new ones, and are checked like the file.
func TestWatchAndPublishersFromEnvironment(t *testing.T) {
	t.Setenv("HERD_WATCH_0_STABLE_FOR", "3s")
	t.Setenv("HERD_WATCH_1_PATH", "/srv/tv-in")
	t.Setenv("HERD_WATCH_1_PROFILE", "mp4-library")
	t.Setenv("HERD_WATCH_1_PUBLISH", "tv, my-hook")
	t.Setenv("HERD_WATCH_1_LABELS", "team=tv, source=nas")
	t.Setenv("HERD_PUBLISHERS_MY_HOOK_EVENTS", "job.queued,job.failed")
	t.Setenv("HERD_PUBLISHERS_MOVIES_PATH", "/mnt/Movies")
	t.Setenv("HERD_PUBLISHERS_TV_TYPE", "library")
	t.Setenv("HERD_PUBLISHERS_TV_PATH", "/srv/library/TV")
	t.Setenv("HERD_PUBLISHERS_TV_KIND", "tv")
	t.Setenv("HERD_PUBLISHERS_MY_HOOK_TYPE", "webhook")
	t.Setenv("HERD_PUBLISHERS_MY_HOOK_URL", "https://example.com/hook")
	t.Setenv("HERD_PUBLISHERS_MY_HOOK_SECRET", "s3cr3t")
	t.Setenv("HERD_PUBLISHERS_MY_HOOK_RETRY_AFTER", "2s")
	t.Setenv("HERD_PUBLISHERS_TV_LIBRARY_PATH", "/mnt/TV") // the file's tv-library, not tv's library_path
	if !config.EnvDeclares(os.Environ()) {
		t.Fatal("EnvDeclares")
	}
	f, err := config.Parse("herd.yaml", []byte(minimal+"  my-hook: {type: webhook, url: 'http://old', secret: x}\n  tv-library: {type: library, path: /srv/tvl}\n"), known, os.Environ())
	if err != nil {
		t.Fatal(err)
	}
	if len(f.Watch) != 2 || time.Duration(f.Watch[0].StableFor) != 3*time.Second || f.Watch[0].Path != "/srv/incoming" {
		t.Fatalf("watch %+v", f.Watch)
	}
	if w := f.Watch[1]; w.Path != "/srv/tv-in" || strings.Join(w.Publish, ",") != "tv,my-hook" || w.AfterSuccess != config.AfterMove ||
		w.Labels["team"] != "tv" || w.Labels["source"] != "nas" || len(w.Labels) != 2 {
		t.Fatalf("watch from env %+v", w)
	}
	if f.Publishers["movies"].Path != "/mnt/Movies" || f.Publishers["tv"].Kind != "tv" || f.Publishers["tv-library"].Path != "/mnt/TV" || f.Publishers["tv"].LibraryPath != "" {
		t.Fatalf("publishers %+v", f.Publishers)
	}
	if h := f.Publishers["my-hook"]; h.URL != "https://example.com/hook" || h.Secret != "s3cr3t" || time.Duration(h.RetryAfter) != 2*time.Second ||
		strings.Join(h.Events, ",") != "job.queued,job.failed" {
		t.Fatalf("hook %+v", h)
	}
	// With no file at all (a publisher made from variables is named in lower case: my_hook).
	t.Setenv("HERD_WATCH_1_PUBLISH", "tv,my_hook")
	t.Setenv("HERD_WATCH_0_PATH", "/srv/incoming")
	t.Setenv("HERD_WATCH_0_PROFILE", "mp4-library")
	t.Setenv("HERD_WATCH_0_PUBLISH", "movies")
	t.Setenv("HERD_PUBLISHERS_MOVIES_TYPE", "library")
	if err := os.Unsetenv("HERD_PUBLISHERS_TV_LIBRARY_PATH"); err != nil {
		t.Fatal(err)
	}
	if f, err = config.Parse("environment", nil, known, os.Environ()); err != nil || len(f.Watch) != 2 || len(f.Publishers) != 3 {
		t.Fatalf("%+v %v", f, err)
	}
	// Mistakes name the variable or the key.
	t.Setenv("HERD_WATCH_1_STABLE_FOR", "soon")
	if _, err := config.Parse("environment", nil, known, os.Environ()); err == nil || !strings.Contains(err.Error(), `"soon" is not a duration`) {
		t.Fatal(err)
	}
	t.Setenv("HERD_WATCH_1_STABLE_FOR", "1s")
	t.Setenv("HERD_WATCH_1_LABELS", "team=a b")
	if _, err := config.Parse("environment", nil, known, os.Environ()); err == nil || !strings.Contains(err.Error(), `HERD_WATCH_1_LABELS: label team: value "a b"`) {
		t.Fatal(err)
	}
	t.Setenv("HERD_WATCH_1_LABELS", "team=tv")
	t.Setenv("HERD_WATCH_3_PATH", "/x")
	if _, err := config.Parse("environment", nil, known, os.Environ()); err == nil || !strings.Contains(err.Error(), "HERD_WATCH_3_PATH: there is no watch folder 2") {
		t.Fatal(err)
	}
	if err := os.Unsetenv("HERD_WATCH_3_PATH"); err != nil {
		t.Fatal(err)
	}
	t.Setenv("HERD_PUBLISHERS_TV_COLOUR", "red")
	if _, err := config.Parse("environment", nil, known, os.Environ()); err == nil || !strings.Contains(err.Error(), "HERD_PUBLISHERS_TV_COLOUR: expected HERD_PUBLISHERS_<NAME>_<KEY>") {
		t.Fatal(err)
	}
}

// FuzzParse: any bytes give a file whose every setting is usable or an
// error that names this file and a line inside it; never a panic.
func FuzzParse(f *testing.F) {
	f.Add([]byte(minimal))
	f.Add([]byte("addr: 0.0.0.0:8080\nlocal_workers: 2\nimport_root: [/srv/a, /srv/b]\n"))
	f.Add([]byte(`watch:
  - {path: /in/tv, profile: web-hls, stable_for: 1m, poll_interval: 5s, after_success: keep, notify: false, publish: [lib, plex, hook]}
publishers:
  lib: {type: library, path: /lib, kind: tv, mode: "0640", owner: media, group: media}
  plex: {type: plex, url: "http://plex:32400", token: t, library: lib, library_path: 'D:\Media', confirm_timeout: 30s}
  hook: {type: webhook, url: "https://example.com/h", secret: s, attempts: 3, retry_after: 2s}
`))
	f.Add([]byte("watch: [{path: a}]\n"))
	f.Add([]byte("a: &a [*a]\n"))
	f.Add([]byte("watch:\n  - path: /x\n    profile: p\n    stable_for: -1s\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		file, err := config.Parse("herd.yaml", data, known, os.Environ())
		if err != nil {
			var ce *config.Error
			if !errors.As(err, &ce) || ce.File != "herd.yaml" || ce.Msg == "" {
				t.Fatalf("%v: not an error that names the file", err)
			}
			// (YAML names the line after the last for errors at the end of the text)
			// Lines end as YAML's do: \n, \r\n, \r, NEL, LS or PS.
			text := strings.NewReplacer("\r\n", "\n", "\r", "\n", "\u0085", "\n", "\u2028", "\n", "\u2029", "\n").Replace(string(data))
			if lines := strings.Count(text, "\n") + 1; ce.Line < 0 || ce.Line > lines+1 {
				t.Fatalf("error on line %d of a %d-line file: %v", ce.Line, lines, err)
			}
			return
		}
		for _, s := range file.Settings {
			if !slices.Contains(known, s.Key) {
				t.Fatalf("unknown setting %q accepted", s.Key)
			}
		}
		for _, w := range file.Watch {
			if !filepath.IsAbs(w.Path) || w.Profile == "" || w.StableFor <= 0 || w.PollInterval <= 0 {
				t.Fatalf("unusable watch accepted: %+v", w)
			}
			for _, p := range w.Publish {
				if _, ok := file.Publishers[p]; !ok {
					t.Fatalf("watch %s publishes to undefined %q", w.Path, p)
				}
			}
		}
		for name, p := range file.Publishers {
			if p.Type != config.PublishLibrary && (p.Attempts < 1 || p.RetryAfter <= 0) {
				t.Fatalf("publisher %s would never deliver: %+v", name, p)
			}
		}
	})
}
