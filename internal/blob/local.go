// Package blob stores herd's files (sources, staged and published outputs)
// under keys. A file or folder becomes visible under its key only when it is
// complete: writers fill a temporary name and commit it with one rename. Keys
// are herd's own (ids and fixed names); user-supplied names never reach here.
package blob

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"hash"
	"io"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"strings"
	"time"

	"github.com/herdhq/herd/internal/safefs"
)

// ErrNotFound is returned for a key that does not exist.
var ErrNotFound = errors.New("blob not found")

// Local keeps blobs in a directory on local disk.
type Local struct {
	root string
}

// NewLocal opens (creating) a blob directory.
func NewLocal(root string) (*Local, error) {
	abs, err := filepath.Abs(root)
	if err != nil {
		return nil, fmt.Errorf("blob root: %w", err)
	}
	if err := os.MkdirAll(filepath.Join(abs, ".tmp"), 0o750); err != nil {
		return nil, fmt.Errorf("create blob root: %w", err)
	}
	return &Local{root: abs}, nil
}

// ValidKey reports whether key is a clean relative slash path inside the store.
func ValidKey(key string) bool {
	if key == "" || strings.HasPrefix(key, "/") || strings.ContainsAny(key, "\\\x00") || path.Clean(key) != key {
		return false
	}
	for _, part := range strings.Split(key, "/") {
		if part == ".." || part == "." || strings.HasPrefix(part, ".tmp") {
			return false
		}
	}
	return true
}

// Path returns the file system path of key.
func (l *Local) Path(key string) (string, error) {
	if !ValidKey(key) {
		return "", fmt.Errorf("invalid blob key %q", key)
	}
	return filepath.Join(l.root, filepath.FromSlash(key)), nil
}

// TempDir makes a scratch folder on the same file system as the store, so
// that committing it is a rename.
func (l *Local) TempDir(prefix string) (string, error) {
	d, err := os.MkdirTemp(filepath.Join(l.root, ".tmp"), prefix+"-")
	if err != nil {
		return "", fmt.Errorf("make scratch folder: %w", err)
	}
	return d, nil
}

// NamedTempDir returns (creating) the scratch folder with a given name, so
// that a writer that reconnects finds what it already sent. name must be a
// single path element of herd's own making.
func (l *Local) NamedTempDir(name string) (string, error) {
	if !validTempName(name) {
		return "", fmt.Errorf("invalid scratch name %q", name)
	}
	d := filepath.Join(l.root, ".tmp", name)
	if err := os.MkdirAll(d, 0o750); err != nil {
		return "", fmt.Errorf("make scratch folder: %w", err)
	}
	return d, nil
}

// validTempName: a scratch name is one plain path element.
func validTempName(name string) bool {
	return name != "" && !strings.ContainsAny(name, "/\\\x00") && name != "." && name != ".."
}

// TempExists reports whether the named scratch folder exists.
func (l *Local) TempExists(name string) bool {
	if !validTempName(name) {
		return false
	}
	_, err := os.Stat(filepath.Join(l.root, ".tmp", name))
	return err == nil
}

// Writer writes one blob under a temporary local name, hashing what it
// writes; Commit gives it its key (on disk: a rename; in a bucket: an upload).
type Writer struct {
	f      *os.File
	h      hash.Hash
	n      int64
	done   bool
	commit func(tmp, key string) error
	// sum is an adopted file's SHA-256 (Adopt); such a file is someone
	// else's to remove.
	sum string
}

// adopt makes a Writer of the whole file at path whose SHA-256 (sum) and
// size are known: nothing is written to it, Commit gives it its key with
// commit, and neither Commit nor Abort removes it.
func adopt(path, sum string, size int64, commit func(file, key, sum string) error) (*Writer, error) {
	if len(sum) != sha256.Size*2 {
		return nil, fmt.Errorf("adopt %s: no SHA-256 given", filepath.Base(path))
	}
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("adopt: %w", err)
	}
	st, err := f.Stat()
	if err == nil && st.Size() != size {
		err = fmt.Errorf("adopt %s: %d bytes, not %d", filepath.Base(path), st.Size(), size)
	}
	if err == nil {
		err = f.Chmod(0o600) // as every blob: the store's alone
	}
	if err != nil {
		_ = f.Close()
		return nil, err
	}
	return &Writer{f: f, n: size, sum: sum, commit: func(file, key string) error { return commit(file, key, sum) }}, nil
}

