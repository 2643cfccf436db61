package library

import (
	"cmp"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"time"

	"github.com/herdhq/herd/internal/backoff"
	"github.com/herdhq/herd/internal/blob"
	"github.com/herdhq/herd/internal/job"
	"github.com/herdhq/herd/internal/pipeline"
	"github.com/herdhq/herd/internal/publish"
	"github.com/herdhq/herd/internal/store"
)

// A replacement's journal (store.LibraryFile.Step). Each step is recorded
// once done (its folder synced first), so that a restart (apply) finishes
// what a crash cut short, checking before every move that the names still
// hold what the journal says:
//
//   - stepPlacing: the new file is being written beside the original
//     under a temporary name (.herd-JOB-NAME). A crash leaves a partial
//     file: it is removed and written again.
//   - stepReady: the new file is whole, checked against the job's output,
//     and has the original's owner, group, mode and modification time.
//   - stepTrashed (same name): the original is hard-linked into the trash;
//     then the new file is renamed over it, one rename, so the name holds
//     the old file or the new one at every moment, and the original's
//     other links keep the old bytes.
//   - stepPlaced (another name, as movie.avi becoming movie.mkv): the new
//     file is linked to its name (never over a file that is there), then
//     the original moved to the trash.
const (
	stepPlacing = "placing"
	stepReady   = "ready"
	stepTrashed = "trashed"
	stepPlaced  = "placed"
)

// maxTries is how many times a replacement that fails before it has moved
// anything is tried (a tick apart) before its file is marked failed.
const maxTries = 5

// apply finishes the files whose job is over, and takes up again those
// whose failed job was retried.
func (m *Manager) apply(ctx context.Context, l *lib) error {
	files, err := m.st.LibraryFilesIn(ctx, l.Name, StateQueued, StateFailed)
	if err != nil {
		return err
	}
	var errs []error
	for _, f := range files {
		if f.State == StateFailed && f.JobID == "" {
			continue // failed for good, until the file changes
		}
		if err := m.applyOne(ctx, l, f); err != nil {
			if ctx.Err() != nil {
				return err
			}
			errs = append(errs, fmt.Errorf("%s: %w", f.Path, err))
		}
	}
	return errors.Join(errs...)
}

func (m *Manager) applyOne(ctx context.Context, l *lib, f store.LibraryFile) error {
	j, err := m.st.GetJob(ctx, f.JobID)
	if errors.Is(err, job.ErrNotFound) && f.State == StateQueued {
		// A crash between recording the job's id and making the job.
		p, err := m.sub.Profile(l.Profile)
		if err != nil {
			return err
		}
		root, err := l.open()
		if err != nil {
			return err
		}
		defer root.Close()
		return m.submit(ctx, l, root, p, &f)
	}
	if err != nil {
		return err
	}
	switch j.State {
	case job.Succeeded:
	case job.Failed, job.Canceled:
		if f.State == StateQueued {
			f.State, f.Note = StateFailed, fmt.Sprintf("job %s %s: %s (herd retry %s tries again)", j.ID, j.State, j.Error, j.ID)
			return m.put(ctx, f)
		}
		return nil
	default:
		if f.State == StateFailed { // its job was retried
			f.State, f.Note = StateQueued, ""
			return m.put(ctx, f)
		}
		return nil // still running
	}
	if l.Action == ActionPublish {
		f.State, f.Note = StateDone, "delivered to "+strings.Join(l.Publish, ", ")
		return m.put(ctx, f)
	}
	err = m.replace(ctx, l, &f, j)
	key := l.Name + "/" + f.Path
	var keep *keptError
	var fail *failedError
	switch {
	case err == nil:
		m.forget(key)
		return nil
	case errors.As(err, &keep):
		m.forget(key)
		m.discard(l, f)
		f.State, f.Note, f.Step = StateKept, keep.msg, ""
		m.deliver(ctx, l, j.ID, false, "kept the original "+f.Path+": "+keep.msg)
		return m.put(ctx, f)
	case errors.Is(err, errInterrupted) || ctx.Err() != nil:
		return err
	}
	// Nothing moved yet: after maxTries, the file is failed (the
	// temporary file removed). Past that, the journal must be finished:
	// it is tried again at every step.
	if errors.As(err, &fail) || (m.tried(key) >= maxTries && (f.Step == "" || f.Step == stepPlacing || f.Step == stepReady)) {
		m.forget(key)
		m.discard(l, f)
		f.State, f.Note, f.Step, f.JobID = StateFailed, err.Error(), "", ""
		m.deliver(ctx, l, j.ID, false, "could not put the new file in place of "+f.Path+": "+err.Error())
		return m.put(ctx, f)
	}
	return err
}

