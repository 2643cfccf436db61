package watch

import (
	"cmp"
	"context"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/herdhq/herd/internal/config"
)

// escapeFixture is a watcher over one folder, whose jobs are only recorded,
// and a folder elsewhere that nothing herd does may touch.
type escapeFixture struct {
	w                 *Watcher
	f                 config.Watch
	sub               *recordingSubmitter
	in, work, outside string
}

func setup(t *testing.T, after string) *escapeFixture {
	t.Helper()
	in, work, outside := t.TempDir(), t.TempDir(), t.TempDir()
	f := config.Watch{Path: in, Profile: "mp4-library", AfterSuccess: after}
	sub := &recordingSubmitter{}
	w, err := New([]config.Watch{f}, nil, work, sub, nil, slog.New(slog.DiscardHandler))
	require.NoError(t, err)
	write(t, filepath.Join(outside, "victim.mp4"), "secret")
	return &escapeFixture{w: w, f: f, sub: sub, in: in, work: work, outside: outside}
}

func write(t *testing.T, path, content string) {
	t.Helper()
	require.NoError(t, os.MkdirAll(filepath.Dir(path), 0o755))
	require.NoError(t, os.WriteFile(path, []byte(content), 0o644))
}

func link(t *testing.T, target, path string) {
	t.Helper()
	require.NoError(t, os.MkdirAll(filepath.Dir(path), 0o755))
	require.NoError(t, os.Symlink(target, path))
}

func observe(t *testing.T, path string) observed {
	t.Helper()
	st, err := os.Stat(path)
	require.NoError(t, err)
	return observed{Size: st.Size(), MTime: st.ModTime()}
}

// tree maps each entry under dir to its content, a link to "-> target".
func tree(t *testing.T, dir string) map[string]string {
	t.Helper()
	out := map[string]string{}
	require.NoError(t, filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil || p == dir {
			return err
		}
		rel, _ := filepath.Rel(dir, p)
		switch {
		case d.Type()&fs.ModeSymlink != 0:
			target, err := os.Readlink(p)
			out[rel] = "-> " + target
			return err
		case d.IsDir():
			out[rel] = "/"
		default:
			b, err := os.ReadFile(p)
			out[rel] = string(b)
			return err
		}
		return nil
	}))
	return out
}

// items are the watcher's items, by origin.
func (fx *escapeFixture) items(t *testing.T) map[string]*Item {
	t.Helper()
	entries, err := os.ReadDir(fx.work)
	require.NoError(t, err)
	out := map[string]*Item{}
	for _, e := range entries {
		if e.IsDir() {
			it, err := fx.w.load(e.Name())
			require.NoError(t, err, "item %s", e.Name())
			out[it.Origin] = it
		}
	}
	return out
}

// only is the one item there is.
func (fx *escapeFixture) only(t *testing.T) *Item {
	t.Helper()
	items := fx.items(t)
	require.Len(t, items, 1)
	for _, it := range items {
		return it
	}
	return nil
}

// contents are the contents of every regular file under dir, sorted.
func contents(t *testing.T, dir string) []string {
	t.Helper()
	var out []string
	for _, c := range tree(t, dir) {
		if c != "/" && !strings.HasPrefix(c, "-> ") {
			out = append(out, c)
		}
	}
	slices.Sort(out)
	return out
}

func (fx *escapeFixture) submitted() []string {
	var out []string
	for _, cs := range fx.sub.read() {
		out = append(out, cs...)
	}
	slices.Sort(out)
	return out
}

