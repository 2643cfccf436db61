package server

import (
	"context"
	"log/slog"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/herdhq/herd/internal/profile"
	"github.com/herdhq/herd/internal/testenv"
)

// An edited profile file becomes the next version while the server runs;
// one that does not parse is refused with its file and line, and one that
// would take away the default profile is refused whole.
func TestProfilesReloadOnChange(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	st := testenv.SQLite(t)
	dir := filepath.Join(t.TempDir(), "profiles")
	require.NoError(t, os.MkdirAll(dir, 0o755))
	file := filepath.Join(dir, "tiny.yaml")
	doc := func(height int) []byte {
		return []byte("name: tiny\nformat: mp4\nvideo: {codec: h264, crf: 30, max_height: " + strconv.Itoa(height) + "}\n")
	}
	require.NoError(t, os.WriteFile(file, doc(144), 0o644))
	set, err := profile.Load(dir)
	require.NoError(t, err)
	versions, err := profile.NewVersions(ctx, st, set)
	require.NoError(t, err)
	var logs testenv.SyncBuffer
	r := newProfileReloader(dir, versions, checkProfiles(Config{DefaultProfile: "tiny"}), slog.New(slog.NewTextHandler(&logs, nil)))
	done := make(chan error, 1)
	go func() { done <- r.Run(ctx) }()

	current := func() *profile.Profile {
		p, ok := versions.Current.Get("tiny")
		require.True(t, ok)
		return p
	}
	// fsnotify may start watching after the first write: write until seen.
	require.Eventually(t, func() bool {
		if current().Version == 2 {
			return true
		}
		require.NoError(t, os.WriteFile(file, doc(96), 0o644))
		return false
	}, 20*time.Second, 500*time.Millisecond, "the edit becomes version 2")
	require.Equal(t, 96, current().Video.MaxHeight)
	old, err := versions.At(ctx, "tiny", 1)
	require.NoError(t, err)
	require.Equal(t, 144, old.Video.MaxHeight, "version 1 is still there for the jobs submitted with it")

	require.NoError(t, os.WriteFile(file, []byte("name: tiny\nformat: mp4\nvideo: {codec: h264, crf: 30}\ncolour: red\n"), 0o644))
	require.Eventually(t, func() bool { return strings.Contains(logs.String(), "tiny.yaml") }, 20*time.Second, 50*time.Millisecond)
	require.Contains(t, logs.String(), "line 4: field colour not found")
	require.Contains(t, logs.String(), "its previous version stays current")
	require.Equal(t, 2, current().Version)

	require.NoError(t, os.Remove(file))
	require.Eventually(t, func() bool { return strings.Contains(logs.String(), "profiles not reloaded") }, 20*time.Second, 50*time.Millisecond)
	require.Contains(t, logs.String(), `--default-profile \"tiny\": no such profile`)
	require.Equal(t, 2, current().Version, "the default profile stays")

	cancel()
	require.NoError(t, <-done)
}
