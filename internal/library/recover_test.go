package library

import (
	"bytes"
	"context"
	"errors"
	"io/fs"
	"log/slog"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/herdhq/herd/internal/blob"
	"github.com/herdhq/herd/internal/ingest"
	"github.com/herdhq/herd/internal/job"
	"github.com/herdhq/herd/internal/media"
	"github.com/herdhq/herd/internal/profile"
	"github.com/herdhq/herd/internal/store"
	"github.com/herdhq/herd/internal/store/sqlstore"
	"github.com/herdhq/herd/internal/testenv"
)

// doneJobs is the store with jobs that have succeeded, each with one MKV output.
type doneJobs struct {
	*sqlstore.Store
	jobs map[string]job.Job
}

func (d doneJobs) GetJob(_ context.Context, id string) (job.Job, error) {
	j, ok := d.jobs[id]
	if !ok {
		return job.Job{}, job.ErrNotFound
	}
	return j, nil
}

type object struct {
	*bytes.Reader
}

func (object) Close() error       { return nil }
func (o object) Size() int64      { return o.Reader.Size() }
func (object) ModTime() time.Time { return time.Time{} }

type outputs map[string][]byte

func (o outputs) Open(_ context.Context, key string) (blob.Object, error) {
	b, ok := o[key]
	if !ok {
		return nil, blob.ErrNotFound
	}
	return object{bytes.NewReader(b)}, nil
}

type noSubmit struct{}

func (noSubmit) Profile(string) (*profile.Profile, error) {
	return &profile.Profile{Name: "archive-hevc", Format: profile.FormatMKV}, nil
}
func (noSubmit) ImportFile(context.Context, *os.Root, string, string, *profile.Profile, ingest.Options, string) (job.Job, bool, error) {
	return job.Job{}, false, errors.New("not here")
}

// replacing sets up a replacement: the original at rel inside dir (old
// bytes, mode perm), recorded as queued with job j1, which has succeeded
// with a smaller MKV (fresh bytes).
func replacing(t *testing.T, dir, rel string, perm os.FileMode) (st doneJobs, outs outputs, old, fresh []byte) {
	t.Helper()
	return replacingIn(t, testenv.SQLite(t), dir, rel, perm)
}

// replacingIn is replacing with the store db.
func replacingIn(t *testing.T, db *sqlstore.Store, dir, rel string, perm os.FileMode) (st doneJobs, outs outputs, old, fresh []byte) {
	t.Helper()
	old, fresh = bytes.Repeat([]byte("old "), 5000), bytes.Repeat([]byte("new"), 2000)
	orig := filepath.Join(dir, filepath.FromSlash(rel))
	require.NoError(t, os.WriteFile(orig, old, perm))
	st = doneJobs{Store: db, jobs: map[string]job.Job{"j1": {ID: "j1", State: job.Succeeded,
		Outputs: []byte(`[{"name":"mkv","kind":"mkv","path":"new.mkv","size":6000}]`)}}}
	outs = outputs{"jobs/j1/out/new.mkv": fresh}
	fi, err := os.Stat(orig)
	require.NoError(t, err)
	require.NoError(t, st.PutLibraryFile(t.Context(), store.LibraryFile{Library: "movies", Path: rel, Size: fi.Size(), MTime: fi.ModTime().UnixNano(),
		Inode: inode(fi), State: StateQueued, JobID: "j1", UpdatedAt: time.Now()}))
	return st, outs, old, fresh
}

