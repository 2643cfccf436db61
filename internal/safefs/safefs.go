// Package safefs reads, writes and moves files inside folder trees that other
// people can write into (watch folders, media libraries, import folders) and
// inside herd's own data folder, without ever being led out of them. Every
// name is resolved through an [os.Root], so a symbolic link or a folder
// swapped for one never reaches outside the tree; a move between two trees
// renames between folder descriptors opened through each root, and never
// replaces what is already at the destination.
//
// It does not decide names: callers pass names relative to a root, and
// choose where things go. It never follows a symbolic link in the last place
// of a name it moves or copies: it moves and copies regular files only.
package safefs

import (
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"syscall"
)

// ErrNotRegular is returned for a name that is a folder, a symbolic link or
// anything else but a regular file.
var ErrNotRegular = errors.New("not a regular file")

// ErrChanged is returned when a file changed or was replaced while it was
// being moved or copied; trying again later is safe.
var ErrChanged = errors.New("the file changed while herd was moving it")

// TempPrefix starts the names of temporary files this package makes.
const TempPrefix = ".tmp-"

// Open opens the regular file name inside r for reading. Symbolic links are
// followed only while they stay inside r.
func Open(r *os.Root, name string) (*os.File, error) {
	f, err := r.OpenFile(name, os.O_RDONLY|openFlags, 0)
	if err != nil {
		return nil, err
	}
	info, err := f.Stat()
	if err != nil {
		_ = f.Close() // read-only, and the Stat error is the one to report
		return nil, err
	}
	if !info.Mode().IsRegular() {
		_ = f.Close() // read-only; the file is refused either way
		return nil, fmt.Errorf("open %s: %w", name, ErrNotRegular)
	}
	return f, nil
}

// WithPath opens the regular file name inside r as Open does and calls fn
// with a path that names the open file (/proc/self/fd/N): a program
// given that path (ffmpeg) reads the file Open checked, whatever is renamed
// or linked in its place meanwhile.
func WithPath(r *os.Root, name string, fn func(path string) error) error {
	f, err := Open(r, name)
	if err != nil {
		return err
	}
	defer f.Close()
	return fn(fmt.Sprintf("/proc/%d/fd/%d", os.Getpid(), f.Fd()))
}

// openEntry opens name inside r for reading when name itself, not what a
// link there leads to, is a regular file. It also returns the file's info.
func openEntry(r *os.Root, name string) (*os.File, fs.FileInfo, error) {
	entry, err := r.Lstat(name)
	if err != nil {
		return nil, nil, err
	}
	if !entry.Mode().IsRegular() {
		return nil, nil, fmt.Errorf("open %s: %w", name, ErrNotRegular)
	}
	f, err := Open(r, name)
	if err != nil {
		return nil, nil, err
	}
	info, err := f.Stat()
	if err == nil && !os.SameFile(entry, info) {
		err = fmt.Errorf("open %s: %w", name, ErrChanged) // replaced by a link between the two looks
	}
	if err != nil {
		_ = f.Close() // read-only, and err is the one to report
		return nil, nil, err
	}
	return f, info, nil
}

// CreateTemp creates a new file in the folder dir inside r, named by
// pattern with its last "*" replaced by a random string (at the end if
// there is none), like [os.CreateTemp]. It never opens an existing file.
// It returns the file and its name relative to r.
func CreateTemp(r *os.Root, dir, pattern string, perm os.FileMode) (*os.File, string, error) {
	prefix, suffix := pattern, ""
	if i := strings.LastIndex(pattern, "*"); i >= 0 {
		prefix, suffix = pattern[:i], pattern[i+1:]
	}
	for range 100 {
		name := filepath.Join(dir, prefix+rand.Text()[:12]+suffix)
		f, err := r.OpenFile(name, os.O_RDWR|os.O_CREATE|os.O_EXCL, perm)
		if errors.Is(err, fs.ErrExist) {
			continue
		}
		return f, name, err
	}
	return nil, "", fmt.Errorf("create a temporary file in %s: no free name", dir)
}

// WriteFile writes data to name inside r under a temporary name, syncs it
// and renames it into place, replacing what was there (a link there is
// replaced, not followed).
func WriteFile(r *os.Root, name string, data []byte, perm os.FileMode) error {
	return write(r, name, data, perm, false)
}

