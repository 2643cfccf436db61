package publish_test

import (
	"context"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/herdhq/herd/internal/config"
	"github.com/herdhq/herd/internal/publish"
)

// A library folder that is a symbolic link out of the library, at any depth,
// is not written through; a link where the file goes is replaced, not
// followed; the sweep never reaches through a link.
func TestPutNeverLeavesTheLibrary(t *testing.T) {
	t.Parallel()
	root, outside := t.TempDir(), t.TempDir()
	victim := filepath.Join(outside, "victim.mp4")
	require.NoError(t, os.WriteFile(victim, []byte("secret"), 0o644))
	host, _ := os.Hostname()
	stale := filepath.Join(outside, ".herd-"+strings.NewReplacer("/", "_", "-", "_").Replace(host)+".abc.12-999.tmp")
	require.NoError(t, os.WriteFile(stale, []byte("not the library's"), 0o644))
	lib, err := publish.NewLibrary(config.Publisher{Name: "movies", Type: config.PublishLibrary, Path: root})
	require.NoError(t, err)

	require.NoError(t, os.Symlink(outside, filepath.Join(root, "Linked (2001)")))
	require.NoError(t, os.MkdirAll(filepath.Join(root, "Movies"), 0o755))
	require.NoError(t, os.Symlink(outside, filepath.Join(root, "Movies", "Deep")))
	for _, rel := range []string{"Linked (2001)/Linked (2001).mp4", "Movies/Deep/Deep (2003)/Deep (2003).mp4", "Movies/Deep/Deep (2003).mp4"} {
		_, err := lib.Put(context.Background(), rel, strings.NewReader("movie"))
		require.Error(t, err, rel)
		require.NotContains(t, err.Error(), outside, "no server path in the message")
	}

	final := filepath.Join(root, "Final (2002)", "Final (2002).mp4")
	require.NoError(t, os.MkdirAll(filepath.Dir(final), 0o755))
	require.NoError(t, os.Symlink(victim, final))
	got, err := lib.Put(context.Background(), "Final (2002)/Final (2002).mp4", strings.NewReader("movie"))
	require.NoError(t, err)
	require.Equal(t, final, got)
	st, err := os.Lstat(final)
	require.NoError(t, err)
	require.True(t, st.Mode().IsRegular(), "the link was replaced by the file")

	n, err := lib.Sweep(context.Background())
	require.NoError(t, err)
	require.Zero(t, n)

	b, err := os.ReadFile(victim)
	require.NoError(t, err)
	require.Equal(t, "secret", string(b))
	require.FileExists(t, stale, "the sweep does not follow links")
	entries, err := os.ReadDir(outside)
	require.NoError(t, err)
	require.Len(t, entries, 2, "nothing was written outside the library")
	require.NoError(t, filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		require.False(t, strings.HasPrefix(d.Name(), ".herd-"), "no temporary file left: %s", p)
		return err
	}))
}
