package safefs_test

import (
	"io/fs"
	"os"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/herdhq/herd/internal/safefs"
)

type dirs struct {
	a, b, outside string
	ra, rb        *os.Root
}

// setup makes two roots and a folder outside both; b is on another file
// system when across is true (a tmpfs: the test is skipped without root).
func setup(t *testing.T, across bool) *dirs {
	t.Helper()
	d := &dirs{a: t.TempDir(), b: t.TempDir(), outside: t.TempDir()}
	if across {
		mountTmpfs(t, d.b)
	}
	var err error
	d.ra, err = os.OpenRoot(d.a)
	require.NoError(t, err)
	t.Cleanup(func() { _ = d.ra.Close() }) // opened read-only: closing cannot lose data
	d.rb, err = os.OpenRoot(d.b)
	require.NoError(t, err)
	t.Cleanup(func() { _ = d.rb.Close() })
	put(t, filepath.Join(d.outside, "victim"), "secret")
	return d
}

func put(t *testing.T, path, content string) {
	t.Helper()
	require.NoError(t, os.MkdirAll(filepath.Dir(path), 0o755))
	require.NoError(t, os.WriteFile(path, []byte(content), 0o644))
}

func read(t *testing.T, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	require.NoError(t, err)
	return string(b)
}

func names(t *testing.T, dir string) []string {
	t.Helper()
	entries, err := os.ReadDir(dir)
	require.NoError(t, err)
	var out []string
	for _, e := range entries {
		out = append(out, e.Name())
	}
	return out
}

func TestMove(t *testing.T) {
	t.Parallel()
	for _, across := range []bool{false, true} {
		t.Run(map[bool]string{false: "one file system", true: "across file systems"}[across], func(t *testing.T) {
			t.Parallel()
			d := setup(t, across)
			put(t, filepath.Join(d.a, "in", "clip.mp4"), "clip")
			old := time.Date(2020, 1, 2, 3, 4, 5, 0, time.UTC)
			require.NoError(t, os.Chtimes(filepath.Join(d.a, "in", "clip.mp4"), old, old))
			require.NoError(t, os.MkdirAll(filepath.Join(d.b, "work"), 0o755))

			require.NoError(t, safefs.Move(d.ra, "in/clip.mp4", d.rb, "work/held.mp4"))
			require.NoFileExists(t, filepath.Join(d.a, "in", "clip.mp4"))
			require.Equal(t, "clip", read(t, filepath.Join(d.b, "work", "held.mp4")))
			st, err := os.Stat(filepath.Join(d.b, "work", "held.mp4"))
			require.NoError(t, err)
			require.True(t, st.ModTime().Equal(old), "a move keeps the modification time")
			require.Equal(t, []string{"held.mp4"}, names(t, filepath.Join(d.b, "work")), "no temporary file left")

			// Never replaces: both files stay as they were.
			put(t, filepath.Join(d.a, "in", "other.mp4"), "other")
			err = safefs.Move(d.ra, "in/other.mp4", d.rb, "work/held.mp4")
			require.ErrorIs(t, err, fs.ErrExist)
			require.Equal(t, "other", read(t, filepath.Join(d.a, "in", "other.mp4")))
			require.Equal(t, "clip", read(t, filepath.Join(d.b, "work", "held.mp4")))
		})
	}
}

// After a crash between a cross-file-system copy getting its name and the
// original's removal, moving again only removes the original.
func TestMoveAcrossFinishesAfterACrash(t *testing.T) {
	t.Parallel()
	d := setup(t, true)
	put(t, filepath.Join(d.a, "clip.mp4"), "clip")
	put(t, filepath.Join(d.b, "clip.mp4"), "clip")
	require.NoError(t, safefs.Move(d.ra, "clip.mp4", d.rb, "clip.mp4"))
	require.NoFileExists(t, filepath.Join(d.a, "clip.mp4"))
	require.Equal(t, "clip", read(t, filepath.Join(d.b, "clip.mp4")))
}