// A replacement killed at any point of its journal is finished by the
// next apply, as a restart does: the name holds the new file, the trash
// the original, nothing half-written is left, and the store says replaced.
func TestReplacementSurvivesACrashAnywhere(t *testing.T) {
	t.Parallel()
	for _, name := range []string{"Heat.mkv", "Heat.avi"} { // the same name, and an extension change
		for _, point := range []string{stepPlacing, stepReady, "linked", stepTrashed, "swapping", "exchanged", stepPlaced, "moved", ""} {
			sameOnly := point == stepTrashed || point == "swapping" || point == "exchanged"
			if (name == "Heat.mkv" && point == stepPlaced) || (name == "Heat.avi" && sameOnly) {
				continue // not a point of that kind of replacement
			}
			t.Run(name+"/"+point, func(t *testing.T) {
				t.Parallel()
				ctx := t.Context()
				dir := t.TempDir()
				require.NoError(t, os.MkdirAll(filepath.Join(dir, "Heat (1995)"), 0o755))
				orig := filepath.Join(dir, "Heat (1995)", name)
				st, outs, old, fresh := replacing(t, dir, "Heat (1995)/"+name, 0o640)
				spec := Spec{Name: "movies", Path: dir, Profile: "archive-hevc", Action: ActionReplace, MaxRunning: 1}
				manager := func() (*Manager, *lib) {
					m := New([]Spec{spec}, st, noSubmit{}, outs, nil, media.Limits{}, slog.New(slog.DiscardHandler))
					return m, m.libs["movies"]
				}
				if point != "" {
					m, l := manager()
					m.interrupt = func(p string) bool { return p == point }
					require.ErrorIs(t, m.apply(ctx, l), errInterrupted)
					if point == stepPlacing { // a crash in the middle of writing the new file
						require.NoError(t, os.WriteFile(filepath.Join(dir, "Heat (1995)", ".herd-j1-Heat.mkv"), fresh[:100], 0o600))
					}
				}
				m, l := manager()
				require.NoError(t, m.apply(ctx, l))

				final := filepath.Join(dir, "Heat (1995)", "Heat.mkv")
				got, err := os.ReadFile(final)
				require.NoError(t, err)
				require.Equal(t, fresh, got, "the new file in place")
				trashed, err := os.ReadFile(filepath.Join(dir, TrashDir, "Heat (1995)", name))
				require.NoError(t, err)
				require.Equal(t, old, trashed, "the original in the trash")
				if name != "Heat.mkv" {
					require.NoFileExists(t, orig)
				}
				fi, err := os.Stat(final)
				require.NoError(t, err)
				require.Equal(t, fs.FileMode(0o640), fi.Mode().Perm())
				entries, err := os.ReadDir(filepath.Join(dir, "Heat (1995)"))
				require.NoError(t, err)
				for _, e := range entries {
					require.False(t, strings.HasPrefix(e.Name(), tempPrefix), "left behind: %s", e.Name())
				}
				files, err := st.LibraryFiles(ctx, "movies")
				require.NoError(t, err)
				require.Len(t, files, 1)
				require.Equal(t, "Heat (1995)/Heat.mkv", files[0].Path)
				require.Equal(t, StateReplaced, files[0].State)
				require.Empty(t, files[0].Step)
				require.Equal(t, int64(len(fresh)), files[0].Size)
			})
		}
	}
}

// A file on another file system mounted inside the library (a tmpfs here)
// cannot be hard-linked or renamed into the library's trash: its folder
// gets a trash of its own on that file system, and the replacement is as
// safe as anywhere else, crashed at any point.
func TestReplacementAcrossFileSystems(t *testing.T) {
	t.Parallel()
	for _, name := range []string{"Heat.mkv", "Heat.avi"} {
		for _, point := range []string{"", stepTrashed, stepPlaced, "moved"} {
			if (name == "Heat.mkv" && point == stepPlaced) || (name == "Heat.avi" && point == stepTrashed) {
				continue
			}
			t.Run(name+"/"+point, func(t *testing.T) {
				t.Parallel()
				ctx := t.Context()
				dir := t.TempDir()
				mnt := filepath.Join(dir, "Other disk")
				require.NoError(t, os.Mkdir(mnt, 0o755))
				if err := syscall.Mount("tmpfs", mnt, "tmpfs", 0, "size=16m"); err != nil {
					t.Skipf("cannot mount a tmpfs here: %v", err)
				}
				t.Cleanup(func() { _ = syscall.Unmount(mnt, syscall.MNT_DETACH) })
				st, outs, old, fresh := replacing(t, dir, "Other disk/"+name, 0o644)
				spec := Spec{Name: "movies", Path: dir, Profile: "archive-hevc", Action: ActionReplace, MaxRunning: 1}
				if point != "" {
					m := New([]Spec{spec}, st, noSubmit{}, outs, nil, media.Limits{}, slog.New(slog.DiscardHandler))
					m.interrupt = func(p string) bool { return p == point }
					require.ErrorIs(t, m.apply(ctx, m.libs["movies"]), errInterrupted)
				}
				m := New([]Spec{spec}, st, noSubmit{}, outs, nil, media.Limits{}, slog.New(slog.DiscardHandler))
				require.NoError(t, m.apply(ctx, m.libs["movies"]))
				got, err := os.ReadFile(filepath.Join(mnt, "Heat.mkv"))
				require.NoError(t, err)
				require.Equal(t, fresh, got)
				trashed, err := os.ReadFile(filepath.Join(mnt, TrashDir, name))
				require.NoError(t, err, "the original in its folder's own trash")
				require.Equal(t, old, trashed)
				files, err := st.LibraryFiles(ctx, "movies")
				require.NoError(t, err)
				require.Len(t, files, 1)
				require.Equal(t, StateReplaced, files[0].State)
				require.Contains(t, files[0].Note, "Other disk/"+TrashDir+"/"+name)
				left, err := st.LibraryTrashBefore(ctx, "movies", time.Now().Add(time.Hour))
				require.NoError(t, err)
				require.Equal(t, "Other disk/"+TrashDir+"/"+name, left[0].Path)
				// Past keep_originals, the purge removes it from there too.
				spec.KeepOriginals = time.Hour
				m = New([]Spec{spec}, st, noSubmit{}, outs, nil, media.Limits{}, slog.New(slog.DiscardHandler))
				m.now = func() time.Time { return time.Now().Add(2 * time.Hour) }
				require.NoError(t, m.purge(ctx, m.libs["movies"]))
				require.NoFileExists(t, filepath.Join(mnt, TrashDir, name))
			})
		}
	}
}

