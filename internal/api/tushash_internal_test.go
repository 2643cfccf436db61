package api

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"io"
	"os"
	"testing"

	"github.com/stretchr/testify/require"
	"github.com/tus/tusd/v2/pkg/filestore"
	tusd "github.com/tus/tusd/v2/pkg/handler"
)

// failAfter reads n bytes of r, then fails: a connection cut mid-PATCH.
type failAfter struct {
	r io.Reader
	n int
}

func (f *failAfter) Read(p []byte) (int, error) {
	if f.n <= 0 {
		return 0, errors.New("connection reset")
	}
	if len(p) > f.n {
		p = p[:f.n]
	}
	k, err := f.r.Read(p)
	f.n -= k
	return k, err
}

// The digest of an upload is its bytes' whatever the PATCHes went
// through: a cut one, a saved state that does not match the file (a crash
// between the write and the save), no state at all.
func TestUploadHash(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	body := bytes.Repeat([]byte("0123456789abcdef"), 4096)
	sum := sha256.Sum256(body)
	store := hashStore{filestore.New(t.TempDir())}
	up, err := store.NewUpload(ctx, tusd.FileInfo{Size: int64(len(body))})
	require.NoError(t, err)
	h := up.(*hashUpload)
	n, err := h.WriteChunk(ctx, 0, bytes.NewReader(body[:10000]))
	require.NoError(t, err)
	require.Equal(t, int64(10000), n)
	require.FileExists(t, h.state)

	// Cut after 5000 bytes: what was written stays, the state goes.
	n, err = h.WriteChunk(ctx, 10000, &failAfter{r: bytes.NewReader(body[10000:]), n: 5000})
	require.Equal(t, int64(5000), n)
	if err == nil { // tusd's file store reports the cut as the end of the body
		require.FileExists(t, h.state)
	} else {
		require.NoFileExists(t, h.state)
	}
	// A state from an earlier offset, as a crash between write and save leaves.
	old, err := h.resume(10000)
	require.NoError(t, err)
	require.NoError(t, h.save(old, 10000))
	n, err = h.WriteChunk(ctx, 15000, bytes.NewReader(body[15000:40000]))
	require.NoError(t, err)
	require.Equal(t, int64(25000), n)
	require.NoError(t, os.Remove(h.state))
	n, err = h.WriteChunk(ctx, 40000, bytes.NewReader(body[40000:]))
	require.NoError(t, err)
	require.Equal(t, int64(len(body)-40000), n)
	got, err := h.sum(int64(len(body)))
	require.NoError(t, err)
	require.Equal(t, hex.EncodeToString(sum[:]), got)
}
