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
	"strings"
	"syscall"
	"time"

	"github.com/herdhq/herd/internal/backoff"
	"github.com/herdhq/herd/internal/job"
	"github.com/herdhq/herd/internal/pipeline"
	"github.com/herdhq/herd/internal/publish"
	"github.com/herdhq/herd/internal/store"
)

// A replacement's journal (store.LibraryFile.Step). Each step is recorded
// once done, so that a restart (apply) finishes what a crash cut short:
//
//   - stepPlacing: the new file is being written beside the original
//     under a temporary name (.herd-JOB-NAME). A crash leaves a partial
//     file: it is removed and written again.
//   - stepReady: the new file is whole, checked against the job's output
//     and given the original's owner, group, mode and modification time.
//   - stepTrashed (same name): the original is hard-linked into the trash;
//     then the new file is renamed over it, one rename, so the name holds
//     the old file or the new one at every moment, and the original's
//     other links keep the old bytes.
//   - stepPlaced (another name, as movie.avi becoming movie.mkv): the new
//     file is renamed to its name first, then the original moved to the
//     trash.
const (
	stepPlacing = "placing"
	stepReady   = "ready"
	stepTrashed = "trashed"
	stepPlaced  = "placed"
)

// apply finishes the files whose job is over: their replacement, or
// their failure.
func (m *Manager) apply(ctx context.Context, l *lib) error {
	files, err := m.st.LibraryFilesIn(ctx, l.Name, StateQueued)
	if err != nil {
		return err
	}
	for _, f := range files {
		if err := m.applyOne(ctx, l, f); err != nil {
			return err
		}
	}
	return nil
}

func (m *Manager) applyOne(ctx context.Context, l *lib, f store.LibraryFile) error {
	j, err := m.st.GetJob(ctx, f.JobID)
	if errors.Is(err, job.ErrNotFound) {
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
		f.State, f.Note = StateFailed, fmt.Sprintf("job %s %s: %s (herd retry %s tries again)", j.ID, j.State, j.Error, j.ID)
		if f.Step != "" {
			m.discard(l, f)
			f.Step = ""
		}
		return m.put(ctx, f)
	default:
		return nil // still running
	}
	if l.Action == ActionPublish {
		f.State, f.Note = StateDone, "delivered to "+strings.Join(l.Publish, ", ")
		return m.put(ctx, f)
	}
	err = m.replace(ctx, l, &f, j)
	var keep *keptError
	switch {
	case errors.As(err, &keep):
		m.discard(l, f)
		f.State, f.Note, f.Step = StateKept, keep.msg, ""
		m.deliver(ctx, l, j.ID, false, "kept the original "+f.Path+": "+keep.msg)
		return m.put(ctx, f)
	case err != nil && ctx.Err() == nil && !isRetryable(err):
		m.discard(l, f)
		f.State, f.Note, f.Step = StateFailed, err.Error(), ""
		m.deliver(ctx, l, j.ID, false, "could not put the new file in place of "+f.Path+": "+err.Error())
		return m.put(ctx, f)
	}
	return err
}

// keptError says the original stays, and why (not smaller, an owner herd
// cannot give, the original changed meanwhile).
type keptError struct{ msg string }

func (e *keptError) Error() string { return e.msg }

func kept(format string, args ...any) error { return &keptError{fmt.Sprintf(format, args...)} }

