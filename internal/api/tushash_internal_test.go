package api

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"io"
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/require"
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
// through: a cut one, a saved state that does not match the upload (a
// crash between the write and the save), no state at all; and where the
// state followed every PATCH, the finished upload is not read again.
func TestUploadHash(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	body := bytes.Repeat([]byte("0123456789abcdef"), 4096)
	sum := sha256.Sum256(body)
	dir := t.TempDir()
	space := newFileSpace(dir)
	store := hashStore{coreStore: space.core(), space: space}
	up, err := store.NewUpload(ctx, tusd.FileInfo{Size: int64(len(body))})
	require.NoError(t, err)
	h := up.(*hashUpload)
	state := filepath.Join(dir, h.id+".sha256")
	n, err := h.WriteChunk(ctx, 0, bytes.NewReader(body[:10000]))
	require.NoError(t, err)
	require.Equal(t, int64(10000), n)
	require.FileExists(t, state)

	// Cut after 5000 bytes: what was written stays, the state goes.
	n, err = h.WriteChunk(ctx, 10000, &failAfter{r: bytes.NewReader(body[10000:]), n: 5000})
	require.Equal(t, int64(5000), n)
	require.FileExists(t, state, "the record is the upload's last activity")
	if err == nil { // tusd's file store reports the cut as the end of the body
		require.NotNil(t, h.resume(ctx, 15000))
	} else {
		require.Nil(t, h.resume(ctx, 15000), "the state is not kept for bytes that may be short")
	}
	// A state from an earlier offset, as a crash between write and save
	// leaves: hashing stops, and the finished upload is read once.
	old := sha256.New()
	old.Write(body[:10000])
	require.NoError(t, h.save(ctx, old, 10000))
	n, err = h.WriteChunk(ctx, 15000, bytes.NewReader(body[15000:40000]))
	require.NoError(t, err)
	require.Equal(t, int64(25000), n)
	require.Nil(t, h.resume(ctx, 40000), "once lost, the state stays lost: the record holds the offset alone")
	require.NoError(t, os.Remove(state))
	n, err = h.WriteChunk(ctx, 40000, bytes.NewReader(body[40000:]))
	require.NoError(t, err)
	require.Equal(t, int64(len(body)-40000), n)
	got, err := h.sum(ctx, int64(len(body)))
	require.NoError(t, err)
	require.Equal(t, hex.EncodeToString(sum[:]), got)

	// Every PATCH saved its state: the digest comes from it alone (the
	// bytes changed behind herd's back are not read).
	up, err = store.NewUpload(ctx, tusd.FileInfo{Size: int64(len(body))})
	require.NoError(t, err)
	h = up.(*hashUpload)
	for off := 0; off < len(body); off += 20000 {
		end := min(off+20000, len(body))
		n, err := h.WriteChunk(ctx, int64(off), bytes.NewReader(body[off:end]))
		require.NoError(t, err)
		require.Equal(t, int64(end-off), n)
	}
	require.NoError(t, os.WriteFile(filepath.Join(dir, h.id), make([]byte, len(body)), 0o600))
	got, err = h.sum(ctx, int64(len(body)))
	require.NoError(t, err)
	require.Equal(t, hex.EncodeToString(sum[:]), got)
	require.NoError(t, store.AsTerminatableUpload(h).Terminate(ctx))
	require.NoFileExists(t, filepath.Join(dir, h.id+".sha256"), "the state goes with the upload")
}

// The upload ids herd takes: tusd's own, and in a bucket with the store's
// multipart upload id after a plus, in the forms S3 stores give them;
// nothing that could lead a path or key elsewhere.
func TestUploadIDs(t *testing.T) {
	own := "0123456789abcdef0123456789abcdef"
	for _, id := range []string{own,
		own + "+pCz.6i8XVQHubk9RxTgufJPjXFXp1O6LfaXgM3LBCw82GcO5Eb8WfsUGNuj.jqR3CS5Y1nh8MNU55fB5mdw", // AWS
		own + "+2~iCw_lDY8VoPEkrkUo6GxZbHJk1l7Lpi",                                                   // DigitalOcean Spaces
		own + "+ZTk3ZmE0YjEtNzg4Ny00YzE5LWIwNDEtZTM3ZjM2OTcxNTU0",                                    // MinIO
		own + "+APDcL9Pdft+Vo5pdF8k==",                                                               // a store that gives base64 with + and =
	} {
		require.True(t, uploadID.MatchString(id), id)
	}
	for _, id := range []string{"", "../../etc", own[:31], own + "+", own + "+a/b", own + "+a b", own + "+..%2f", "0123456789ABCDEF0123456789ABCDEF"} {
		require.False(t, uploadID.MatchString(id), id)
	}
}
