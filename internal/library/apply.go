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

	"github.com/herdhq/herd/internal/blob"
	"github.com/herdhq/herd/internal/job"
	"github.com/herdhq/herd/internal/pipeline"
	"github.com/herdhq/herd/internal/safefs"
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
//     then the new file and the original exchange names in one step
//     (swapIn), so the name holds the old file or the new one at every
//     moment, the original's other links keep the old bytes, and a file
//     written at the name in the instant before is never overwritten.
//   - stepPlaced (another name, as movie.avi becoming movie.mkv): the new
//     file is linked to its name (never over a file that is there), then
//     the original moved to the trash.
const (
	stepPlacing = "placing"
	stepReady   = "ready"
	stepTrashed = "trashed"
	stepPlaced  = "placed"
)

// failAfter is how long a replacement that fails before it has moved
// anything is tried (every tick) before its file is marked failed: long
// enough for a network share to come back.
const failAfter = 15 * time.Minute

// apply finishes the files whose job is over, and takes up again those
// whose failed job was retried.
func (m *Manager) apply(ctx context.Context, l *lib) error {
	files, err := m.st.LibraryFilesIn(ctx, l.Name, StateQueued, StateFailed)
	if err != nil || len(files) == 0 {
		return err
	}
	if err := mounted(l); err != nil {
		return err // an unmounted share would look like every original gone
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
		m.undo(l, f)
		f.State, f.Note, f.Step = StateKept, keep.msg, ""
		m.deliver(ctx, l, j.ID, false, "kept the original "+f.Path+": "+keep.msg)
		return m.put(ctx, f)
	case errors.Is(err, errInterrupted) || ctx.Err() != nil:
		return err
	}
	// Nothing moved yet: failing for failAfter, the file is failed (what
	// the replacement made taken back). Past that, the journal must be
	// finished: it is tried again at every step.
	if errors.As(err, &fail) || (m.failingFor(key) >= failAfter && (f.Step == "" || f.Step == stepPlacing || f.Step == stepReady)) {
		m.forget(key)
		m.undo(l, f)
		f.State, f.Note, f.Step, f.JobID = StateFailed, err.Error()+" (tried again when the file changes)", "", ""
		m.deliver(ctx, l, j.ID, false, "could not put the new file in place of "+f.Path+": "+err.Error())
		return m.put(ctx, f)
	}
	return err
}

// failingFor says how long the replacement of key has been failing,
// counting this failure; forget clears it.
func (m *Manager) failingFor(key string) time.Duration {
	m.triesMu.Lock()
	defer m.triesMu.Unlock()
	if m.tries == nil {
		m.tries = map[string]time.Time{}
	}
	first, ok := m.tries[key]
	if !ok {
		m.tries[key] = m.now()
		return 0
	}
	return m.now().Sub(first)
}

func (m *Manager) forget(key string) {
	m.triesMu.Lock()
	defer m.triesMu.Unlock()
	delete(m.tries, key)
}

