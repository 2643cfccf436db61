//go:build unix && !linux

package safefs

import (
	"errors"
	"os"
)

// renameNoReplace renames old in the folder oldDir to new in newDir, failing
// with EEXIST when new exists.
func renameNoReplace(oldDir *os.File, old string, newDir *os.File, new string) error {
	if err := linkRename(oldDir, old, newDir, new); err != nil {
		return &os.LinkError{Op: "rename", Old: old, New: new, Err: err}
	}
	return nil
}

// exchange would swap two names in one step; this system cannot.
func exchange(*os.File, string, *os.File, string) error { return errors.ErrUnsupported }