// A crash, then a change while herd was stopped: the restart checks what
// the names hold before each move, keeps what is not its own, and never
// loses a file.
func TestReplacementAfterAChangeWhileStopped(t *testing.T) {
	t.Parallel()
	user := []byte("the user's own new file")
	for _, tc := range []struct {
		name, point string
		change      func(t *testing.T, dir string) // while herd is stopped
		kept        string                         // the note
		want        map[string][]byte              // what the folder holds after, by name (nil: the original)
	}{
		{"Heat.mkv", stepReady, func(t *testing.T, dir string) { write(t, filepath.Join(dir, "Heat.mkv"), user) },
			"the original changed", map[string][]byte{"Heat.mkv": user}},
		{"Heat.mkv", stepTrashed, func(t *testing.T, dir string) {
			require.NoError(t, os.Remove(filepath.Join(dir, "Heat.mkv")))
			write(t, filepath.Join(dir, "Heat.mkv"), user)
		}, "changed or went while herd was stopped", map[string][]byte{"Heat.mkv": user}},
		{"Heat.avi", stepReady, func(t *testing.T, dir string) { write(t, filepath.Join(dir, "Heat.mkv"), user) },
			"Heat.mkv is there already", map[string][]byte{"Heat.avi": nil, "Heat.mkv": user}},
		{"Heat.avi", stepPlaced, func(t *testing.T, dir string) {
			require.NoError(t, os.Remove(filepath.Join(dir, "Heat.avi")))
			write(t, filepath.Join(dir, "Heat.avi"), user)
		}, "changed while herd was stopped", map[string][]byte{"Heat.avi": user}},
	} {
		t.Run(tc.name+"/"+tc.point, func(t *testing.T) {
			t.Parallel()
			ctx := t.Context()
			dir := t.TempDir()
			st, outs, old, _ := replacing(t, dir, tc.name, 0o644)
			spec := Spec{Name: "movies", Path: dir, Profile: "archive-hevc", Action: ActionReplace, MaxRunning: 1}
			m := New([]Spec{spec}, st, noSubmit{}, outs, nil, media.Limits{}, slog.New(slog.DiscardHandler))
			m.interrupt = func(p string) bool { return p == tc.point }
			require.ErrorIs(t, m.apply(ctx, m.libs["movies"]), errInterrupted)
			tc.change(t, dir)
			m = New([]Spec{spec}, st, noSubmit{}, outs, nil, media.Limits{}, slog.New(slog.DiscardHandler))
			require.NoError(t, m.apply(ctx, m.libs["movies"]))
			files, err := st.LibraryFiles(ctx, "movies")
			require.NoError(t, err)
			require.Len(t, files, 1)
			require.Equal(t, StateKept, files[0].State)
			require.Contains(t, files[0].Note, tc.kept)
			entries, err := os.ReadDir(dir)
			require.NoError(t, err)
			var names []string
			for _, e := range entries {
				if e.Name() != TrashDir {
					names = append(names, e.Name())
				}
			}
			require.ElementsMatch(t, slices.Collect(maps.Keys(tc.want)), names, "nothing half-written, nothing of this replacement's left")
			for name, want := range tc.want {
				got, err := os.ReadFile(filepath.Join(dir, name))
				require.NoError(t, err)
				if want == nil {
					want = old
				}
				require.Equal(t, want, got, name)
			}
		})
	}
}

