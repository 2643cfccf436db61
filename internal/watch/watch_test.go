package watch_test

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/herdhq/herd/internal/config"
	"github.com/herdhq/herd/internal/server"
	"github.com/herdhq/herd/internal/server/servertest"
	"github.com/herdhq/herd/internal/testenv"
	"github.com/herdhq/herd/internal/watch"
)

// clip makes a distinct short clip (the tone's frequency differs).
func clip(t *testing.T, path string, freq int) {
	t.Helper()
	require.NoError(t, testenv.ToneClip(path, freq))
}

type farm struct {
	data, in, lib, addr string
}

// serve runs herd serve in-process with one watch folder publishing to a library.
func serve(t *testing.T, in, lib string, mod func(*config.Watch)) *farm {
	t.Helper()
	return serveWith(t, in, lib, mod, nil)
}

// serveWith also declares more publishers (the folder's publish list names them).
func serveWith(t *testing.T, in, lib string, mod func(*config.Watch), more map[string]config.Publisher) *farm {
	t.Helper()
	pubs := map[string]config.Publisher{"movies": {Name: "movies", Type: config.PublishLibrary, Path: lib, Mode: "0640"}}
	for name, p := range more {
		p.Name = name
		pubs[name] = p
	}
	data := t.TempDir()
	w := config.Watch{Path: in, Profile: "mp4-library", StableFor: config.Duration(700 * time.Millisecond),
		PollInterval: config.Duration(200 * time.Millisecond), AfterSuccess: config.AfterMove, Publish: []string{"movies"}}
	if mod != nil {
		mod(&w)
	}
	addr := servertest.Start(t, server.Config{
		Data: data, Addr: "127.0.0.1:0", LocalWorkers: 2, Grace: time.Second,
		Watch: []config.Watch{w}, Publishers: pubs,
	})
	return &farm{data: data, in: in, lib: lib, addr: addr}
}

func (f *farm) items(t *testing.T) []string {
	entries, err := os.ReadDir(filepath.Join(f.data, "watch"))
	require.NoError(t, err)
	var out []string
	for _, e := range entries {
		if e.IsDir() {
			out = append(out, e.Name())
		}
	}
	return out
}

func files(t *testing.T, root string) []string {
	var out []string
	_ = filepath.WalkDir(root, func(p string, d os.DirEntry, err error) error { // the callback skips what it cannot read, so the walk returns nil
		if err == nil && !d.IsDir() {
			rel, _ := filepath.Rel(root, p)
			out = append(out, rel)
		}
		return nil
	})
	return out
}

func eventually(t *testing.T, within time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(within)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting: %s", what)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func TestIgnored(t *testing.T) {
	for name, want := range map[string]bool{
		"movie.mkv": false, "movie.mkv.part": true, "x.crdownload": true, ".hidden.mp4": true, "._movie.mp4": true,
		"movie.TMP": true, "a.mp4.error.txt": true, "Season 1.mkv": false,
	} {
		require.Equal(t, want, watch.Ignored(name), name)
	}
}

// A file written slowly is not taken until it stops growing; then it is
// encoded, published into the library under its parsed name, and moved to done/.
func TestSlowFileWaitsThenPublishes(t *testing.T) {
	in, lib := t.TempDir(), t.TempDir()
	f := serve(t, in, lib, nil)
	src := filepath.Join(t.TempDir(), "src.mp4")
	clip(t, src, 440)
	data, err := os.ReadFile(src)
	require.NoError(t, err)

	dst := filepath.Join(in, "The.Test.Movie.2021.1080p.mp4")
	out, err := os.Create(dst)
	require.NoError(t, err)
	chunk := len(data)/6 + 1
	for i := 0; i < len(data); i += chunk {
		_, err := out.Write(data[i:min(i+chunk, len(data))])
		require.NoError(t, err)
		time.Sleep(400 * time.Millisecond) // < stable_for between writes
		_, err = os.Stat(dst)
		require.NoError(t, err, "taken while still being written")
	}
	require.NoError(t, out.Close())

	want := filepath.Join(lib, "The Test Movie (2021)", "The Test Movie (2021).mp4")
	eventually(t, 90*time.Second, "published into the library", func() bool { _, err := os.Stat(want); return err == nil })
	eventually(t, 30*time.Second, "the original moved to done/", func() bool {
		_, err := os.Stat(filepath.Join(in, "done", "The.Test.Movie.2021.1080p.mp4"))
		return err == nil
	})
	st, err := os.Stat(want)
	require.NoError(t, err)
	require.Equal(t, os.FileMode(0o640), st.Mode().Perm())
	require.NoFileExists(t, dst)
	eventually(t, 10*time.Second, "the work area is empty", func() bool { return len(f.items(t)) == 0 })
	for _, name := range files(t, lib) {
		require.False(t, strings.Contains(name, ".herd-"), "no temporary file left in the library: %s", name)
	}
}