// mounted refuses a library folder that is empty: a share not mounted.
func mounted(l *lib) error {
	d, err := os.Open(l.Path)
	if err != nil {
		return fmt.Errorf("library %s: %w", l.Name, err)
	}
	defer d.Close()
	if names, _ := d.Readdirnames(1); len(names) == 0 {
		return fmt.Errorf("library %s: %s is empty (is it mounted?); its replacements wait", l.Name, l.Path)
	}
	return nil
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
// journal from wherever f's Step says it got to. The journal may be
// behind the disk (a power cut can undo the store's last commits), so
// before the steps that move nothing it looks at the disk: an original no
// longer at its name but in the trash, with the new file in place, is a
// replacement already made.
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

	if f.Step == "" || f.Step == stepPlacing || f.Step == stepReady {
		orig, err := root.Lstat(f.Path)
		switch {
		case err == nil && unchanged(*f, orig) == nil:
		case err == nil || errors.Is(err, fs.ErrNotExist):
			if l.Action != ActionAlongside {
				if t, ok := findOriginal(root, *f, trash, j.ID); ok {
					if want, err := m.expected(ctx, *f, key); err == nil && m.ours(root, final, outSize, want) {
						f.NewSize, f.NewSHA256 = outSize, want
						return m.record(ctx, l, f, final, t, j.ID)
					}
				}
			}
			if errors.Is(err, fs.ErrNotExist) {
				return kept("the original is gone")
			}
			if !sameName && f.Step == stepReady && m.ours(root, final, f.NewSize, f.NewSHA256) {
				_ = root.Remove(final) // this replacement's, placed before a crash; the name holds the user's file
			}
			return kept("the original changed while its new file was made; it is judged again at the next scan")
		default:
			return err
		}
	}
	if f.Step == "" || f.Step == stepPlacing {
		if limit := float64(f.Size) * (1 - l.MinSavings); float64(outSize) >= limit || outSize >= f.Size {
			return kept("the new file is %s, the original %s: not %.0f%% smaller (min_savings)", BytesIEC(outSize), BytesIEC(f.Size), l.MinSavings*100)
		}
		if !sameName {
			if _, err := root.Lstat(final); err == nil {
				return kept("%s is there already, and herd does not overwrite a file it did not make", final)
			}
		}
		orig, err := root.Lstat(f.Path)
		if err != nil {
			return err
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
		if l.Action == ActionAlongside {
			if err := m.place(root, tmp, final, *f); err != nil {
				return err
			}
			return m.finish(ctx, l, f, final, f.Path, j.ID, "made "+final+" beside "+f.Path)
		}
		// The trash name is chosen, and journalled, before anything moves.
		if trash, err = trashName(root, f.Path, trash, j.ID); err != nil {
			return err
		}
		if sameName {
			// The original's bytes stay reachable from the trash the
			// moment the new file takes its name.
			if trash, err = keepIn(root, f.Path, trash, j.ID, false); err != nil {
				return fmt.Errorf("keep the original in %s: %w", TrashDir, err)
			}
			f.Step = stepTrashed
		} else {
			if err := m.place(root, tmp, final, *f); err != nil {
				return err
			}
			f.Step = stepPlaced
		}
		f.Trash = trash
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
			if _, err := root.Lstat(tmp); errors.Is(err, fs.ErrNotExist) {
				// The new file went while herd was stopped: made again.
				f.Step = ""
				if err := m.put(ctx, *f); err != nil {
					return err
				}
				return errors.New("the new file went; it is written again")
			}
			// The trash must hold the original before the name stops
			// holding it (a link lost with a power cut is made again).
			if t, err := root.Lstat(trash); err != nil || !os.SameFile(t, cur) {
				if trash, err = keepIn(root, f.Path, trash, j.ID, false); err != nil {
					return fmt.Errorf("keep the original in %s: %w", TrashDir, err)
				}
				f.Trash = trash
				if err := m.put(ctx, *f); err != nil {
					return err
				}
			}
			if err := m.swapIn(ctx, l, root, tmp, f.Path, trash); err != nil {
				return err
			}
		case err == nil && m.ours(root, f.Path, f.NewSize, f.NewSHA256):
			// Renamed, or exchanged, before a crash.
			if err := m.settleSwap(ctx, l, root, tmp, f.Path, trash); err != nil {
				return err
			}
		case err == nil || errors.Is(err, fs.ErrNotExist):
			// Something else took the name while herd was stopped, or
			// nothing holds it: the original stays in the trash.
			if err := m.st.AddLibraryTrash(ctx, store.TrashEntry{Library: l.Name, Path: trash, Original: f.Path, TrashedAt: m.now().UTC()}); err != nil {
				return err
			}
			return kept("the file changed or went while herd was stopped; the original is in %s", trash)
		default:
			return err
		}
	case stepPlaced:
		if !m.ours(root, final, f.NewSize, f.NewSHA256) {
			return kept("%s went or changed while herd was stopped; the original stays", final)
		}
		cur, err := root.Lstat(f.Path)
		switch {
		case errors.Is(err, fs.ErrNotExist):
			// Moved before a crash, to the trash chosen or its folder's own.
			if t, ok := findOriginal(root, *f, trash, j.ID); ok {
				trash = t
			} else {
				trash = "" // the user removed it: nothing to keep
			}
		case err != nil:
			return err
		case unchanged(*f, cur) == nil:
			if trash, err = keepIn(root, f.Path, trash, j.ID, true); err != nil {
				return err
			}
		default:
			// Something else took the original's name while herd was
			// stopped: this replacement's file is taken back.
			_ = root.Remove(final)
			return kept("the original changed while herd was stopped; it is judged again at the next scan")
		}
	}
	if err := m.interrupted("moved"); err != nil {
		return err
	}
	return m.record(ctx, l, f, final, trash, j.ID)
}

// swapIn gives the new file at tmp the original's name in one step: the
// two names are exchanged (renameat2 RENAME_EXCHANGE), so that whatever
// held the name ends at tmp, where settleSwap looks at it. Had a program
// written another file at the name in the instant since herd looked, that
// file is not lost: it gets its name back. Where the file system cannot
// exchange names (NFS, SMB) a rename does it, and that instant stays open.
func (m *Manager) swapIn(ctx context.Context, l *lib, root *os.Root, tmp, name, trash string) error {
	if err := m.interrupted("swapping"); err != nil {
		return err
	}
	err := safefs.Exchange(root, tmp, name)
	if errors.Is(err, errors.ErrUnsupported) {
		if err := root.Rename(tmp, name); err != nil {
			return err
		}
		return syncDir(root, path.Dir(name))
	}
	if err != nil {
		return err
	}
	if err := m.interrupted("exchanged"); err != nil {
		return err
	}
	return m.settleSwap(ctx, l, root, tmp, name, trash)
}