func write(t *testing.T, p string, b []byte) {
	t.Helper()
	require.NoError(t, os.WriteFile(p, b, 0o644))
}

// A power cut can undo the store's last commits: the journal then says
// less was done than the disk shows. The next apply finds the replacement
// made (the original in the trash, the new file in place) and records it,
// removing nothing.
func TestReplacementJournalBehindTheDisk(t *testing.T) {
	t.Parallel()
	for _, name := range []string{"Heat.mkv", "Heat.avi"} {
		for _, back := range []string{"", stepPlacing, stepReady} {
			t.Run(name+"/"+back, func(t *testing.T) {
				t.Parallel()
				ctx := t.Context()
				dir := t.TempDir()
				st, outs, old, fresh := replacing(t, dir, name, 0o644)
				before, err := st.LibraryFiles(ctx, "movies")
				require.NoError(t, err)
				spec := Spec{Name: "movies", Path: dir, Profile: "archive-hevc", Action: ActionReplace, MaxRunning: 1}
				m := New([]Spec{spec}, st, noSubmit{}, outs, nil, media.Limits{}, slog.New(slog.DiscardHandler))
				m.interrupt = func(p string) bool { return p == "moved" } // all done on disk
				require.ErrorIs(t, m.apply(ctx, m.libs["movies"]), errInterrupted)
				// The store loses its last commits.
				row := before[0]
				row.Step = back
				if back == stepReady {
					files, err := st.LibraryFiles(ctx, "movies")
					require.NoError(t, err)
					row.NewSize, row.NewSHA256 = files[0].NewSize, files[0].NewSHA256
				}
				require.NoError(t, st.PutLibraryFile(ctx, row))
				m = New([]Spec{spec}, st, noSubmit{}, outs, nil, media.Limits{}, slog.New(slog.DiscardHandler))
				require.NoError(t, m.apply(ctx, m.libs["movies"]))
				got, err := os.ReadFile(filepath.Join(dir, "Heat.mkv"))
				require.NoError(t, err)
				require.Equal(t, fresh, got, "the new file stays")
				trashed, err := os.ReadFile(filepath.Join(dir, TrashDir, name))
				require.NoError(t, err)
				require.Equal(t, old, trashed)
				files, err := st.LibraryFiles(ctx, "movies")
				require.NoError(t, err)
				require.Len(t, files, 1)
				require.Equal(t, StateReplaced, files[0].State, files[0].Note)
				left, err := st.LibraryTrashBefore(ctx, "movies", time.Now().Add(time.Hour))
				require.NoError(t, err)
				require.Len(t, left, 1, "the original's place in the trash is recorded")
			})
		}
	}
}

