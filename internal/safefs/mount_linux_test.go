package safefs_test

import (
	"syscall"
	"testing"
)

// mountTmpfs mounts a small tmpfs on dir, or skips the test (it needs root).
func mountTmpfs(t *testing.T, dir string) {
	t.Helper()
	if err := syscall.Mount("tmpfs", dir, "tmpfs", 0, "size=16m"); err != nil {
		t.Skipf("cannot mount a tmpfs here (%v); moves across file systems are not tested", err)
	}
	t.Cleanup(func() { _ = syscall.Unmount(dir, syscall.MNT_DETACH) })
}
