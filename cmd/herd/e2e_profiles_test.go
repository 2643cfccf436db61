package main_test

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// TestProfileEditKeepsQueuedJobsOnTheirVersion: a profile edited while
// herd runs becomes the next version without a restart; a job queued
// before the edit still makes what it was submitted for, after a restart
// too, and a job submitted after it gets the new version. An edit that does
// not parse is refused with its file and line, and the version before it
// stays current.
func TestProfileEditKeepsQueuedJobsOnTheirVersion(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	data := filepath.Join(dir, "data")
	profiles := filepath.Join(data, "profiles")
	require.NoError(t, os.MkdirAll(profiles, 0o755))
	file := filepath.Join(profiles, "tiny.yaml")
	doc := func(height int) []byte {
		return fmt.Appendf(nil, "name: tiny\ndescription: a small MP4\nformat: mp4\nvideo: {codec: h264, preset: ultrafast, crf: 35, max_height: %d}\naudio: {codec: aac}\n", height)
	}
	require.NoError(t, os.WriteFile(file, doc(144), 0o644))
	s := startServer(t, data, "--local-workers", "0") // nothing runs yet: both jobs wait
	src := clip(t, dir, 2, "320x180")

	submit := func() jobJSON {
		t.Helper()
		out, stderr, code := s.herd("submit", src, "--profile", "tiny")
		require.Equal(t, 0, code, stderr)
		return s.job(strings.TrimSpace(out))
	}
	version := func() int {
		t.Helper()
		out, stderr, code := s.herd("profiles", "-o", "json")
		require.Equal(t, 0, code, stderr)
		var ps struct {
			Profiles []struct {
				Name    string
				Version int
			}
		}
		require.NoError(t, json.Unmarshal([]byte(out), &ps))
		for _, p := range ps.Profiles {
			if p.Name == "tiny" {
				return p.Version
			}
		}
		t.Fatalf("no profile tiny in %s", out)
		return 0
	}
	first := submit()
	require.Equal(t, 1, first.ProfileVersion)

	// An edit, picked up from the folder with no signal and no restart.
	require.Eventually(t, func() bool {
		if version() == 2 {
			return true
		}
		require.NoError(t, os.WriteFile(file, doc(96), 0o644))
		return false
	}, 30*time.Second, time.Second, "the edit becomes version 2")

	// A broken edit, read on SIGHUP: refused, named, and version 2 stays.
	require.NoError(t, os.WriteFile(file, []byte("name: tiny\nformat: mp4\nvideo: {codec: h264, crf: 35}\ncolour: red\n"), 0o644))
	require.NoError(t, s.cmd.Process.Signal(syscall.SIGHUP))
	require.Eventually(t, func() bool { return strings.Contains(s.logs.String(), "line 4: field colour not found") }, 30*time.Second, 100*time.Millisecond)
	require.Contains(t, s.logs.String(), "tiny.yaml")
	require.Equal(t, 2, version())
	require.NoError(t, os.WriteFile(file, doc(96), 0o644))
	require.NoError(t, s.cmd.Process.Signal(syscall.SIGHUP))

	second := submit()
	require.Equal(t, 2, second.ProfileVersion)
	require.NotEqual(t, first.ID, second.ID, "the same file with another version of the profile is another job")

	// Workers only now: after a restart, each job makes its own version.
	stopCleanly(t, s.cmd, "herd serve")
	s = startServer(t, data, "--local-workers", "2")
	require.Equal(t, 2, version(), "the same file after a restart is the same version")
	for _, want := range []struct {
		id     string
		height int
	}{{first.ID, 144}, {second.ID, 96}} {
		j := s.waitFinal(want.id)
		require.Equal(t, "succeeded", j.State, j.Error)
		var heights []int
		for _, o := range j.Outputs {
			if o.Kind == "mp4" {
				heights = append(heights, o.Height)
			}
		}
		require.Equal(t, []int{want.height}, heights, "job %s", want.id)
	}
}