// Adopt stores the finished file at path, whose SHA-256 (sum) and size are
// known (an upload hashed as it arrived), without writing it again: Commit
// hard-links it into place (copies it across file systems); the caller
// removes path afterwards.
func (l *Local) Adopt(path, sum string, size int64) (*Writer, error) {
	return adopt(path, sum, size, l.linkInto)
}

// linkInto gives a finished file that stays where it is a second name, key.
func (l *Local) linkInto(file, key, sum string) error {
	dst, err := l.Path(key)
	if err != nil {
		return err
	}
	if err := os.MkdirAll(filepath.Dir(dst), 0o750); err != nil {
		return fmt.Errorf("create blob folder: %w", err)
	}
	err = os.Link(file, dst)
	switch {
	case errors.Is(err, fs.ErrExist):
		return nil // the same bytes, stored already
	case err != nil:
		// Another file system, or one without links (FUSE, some SMB): a
		// copy, checked against the digest it is stored under.
		w, err := l.Create()
		if err != nil {
			return err
		}
		src, err := os.Open(file)
		if err != nil {
			w.Abort()
			return err
		}
		defer src.Close()
		if _, err := io.Copy(w, src); err != nil {
			w.Abort()
			return fmt.Errorf("copy blob: %w", err)
		}
		if got := w.SHA256(); got != sum {
			w.Abort()
			return fmt.Errorf("copy blob: the file hashes to %s, not %s", got, sum)
		}
		return w.Commit(key)
	}
	return safefs.SyncPath(filepath.Dir(dst))
}

func newWriter(dir string, commit func(tmp, key string) error) (*Writer, error) {
	f, err := os.CreateTemp(dir, "upload-*")
	if err != nil {
		return nil, fmt.Errorf("create blob: %w", err)
	}
	return &Writer{f: f, h: sha256.New(), commit: commit}, nil
}

// Create starts writing a blob whose key is chosen at Commit (it may be the
// content's hash). Nothing is visible until then.
func (l *Local) Create() (*Writer, error) {
	return newWriter(filepath.Join(l.root, ".tmp"), l.renameInto)
}

func (w *Writer) Write(p []byte) (int, error) {
	if w.sum != "" {
		return 0, errors.New("an adopted blob is not written to")
	}
	n, err := w.f.Write(p)
	w.h.Write(p[:n])
	w.n += int64(n)
	return n, err
}

// Size is the number of bytes written so far.
func (w *Writer) Size() int64 { return w.n }

// SHA256 is the hex digest of what was written so far.
func (w *Writer) SHA256() string {
	if w.sum != "" {
		return w.sum
	}
	return hex.EncodeToString(w.h.Sum(nil))
}

// Commit syncs the file and stores it as key.
func (w *Writer) Commit(key string) error {
	if w.done {
		return errors.New("blob already committed or aborted")
	}
	if !ValidKey(key) {
		w.Abort()
		return fmt.Errorf("invalid blob key %q", key)
	}
	w.done = true
	if w.f == nil { // an adopted object: it moves inside its store
		return w.commit("", key)
	}
	if w.sum == "" {
		defer os.Remove(w.f.Name()) // gone after a rename; after an upload, the local copy
	}
	if err := w.f.Sync(); err != nil {
		_ = w.f.Close()
		return fmt.Errorf("sync blob: %w", err)
	}
	if err := w.f.Close(); err != nil {
		return fmt.Errorf("close blob: %w", err)
	}
	return w.commit(w.f.Name(), key)
}

// Abort drops what was written.
func (w *Writer) Abort() {
	if w.done {
		return
	}
	w.done = true
	if w.f == nil {
		return
	}
	_ = w.f.Close()
	if w.sum == "" {
		_ = os.Remove(w.f.Name())
	}
}

