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