// WriteNew is WriteFile that never replaces anything: when name exists it
// returns an error that matches [fs.ErrExist].
func WriteNew(r *os.Root, name string, data []byte, perm os.FileMode) error {
	return write(r, name, data, perm, true)
}

func write(r *os.Root, name string, data []byte, perm os.FileMode, noReplace bool) error {
	dir := filepath.Dir(name)
	tmp, tmpName, err := CreateTemp(r, dir, TempPrefix+"*", perm)
	if err != nil {
		return err
	}
	defer r.Remove(tmpName) // after the rename there is nothing left to remove
	_, err = tmp.Write(data)
	if err == nil {
		err = tmp.Sync()
	}
	if cerr := tmp.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return err
	}
	if noReplace {
		err = renameIn(r, tmpName, name)
	} else {
		err = r.Rename(tmpName, name)
	}
	if err != nil {
		return err
	}
	return SyncDir(r, dir)
}

// SyncDir syncs the folder dir inside r, so that renames into it last.
func SyncDir(r *os.Root, dir string) error {
	return syncFolder(r.Open(dir))
}

// SyncPath syncs the folder at path, one herd itself chose (in its data
// folder), so that renames into it survive a power cut.
func SyncPath(path string) error {
	return syncFolder(os.Open(path))
}

func syncFolder(d *os.File, err error) error {
	if err != nil {
		return fmt.Errorf("sync folder: %w", err)
	}
	defer d.Close()
	if err := d.Sync(); err != nil {
		return fmt.Errorf("sync folder: %w", err)
	}
	return nil
}

// Move moves the regular file src inside from to dst inside to (the same
// root or another), never replacing anything at dst: an error that matches
// [fs.ErrExist] says something is there. dst's folder must exist.
//
// On one file system it is a rename between the two folders, opened through
// their roots. Across file systems the file is copied through the roots
// under a temporary name, synced, checked, given its name, and only then is
// the original removed, so a crash leaves the original, a whole copy, or
// both. Moving again after such a crash, with the copy already there and
// the same, only removes the original.
func Move(from *os.Root, src string, to *os.Root, dst string) error {
	in, info, err := openEntry(from, src)
	if err != nil {
		return err
	}
	defer in.Close()
	srcDir, err := from.Open(filepath.Dir(src))
	if err != nil {
		return err
	}
	defer srcDir.Close()
	dstDir, err := to.Open(filepath.Dir(dst))
	if err != nil {
		return err
	}
	defer dstDir.Close()
	err = renameNoReplace(srcDir, filepath.Base(src), dstDir, filepath.Base(dst))
	if errors.Is(err, syscall.EXDEV) {
		return moveAcross(in, info, from, src, to, dst)
	}
	if err != nil {
		return err
	}
	// The name was checked before the rename; what was renamed must be
	// what was checked, or a swap in between brought something else here.
	if moved, err := to.Lstat(dst); err != nil || !os.SameFile(info, moved) {
		if renameNoReplace(dstDir, filepath.Base(dst), srcDir, filepath.Base(src)) == nil {
			return fmt.Errorf("move %s: %w", src, ErrChanged)
		}
		return fmt.Errorf("move %s: %w; what was moved instead is left at the destination", src, ErrChanged)
	}
	return dstDir.Sync()
}

// moveAcross is Move between two file systems.
func moveAcross(in *os.File, info fs.FileInfo, from *os.Root, src string, to *os.Root, dst string) error {
	if _, err := to.Lstat(dst); err == nil {
		// Something is there: a copy a crash left before the original went?
		same, err := sameContent(in, to, dst)
		if err != nil || !same {
			return &os.LinkError{Op: "move", Old: src, New: dst, Err: fs.ErrExist}
		}
	} else if !errors.Is(err, fs.ErrNotExist) {
		return err
	} else if err := copyOpen(in, info, to, dst); err != nil {
		return err
	}
	// The original goes only if it is still the file that was copied.
	if now, err := from.Lstat(src); err == nil && os.SameFile(info, now) {
		if err := from.Remove(src); err != nil {
			return err
		}
	}
	return nil
}

// Copy copies the regular file src inside from to dst inside to, never
// replacing anything at dst (an error that matches [fs.ErrExist]). The
// copy gets its name only once it is complete, synced and checked.
func Copy(from *os.Root, src string, to *os.Root, dst string) error {
	in, info, err := openEntry(from, src)
	if err != nil {
		return err
	}
	defer in.Close()
	return copyOpen(in, info, to, dst)
}