// tried counts a failed try of the replacement of key; forget clears it.
func (m *Manager) tried(key string) int {
	m.triesMu.Lock()
	defer m.triesMu.Unlock()
	if m.tries == nil {
		m.tries = map[string]int{}
	}
	m.tries[key]++
	return m.tries[key]
}

func (m *Manager) forget(key string) {
	m.triesMu.Lock()
	defer m.triesMu.Unlock()
	delete(m.tries, key)
}

// keptError says the original stays, and why (not smaller, an owner herd
// cannot give, the original changed meanwhile).
type keptError struct{ msg string }

func (e *keptError) Error() string { return e.msg }

func kept(format string, args ...any) error { return &keptError{fmt.Sprintf(format, args...)} }

// failedError is a replacement that cannot be made, however often it is
// tried (the job has no file output, or it is gone).
type failedError struct{ msg string }

func (e *failedError) Error() string { return e.msg }

// errInterrupted stops a replacement where a test's interrupt says: as if
// the process died there, the next apply goes on from the journal.
var errInterrupted = errors.New("interrupted")

// interrupted asks the test's interrupt (nil outside tests) whether the
// replacement stops at point.
func (m *Manager) interrupted(point string) error {
	if m.interrupt != nil && m.interrupt(point) {
		return errInterrupted
	}
	return nil
}

func (m *Manager) put(ctx context.Context, f store.LibraryFile) error {
	f.UpdatedAt = m.now().UTC()
	return m.st.PutLibraryFile(ctx, f)
}

// deliver records on the job what became of its file.
func (m *Manager) deliver(ctx context.Context, l *lib, jobID string, ok bool, detail string) {
	_ = m.st.AddDelivery(ctx, store.Delivery{JobID: jobID, Publisher: "library " + l.Name, Type: "library", Event: job.EventSucceeded,
		Attempt: 1, OK: ok, Final: true, Detail: detail, At: m.now().UTC()})
}

// names of a replacement: the temporary file beside the original, the new
// file's name, and where the original goes in the trash.
func names(l *lib, f store.LibraryFile, j job.Job, outName string) (tmp, final, trash string) {
	dir, base := path.Split(f.Path)
	stem := strings.TrimSuffix(base, path.Ext(base))
	tmp = dir + tempPrefix + j.ID + "-" + stem + path.Ext(outName)
	final = dir + stem + path.Ext(outName)
	if l.Action == ActionAlongside {
		final = dir + stem + " - " + l.Profile + path.Ext(outName)
	}
	trash = TrashDir + "/" + f.Path
	return tmp, final, trash
}

// output is a job's one file output (an MP4 or MKV): its key and size.
func output(j job.Job) (key, name string, size int64, err error) {
	var outs []pipeline.Output
	if err := json.Unmarshal(j.Outputs, &outs); err != nil {
		return "", "", 0, &failedError{fmt.Sprintf("job %s: its outputs cannot be read: %v", j.ID, err)}
	}
	for _, o := range outs {
		if o.Kind == "mp4" || o.Kind == "mkv" {
			return pipeline.OutputsKey(j.ID) + "/" + o.Path, o.Path, o.Size, nil
		}
	}
	return "", "", 0, &failedError{fmt.Sprintf("job %s has no MP4 or MKV output", j.ID)}
}