// Files named like herd's own files in the work area (item.json, kept.json)
// are taken, encoded from their own bytes and moved to done/ whole; herd's
// state is not overwritten by them nor they by it. A user's file where a
// failed file's note would go stays, and names herd ignores stay ignored.
func TestOwnNamesAreKept(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	fx := setup(t, config.AfterMove)
	dropped := map[string]string{
		"item.json":     "a user's item.json",
		"ITEM.JSON":     "a user's ITEM.JSON",
		"kept.json":     "a user's kept.json",
		"sub/item.json": "another user's item.json",
		"clip.mp4":      "clip bytes",
	}
	for name, c := range dropped {
		write(t, filepath.Join(fx.in, name), c)
	}
	ignored := map[string]string{
		"movie.mp4.part":     "still downloading",
		".tmp-123":           "hidden",
		"clip.mp4.error.txt": "a note the user wrote",
	}
	for name, c := range ignored {
		write(t, filepath.Join(fx.in, name), c)
	}
	write(t, filepath.Join(fx.in, FailedDir, "clip.mp4.error.txt"), "my own notes")

	fx.w.scan(ctx, fx.f)
	fx.w.scan(ctx, fx.f) // stable_for 0: the second look takes
	items := fx.items(t)
	require.Len(t, items, len(dropped), "each dropped file is one item")
	for origin, it := range items {
		require.Equal(t, stateQueued, it.State, "%s: herd's own state is intact", origin)
		require.Equal(t, filepath.Base(origin), it.Name, "the original name is kept")
	}
	var want []string
	for _, c := range dropped {
		want = append(want, c)
	}
	slices.Sort(want)
	require.Equal(t, want, fx.submitted(), "each job got its file's own bytes")
	for name, c := range ignored {
		got, err := os.ReadFile(filepath.Join(fx.in, name))
		require.NoError(t, err, "%s is ignored and stays", name)
		require.Equal(t, c, string(got))
	}

	for origin, it := range items {
		if origin == "clip.mp4" {
			it.JobID, it.Error = "j_1", "it is not a video"
			fx.w.fail(fx.f, it)
			continue
		}
		fx.w.finish(fx.f, it)
	}
	for name, c := range dropped {
		dir := DoneDir
		if name == "clip.mp4" {
			dir = FailedDir
		}
		got, err := os.ReadFile(filepath.Join(fx.in, dir, name))
		if name == "clip.mp4" && err != nil {
			// The note's name was taken, so the file and its note were numbered.
			got, err = os.ReadFile(filepath.Join(fx.in, dir, "clip (1).mp4"))
		}
		require.NoError(t, err, "%s", name)
		require.Equal(t, c, string(got), "%s arrived whole", name)
	}
	note, err := os.ReadFile(filepath.Join(fx.in, FailedDir, "clip.mp4.error.txt"))
	require.NoError(t, err)
	require.Equal(t, "my own notes", string(note), "a user's file is never overwritten by a note")
	var notes []string
	for rel, c := range tree(t, filepath.Join(fx.in, FailedDir)) {
		if strings.HasSuffix(rel, ".error.txt") && strings.Contains(c, "herd could not process clip.mp4") {
			notes = append(notes, rel)
		}
	}
	require.Len(t, notes, 1, "the note is written beside the failed file")
	require.Len(t, fx.items(t), 1, "only the failed item waits")
}

