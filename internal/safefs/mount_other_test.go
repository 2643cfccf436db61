//go:build !linux

package safefs_test

import "testing"

func mountTmpfs(t *testing.T, _ string) {
	t.Skip("moves across file systems are tested on Linux, where a test can mount a tmpfs")
}
