package blob_test

import (
	"crypto/sha256"
	"encoding/hex"
	"os"
	"path/filepath"
	"syscall"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/herdhq/herd/internal/blob"
)

// An adopted file (a finished upload) is linked into the store, made the
// store's alone; on another file system it is copied, and the copy must
// hash to the digest it is stored under.
func TestAdopt(t *testing.T) {
	t.Parallel()
	body := []byte("an upload's bytes")
	sum := sha256.Sum256(body)
	hexSum := hex.EncodeToString(sum[:])

	dir := t.TempDir()
	l, err := blob.NewLocal(filepath.Join(dir, "blobs"))
	require.NoError(t, err)
	up := filepath.Join(dir, "upload")
	require.NoError(t, os.WriteFile(up, body, 0o644))
	w, err := l.Adopt(up, hexSum, int64(len(body)))
	require.NoError(t, err)
	require.Equal(t, hexSum, w.SHA256())
	require.NoError(t, w.Commit("sources/"+hexSum))
	stored, err := l.Path("sources/" + hexSum)
	require.NoError(t, err)
	a, err := os.Stat(up)
	require.NoError(t, err, "the caller removes the upload")
	b, err := os.Stat(stored)
	require.NoError(t, err)
	require.True(t, os.SameFile(a, b), "linked, not copied")
	require.Equal(t, os.FileMode(0o600), b.Mode().Perm())

	// Blobs on another file system: a copy, checked.
	other := filepath.Join(dir, "other")
	require.NoError(t, os.Mkdir(other, 0o755))
	if err := syscall.Mount("tmpfs", other, "tmpfs", 0, "size=8m"); err != nil {
		t.Skipf("cannot mount a tmpfs here: %v", err)
	}
	t.Cleanup(func() { _ = syscall.Unmount(other, syscall.MNT_DETACH) })
	l2, err := blob.NewLocal(other)
	require.NoError(t, err)
	w, err = l2.Adopt(up, hexSum, int64(len(body)))
	require.NoError(t, err)
	require.NoError(t, w.Commit("sources/"+hexSum))
	got, err := os.ReadFile(filepath.Join(other, "sources", hexSum))
	require.NoError(t, err)
	require.Equal(t, body, got)
	wrong := hex.EncodeToString(make([]byte, 32))
	w, err = l2.Adopt(up, wrong, int64(len(body)))
	require.NoError(t, err)
	require.ErrorContains(t, w.Commit("sources/"+wrong), "the file hashes to "+hexSum)
	require.NoFileExists(t, filepath.Join(other, "sources", wrong))
	require.FileExists(t, up, "never removed by the store")
}