// A symbolic link in each place herd moves or writes, and a folder swapped
// for one between scan and move: nothing outside the watch folder is read,
// moved or written, and nothing inside it is lost.
func TestLinksNeverLeadOut(t *testing.T) {
	t.Parallel()
	ctx := context.Background()

	// take brings clip (at rel) in, as the scan would.
	take := func(t *testing.T, fx *escapeFixture, rel string) *Item {
		t.Helper()
		write(t, filepath.Join(fx.in, rel), "clip bytes")
		require.NoError(t, fx.w.take(ctx, fx.f, filepath.Join(fx.in, rel), observe(t, filepath.Join(fx.in, rel))))
		return fx.only(t)
	}
	// failIt fails the item's job.
	failIt := func(fx *escapeFixture, it *Item) {
		it.JobID, it.Error = "j_1", "it is not a video"
		fx.w.fail(fx.f, it)
	}
	// waiting checks the file is still in the work area, whole.
	waiting := func(t *testing.T, fx *escapeFixture, it *Item) {
		t.Helper()
		got, err := os.ReadFile(filepath.Join(fx.work, it.ID, it.Name))
		require.NoError(t, err, "the file waits in the work area")
		require.Equal(t, "clip bytes", string(got))
	}

	for _, tc := range []struct {
		name  string
		after string // after_success; move if empty
		run   func(t *testing.T, fx *escapeFixture)
	}{
		{"done is a link", "", func(t *testing.T, fx *escapeFixture) {
			link(t, fx.outside, filepath.Join(fx.in, DoneDir))
			it := take(t, fx, "clip.mp4")
			require.False(t, fx.w.settle(fx.f, it))
			waiting(t, fx, it)
			// Once done/ is a folder again, the file gets there.
			require.NoError(t, os.Remove(filepath.Join(fx.in, DoneDir)))
			it = fx.only(t)
			require.True(t, fx.w.settle(fx.f, it))
			require.Equal(t, map[string]string{"done": "/", "done/clip.mp4": "clip bytes"}, tree(t, fx.in))
		}},
		{"a folder in done is a link", "", func(t *testing.T, fx *escapeFixture) {
			link(t, fx.outside, filepath.Join(fx.in, DoneDir, "show"))
			it := take(t, fx, "show/ep1.mp4")
			require.False(t, fx.w.settle(fx.f, it))
			waiting(t, fx, it)
		}},
		{"the name in done is a link", "", func(t *testing.T, fx *escapeFixture) {
			link(t, filepath.Join(fx.outside, "victim.mp4"), filepath.Join(fx.in, DoneDir, "clip.mp4"))
			it := take(t, fx, "clip.mp4")
			require.True(t, fx.w.settle(fx.f, it))
			got := tree(t, filepath.Join(fx.in, DoneDir))
			require.Equal(t, "-> "+filepath.Join(fx.outside, "victim.mp4"), got["clip.mp4"], "the link stays")
			require.Equal(t, "clip bytes", got["clip (1).mp4"])
		}},
		{"failed is a link", "", func(t *testing.T, fx *escapeFixture) {
			link(t, fx.outside, filepath.Join(fx.in, FailedDir))
			it := take(t, fx, "clip.mp4")
			failIt(fx, it)
			waiting(t, fx, it)
			require.NoError(t, os.Remove(filepath.Join(fx.in, FailedDir)))
			failIt(fx, fx.only(t))
			got := tree(t, fx.in)
			require.Equal(t, "clip bytes", got["failed/clip.mp4"])
			require.Contains(t, got["failed/clip.mp4.error.txt"], "herd could not process clip.mp4")
		}},
		{"a folder in failed is a link", "", func(t *testing.T, fx *escapeFixture) {
			link(t, fx.outside, filepath.Join(fx.in, FailedDir, "show"))
			it := take(t, fx, "show/ep1.mp4")
			failIt(fx, it)
			waiting(t, fx, it)
		}},
		{"the note's name is a link", "", func(t *testing.T, fx *escapeFixture) {
			note := filepath.Join(fx.in, FailedDir, "clip.mp4.error.txt")
			link(t, filepath.Join(fx.outside, "victim.mp4"), note)
			it := take(t, fx, "clip.mp4")
			failIt(fx, it)
			got := tree(t, filepath.Join(fx.in, FailedDir))
			require.Equal(t, "-> "+filepath.Join(fx.outside, "victim.mp4"), got["clip.mp4.error.txt"], "the user's link stays")
			require.Contains(t, contents(t, filepath.Join(fx.in, FailedDir)), "clip bytes")
		}},
		{"the file becomes a link before the move", "", func(t *testing.T, fx *escapeFixture) {
			p := filepath.Join(fx.in, "clip.mp4")
			write(t, p, "clip bytes")
			seen := observe(t, p)
			require.NoError(t, os.Remove(p))
			link(t, filepath.Join(fx.outside, "victim.mp4"), p)
			_ = fx.w.take(ctx, fx.f, p, seen)
			require.Equal(t, "-> "+filepath.Join(fx.outside, "victim.mp4"), tree(t, fx.in)["clip.mp4"], "the link stays where it was")
		}},
		{"the file becomes a link before the copy", config.AfterKeep, func(t *testing.T, fx *escapeFixture) {
			p := filepath.Join(fx.in, "clip.mp4")
			write(t, p, "clip bytes")
			seen := observe(t, p)
			require.NoError(t, os.Remove(p))
			link(t, filepath.Join(fx.outside, "victim.mp4"), p)
			_ = fx.w.take(ctx, fx.f, p, seen)
			require.Equal(t, "-> "+filepath.Join(fx.outside, "victim.mp4"), tree(t, fx.in)["clip.mp4"])
		}},
		{"a folder is swapped for a link between scan and move", "", func(t *testing.T, fx *escapeFixture) {
			p := filepath.Join(fx.in, "show", "victim.mp4") // outside/victim.mp4 once show leads there
			write(t, p, "clip bytes")
			fx.w.scan(ctx, fx.f) // seen once: the next scan would take it
			seen := observe(t, p)
			require.NoError(t, os.Rename(filepath.Join(fx.in, "show"), filepath.Join(fx.in, "show.old")))
			link(t, fx.outside, filepath.Join(fx.in, "show"))
			_ = fx.w.take(ctx, fx.f, p, seen)
			fx.w.scan(ctx, fx.f)
			fx.w.scan(ctx, fx.f) // and the scan does not go through the link either
			require.Contains(t, append(contents(t, fx.in), contents(t, fx.work)...), "clip bytes", "the file is not lost")
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			fx := setup(t, cmp.Or(tc.after, config.AfterMove))
			before := tree(t, fx.outside)
			tc.run(t, fx)
			require.Equal(t, before, tree(t, fx.outside), "nothing outside the watch folder changed")
			for _, c := range fx.submitted() {
				require.Equal(t, "clip bytes", c, "nothing from outside the watch folder was read")
			}
		})
	}
}