// renameInto moves a finished local file into place as key.
func (l *Local) renameInto(tmp, key string) error {
	dst, err := l.Path(key)
	if err != nil {
		return err
	}
	if err := os.MkdirAll(filepath.Dir(dst), 0o750); err != nil {
		return fmt.Errorf("create blob folder: %w", err)
	}
	if err := os.Rename(tmp, dst); err != nil {
		return fmt.Errorf("commit blob: %w", err)
	}
	return safefs.SyncPath(filepath.Dir(dst))
}

// PutFile stores file at key, replacing what is there: a hard link where
// file is on the blob folder's file system, else a copy; either way it
// appears at key whole, in one rename.
func (l *Local) PutFile(_ context.Context, key, file string) error {
	tmp, err := l.TempDir("put")
	if err != nil {
		return err
	}
	defer os.RemoveAll(tmp)
	staged := filepath.Join(tmp, "f")
	if err := os.Link(file, staged); err != nil {
		if err := copyInto(file, tmp, "f"); err != nil {
			return fmt.Errorf("store %s: %w", key, err)
		}
	}
	return l.renameInto(staged, key)
}

// copyInto copies file to name in folder dir (safefs.Copy: synced and
// checked before it gets its name).
func copyInto(file, dir, name string) error {
	from, err := os.OpenRoot(filepath.Dir(file))
	if err != nil {
		return err
	}
	defer from.Close()
	to, err := os.OpenRoot(dir)
	if err != nil {
		return err
	}
	defer to.Close()
	return safefs.Copy(from, filepath.Base(file), to, name)
}

// CommitDir moves a finished scratch folder to key in one rename, replacing
// whatever an earlier, abandoned attempt left there.
func (l *Local) CommitDir(dir, key string) error {
	dst, err := l.Path(key)
	if err != nil {
		return err
	}
	if err := syncTree(dir); err != nil {
		return err
	}
	if err := os.MkdirAll(filepath.Dir(dst), 0o750); err != nil {
		return fmt.Errorf("create blob folder: %w", err)
	}
	if _, err := os.Stat(dst); err == nil {
		// Move the old one aside first: rename cannot replace a non-empty folder.
		old, err := l.TempDir("replaced")
		if err != nil {
			return err
		}
		aside := filepath.Join(old, "x")
		if err := os.Rename(dst, aside); err != nil {
			_ = os.RemoveAll(old)
			return fmt.Errorf("move old blob folder aside: %w", err)
		}
		if err := os.Rename(dir, dst); err != nil {
			// The new folder is gone (another commit took it): the old one
			// goes back rather than leaving nothing in place.
			if rerr := os.Rename(aside, dst); rerr != nil {
				return fmt.Errorf("commit blob folder: %w (and putting the old one back: %v; it is in %s)", err, rerr, aside)
			}
			_ = os.RemoveAll(old)
			return fmt.Errorf("commit blob folder: %w", err)
		}
		_ = os.RemoveAll(old)
		return safefs.SyncPath(filepath.Dir(dst))
	}
	if err := os.Rename(dir, dst); err != nil {
		return fmt.Errorf("commit blob folder: %w", err)
	}
	return safefs.SyncPath(filepath.Dir(dst))
}

// Has reports whether key exists (the Blobs interface).
func (l *Local) Has(_ context.Context, key string) (bool, error) { return l.Exists(key), nil }

// Exists reports whether key exists.
func (l *Local) Exists(key string) bool {
	p, err := l.Path(key)
	if err != nil {
		return false
	}
	_, err = os.Stat(p)
	return err == nil
}

// Open opens a blob file for reading.
func (l *Local) Open(key string) (*os.File, error) {
	p, err := l.Path(key)
	if err != nil {
		return nil, err
	}
	f, err := os.Open(p)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("%s: %w", key, ErrNotFound)
	}
	if err != nil {
		return nil, fmt.Errorf("open blob: %w", err)
	}
	return f, nil
}

// RemoveAll deletes key and everything under it.
func (l *Local) RemoveAll(key string) error {
	p, err := l.Path(key)
	if err != nil {
		return err
	}
	return os.RemoveAll(p)
}

// CleanTemp deletes scratch files older runs left behind (see CleanDir).
// Call at start-up, before any worker runs.
func (l *Local) CleanTemp(keep func(name string) bool) (left []string, err error) {
	return CleanDir(filepath.Join(l.root, ".tmp"), keep)
}

