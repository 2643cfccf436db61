package safefs

import (
	"errors"
	"os"

	"golang.org/x/sys/unix"
)

// renameNoReplace renames old in the folder oldDir to new in newDir, failing
// with EEXIST when new exists: renameat2 with RENAME_NOREPLACE, or where the
// file system does not have it (NFS, SMB), a hard link and an unlink.
func renameNoReplace(oldDir *os.File, old string, newDir *os.File, new string) error {
	err := withFds(oldDir, newDir, func(a, b int) error {
		return unix.Renameat2(a, old, b, new, unix.RENAME_NOREPLACE)
	})
	if errors.Is(err, unix.EINVAL) || errors.Is(err, unix.ENOSYS) || errors.Is(err, unix.ENOTSUP) || errors.Is(err, unix.EOPNOTSUPP) {
		err = linkRename(oldDir, old, newDir, new)
	}
	if err != nil {
		return &os.LinkError{Op: "rename", Old: old, New: new, Err: err}
	}
	return nil
}

// exchange swaps a in the folder aDir and b in bDir in one step
// (renameat2 with RENAME_EXCHANGE); errors.ErrUnsupported where the file
// system cannot (NFS, SMB, older kernels).
func exchange(aDir *os.File, a string, bDir *os.File, b string) error {
	err := withFds(aDir, bDir, func(fa, fb int) error {
		return unix.Renameat2(fa, a, fb, b, unix.RENAME_EXCHANGE)
	})
	if errors.Is(err, unix.EINVAL) || errors.Is(err, unix.ENOSYS) || errors.Is(err, unix.ENOTSUP) || errors.Is(err, unix.EOPNOTSUPP) {
		return errors.ErrUnsupported
	}
	if err != nil {
		return &os.LinkError{Op: "exchange", Old: a, New: b, Err: err}
	}
	return nil
}