// replace puts j's output in place of f (or beside it), walking the
// journal from wherever f's Step says it got to.
func (m *Manager) replace(ctx context.Context, l *lib, f *store.LibraryFile, j job.Job) error {
	key, outName, outSize, err := output(j)
	if err != nil {
		return err
	}
	root, err := l.open()
	if err != nil {
		return err
	}
	defer root.Close()
	tmp, final, trash := names(l, *f, j, outName)
	if f.Trash != "" {
		trash = f.Trash // where this replacement keeps the original, once chosen
	}
	sameName := final == f.Path

	if f.Step == "" || f.Step == stepPlacing {
		orig, err := root.Lstat(f.Path)
		if errors.Is(err, fs.ErrNotExist) {
			return kept("the original is gone")
		}
		if err != nil {
			return err
		}
		if err := unchanged(*f, orig); err != nil {
			return err
		}
		if limit := float64(f.Size) * (1 - l.MinSavings); float64(outSize) >= limit || outSize >= f.Size {
			return kept("the new file is %s, the original %s: not %.0f%% smaller (min_savings)", BytesIEC(outSize), BytesIEC(f.Size), l.MinSavings*100)
		}
		if !sameName {
			if _, err := root.Lstat(final); err == nil {
				return kept("%s is there already, and herd does not overwrite a file it did not make", final)
			}
		}
		f.Step = stepPlacing
		if err := m.put(ctx, *f); err != nil {
			return err
		}
		if err := m.interrupted(stepPlacing); err != nil {
			return err
		}
		sum, err := m.writeTemp(ctx, root, key, tmp, outSize, orig)
		if err != nil {
			return err
		}
		f.Step, f.NewSize, f.NewSHA256 = stepReady, outSize, sum
		if err := m.put(ctx, *f); err != nil {
			return err
		}
		if err := m.interrupted(stepReady); err != nil {
			return err
		}
	}
	if f.Step == stepReady {
		// The original must still be what the scan saw, and is kept
		// otherwise (a new file of this replacement placed before a crash
		// is taken back).
		if orig, err := root.Lstat(f.Path); err != nil || unchanged(*f, orig) != nil {
			if !sameName && m.ours(root, final, *f) {
				_ = root.Remove(final)
			}
			return kept("the original changed or went while the new file was made; it is judged again at the next scan")
		}
		if l.Action == ActionAlongside {
			if err := m.place(root, tmp, final, *f); err != nil {
				return err
			}
			return m.finish(ctx, l, f, final, f.Path, j.ID, "made "+final+" beside "+f.Path)
		}
		if sameName {
			// The original's bytes stay reachable from the trash the
			// moment the new file takes its name.
			if trash, err = keepIn(root, f.Path, trash, j.ID, root.Link); err != nil {
				return fmt.Errorf("keep the original in %s: %w", TrashDir, err)
			}
			f.Step, f.Trash = stepTrashed, trash
		} else {
			if err := m.place(root, tmp, final, *f); err != nil {
				return err
			}
			f.Step = stepPlaced
		}
		if err := m.interrupted("linked"); err != nil { // done on disk, not yet journalled
			return err
		}
		if err := m.put(ctx, *f); err != nil {
			return err
		}
		if err := m.interrupted(f.Step); err != nil {
			return err
		}
	}
	switch f.Step {
	case stepTrashed:
		cur, err := root.Lstat(f.Path)
		switch {
		case err == nil && unchanged(*f, cur) == nil:
			// The trash must hold the original before the name stops
			// holding it (a link lost with a power cut is made again).
			if t, err := root.Lstat(trash); err != nil || unchanged(*f, t) != nil {
				if trash, err = keepIn(root, f.Path, trash, j.ID, root.Link); err != nil {
					return fmt.Errorf("keep the original in %s: %w", TrashDir, err)
				}
				f.Trash = trash
			}
			if err := root.Rename(tmp, f.Path); err != nil {
				return err
			}
			if err := syncDir(root, path.Dir(f.Path)); err != nil {
				return err
			}
		case m.ours(root, f.Path, *f):
			// Renamed before a crash.
		default:
			// Something else took the name while herd was stopped.
			if err := m.st.AddLibraryTrash(ctx, store.TrashEntry{Library: l.Name, Path: trash, Original: f.Path, TrashedAt: m.now().UTC()}); err != nil {
				return err
			}
			return kept("the file changed or went while herd was stopped; the original is in %s", trash)
		}
	case stepPlaced:
		cur, err := root.Lstat(f.Path)
		switch {
		case errors.Is(err, fs.ErrNotExist):
			// Moved before a crash: to the library's trash or its folder's.
			if _, lerr := root.Lstat(trash); lerr != nil {
				if _, lerr := root.Lstat(localTrash(f.Path)); lerr == nil {
					trash = localTrash(f.Path)
				}
			}
		case err != nil:
			return err
		case unchanged(*f, cur) == nil:
			if trash, err = keepIn(root, f.Path, trash, j.ID, root.Rename); err != nil {
				return err
			}
		default:
			// Something else took the original's name while herd was
			// stopped: this replacement's file is taken back.
			if m.ours(root, final, *f) {
				_ = root.Remove(final)
			}
			return kept("the original changed while herd was stopped; it is judged again at the next scan")
		}
	}
	if err := m.interrupted("moved"); err != nil {
		return err
	}
	if err := m.st.AddLibraryTrash(ctx, store.TrashEntry{Library: l.Name, Path: trash, Original: f.Path, TrashedAt: m.now().UTC()}); err != nil {
		return err
	}
	return m.finish(ctx, l, f, final, f.Path, j.ID, fmt.Sprintf("replaced %s: %s, was %s; the original is in %s", final, BytesIEC(f.NewSize), BytesIEC(f.Size), trash))
}