// Twenty files dropped at once are each done exactly once; the same content
// dropped again is recognised and not queued again; a file that is not
// media goes to failed/ with a note saying why. Polling only.
func TestManyFilesOnceDuplicatesAndFailures(t *testing.T) {
	in, lib := t.TempDir(), t.TempDir()
	off := false
	f := serve(t, in, lib, func(w *config.Watch) { w.Notify = &off })
	stage := t.TempDir()
	const n = 20
	for i := range n {
		clip(t, filepath.Join(stage, fmt.Sprintf("Clip %02d (2020).mp4", i)), 300+40*i)
	}
	require.NoError(t, os.WriteFile(filepath.Join(stage, "notes.mp4"), []byte("this is not a video"), 0o644))
	for _, name := range files(t, stage) {
		require.NoError(t, os.Rename(filepath.Join(stage, name), filepath.Join(in, name)))
	}
	eventually(t, 4*time.Minute, "every file done", func() bool { return len(files(t, filepath.Join(in, "done"))) == n })
	eventually(t, 30*time.Second, "the bad file failed", func() bool {
		_, err := os.Stat(filepath.Join(in, "failed", "notes.mp4.error.txt"))
		return err == nil
	})
	note, err := os.ReadFile(filepath.Join(in, "failed", "notes.mp4.error.txt"))
	require.NoError(t, err)
	require.Contains(t, string(note), "herd retry")
	require.FileExists(t, filepath.Join(in, "failed", "notes.mp4"))
	require.Len(t, files(t, lib), n, "each file published exactly once")

	// The same bytes under another name: recognised, moved to done/, not published again.
	again := filepath.Join(in, "Copy Of Clip 03.mp4")
	require.NoError(t, os.Rename(filepath.Join(in, "done", "Clip 03 (2020).mp4"), again))
	eventually(t, 30*time.Second, "the duplicate moved to done/", func() bool {
		_, err := os.Stat(filepath.Join(in, "done", "Copy Of Clip 03.mp4"))
		return err == nil
	})
	require.Len(t, files(t, lib), n, "a duplicate is not published again")
	eventually(t, 10*time.Second, "only the failed item waits", func() bool { return len(f.items(t)) == 1 })
}

// A watch folder on another file system: the file is copied, checked and
// removed, not renamed. The test mounts a tmpfs (it needs root).
func TestCrossFilesystemMove(t *testing.T) {
	in := t.TempDir()
	if err := syscall.Mount("tmpfs", in, "tmpfs", 0, "size=64m"); err != nil {
		t.Skipf("cannot mount a tmpfs here (%v); the cross-file-system move is not tested", err)
	}
	t.Cleanup(func() { _ = syscall.Unmount(in, syscall.MNT_DETACH) })
	lib := t.TempDir()
	serve(t, in, lib, nil)
	clip(t, filepath.Join(in, "Far Away (1999).mp4"), 500)
	eventually(t, 90*time.Second, "published", func() bool {
		_, err := os.Stat(filepath.Join(lib, "Far Away (1999)", "Far Away (1999).mp4"))
		return err == nil
	})
	eventually(t, 30*time.Second, "moved to done/", func() bool {
		_, err := os.Stat(filepath.Join(in, "done", "Far Away (1999).mp4"))
		return err == nil
	})
}

// Publishing again over a library file that is hard-linked elsewhere
// replaces the directory entry; the other link keeps its content.
func TestRepublishLeavesHardLinksIntact(t *testing.T) {
	in, lib := t.TempDir(), t.TempDir()
	serve(t, in, lib, func(w *config.Watch) { w.AfterSuccess = config.AfterDelete })
	target := filepath.Join(lib, "Linked (2001)", "Linked (2001).mp4")
	require.NoError(t, os.MkdirAll(filepath.Dir(target), 0o755))
	require.NoError(t, os.WriteFile(target, []byte("the old file"), 0o644))
	other := filepath.Join(t.TempDir(), "seeding-copy.mp4")
	require.NoError(t, os.Link(target, other))

	clip(t, filepath.Join(in, "Linked (2001).mp4"), 600)
	eventually(t, 90*time.Second, "republished", func() bool {
		st, err := os.Stat(target)
		return err == nil && st.Size() > 100
	})
	old, err := os.ReadFile(other)
	require.NoError(t, err)
	require.Equal(t, "the old file", string(old), "the hard link elsewhere was not written through")
	eventually(t, 30*time.Second, "the original deleted", func() bool {
		_, err := os.Stat(filepath.Join(in, "Linked (2001).mp4"))
		return os.IsNotExist(err)
	})
	require.NoDirExists(t, filepath.Join(in, "done"))
}