// isRetryable says err may pass (the store, a disk momentarily full):
// the replacement is tried again at the next step.
func isRetryable(err error) bool {
	return errors.Is(err, syscall.ENOSPC) || errors.Is(err, syscall.EIO) || errors.Is(err, context.DeadlineExceeded) || errors.Is(err, errInterrupted)
}

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
	if err := jsonUnmarshal(j.Outputs, &outs); err != nil {
		return "", "", 0, fmt.Errorf("job %s: read its outputs: %w", j.ID, err)
	}
	for _, o := range outs {
		if o.Kind == "mp4" || o.Kind == "mkv" {
			return pipeline.OutputsKey(j.ID) + "/" + o.Path, o.Path, o.Size, nil
		}
	}
	return "", "", 0, fmt.Errorf("job %s has no MP4 or MKV output", j.ID)
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
	sameName := final == f.Path
	if f.Step != "" && f.Step != stepPlacing && f.Trash != "" {
		trash = f.Trash // where this replacement chose to keep the original
	}

	if f.Step == "" || f.Step == stepPlacing {
		orig, err := root.Stat(f.Path)
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
		if final != f.Path && final != tmp {
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
		sum, err := m.writeTemp(ctx, root, key, tmp)
		if err != nil {
			return err
		}
		if err := owned(root, tmp, orig); err != nil {
			_ = root.Remove(tmp)
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
	if l.Action == ActionAlongside {
		if err := root.Rename(tmp, final); err != nil && !alreadyDone(root, tmp, final) {
			return err
		}
		return m.finish(ctx, l, f, final, f.Path, j.ID, "made "+final+" beside "+f.Path)
	}
	if f.Step == stepReady {
		if orig, err := root.Stat(f.Path); err != nil || unchanged(*f, orig) != nil {
			if !sameName && alreadyDone(root, tmp, final) {
				_ = root.Remove(final) // this replacement's, renamed in before a crash
			}
			return kept("the original changed or went while the new file was written; it is judged again at the next scan")
		}
		if err := mkdirAll(root, path.Dir(trash)); err != nil {
			return err
		}
		if sameName {
			// The original's bytes stay reachable from the trash the moment the new file takes its name.
			_ = root.Remove(trash)
			err := root.Link(f.Path, trash)
			if errors.Is(err, syscall.EXDEV) {
				// The file is on another file system mounted inside the
				// library: its folder gets a trash of its own there.
				trash = localTrash(f.Path)
				if err = mkdirAll(root, path.Dir(trash)); err == nil {
					_ = root.Remove(trash)
					err = root.Link(f.Path, trash)
				}
			}
			if err != nil {
				return fmt.Errorf("keep the original in %s: %w", TrashDir, err)
			}
			f.Step, f.Trash = stepTrashed, trash
		} else {
			if err := root.Rename(tmp, final); err != nil && !alreadyDone(root, tmp, final) {
				return err
			}
			f.Step = stepPlaced
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
		if err := root.Rename(tmp, f.Path); err != nil && !alreadyDone(root, tmp, f.Path) {
			return err
		}
	case stepPlaced:
		if err := mkdirAll(root, path.Dir(trash)); err != nil {
			return err
		}
		err := root.Rename(f.Path, trash)
		if errors.Is(err, syscall.EXDEV) {
			trash = localTrash(f.Path)
			if err = mkdirAll(root, path.Dir(trash)); err == nil {
				err = root.Rename(f.Path, trash)
			}
		}
		if err != nil && !errors.Is(err, fs.ErrNotExist) {
			return err
		}
		if errors.Is(err, fs.ErrNotExist) {
			if _, lerr := root.Lstat(localTrash(f.Path)); lerr == nil {
				trash = localTrash(f.Path) // moved there before a crash
			}
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
	for _, n := range l.Notify {
		m.tellers.Go(func() {
			ev := publish.Event{ID: jobID + "-" + l.Name, Type: job.EventSucceeded, CreatedAt: m.now().UTC(),
				Files: map[string]string{l.Name: filepath.Join(l.Path, filepath.FromSlash(rel))}}
			for attempt := 1; attempt <= tellAttempts; attempt++ {
				detail, err := n.Notify(m.base, ev)
				final := err == nil || publish.IsPermanent(err) || attempt == tellAttempts || m.base.Err() != nil
				if err != nil {
					detail = err.Error()
				}
				if final || err == nil {
					_ = m.st.AddDelivery(context.WithoutCancel(m.base), store.Delivery{JobID: jobID, Publisher: n.Name, Type: n.Type, Event: job.EventSucceeded,
						Attempt: attempt, OK: err == nil, Final: true, Detail: detail, At: m.now().UTC()})
					return
				}
				select {
				case <-m.base.Done():
					return
				case <-time.After(backoff.Delay(5*time.Second, time.Minute, attempt)):
				}
			}
		})
	}
}

// alreadyDone says a rename from→to that failed had happened before (a
// restart redoing a step).
func alreadyDone(root *os.Root, from, to string) bool {
	_, errFrom := root.Lstat(from)
	_, errTo := root.Lstat(to)
	return errors.Is(errFrom, fs.ErrNotExist) && errTo == nil
}

// unchanged refuses to replace an original that changed since the scan
// that queued its job.
func unchanged(f store.LibraryFile, st fs.FileInfo) error {
	if st.Size() != f.Size || st.ModTime().UnixNano() != f.MTime || inode(st) != f.Inode {
		return kept("the original changed while it was encoded; it is judged again at the next scan")
	}
	return nil
}

// writeTemp copies the output at key to tmp, synced, and returns its
// SHA-256, checked by reading the written file back.
func (m *Manager) writeTemp(ctx context.Context, root *os.Root, key, tmp string) (string, error) {
	src, err := m.outputs.Open(ctx, key)
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
	_, err = io.Copy(io.MultiWriter(dst, h), src)
	if err == nil {
		err = dst.Sync()
	}
	if cerr := dst.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		_ = root.Remove(tmp)
		return "", fmt.Errorf("write the new file: %w", err)
	}
	want := hex.EncodeToString(h.Sum(nil))
	got, err := fileSHA256(root, tmp)
	if err != nil || got != want {
		_ = root.Remove(tmp)
		return "", fmt.Errorf("the new file did not read back as written (%v)", err)
	}
	return want, nil
}

// owned gives tmp the original's owner, group, mode and modification
// time. Where herd may not give it the owner (not root), the original is
// kept, saying who herd would have to run as.
func owned(root *os.Root, tmp string, orig fs.FileInfo) error {
	st, ok := orig.Sys().(*syscall.Stat_t)
	if ok {
		if err := root.Lchown(tmp, int(st.Uid), int(st.Gid)); err != nil {
			if errors.Is(err, fs.ErrPermission) || errors.Is(err, syscall.EPERM) {
				return kept("herd runs as uid %d gid %d and may not give the new file the original's owner, uid %d gid %d: run herd as root or as that user (or use action: alongside)",
					os.Geteuid(), os.Getegid(), st.Uid, st.Gid)
			}
			return err
		}
	}
	if err := root.Chmod(tmp, orig.Mode().Perm()|orig.Mode()&(fs.ModeSetuid|fs.ModeSetgid|fs.ModeSticky)); err != nil {
		return err
	}
	return root.Chtimes(tmp, time.Now(), orig.ModTime())
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
		if !strings.HasPrefix(e.Path, TrashDir+"/") {
			continue
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

func jsonUnmarshal(b []byte, v any) error { return json.Unmarshal(b, v) }