// Stopped at placed, then the new file removed by hand: the original
// stays where it is. Stopped at trashed, then the new file's temporary
// name removed: it is written again. An earlier original in the trash
// keeps its name; this one gets the job's.
func TestReplacementAfterItsFilesWent(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	spec := func(dir string) Spec {
		return Spec{Name: "movies", Path: dir, Profile: "archive-hevc", Action: ActionReplace, MaxRunning: 1}
	}
	run := func(t *testing.T, st doneJobs, outs outputs, dir, point string) {
		t.Helper()
		m := New([]Spec{spec(dir)}, st, noSubmit{}, outs, nil, media.Limits{}, slog.New(slog.DiscardHandler))
		m.interrupt = func(p string) bool { return p == point }
		err := m.apply(ctx, m.libs["movies"])
		if point != "" {
			require.ErrorIs(t, err, errInterrupted)
		}
	}

	dir := t.TempDir()
	st, outs, old, _ := replacing(t, dir, "Heat.avi", 0o644)
	run(t, st, outs, dir, stepPlaced)
	require.NoError(t, os.Remove(filepath.Join(dir, "Heat.mkv")))
	run(t, st, outs, dir, "")
	got, err := os.ReadFile(filepath.Join(dir, "Heat.avi"))
	require.NoError(t, err)
	require.Equal(t, old, got, "the original stays at its name")
	files, err := st.LibraryFiles(ctx, "movies")
	require.NoError(t, err)
	require.Equal(t, StateKept, files[0].State)

	dir = t.TempDir()
	st, outs, _, fresh := replacing(t, dir, "Heat.mkv", 0o644)
	require.NoError(t, os.MkdirAll(filepath.Join(dir, TrashDir), 0o755))
	write(t, filepath.Join(dir, TrashDir, "Heat.mkv"), []byte("an earlier original"))
	run(t, st, outs, dir, stepTrashed)
	require.NoError(t, os.Remove(filepath.Join(dir, ".herd-j1-Heat.mkv")))
	m := New([]Spec{spec(dir)}, st, noSubmit{}, outs, nil, media.Limits{}, slog.New(slog.DiscardHandler))
	require.Error(t, m.apply(ctx, m.libs["movies"]), "the new file went: written again next time")
	require.NoError(t, m.apply(ctx, m.libs["movies"]))
	got, err = os.ReadFile(filepath.Join(dir, "Heat.mkv"))
	require.NoError(t, err)
	require.Equal(t, fresh, got)
	earlier, err := os.ReadFile(filepath.Join(dir, TrashDir, "Heat.mkv"))
	require.NoError(t, err)
	require.Equal(t, "an earlier original", string(earlier), "the earlier original keeps its place")
	require.FileExists(t, filepath.Join(dir, TrashDir, "Heat.j1.mkv"))
	files, err = st.LibraryFiles(ctx, "movies")
	require.NoError(t, err)
	require.Equal(t, StateReplaced, files[0].State)
	require.Contains(t, files[0].Note, TrashDir+"/Heat.j1.mkv")
}

// A program that writes the original's name anew in the instant between
// herd's last look and its swap does not lose its file: the names are
// exchanged in one step, and the file found at the temporary name is not
// the original, so it gets its name back. The replacement is kept from it,
// the original stays in the trash, nothing is left behind.
func TestReplacementNeverOverwritesAFileWrittenAsItSwaps(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	dir := t.TempDir()
	st, outs, old, _ := replacing(t, dir, "Heat.mkv", 0o644)
	m := New([]Spec{{Name: "movies", Path: dir, Profile: "archive-hevc", Action: ActionReplace, MaxRunning: 1}},
		st, noSubmit{}, outs, nil, media.Limits{}, slog.New(slog.DiscardHandler))
	theirs := []byte("written by someone else just now")
	m.interrupt = func(p string) bool {
		if p == "swapping" {
			tmp := filepath.Join(dir, "theirs.tmp")
			require.NoError(t, os.WriteFile(tmp, theirs, 0o644))
			require.NoError(t, os.Rename(tmp, filepath.Join(dir, "Heat.mkv"))) // as an editor saves
		}
		return false
	}
	require.NoError(t, m.apply(ctx, m.libs["movies"]))
	got, err := os.ReadFile(filepath.Join(dir, "Heat.mkv"))
	require.NoError(t, err)
	require.Equal(t, theirs, got, "their file keeps the name")
	trashed, err := os.ReadFile(filepath.Join(dir, TrashDir, "Heat.mkv"))
	require.NoError(t, err)
	require.Equal(t, old, trashed, "the original in the trash")
	entries, err := os.ReadDir(dir)
	require.NoError(t, err)
	for _, e := range entries {
		require.False(t, e.Name() != TrashDir && strings.HasPrefix(e.Name(), tempPrefix), "left behind: %s", e.Name())
	}
	files, err := st.LibraryFiles(ctx, "movies")
	require.NoError(t, err)
	require.Equal(t, StateKept, files[0].State)
	require.Contains(t, files[0].Note, "written anew as herd replaced it")
}