// Links in the source's name, its folders, the destination's folders and
// the destination itself never lead outside the roots.
func TestMoveAndCopyStayInside(t *testing.T) {
	t.Parallel()
	d := setup(t, false)
	require.NoError(t, os.Symlink(filepath.Join(d.outside, "victim"), filepath.Join(d.a, "link.mp4")))
	require.NoError(t, os.Symlink(d.outside, filepath.Join(d.a, "away")))
	require.NoError(t, os.Symlink(d.outside, filepath.Join(d.b, "away")))
	require.NoError(t, os.Symlink("clip.mp4", filepath.Join(d.a, "inside-link.mp4")))
	put(t, filepath.Join(d.a, "clip.mp4"), "clip")

	for _, op := range []func(*os.Root, string, *os.Root, string) error{safefs.Move, safefs.Copy} {
		require.ErrorIs(t, op(d.ra, "link.mp4", d.rb, "x"), safefs.ErrNotRegular, "a link is not followed")
		require.ErrorIs(t, op(d.ra, "inside-link.mp4", d.rb, "x"), safefs.ErrNotRegular, "not even one inside the root")
		require.Error(t, op(d.ra, "away/victim", d.rb, "x"), "a folder that leads out is not followed")
		require.Error(t, op(d.ra, "clip.mp4", d.rb, "away/clip.mp4"))
	}
	require.Equal(t, []string{"victim"}, names(t, d.outside))
	require.Equal(t, "secret", read(t, filepath.Join(d.outside, "victim")))
	require.Equal(t, "clip", read(t, filepath.Join(d.a, "clip.mp4")))
	require.Equal(t, []string{"away"}, names(t, d.b))

	old := time.Now().Add(-48 * time.Hour).Truncate(time.Second)
	require.NoError(t, os.Chtimes(filepath.Join(d.a, "clip.mp4"), old, old))
	require.NoError(t, safefs.Copy(d.ra, "clip.mp4", d.rb, "copy.mp4"))
	st, err := os.Lstat(filepath.Join(d.b, "copy.mp4"))
	require.NoError(t, err)
	require.True(t, st.ModTime().Equal(old), "a copy keeps the modification time")
	require.Equal(t, "clip", read(t, filepath.Join(d.a, "clip.mp4")), "a copy keeps the original")
	require.Equal(t, "clip", read(t, filepath.Join(d.b, "copy.mp4")))
	require.ErrorIs(t, safefs.Copy(d.ra, "clip.mp4", d.rb, "copy.mp4"), fs.ErrExist)
}

func TestWrite(t *testing.T) {
	t.Parallel()
	d := setup(t, false)
	require.NoError(t, os.Symlink(filepath.Join(d.outside, "victim"), filepath.Join(d.a, "note.txt")))
	require.ErrorIs(t, safefs.WriteNew(d.ra, "note.txt", []byte("herd's"), 0o600), fs.ErrExist)
	require.NoError(t, safefs.WriteFile(d.ra, "note.txt", []byte("herd's"), 0o600), "replaces the link itself")
	require.Equal(t, "herd's", read(t, filepath.Join(d.a, "note.txt")))
	require.Error(t, safefs.WriteFile(d.ra, "away/note.txt", []byte("herd's"), 0o600))
	require.NoError(t, os.Symlink(d.outside, filepath.Join(d.a, "away")))
	require.Error(t, safefs.WriteFile(d.ra, "away/note.txt", []byte("herd's"), 0o600))
	require.Equal(t, "secret", read(t, filepath.Join(d.outside, "victim")))
	require.Equal(t, []string{"victim"}, names(t, d.outside))
	require.ElementsMatch(t, []string{"away", "note.txt"}, names(t, d.a), "no temporary file left")
}

// Open follows links only while they stay inside, opens regular files only,
// and a FIFO does not make it wait.
func TestOpen(t *testing.T) {
	t.Parallel()
	d := setup(t, false)
	put(t, filepath.Join(d.a, "clip.mp4"), "clip")
	require.NoError(t, os.Symlink("clip.mp4", filepath.Join(d.a, "inside-link.mp4")))
	require.NoError(t, os.Symlink(filepath.Join(d.outside, "victim"), filepath.Join(d.a, "out-link.mp4")))
	require.NoError(t, syscall.Mkfifo(filepath.Join(d.a, "fifo.mp4"), 0o644))

	f, err := safefs.Open(d.ra, "inside-link.mp4")
	require.NoError(t, err)
	b := make([]byte, 4)
	_, err = f.ReadAt(b, 0)
	require.NoError(t, err)
	require.Equal(t, "clip", string(b))
	require.NoError(t, f.Close())
	_, err = safefs.Open(d.ra, "out-link.mp4")
	require.Error(t, err)
	_, err = safefs.Open(d.ra, "fifo.mp4")
	require.ErrorIs(t, err, safefs.ErrNotRegular)
	_, err = safefs.Open(d.ra, ".")
	require.ErrorIs(t, err, safefs.ErrNotRegular)
}

// Exchange swaps two names in one step, inside the root only.
func TestExchange(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	require.NoError(t, os.MkdirAll(filepath.Join(dir, "sub"), 0o755))
	require.NoError(t, os.WriteFile(filepath.Join(dir, "a"), []byte("A"), 0o644))
	require.NoError(t, os.WriteFile(filepath.Join(dir, "sub", "b"), []byte("B"), 0o644))
	r, err := os.OpenRoot(dir)
	require.NoError(t, err)
	defer r.Close()
	require.NoError(t, safefs.Exchange(r, "a", "sub/b"))
	a, err := os.ReadFile(filepath.Join(dir, "a"))
	require.NoError(t, err)
	b, err := os.ReadFile(filepath.Join(dir, "sub", "b"))
	require.NoError(t, err)
	require.Equal(t, []string{"B", "A"}, []string{string(a), string(b)})
	require.ErrorIs(t, safefs.Exchange(r, "a", "missing"), fs.ErrNotExist)
	require.Error(t, safefs.Exchange(r, "a", "../outside"), "never outside the root")
}
