package config_test

import (
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
	f, err := config.Parse("herd.yaml", []byte(minimal), known)
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
`), known)
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
		{"addr: a\naddr: b\n", "herd.yaml:2: addr is set twice"},
		{"- a\n", "herd.yaml:1: the file must be a mapping"},
		{"addr: [\n", "herd.yaml"},
	} {
		_, err := config.Parse("herd.yaml", []byte(tc.yaml), known)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%q: got %v, want %q", tc.yaml, err, tc.want)
		}
	}
}

func TestEmptyFileSetsNothing(t *testing.T) {
	f, err := config.Parse("herd.yaml", nil, known)
	if err != nil || len(f.Settings)+len(f.Watch) != 0 {
		t.Fatalf("%+v %v", f, err)
	}
}
