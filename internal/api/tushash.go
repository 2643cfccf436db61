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
// upload's length (a crash between the write and the save, a PATCH cut
// short), hashing stops for that upload (the record keeps only the
// offset, so a stale state never matches again) and its bytes are read
// once when it is finished.
type hashStore struct {
	coreStore
	space uploadSpace
}

type hashUpload struct {
	tusd.Upload
	id    string
	space uploadSpace
}

// wrap wraps the store's upload id.
func (s hashStore) wrap(id string, up tusd.Upload, err error) (tusd.Upload, error) {
	if err != nil {
		return nil, err
	}
	return &hashUpload{Upload: up, id: id, space: s.space}, nil
}

// detached is a context that ends when ctx does but shares none of its
// values. tusd's request context is a struct tusd goes on writing to,
// while the HTTP transport's goroutines read a request's context (its
// values) after the request has returned: every call into a store, whose
// requests to a bucket outlive it so, gets a detached context.
func detached(ctx context.Context) (context.Context, context.CancelFunc) {
	d, cancel := context.WithCancel(context.Background())
	done := ctx.Done() // the channel, read here: nothing of ctx is read later
	go func() {
		select {
		case <-done:
			cancel()
		case <-d.Done():
		}
	}()
	return d, cancel
}

func (s hashStore) NewUpload(ctx context.Context, info tusd.FileInfo) (tusd.Upload, error) {
	ctx, cancel := detached(ctx)
	defer cancel()
	up, err := s.coreStore.NewUpload(ctx, info)
	if err != nil {
		return nil, err
	}
	// The store chose the id: its record says which (in a bucket, with
	// the multipart upload's id).
	if info, err = up.GetInfo(ctx); err != nil {
		return nil, err
	}
	return s.wrap(info.ID, up, nil)
}

func (s hashStore) GetUpload(ctx context.Context, id string) (tusd.Upload, error) {
	ctx, cancel := detached(ctx)
	defer cancel()
	up, err := s.coreStore.GetUpload(ctx, id)
	return s.wrap(id, up, err)
}

// GetInfo, GetReader and FinishUpload are the store's, on a detached context.
func (u *hashUpload) GetInfo(ctx context.Context) (tusd.FileInfo, error) {
	ctx, cancel := detached(ctx)
	defer cancel()
	return u.Upload.GetInfo(ctx)
}

// GetReader's reader may outlive the call: its context ends with ctx.
func (u *hashUpload) GetReader(ctx context.Context) (io.ReadCloser, error) {
	ctx, cancel := detached(ctx)
	r, err := u.Upload.GetReader(ctx)
	if err != nil {
		cancel()
		return nil, err
	}
	return readCloser{r, cancel}, nil
}

type readCloser struct {
	io.ReadCloser
	cancel context.CancelFunc
}

func (r readCloser) Close() error {
	defer r.cancel()
	return r.ReadCloser.Close()
}

func (u *hashUpload) FinishUpload(ctx context.Context) error {
	ctx, cancel := detached(ctx)
	defer cancel()
	return u.Upload.FinishUpload(ctx)
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
	ctx, cancel := detached(ctx)
	defer cancel()
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
// The record is written after every PATCH, so its time is the upload's
// last activity (the sweep reads it): with the hash's state where that is
// known, else with the offset alone, and the upload is hashed when it is
// finished.
func (u *hashUpload) WriteChunk(ctx context.Context, offset int64, src io.Reader) (int64, error) {
	ctx, cancel := detached(ctx)
	defer cancel()
	h := u.resume(ctx, offset)
	if h == nil {
		n, err := u.Upload.WriteChunk(ctx, offset, src)
		_ = u.save(ctx, nil, offset+n)
		return n, err
	}
	c := &hashCounter{h: h}
	n, err := u.Upload.WriteChunk(ctx, offset, io.TeeReader(src, c))
	// The state is saved only for bytes that are stored: written whole,
	// without an error (a network file system reports failed writes at
	// close), and durable.
	if err != nil || c.n != n || u.space.durable(ctx, u.id) != nil || u.save(ctx, h, offset+n) != nil {
		_ = u.save(ctx, nil, offset+n)
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

// save records the hash's state at offset beside the upload; with no
// hash, the offset alone (the state is lost: hashed when finished).
func (u *hashUpload) save(ctx context.Context, h hash.Hash, offset int64) error {
	b := binary.BigEndian.AppendUint64(nil, uint64(offset)) //nolint:gosec // G115: offsets are not negative
	if h != nil {
		st, err := h.(encoding.BinaryMarshaler).MarshalBinary()
		if err != nil {
			return err
		}
		b = append(b, st...)
	}
	return u.space.writeSide(ctx, u.id, sideHash, b)
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