// settleSwap finishes an exchange of tmp and name whose name holds the new
// file: at tmp is the original, whose link in the trash keeps it, and tmp
// goes; or a file someone wrote at the name just before the exchange,
// which gets its name back (the replacement is then kept from it, the
// original staying in the trash). Nothing at tmp: a rename did it.
func (m *Manager) settleSwap(ctx context.Context, l *lib, root *os.Root, tmp, name, trash string) error {
	was, err := root.Lstat(tmp)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return syncDir(root, path.Dir(name))
	case err != nil:
		return err
	}
	if orig, err := root.Lstat(trash); err == nil && os.SameFile(was, orig) {
		if err := root.Remove(tmp); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return err
		}
		return syncDir(root, path.Dir(name))
	}
	if err := safefs.Exchange(root, tmp, name); err != nil {
		return fmt.Errorf("give %s back its name: %w", name, err)
	}
	if err := syncDir(root, path.Dir(name)); err != nil {
		return err
	}
	if err := m.st.AddLibraryTrash(ctx, store.TrashEntry{Library: l.Name, Path: trash, Original: name, TrashedAt: m.now().UTC()}); err != nil {
		return err
	}
	return kept("%s was written anew as herd replaced it; the new file stays, and the original is in %s", name, trash)
}

// record finishes a replacement made: the original's place in the trash
// ("" when there is none) and the new file.
func (m *Manager) record(ctx context.Context, l *lib, f *store.LibraryFile, final, trash, jobID string) error {
	where := "removed while herd was stopped"
	if trash != "" {
		if err := m.st.AddLibraryTrash(ctx, store.TrashEntry{Library: l.Name, Path: trash, Original: f.Path, TrashedAt: m.now().UTC()}); err != nil {
			return err
		}
		where = "in " + trash
	}
	return m.finish(ctx, l, f, final, f.Path, jobID, fmt.Sprintf("replaced %s: %s, was %s; the original is %s", final, BytesIEC(f.NewSize), BytesIEC(f.Size), where))
}

// expected is the SHA-256 the new file has: the journal's, or the job
// output's (a journal a power cut set back).
func (m *Manager) expected(ctx context.Context, f store.LibraryFile, key string) (string, error) {
	if f.NewSHA256 != "" {
		return f.NewSHA256, nil
	}
	src, err := m.outputs.Open(ctx, key)
	if err != nil {
		return "", err
	}
	defer src.Close()
	return blob.ReaderSHA256(src)
}

// findOriginal looks for the original f recorded in the places a
// replacement may have moved it: the trash chosen, the name used when
// that was taken, and its folder's own trash.
func findOriginal(root *os.Root, f store.LibraryFile, trash, jobID string) (string, bool) {
	local := localTrash(f.Path)
	for _, p := range []string{trash, altName(trash, jobID), TrashDir + "/" + f.Path, altName(TrashDir+"/"+f.Path, jobID), local, altName(local, jobID)} {
		if st, err := root.Lstat(p); err == nil && unchanged(f, st) == nil {
			return p, true
		}
	}
	return "", false
}

// altName is p with the job's id before its extension: the trash name of
// an original whose usual one an earlier original holds.
func altName(p, jobID string) string {
	ext := path.Ext(p)
	return strings.TrimSuffix(p, ext) + "." + jobID + ext
}

// trashName is the name in the trash the original at rel goes to: trash,
// or altName(trash) when an earlier original holds it.
func trashName(root *os.Root, rel, trash, jobID string) (string, error) {
	st, err := root.Lstat(trash)
	if errors.Is(err, fs.ErrNotExist) {
		return trash, nil
	}
	if err != nil {
		return "", err
	}
	if cur, err := root.Lstat(rel); err == nil && os.SameFile(st, cur) {
		return trash, nil // linked before a crash
	}
	return altName(trash, jobID), nil
}

