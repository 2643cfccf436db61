package api

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/aws/smithy-go"
	"github.com/tus/tusd/v2/pkg/filestore"
	tusd "github.com/tus/tusd/v2/pkg/handler"
	"github.com/tus/tusd/v2/pkg/s3store"

	"github.com/herdhq/herd/internal/blob"
	"github.com/herdhq/herd/internal/ingest"
	"github.com/herdhq/herd/internal/safefs"
)

// An uploadSpace keeps unfinished uploads and the small records herd
// keeps beside each (the running hash's state, the job it became): a
// folder of one server (tusd's file store), or the bucket (tusd's S3
// store), where any server replica goes on with an upload another started.
type uploadSpace interface {
	core() coreStore
	// readSide reads an upload's record of a kind (fs.ErrNotExist when
	// there is none); writeSide replaces it; removeSide removes it.
	readSide(ctx context.Context, id, kind string) ([]byte, error)
	writeSide(ctx context.Context, id, kind string, b []byte) error
	removeSide(ctx context.Context, id, kind string) error
	// durable makes an upload's stored bytes survive a crash.
	durable(ctx context.Context, id string) error
	// list returns every upload there (with when its bytes last arrived)
	// and every job record (with when it was written).
	list(ctx context.Context) (uploads, jobs []spaceEntry, err error)
	// clean removes what a crash left behind that no upload owns.
	clean()
	// stored says where a finished upload's bytes are, for ingest.Adopt
	// (its digest left to the caller); errPartsGone where they are gone.
	stored(ctx context.Context, up tusd.Upload, info tusd.FileInfo) (ingest.Stored, error)
}

// coreStore is what herd uses of a tusd store: its core and termination.
type coreStore interface {
	tusd.DataStore
	AsTerminatableUpload(tusd.Upload) tusd.TerminatableUpload
}

type spaceEntry struct {
	id string
	at time.Time // zero: unknown (the bytes are gone)
}

// Record kinds kept beside an upload.
const (
	sideHash = "sha256" // the running SHA-256's state after the last PATCH
	sideJob  = "job"    // the job the upload became
)

// fileSpace keeps uploads in a folder: ID (the bytes), ID.info (tusd's
// record), ID.sha256 and ID.job.
type fileSpace struct {
	dir   string
	store filestore.FileStore
}

func newFileSpace(dir string) *fileSpace {
	return &fileSpace{dir: dir, store: filestore.New(dir)}
}

func (f *fileSpace) core() coreStore { return f.store }

func (f *fileSpace) side(id, kind string) string { return id + "." + kind }

func (f *fileSpace) readSide(_ context.Context, id, kind string) ([]byte, error) {
	return os.ReadFile(filepath.Join(f.dir, f.side(id, kind)))
}

func (f *fileSpace) writeSide(_ context.Context, id, kind string, b []byte) error {
	r, err := os.OpenRoot(f.dir)
	if err != nil {
		return err
	}
	defer r.Close()
	return safefs.WriteFile(r, f.side(id, kind), b, 0o600)
}

func (f *fileSpace) removeSide(_ context.Context, id, kind string) error {
	if err := os.Remove(filepath.Join(f.dir, f.side(id, kind))); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return err
	}
	return nil
}

func (f *fileSpace) durable(_ context.Context, id string) error {
	file, err := os.OpenFile(filepath.Join(f.dir, id), os.O_WRONLY, 0)
	if err != nil {
		return err
	}
	if err := file.Sync(); err != nil {
		_ = file.Close()
		return err
	}
	return file.Close()
}

func (f *fileSpace) list(context.Context) (uploads, jobs []spaceEntry, err error) {
	entries, err := os.ReadDir(f.dir)
	if err != nil {
		return nil, nil, err
	}
	for _, e := range entries {
		name := e.Name()
		switch {
		case strings.HasSuffix(name, ".info"):
			id := strings.TrimSuffix(name, ".info")
			var at time.Time
			if st, err := os.Stat(filepath.Join(f.dir, id)); err == nil {
				at = st.ModTime()
			}
			uploads = append(uploads, spaceEntry{id: id, at: at})
		case strings.HasSuffix(name, "."+sideJob):
			if st, err := e.Info(); err == nil {
				jobs = append(jobs, spaceEntry{id: strings.TrimSuffix(name, "."+sideJob), at: st.ModTime()})
			}
		}
	}
	return uploads, jobs, nil
}

// clean: every file is an upload's, or tusd's lock.
func (f *fileSpace) clean() {}

func (f *fileSpace) stored(_ context.Context, _ tusd.Upload, info tusd.FileInfo) (ingest.Stored, error) {
	return ingest.Stored{Path: info.Storage["Path"], Size: info.Size}, nil
}

// errPartsGone says a finished upload's bytes are gone from the bucket.
var errPartsGone = errors.New("the upload's parts are gone")