// copyOpen copies in to dst inside to: under a temporary name, synced, read
// back and checked against the SHA-256 of what was read, with the
// original's modification time, then renamed into place without replacing.
func copyOpen(in *os.File, info fs.FileInfo, to *os.Root, dst string) error {
	dir := filepath.Dir(dst)
	out, tmpName, err := CreateTemp(to, dir, TempPrefix+"*", 0o666)
	if err != nil {
		return err
	}
	defer to.Remove(tmpName) // after the rename there is nothing left to remove
	var outInfo fs.FileInfo
	err = func() error {
		defer out.Close()
		h := sha256.New()
		if _, err := io.Copy(io.MultiWriter(out, h), io.NewSectionReader(in, 0, 1<<62)); err != nil {
			return fmt.Errorf("copy %s: %w", filepath.Base(dst), err)
		}
		if err := out.Sync(); err != nil {
			return err
		}
		if now, err := in.Stat(); err != nil || now.Size() != info.Size() || !now.ModTime().Equal(info.ModTime()) {
			return fmt.Errorf("copy %s: %w", filepath.Base(dst), ErrChanged)
		}
		back, err := hashOf(out)
		if err != nil {
			return err
		}
		if back != hex.EncodeToString(h.Sum(nil)) {
			return fmt.Errorf("the copy of %s differs from what was read (a failing disk?)", filepath.Base(dst))
		}
		// Through the descriptor, not the name: the folder may be one
		// others write in.
		if err := setModTime(out, info.ModTime()); err != nil {
			return err
		}
		if outInfo, err = out.Stat(); err != nil {
			return err
		}
		return out.Close()
	}()
	if err != nil {
		return err
	}
	if err := renameIn(to, tmpName, dst); err != nil {
		return err
	}
	// What got the name must be the copy: a temporary name swapped for
	// something else before the rename must not pass for it (the caller
	// would then remove the original).
	if got, err := to.Lstat(dst); err != nil || !os.SameFile(outInfo, got) {
		return fmt.Errorf("copy %s: %w", filepath.Base(dst), ErrChanged)
	}
	return SyncDir(to, dir)
}

// renameIn renames old to new inside r without replacing anything at new.
func renameIn(r *os.Root, old, new string) error {
	return inFolders(r, old, new, renameNoReplace)
}

// inFolders opens the folders of a and b inside r and calls fn with each
// folder and the name in it.
func inFolders(r *os.Root, a, b string, fn func(aDir *os.File, a string, bDir *os.File, b string) error) error {
	aDir, err := r.Open(filepath.Dir(a))
	if err != nil {
		return err
	}
	defer aDir.Close()
	bDir, err := r.Open(filepath.Dir(b))
	if err != nil {
		return err
	}
	defer bDir.Close()
	return fn(aDir, filepath.Base(a), bDir, filepath.Base(b))
}

// Exchange swaps the files (or folders) at a and b inside r in one step:
// each name holds what the other held, and neither is ever missing. It
// returns errors.ErrUnsupported where the system or file system cannot
// (NFS, SMB): the caller falls back to a rename.
func Exchange(r *os.Root, a, b string) error {
	return inFolders(r, a, b, exchange)
}

// sameContent reports whether name inside r holds the same bytes as f.
func sameContent(f *os.File, r *os.Root, name string) (bool, error) {
	other, _, err := openEntry(r, name)
	if err != nil {
		return false, err
	}
	defer other.Close()
	a, err := hashOf(f)
	if err != nil {
		return false, err
	}
	b, err := hashOf(other)
	return err == nil && a == b, err
}

func hashOf(f *os.File) (string, error) {
	h := sha256.New()
	if _, err := io.Copy(h, io.NewSectionReader(f, 0, 1<<62)); err != nil {
		return "", err
	}
	return hex.EncodeToString(h.Sum(nil)), nil
}

// withFds runs fn with the descriptors of two open folders.
func withFds(a, b *os.File, fn func(a, b int) error) error {
	ca, err := a.SyscallConn()
	if err != nil {
		return err
	}
	cb, err := b.SyscallConn()
	if err != nil {
		return err
	}
	var ferr error
	err = ca.Control(func(fa uintptr) {
		if err := cb.Control(func(fb uintptr) { ferr = fn(int(fa), int(fb)) }); err != nil {
			ferr = err
		}
	})
	if err != nil {
		return err
	}
	return ferr
}