// place gives the new file at tmp its name, final, without ever replacing
// a file there (a link, which fails when the name is taken), then removes
// tmp. Run again after a crash, it finds the work done.
func (m *Manager) place(root *os.Root, tmp, final string, f store.LibraryFile) error {
	err := root.Link(tmp, final)
	switch {
	case errors.Is(err, fs.ErrExist):
		if !m.ours(root, final, f) {
			return kept("%s is there already, and herd does not overwrite a file it did not make", final)
		}
	case errors.Is(err, fs.ErrNotExist) && m.ours(root, final, f):
		// Placed, and the temporary name removed, before a crash.
		return nil
	case err != nil:
		return err
	}
	if err := syncDir(root, path.Dir(final)); err != nil {
		return err
	}
	if err := root.Remove(tmp); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return err
	}
	return nil
}

// ours says the file at p is this replacement's new file: its size and
// SHA-256.
func (m *Manager) ours(root *os.Root, p string, f store.LibraryFile) bool {
	st, err := root.Lstat(p)
	if err != nil || !st.Mode().IsRegular() || st.Size() != f.NewSize || f.NewSHA256 == "" {
		return false
	}
	sum, err := fileSHA256(root, p)
	return err == nil && sum == f.NewSHA256
}

// keepIn gives the original at rel a name in the trash with move (a hard
// link, or a rename), at trash or, when that is taken by an earlier
// original, beside it with the job's id; a file on another file system
// mounted inside the library goes to its folder's own trash. It returns
// the name, its folder synced.
func keepIn(root *os.Root, rel, trash, jobID string, move func(from, to string) error) (string, error) {
	try := func(to string) (string, error) {
		if err := mkdirAll(root, path.Dir(to)); err != nil {
			return "", err
		}
		if st, err := root.Lstat(to); err == nil {
			if cur, err := root.Lstat(rel); err == nil && os.SameFile(st, cur) {
				return to, syncDir(root, path.Dir(to)) // done before a crash
			}
			ext := path.Ext(to)
			to = strings.TrimSuffix(to, ext) + "." + jobID + ext
		}
		if err := move(rel, to); err != nil && !errors.Is(err, fs.ErrExist) {
			return "", err
		}
		return to, syncDir(root, path.Dir(to))
	}
	to, err := try(trash)
	if errors.Is(err, syscall.EXDEV) {
		to, err = try(localTrash(rel))
	}
	return to, err
}

// syncDir makes the names in dir (inside root) durable.
func syncDir(root *os.Root, dir string) error {
	d, err := root.Open(cmp.Or(dir, "."))
	if err != nil {
		return err
	}
	defer d.Close()
	if err := d.Sync(); err != nil && !errors.Is(err, syscall.EINVAL) {
		return err
	}
	return nil
}

// localTrash is the trash of rel's own folder, for a file on a file
// system mounted inside the library (a hard link or a rename cannot reach
// the library's trash from there).
func localTrash(rel string) string {
	dir, base := path.Split(rel)
	return dir + TrashDir + "/" + base
}

