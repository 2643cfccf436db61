package api

import (
	"context"
	"crypto/sha256"
	"encoding"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"hash"
	"io"
	"io/fs"
	"os"
	"path/filepath"

	"github.com/tus/tusd/v2/pkg/filestore"
	tusd "github.com/tus/tusd/v2/pkg/handler"

	"github.com/herdhq/herd/internal/safefs"
)

// hashStore is tusd's file store that hashes each upload as its bytes
// arrive. The running SHA-256's state is saved beside the upload after
// every PATCH (ID.sha256), so the next PATCH, after a dropped connection
// or a restart, goes on from it; a finished upload's digest is then known
// without reading it again, and it becomes the job's source by a link
// (ingest.Adopt), not a copy. Where the saved state does not match the
// upload's length (a crash between the write and the save), the bytes
// already stored are hashed again, once.
type hashStore struct{ filestore.FileStore }

type hashUpload struct {
	tusd.Upload
	bin, state string
}

func (s hashStore) wrap(up tusd.Upload, err error) (tusd.Upload, error) {
	if err != nil {
		return nil, err
	}
	info, err := up.GetInfo(context.Background())
	if err != nil {
		return nil, err
	}
	bin := info.Storage["Path"]
	return &hashUpload{Upload: up, bin: bin, state: bin + ".sha256"}, nil
}

func (s hashStore) NewUpload(ctx context.Context, info tusd.FileInfo) (tusd.Upload, error) {
	return s.wrap(s.FileStore.NewUpload(ctx, info))
}

func (s hashStore) GetUpload(ctx context.Context, id string) (tusd.Upload, error) {
	return s.wrap(s.FileStore.GetUpload(ctx, id))
}

// AsTerminatableUpload removes the saved hash state with the upload.
func (s hashStore) AsTerminatableUpload(up tusd.Upload) tusd.TerminatableUpload {
	h := up.(*hashUpload)
	return terminator{h, s.FileStore.AsTerminatableUpload(h.Upload)}
}

type terminator struct {
	h *hashUpload
	t tusd.TerminatableUpload
}

func (t terminator) Terminate(ctx context.Context) error {
	if err := os.Remove(t.h.state); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return err
	}
	return t.t.Terminate(ctx)
}

// UseIn registers the store as the core and the terminater.
func (s hashStore) UseIn(comp *tusd.StoreComposer) {
	comp.UseCore(s)
	comp.UseTerminater(s)
}

// hashCounter counts what passes into a hash.
type hashCounter struct {
	h hash.Hash
	n int64
}

func (c *hashCounter) Write(p []byte) (int, error) {
	c.n += int64(len(p))
	return c.h.Write(p)
}

// WriteChunk stores the chunk, hashing it on the way, and saves the hash.
func (u *hashUpload) WriteChunk(ctx context.Context, offset int64, src io.Reader) (int64, error) {
	h, err := u.resume(offset)
	if err != nil {
		return 0, err
	}
	c := &hashCounter{h: h}
	n, err := u.Upload.WriteChunk(ctx, offset, io.TeeReader(src, c))
	// The state is saved only for bytes that are on the disk: written
	// whole, without an error (a network file system reports failed
	// writes at close), and synced.
	if err != nil || c.n != n || u.sync() != nil || u.save(h, offset+n) != nil {
		_ = os.Remove(u.state) // hashed again from the file next time
	}
	return n, err
}

// sync flushes the upload's bytes to the disk.
func (u *hashUpload) sync() error {
	f, err := os.OpenFile(u.bin, os.O_WRONLY, 0)
	if err != nil {
		return err
	}
	if err := f.Sync(); err != nil {
		_ = f.Close()
		return err
	}
	return f.Close()
}

// resume returns the hash of the upload's first offset bytes: the saved
// state when it is that far, else the bytes hashed again.
func (u *hashUpload) resume(offset int64) (hash.Hash, error) {
	h := sha256.New()
	if b, err := os.ReadFile(u.state); err == nil && len(b) > 8 && int64(binary.BigEndian.Uint64(b)) == offset { //nolint:gosec // G115: an offset the server wrote
		if h.(encoding.BinaryUnmarshaler).UnmarshalBinary(b[8:]) == nil {
			return h, nil
		}
		h.Reset()
	}
	f, err := os.Open(u.bin)
	if err != nil {
		return nil, fmt.Errorf("hash upload: %w", err)
	}
	defer f.Close()
	if _, err := io.CopyN(h, f, offset); err != nil {
		return nil, fmt.Errorf("hash upload: %w", err)
	}
	return h, nil
}

// save writes the hash's state at offset beside the upload.
func (u *hashUpload) save(h hash.Hash, offset int64) error {
	st, err := h.(encoding.BinaryMarshaler).MarshalBinary()
	if err != nil {
		return err
	}
	b := binary.BigEndian.AppendUint64(nil, uint64(offset)) //nolint:gosec // G115: offsets are not negative
	r, err := os.OpenRoot(filepath.Dir(u.state))
	if err != nil {
		return err
	}
	defer r.Close()
	return safefs.WriteFile(r, filepath.Base(u.state), append(b, st...), 0o600)
}

// sum is the SHA-256 of the whole upload of size bytes.
func (u *hashUpload) sum(size int64) (string, error) {
	h, err := u.resume(size)
	if err != nil {
		return "", err
	}
	return hex.EncodeToString(h.Sum(nil)), nil
}