// place gives the new file at tmp its name, final, without ever replacing
// a file there (a link, which fails when the name is taken), then removes
// tmp. Run again after a crash, it finds the work done.
func (m *Manager) place(root *os.Root, tmp, final string, f store.LibraryFile) error {
	err := root.Link(tmp, final)
	switch {
	case errors.Is(err, fs.ErrExist):
		if !m.ours(root, final, f.NewSize, f.NewSHA256) {
			return kept("%s is there already, and herd does not overwrite a file it did not make", final)
		}
	case errors.Is(err, fs.ErrNotExist) && m.ours(root, final, f.NewSize, f.NewSHA256):
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
func (m *Manager) ours(root *os.Root, p string, size int64, sum string) bool {
	st, err := root.Lstat(p)
	if err != nil || !st.Mode().IsRegular() || st.Size() != size || sum == "" {
		return false
	}
	got, err := blob.RootFileSHA256(root, p)
	return err == nil && got == sum
}

// keepIn links the original at rel to the trash name to (and, with
// move, removes rel once it is there: a move that never replaces a file,
// as a rename would). A file on another file system mounted inside the
// library goes to its folder's own trash instead. It returns the name,
// the folders it made synced; run again after a crash, it finds the work
// done.
func keepIn(root *os.Root, rel, to, jobID string, move bool) (string, error) {
	link := func(to string) error {
		if err := mkdirAll(root, path.Dir(to)); err != nil {
			return err
		}
		err := root.Link(rel, to)
		if errors.Is(err, fs.ErrExist) {
			st, serr := root.Lstat(to)
			cur, cerr := root.Lstat(rel)
			if serr != nil || cerr != nil || !os.SameFile(st, cur) {
				return err // someone else's file: not ours to take
			}
			err = nil // linked before a crash
		}
		if err != nil {
			return err
		}
		return syncDirs(root, path.Dir(to))
	}
	err := link(to)
	if errors.Is(err, syscall.EXDEV) {
		local, lerr := trashName(root, rel, localTrash(rel), jobID)
		if lerr != nil {
			return "", lerr
		}
		to, err = local, link(local)
	}
	if err != nil {
		return "", err
	}
	if move {
		if err := root.Remove(rel); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return "", err
		}
		if err := syncDir(root, path.Dir(rel)); err != nil {
			return "", err
		}
	}
	return to, nil
}

// syncDirs syncs dir and every folder above it inside root: folders just
// made are names in their parents.
func syncDirs(root *os.Root, dir string) error {
	for {
		if err := syncDir(root, dir); err != nil {
			return err
		}
		if dir == "." || dir == "" || dir == "/" {
			return nil
		}
		dir = path.Dir(dir)
	}
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
	// The media servers are told through the outbox, before the file is
	// recorded done: a restart that finishes the replacement again queues
	// the same notices, which adds nothing.
	if len(l.Notify) > 0 {
		files := map[string]string{l.Name: filepath.Join(l.Path, filepath.FromSlash(final))}
		if err := m.st.HandOffFiles(ctx, job.DerivedID("lib", jobID, l.Name), jobID, l.Notify, files, m.now().UTC()); err != nil {
			return err
		}
	}
	done := *f
	done.Step, done.State, done.Note, done.UpdatedAt = "", state, detail, m.now().UTC()
	if state == StateReplaced {
		// The new file is not the one checked.
		m.dropCheck(ctx, *f)
		done.Check, done.CheckNote, done.CheckJob = "", "", ""
	}
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
	return nil
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
		return "", &failedError{"the job's output is gone from storage"}
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
	got, err := blob.RootFileSHA256(root, tmp)
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
				return kept("herd runs as uid %d gid %d and may not give the new file the original's owner, uid %d gid %d: run herd as root or as that user",
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

// undo takes back what a replacement given up made (f's journal is at
// "", placing or ready: the original is still at its name): its temporary
// file, the new file it may have placed under another name, and a trash
// link of the original it may have made.
func (m *Manager) undo(l *lib, f store.LibraryFile) {
	root, err := l.open()
	if err != nil {
		return
	}
	defer root.Close()
	dir, base := path.Split(f.Path)
	ext := path.Ext(base)
	stem := strings.TrimSuffix(base, ext)
	orig, err := root.Lstat(f.Path)
	atName := err == nil && unchanged(f, orig) == nil
	for _, out := range []string{".mkv", ".mp4"} {
		_ = root.Remove(dir + tempPrefix + f.JobID + "-" + stem + out)
		if final := dir + stem + out; final != f.Path && atName && f.NewSHA256 != "" && m.ours(root, final, f.NewSize, f.NewSHA256) {
			_ = root.Remove(final)
		}
	}
	if !atName {
		return
	}
	for _, t := range []string{f.Trash, TrashDir + "/" + f.Path, altName(TrashDir+"/"+f.Path, f.JobID), localTrash(f.Path), altName(localTrash(f.Path), f.JobID)} {
		if st, err := root.Lstat(t); t != "" && err == nil && os.SameFile(st, orig) {
			_ = root.Remove(t) // a link of the original, which is still at its name
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
