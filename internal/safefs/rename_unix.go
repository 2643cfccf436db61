//go:build unix

package safefs

import (
	"errors"
	"os"

	"golang.org/x/sys/unix"
)

// linkRename renames without replacing by a hard link and an unlink of the
// old name, for systems and file systems without an atomic way. Where hard
// links are not allowed either, it looks first and then renames: the one
// place where something made in between could be replaced.
func linkRename(oldDir *os.File, old string, newDir *os.File, new string) error {
	return withFds(oldDir, newDir, func(a, b int) error {
		err := unix.Linkat(a, old, b, new, 0)
		if err == nil {
			return unix.Unlinkat(a, old, 0)
		}
		if !errors.Is(err, unix.EPERM) && !errors.Is(err, unix.ENOTSUP) && !errors.Is(err, unix.EOPNOTSUPP) && !errors.Is(err, unix.EMLINK) {
			return err
		}
		var st unix.Stat_t
		switch err := unix.Fstatat(b, new, &st, unix.AT_SYMLINK_NOFOLLOW); {
		case err == nil:
			return unix.EEXIST
		case !errors.Is(err, unix.ENOENT):
			return err
		}
		return unix.Renameat(a, old, b, new)
	})
}