// ScratchLeft is what to log of the entries CleanDir left.
const ScratchLeft = "scratch of an earlier run could not be removed yet (a tool of the stopped run may still write to it); it is removed at the next start"

// CleanDir removes what an earlier run left in the scratch folder dir,
// but for the entries keep keeps. An entry it cannot remove now, most
// likely one a tool of a killed run (an ffmpeg in its own process group)
// is still writing to, is left for the next start and named in left: the
// caller says so and goes on, new work taking new names. err is for a
// folder that cannot be read.
func CleanDir(dir string, keep func(name string) bool) (left []string, err error) {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return nil, fmt.Errorf("clean scratch: %w", err)
	}
	for _, e := range entries {
		if keep != nil && keep(e.Name()) {
			continue
		}
		if err := os.RemoveAll(filepath.Join(dir, e.Name())); err != nil {
			left = append(left, e.Name())
		}
	}
	return left, nil
}

// TempNames lists what sits in the scratch area.
func (l *Local) TempNames() ([]string, error) {
	entries, err := os.ReadDir(filepath.Join(l.root, ".tmp"))
	names := make([]string, 0, len(entries))
	for _, e := range entries {
		names = append(names, e.Name())
	}
	return names, err
}

// TempIdle is how long ago the named scratch folder (or anything directly
// in it) last changed; 0 when it does not exist or cannot be read.
func (l *Local) TempIdle(name string) time.Duration {
	if !validTempName(name) {
		return 0
	}
	dir := filepath.Join(l.root, ".tmp", name)
	st, err := os.Stat(dir)
	if err != nil {
		return 0
	}
	last := st.ModTime()
	entries, _ := os.ReadDir(dir)
	for _, e := range entries {
		if info, err := e.Info(); err == nil && info.ModTime().After(last) {
			last = info.ModTime()
		}
	}
	return time.Since(last)
}

// RemoveTemp removes the named scratch folder or file.
func (l *Local) RemoveTemp(name string) error {
	if !validTempName(name) {
		return fmt.Errorf("invalid scratch name %q", name)
	}
	return os.RemoveAll(filepath.Join(l.root, ".tmp", name))
}

// TempEntries counts what sits in the scratch area (tests and health checks).
func (l *Local) TempEntries() (int, error) {
	entries, err := os.ReadDir(filepath.Join(l.root, ".tmp"))
	return len(entries), err
}

// Check verifies the store is writable.
func (l *Local) Check() error {
	f, err := os.CreateTemp(filepath.Join(l.root, ".tmp"), "check-*")
	if err != nil {
		return fmt.Errorf("blob store not writable: %w", err)
	}
	name := f.Name()
	_ = f.Close()
	return os.Remove(name)
}

// syncTree fsyncs every file under dir so that a rename after it cannot
// expose an empty file after a power cut.
func syncTree(dir string) error {
	return filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		f, err := os.Open(p) //nolint:gosec // G122: dir is herd's own staging folder, which nothing else writes in
		if err != nil {
			return fmt.Errorf("sync %s: %w", d.Name(), err)
		}
		defer f.Close()
		if err := f.Sync(); err != nil {
			return fmt.Errorf("sync %s: %w", d.Name(), err)
		}
		return nil
	})
}

// FileSHA256 is the hex SHA-256 of a file's bytes.
func FileSHA256(path string) (string, error) {
	f, err := os.Open(path)
	if err != nil {
		return "", err
	}
	defer f.Close()
	return ReaderSHA256(f)
}

// RootFileSHA256 is the hex SHA-256 of the file name inside root.
func RootFileSHA256(root *os.Root, name string) (string, error) {
	f, err := root.Open(name)
	if err != nil {
		return "", err
	}
	defer f.Close()
	return ReaderSHA256(f)
}

// ReaderSHA256 is the hex SHA-256 of everything r gives.
func ReaderSHA256(r io.Reader) (string, error) {
	h := sha256.New()
	if _, err := io.Copy(h, r); err != nil {
		return "", err
	}
	return hex.EncodeToString(h.Sum(nil)), nil
}
