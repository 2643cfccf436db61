//go:build unix

package safefs

import (
	"os"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// openFlags: a FIFO swapped in for a file must not block the open.
const openFlags = syscall.O_NONBLOCK

// setModTime sets f's modification time through its descriptor, so that
// a name swapped meanwhile cannot redirect it.
func setModTime(f *os.File, mtime time.Time) error {
	rc, err := f.SyscallConn()
	if err != nil {
		return err
	}
	tv := []unix.Timeval{unix.NsecToTimeval(time.Now().UnixNano()), unix.NsecToTimeval(mtime.UnixNano())}
	var serr error
	if err := rc.Control(func(fd uintptr) { serr = unix.Futimes(int(fd), tv) }); err != nil {
		return err
	}
	return serr
}
