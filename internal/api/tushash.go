package api

import (
	"context"
	"crypto/sha256"
	"encoding"
	"encoding/binary"
	"encoding/hex"
	"fmt"
	"hash"
	"io"

	tusd "github.com/tus/tusd/v2/pkg/handler"
)

// hashStore is a tusd store that hashes each upload as its bytes arrive.
// The running SHA-256's state is saved beside the upload after every
// PATCH (its sha256 record), so the next PATCH, after a dropped
// connection, a restart or on another replica, goes on from it; a finished
// upload's digest is then known without reading it again, and it becomes
// the job's source by a link or a copy inside the bucket (ingest.Adopt),
// not by writing it again. Where the saved state does not match the
// upload's length (a crash between the write and the save), hashing stops
// for that upload and its bytes are read once when it is finished.
type hashStore struct {
	coreStore
	space uploadSpace
}

type hashUpload struct {
	tusd.Upload
	id    string
	space uploadSpace
}

func (s hashStore) wrap(up tusd.Upload, err error) (tusd.Upload, error) {
	if err != nil {
		return nil, err
	}
	info, err := up.GetInfo(context.Background())
	if err != nil {
		return nil, err
	}
	return &hashUpload{Upload: up, id: info.ID, space: s.space}, nil
}

func (s hashStore) NewUpload(ctx context.Context, info tusd.FileInfo) (tusd.Upload, error) {
	return s.wrap(s.coreStore.NewUpload(ctx, info))
}

func (s hashStore) GetUpload(ctx context.Context, id string) (tusd.Upload, error) {
	return s.wrap(s.coreStore.GetUpload(ctx, id))
}

// AsTerminatableUpload removes the saved hash state with the upload.
func (s hashStore) AsTerminatableUpload(up tusd.Upload) tusd.TerminatableUpload {
	h := up.(*hashUpload)
	return terminator{h, s.coreStore.AsTerminatableUpload(h.Upload)}
}

type terminator struct {
	h *hashUpload
	t tusd.TerminatableUpload
}

func (t terminator) Terminate(ctx context.Context) error {
	if err := t.h.space.removeSide(ctx, t.h.id, sideHash); err != nil {
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
	h := u.resume(ctx, offset)
	if h == nil { // hashed when finished
		return u.Upload.WriteChunk(ctx, offset, src)
	}
	c := &hashCounter{h: h}
	n, err := u.Upload.WriteChunk(ctx, offset, io.TeeReader(src, c))
	// The state is saved only for bytes that are stored: written whole,
	// without an error (a network file system reports failed writes at
	// close), and durable.
	if err != nil || c.n != n || u.space.durable(ctx, u.id) != nil || u.save(ctx, h, offset+n) != nil {
		_ = u.space.removeSide(ctx, u.id, sideHash) // hashed when finished
	}
	return n, err
}

// resume returns the hash of the upload's first offset bytes from the
// saved state, or nil when there is none that far.
func (u *hashUpload) resume(ctx context.Context, offset int64) hash.Hash {
	h := sha256.New()
	if offset == 0 {
		return h
	}
	b, err := u.space.readSide(ctx, u.id, sideHash)
	if err == nil && len(b) > 8 && int64(binary.BigEndian.Uint64(b)) == offset { //nolint:gosec // G115: an offset the server wrote
		if h.(encoding.BinaryUnmarshaler).UnmarshalBinary(b[8:]) == nil {
			return h
		}
	}
	return nil
}

// save records the hash's state at offset beside the upload.
func (u *hashUpload) save(ctx context.Context, h hash.Hash, offset int64) error {
	st, err := h.(encoding.BinaryMarshaler).MarshalBinary()
	if err != nil {
		return err
	}
	b := binary.BigEndian.AppendUint64(nil, uint64(offset)) //nolint:gosec // G115: offsets are not negative
	return u.space.writeSide(ctx, u.id, sideHash, append(b, st...))
}

// sum is the SHA-256 of the whole upload of size bytes: from the saved
// state, or, where it is missing, by reading the finished upload once.
func (u *hashUpload) sum(ctx context.Context, size int64) (string, error) {
	h := u.resume(ctx, size)
	if h == nil {
		r, err := u.GetReader(ctx)
		if err != nil {
			return "", fmt.Errorf("hash upload: %w", err)
		}
		defer r.Close()
		h = sha256.New()
		n, err := io.Copy(h, r)
		if err != nil {
			return "", fmt.Errorf("hash upload: %w", err)
		}
		if n != size {
			return "", fmt.Errorf("hash upload: %d bytes stored, not %d", n, size)
		}
	}
	return hex.EncodeToString(h.Sum(nil)), nil
}