// s3Space keeps uploads in the bucket under uploadsKey (tusd's S3 store:
// one multipart upload each, its ID.info and ID.part objects), with the
// records beside them as objects, so every replica sees the same uploads;
// parts wait in a local folder while they fill.
type s3Space struct {
	b     *blob.S3
	store s3store.S3Store
	tmp   string
}

// uploadsKey is where uploads live in the blob store.
const uploadsKey = "uploads"

func newS3Space(b *blob.S3, tmp string) (*s3Space, error) {
	if err := os.MkdirAll(tmp, 0o700); err != nil {
		return nil, fmt.Errorf("uploads folder: %w", err)
	}
	st := s3store.New(b.Bucket(), b.AWSClient())
	st.ObjectPrefix = b.Prefix() + uploadsKey + "/"
	st.TemporaryDirectory = tmp
	// Parts of 16 MiB, at most 4 waiting on the disk per upload: a
	// browser's 8 MiB PATCHes fill a part every other request.
	st.PreferredPartSize = 16 << 20
	st.MaxBufferedParts = 4
	return &s3Space{b: b, store: st, tmp: tmp}, nil
}

func (s *s3Space) core() coreStore { return s.store }

// objectID is the part of a tus id (objectID+multipartID) that names the
// upload's objects.
func objectID(id string) string {
	o, _, _ := strings.Cut(id, "+")
	return o
}

func (s *s3Space) side(id, kind string) string {
	return uploadsKey + "/" + objectID(id) + "." + kind
}

func (s *s3Space) readSide(ctx context.Context, id, kind string) ([]byte, error) {
	b, err := s.b.ReadBytes(ctx, s.side(id, kind))
	if errors.Is(err, blob.ErrNotFound) {
		return nil, fs.ErrNotExist
	}
	return b, err
}

func (s *s3Space) writeSide(ctx context.Context, id, kind string, b []byte) error {
	return s.b.PutBytes(ctx, s.side(id, kind), b)
}

func (s *s3Space) removeSide(ctx context.Context, id, kind string) error {
	return s.b.RemoveAll(ctx, s.side(id, kind))
}

// clean removes parts that waited in the local folder longer than an
// upload may sit idle: a server stopped while they filled left them (a
// live upload's part is written within minutes).
func (s *s3Space) clean() {
	_, _ = blob.CleanDir(s.tmp, func(name string) bool {
		st, err := os.Stat(filepath.Join(s.tmp, name))
		return err == nil && time.Since(st.ModTime()) < UploadExpiry
	})
}

// durable: a part is in the bucket once S3 has answered for it.
func (s *s3Space) durable(context.Context, string) error { return nil }

func (s *s3Space) list(ctx context.Context) (uploads, jobs []spaceEntry, err error) {
	objs, err := s.b.List(ctx, uploadsKey)
	if err != nil {
		return nil, nil, err
	}
	// An upload's last activity is its newest object: the hash's state is
	// written after every PATCH (the parts themselves are not listed).
	latest := map[string]time.Time{}
	var infos []string
	for _, o := range objs {
		base, kind, _ := strings.Cut(o.Key, ".")
		switch kind {
		case sideJob:
			jobs = append(jobs, spaceEntry{id: base, at: o.ModTime})
			continue
		case "info":
			infos = append(infos, o.Key)
		}
		if o.ModTime.After(latest[base]) {
			latest[base] = o.ModTime
		}
	}
	for _, key := range infos {
		// The record names the upload's whole id (with its multipart id).
		b, err := s.b.ReadBytes(ctx, uploadsKey+"/"+key)
		if err != nil {
			continue // removed meanwhile
		}
		var info tusd.FileInfo
		if json.NewDecoder(bytes.NewReader(b)).Decode(&info) != nil {
			continue
		}
		uploads = append(uploads, spaceEntry{id: info.ID, at: latest[objectID(info.ID)]})
	}
	return uploads, jobs, nil
}

// stored finishes the multipart upload when that did not happen (the
// server stopped between the last part and its completion), and names
// the object. Where neither the object nor the multipart upload is there
// (a lifecycle rule aborted it), the parts are gone.
func (s *s3Space) stored(ctx context.Context, up tusd.Upload, info tusd.FileInfo) (ingest.Stored, error) {
	key := uploadsKey + "/" + objectID(info.ID)
	ok, err := s.b.Has(ctx, key)
	if err != nil {
		return ingest.Stored{}, err
	}
	if !ok {
		if err := up.FinishUpload(ctx); err != nil {
			if apiErr, isAPI := errors.AsType[smithy.APIError](err); isAPI && apiErr.ErrorCode() == "NoSuchUpload" {
				if ok, herr := s.b.Has(ctx, key); herr == nil && !ok { // not completed by another meanwhile
					return ingest.Stored{}, fmt.Errorf("%w: %w", errPartsGone, err)
				}
			} else {
				return ingest.Stored{}, fmt.Errorf("complete upload: %w", err)
			}
		}
	}
	return ingest.Stored{Key: key, Size: info.Size}, nil
}
