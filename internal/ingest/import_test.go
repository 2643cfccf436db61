package ingest_test

import (
	"context"
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/herdhq/herd/internal/ingest"
	"github.com/herdhq/herd/internal/profile"
	"github.com/herdhq/herd/internal/testenv"
)

type noKick struct{}

func (noKick) Kick() {}

// source_path is opened through its import folder: a link or a folder that
// leads out of it is refused, links that stay inside are followed, and the
// error never names a server path.
func TestImportStaysInsideImportFolders(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	st, blobs := testenv.Stores(t, dir)
	imports, outside := filepath.Join(dir, "imports"), t.TempDir()
	for p, c := range map[string]string{
		filepath.Join(imports, "show", "ep1.mkv"): "episode one",
		filepath.Join(outside, "secret.mkv"):      "secret",
		filepath.Join(outside, "show", "ep1.mkv"): "another secret",
	} {
		require.NoError(t, os.MkdirAll(filepath.Dir(p), 0o755))
		require.NoError(t, os.WriteFile(p, []byte(c), 0o644))
	}
	require.NoError(t, os.Symlink(filepath.Join("show", "ep1.mkv"), filepath.Join(imports, "inside-link.mkv")))
	require.NoError(t, os.Symlink(filepath.Join(outside, "secret.mkv"), filepath.Join(imports, "out-link.mkv")))
	require.NoError(t, os.Symlink(outside, filepath.Join(imports, "elsewhere")))
	// A folder the import folder reaches through its own link is the import folder.
	viaLink := filepath.Join(dir, "imports-link")
	require.NoError(t, os.Symlink(imports, viaLink))
	sub := ingest.New(st, blobs, profile.Builtin(), noKick{}, ingest.Config{ImportRoots: []string{viaLink}})
	ctx := context.Background()

	for _, p := range []string{filepath.Join(imports, "show", "ep1.mkv"), filepath.Join(viaLink, "show", "ep1.mkv"), filepath.Join(viaLink, "inside-link.mkv")} {
		j, _, err := sub.Import(ctx, p, "mp4-library", ingest.Options{})
		require.NoError(t, err, p)
		require.Equal(t, int64(len("episode one")), j.Source.Size, p)
	}
	for _, p := range []string{
		filepath.Join(viaLink, "out-link.mkv"),
		filepath.Join(viaLink, "elsewhere", "secret.mkv"),
		filepath.Join(viaLink, "elsewhere", "show", "ep1.mkv"),
		filepath.Join(viaLink, "..", "imports-link", "..", filepath.Base(outside), "secret.mkv"),
		filepath.Join(outside, "secret.mkv"),
		filepath.Join(viaLink, "show"),
	} {
		_, _, err := sub.Import(ctx, p, "mp4-library", ingest.Options{})
		require.ErrorIs(t, err, ingest.ErrBadPath, p)
		require.NotContains(t, err.Error(), dir, "no server path in the message")
		require.NotContains(t, err.Error(), outside)
	}
}
