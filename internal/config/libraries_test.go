package config_test

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/herdhq/herd/internal/config"
)

// The library from the issue, as written.
func TestLibraries(t *testing.T) {
	t.Parallel()
	movies, shows := t.TempDir(), t.TempDir()
	f, err := config.Parse("herd.yaml", []byte(`libraries:
  - name: movies
    path: `+movies+`
    rule: 'video.codec != "hevc" && video.height >= 720'   # an expression over the probe facts
    profile: archive-hevc
    action: replace            # replace | alongside | publish: [NAME]
    min_savings: 10%           # keep the original when the new file is not this much smaller
    keep_originals: 14d        # originals move to a trash folder inside the library, purged after this
    window: "01:00-07:00"      # only start work inside this window (local time); optional
    max_running: 2
  - name: shows
    path: `+shows+`
    rule: |
      video.codec == "mpeg2video"
        || audio.exists(a, a.codec == "dts")
    profile: mp4-library
    action: {publish: [lib]}
publishers:
  lib: {type: library, path: /srv/lib}
`), known, os.Environ())
	require.NoError(t, err)
	require.Len(t, f.Libraries, 2)
	m := f.Libraries[0]
	require.Equal(t, "movies", m.Name)
	require.Equal(t, config.ActionReplace, m.Action.Kind)
	require.InDelta(t, 0.10, float64(m.MinSavings), 1e-9)
	require.Equal(t, 14*24*time.Hour, time.Duration(m.KeepOriginals))
	require.Equal(t, 2, m.MaxRunning)
	require.Equal(t, 4, m.RuleLine)
	s := f.Libraries[1]
	require.Equal(t, config.LibraryAction{Kind: config.ActionPublish, Publish: []string{"lib"}}, s.Action)
	require.Equal(t, config.DefaultLibraryRunning, s.MaxRunning)
	require.Equal(t, 14, s.RuleLine, "a block rule starts on the line after |")
}

// A library's mistakes are refused at load, naming the line: a rule's
// on the line of the rule where it is wrong, with the unknown field.
func TestLibraryMistakes(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	unreadable := filepath.Join(dir, "locked")
	require.NoError(t, os.Mkdir(unreadable, 0o000))
	require.NoError(t, os.Mkdir(filepath.Join(dir, "sub"), 0o755))
	lib := func(extra string) string {
		return "libraries:\n  - name: movies\n    path: " + dir + "\n    profile: archive-hevc\n" + extra
	}
	for _, tc := range []struct {
		file, want string
	}{
		{lib(`    rule: 'video.codecc != "hevc"'` + "\n"), `herd.yaml:5: libraries.movies: rule, column 6: undefined field 'codecc'`},
		{lib("    rule: |\n      video.codec != \"hevc\"\n        && vido.height >= 720\n"), `herd.yaml:7: libraries.movies: rule, column 6: undeclared reference to 'vido'`},
		{lib("    rule: video.height\n"), "herd.yaml:5: libraries.movies: rule, column 1: the rule gives int, not true or false"},
		{lib(""), "rule, column 1: the rule is empty"},
		{lib("    rule: 'true'\n    action: delete\n"), "action is replace, alongside or {publish: [NAME]}"},
		{lib("    rule: 'true'\n    action: {publish: [nope]}\n"), `"nope" is not a publisher of type library`},
		{lib("    rule: 'true'\n    min_savings: 120%\n"), "is not a percentage from 0% to 99%"},
		{lib("    rule: 'true'\n    keep_originals: fortnight\n"), "is not a duration such as 10s, 2m or 14d"},
		{lib("    rule: 'true'\n    window: 1-7\n"), "is not HH:MM-HH:MM"},
		{lib("    rule: 'true'\n    scan_every: 10s\n"), "scan_every is a minute or more"},
		{lib("    rule: 'true'\n    colour: blue\n"), `unknown key "colour"`},
		{strings.Replace(lib("    rule: 'true'\n"), dir, filepath.Join(dir, "gone"), 1), "is not a folder this server can see"},
		{strings.Replace(lib("    rule: 'true'\n"), dir, "srv/movies", 1), "path must be absolute"},
		{strings.Replace(lib("    rule: 'true'\n"), "movies", "Movies!", 1), "must be lower-case letters"},
		{lib("    rule: 'true'\n  - name: other\n    path: " + filepath.Join(dir, "sub") + "\n    profile: x\n    rule: 'true'\n"), "overlaps library movies"},
	} {
		_, err := config.Parse("herd.yaml", []byte(tc.file), known, os.Environ())
		require.ErrorContains(t, err, tc.want, tc.file)
	}
	if os.Geteuid() != 0 { // root reads any folder
		_, err := config.Parse("herd.yaml", []byte(strings.Replace(lib("    rule: 'true'\n"), dir, unreadable, 1)), known, os.Environ())
		require.ErrorContains(t, err, "cannot be read by this server")
	}
}