// finish records the new file (at final, in place of the file at from).
func (m *Manager) finish(ctx context.Context, l *lib, f *store.LibraryFile, final, from, jobID, detail string) error {
	root, err := l.open()
	if err != nil {
		return err
	}
	defer root.Close()
	st, err := root.Stat(final)
	if err != nil {
		return err
	}
	state := StateReplaced
	if l.Action == ActionAlongside {
		state = StateDone
	}
	done := *f
	done.Step, done.State, done.Note, done.UpdatedAt = "", state, detail, m.now().UTC()
	if state == StateReplaced {
		// The new file is what the path holds now: a later scan finds it unchanged.
		done.Path, done.Size, done.MTime, done.Inode = final, st.Size(), st.ModTime().UnixNano(), inode(st)
		if err := m.st.MoveLibraryFile(ctx, from, done); err != nil {
			return err
		}
	} else if err := m.st.PutLibraryFile(ctx, done); err != nil {
		return err
	}
	*f = done
	m.deliver(ctx, l, jobID, true, detail)
	m.log.Info("library file done", "library", l.Name, "path", final, "detail", detail)
	m.tell(l, jobID, final)
	return nil
}

// tellAttempts is how many times a media server is asked to pick up a new
// file, a minute apart at most.
const tellAttempts = 5

// tell has the library's media servers pick up the new file at rel, in
// the background, each attempt recorded on the job.
func (m *Manager) tell(l *lib, jobID, rel string) {
	m.baseMu.Lock()
	defer m.baseMu.Unlock()
	if m.stopped {
		return
	}
	base := m.base
	for _, n := range l.Notify {
		m.tellers.Go(func() {
			ev := publish.Event{ID: jobID + "-" + l.Name, Type: job.EventSucceeded, CreatedAt: m.now().UTC(),
				Files: map[string]string{l.Name: filepath.Join(l.Path, filepath.FromSlash(rel))}}
			for attempt := 1; attempt <= tellAttempts; attempt++ {
				detail, err := n.Notify(base, ev)
				final := err == nil || publish.IsPermanent(err) || attempt == tellAttempts || base.Err() != nil
				if err != nil {
					detail = err.Error()
				}
				if final || err == nil {
					_ = m.st.AddDelivery(context.WithoutCancel(base), store.Delivery{JobID: jobID, Publisher: n.Name, Type: n.Type, Event: job.EventSucceeded,
						Attempt: attempt, OK: err == nil, Final: true, Detail: detail, At: m.now().UTC()})
					return
				}
				select {
				case <-base.Done():
					return
				case <-time.After(backoff.Delay(5*time.Second, time.Minute, attempt)):
				}
			}
		})
	}
}

// unchanged refuses to replace an original that changed since the scan
// that queued its job: its size, modification time and inode (an inode
// alone may be reused by a new file).
func unchanged(f store.LibraryFile, st fs.FileInfo) error {
	if st.Size() != f.Size || st.ModTime().UnixNano() != f.MTime || inode(st) != f.Inode {
		return kept("the original changed while it was encoded; it is judged again at the next scan")
	}
	return nil
}

// writeTemp copies the output at key (size bytes) to tmp, gives it the
// original's owner, group, mode and modification time through the open
// file (a name swapped for a link meanwhile leads nowhere), syncs it, and
// returns its SHA-256, checked by reading the written file back. Where
// herd may not give it the owner (it does not run as root), the original
// is kept, saying whom herd would have to run as.
func (m *Manager) writeTemp(ctx context.Context, root *os.Root, key, tmp string, size int64, orig fs.FileInfo) (string, error) {
	src, err := m.outputs.Open(ctx, key)
	if errors.Is(err, blob.ErrNotFound) {
		return "", &failedError{"the job's output is gone from storage (removed after --keep-replaced?); scan again to encode it anew"}
	}
	if err != nil {
		return "", fmt.Errorf("open the job's output: %w", err)
	}
	defer src.Close()
	_ = root.Remove(tmp) // a crash's partial file
	dst, err := root.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return "", err
	}
	h := sha256.New()
	n, err := io.Copy(io.MultiWriter(dst, h), src)
	if err == nil && n != size {
		err = fmt.Errorf("the job's output is %d bytes, not the %d it was verified at", n, size)
	}
	if err == nil {
		err = owned(dst, orig)
	}
	if err == nil {
		err = dst.Sync()
	}
	if cerr := dst.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		_ = root.Remove(tmp)
		return "", err
	}
	want := hex.EncodeToString(h.Sum(nil))
	got, err := fileSHA256(root, tmp)
	if err != nil || got != want {
		_ = root.Remove(tmp)
		return "", fmt.Errorf("the new file did not read back as written (%v)", err)
	}
	return want, syncDir(root, path.Dir(tmp))
}

