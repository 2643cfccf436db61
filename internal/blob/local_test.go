package blob_test

import (
	"io"
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/herdhq/herd/internal/blob"
)

func TestValidKey(t *testing.T) {
	t.Parallel()
	for key, ok := range map[string]bool{
		"sources/abc":        true,
		"jobs/j1/out/a.m3u8": true,
		"":                   false,
		"/etc/passwd":        false,
		"../x":               false,
		"jobs/../../x":       false,
		"jobs//x":            false,
		"jobs/./x":           false,
		".tmp/upload-1":      false,
		"jobs/x\x00":         false,
		`jobs\..\x`:          false,
	} {
		require.Equal(t, ok, blob.ValidKey(key), "%q", key)
	}
}

func TestWriterCommitsAtomically(t *testing.T) {
	t.Parallel()
	l, err := blob.NewLocal(t.TempDir())
	require.NoError(t, err)
	w, err := l.Create()
	require.NoError(t, err)
	_, err = w.Write([]byte("hello"))
	require.NoError(t, err)
	require.False(t, l.Exists("sources/h"), "invisible before commit")
	require.Equal(t, "2cf24dba5fb0a30e26e83b2ac5b9e29e1b161e5c1fa7425e73043362938b9824", w.SHA256())
	require.NoError(t, w.Commit("sources/h"))
	f, err := l.Open("sources/h")
	require.NoError(t, err)
	b, err := io.ReadAll(f)
	require.NoError(t, err)
	require.NoError(t, f.Close())
	require.Equal(t, "hello", string(b))
	n, err := l.TempEntries()
	require.NoError(t, err)
	require.Zero(t, n)

	w, err = l.Create()
	require.NoError(t, err)
	w.Abort()
	n, err = l.TempEntries()
	require.NoError(t, err)
	require.Zero(t, n, "abort leaves nothing")
	_, err = l.Open("sources/none")
	require.ErrorIs(t, err, blob.ErrNotFound)
}

func TestCommitDirReplaces(t *testing.T) {
	t.Parallel()
	l, err := blob.NewLocal(t.TempDir())
	require.NoError(t, err)
	for _, content := range []string{"first", "second"} {
		d, err := l.TempDir("x")
		require.NoError(t, err)
		require.NoError(t, os.WriteFile(filepath.Join(d, "f.txt"), []byte(content), 0o644))
		require.NoError(t, l.CommitDir(d, "jobs/j/out"))
	}
	p, err := l.Path("jobs/j/out/f.txt")
	require.NoError(t, err)
	b, err := os.ReadFile(p)
	require.NoError(t, err)
	require.Equal(t, "second", string(b))
	left, err := l.CleanTemp(nil)
	require.NoError(t, err)
	require.Empty(t, left)
	n, err := l.TempEntries()
	require.NoError(t, err)
	require.Zero(t, n)
}
