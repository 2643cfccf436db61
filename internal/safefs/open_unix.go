//go:build unix

package safefs

import "syscall"

// openFlags: a FIFO swapped in for a file must not block the open.
const openFlags = syscall.O_NONBLOCK