// owned gives the open file f the original's owner, group, mode and
// modification time.
func owned(f *os.File, orig fs.FileInfo) error {
	if st, ok := orig.Sys().(*syscall.Stat_t); ok {
		if err := f.Chown(int(st.Uid), int(st.Gid)); err != nil {
			if errors.Is(err, fs.ErrPermission) || errors.Is(err, syscall.EPERM) {
				return kept("herd runs as uid %d gid %d and may not give the new file the original's owner, uid %d gid %d: run herd as root or as that user (or use action: alongside)",
					os.Geteuid(), os.Getegid(), st.Uid, st.Gid)
			}
			return err
		}
	}
	// After the owner: a change of owner clears the set-id bits.
	if err := f.Chmod(orig.Mode().Perm() | orig.Mode()&(fs.ModeSetuid|fs.ModeSetgid|fs.ModeSticky)); err != nil {
		return err
	}
	now, mtime := time.Now(), orig.ModTime()
	return syscall.Futimes(int(f.Fd()), []syscall.Timeval{syscall.NsecToTimeval(now.UnixNano()), syscall.NsecToTimeval(mtime.UnixNano())})
}

// discard removes what a replacement given up left beside the original.
func (m *Manager) discard(l *lib, f store.LibraryFile) {
	root, err := l.open()
	if err != nil {
		return
	}
	defer root.Close()
	dir, base := path.Split(f.Path)
	stem := strings.TrimSuffix(base, path.Ext(base))
	entries, err := fs.ReadDir(root.FS(), strings.TrimSuffix(cmp.Or(dir, "."), "/"))
	if err != nil {
		return
	}
	prefix := tempPrefix + f.JobID + "-" + stem
	for _, e := range entries {
		if strings.HasPrefix(e.Name(), prefix) {
			_ = root.Remove(dir + e.Name())
		}
	}
}

// purge empties the trash of originals older than keep_originals.
func (m *Manager) purge(ctx context.Context, l *lib) error {
	if l.KeepOriginals <= 0 {
		return nil
	}
	old, err := m.st.LibraryTrashBefore(ctx, l.Name, m.now().Add(-l.KeepOriginals))
	if err != nil {
		return err
	}
	if len(old) == 0 {
		return nil
	}
	root, err := l.open()
	if err != nil {
		return err
	}
	defer root.Close()
	for _, e := range old {
		if !slices.Contains(strings.Split(path.Dir(e.Path), "/"), TrashDir) {
			continue // not a trash's: never removed
		}
		if err := root.Remove(e.Path); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return err
		}
		if err := m.st.RemoveLibraryTrash(ctx, l.Name, e.Path); err != nil {
			return err
		}
		m.log.Info("library trash emptied", "library", l.Name, "path", e.Path, "original", e.Original)
	}
	return nil
}

// mkdirAll makes dir and its parents inside root.
func mkdirAll(root *os.Root, dir string) error {
	if dir == "." || dir == "" {
		return nil
	}
	return root.MkdirAll(dir, 0o755)
}

// fileSHA256 hashes the file at p inside root.
func fileSHA256(root *os.Root, p string) (string, error) {
	f, err := root.Open(p)
	if err != nil {
		return "", err
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		return "", err
	}
	return hex.EncodeToString(h.Sum(nil)), nil
}

// BytesIEC writes a size for people (1.5 GiB).
func BytesIEC(n int64) string {
	const unit = 1024
	if n < unit {
		return fmt.Sprintf("%d B", n)
	}
	div, exp := int64(unit), 0
	for k := n / unit; k >= unit; k /= unit {
		div *= unit
		exp++
	}
	return fmt.Sprintf("%.1f %ciB", float64(n)/float64(div), "KMGTPE"[exp])
}
