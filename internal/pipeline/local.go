package pipeline

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/herdhq/herd/internal/blob"
	"github.com/herdhq/herd/internal/job"
	"github.com/herdhq/herd/internal/protocol"
)

// StageKey is where a job's step keeps its committed files.
func StageKey(jobID, step string) string { return "jobs/" + jobID + "/stage/" + step }

// OutputsKey is where a job's published outputs live.
func OutputsKey(jobID string) string { return "jobs/" + jobID + "/out" }

// LocalFiles is Files on the server's own blob store (in-process workers, and
// the server side of the worker API).
type LocalFiles struct {
	Blobs *blob.Local
	Log   *slog.Logger

	// finalizing serialises Finalize: two requests for one job (a worker
	// retrying while its first try still runs) must not both move folders.
	finalizing sync.Mutex
}

// Source returns the stored source's path.
func (l *LocalFiles) Source(_ context.Context, c *job.Claimed) (string, error) {
	src, err := l.Blobs.Path(c.Job.AssetKey)
	if err != nil {
		return "", err
	}
	if _, err := os.Stat(src); err != nil {
		return "", job.Permanent("source_missing", job.Userf(err, "the uploaded source file is missing from storage; submit it again"))
	}
	return src, nil
}

// Subtitle returns the stored subtitle file's path.
func (l *LocalFiles) Subtitle(_ context.Context, _ *job.Claimed, id string) (string, error) {
	p, err := l.Blobs.Path(job.SubtitleKey(id))
	if err != nil {
		return "", err
	}
	if _, err := os.Stat(p); err != nil {
		return "", job.Permanent("source_missing", job.Userf(err, "a subtitle file given with the source is missing from storage; submit the file again"))
	}
	return p, nil
}

// Scratch makes a folder in the blob store's scratch area.
func (l *LocalFiles) Scratch(step string) (string, error) { return l.Blobs.TempDir(step) }

// Discard removes a scratch folder.
func (l *LocalFiles) Discard(dir string) { _ = os.RemoveAll(dir) }

// Staged hard-links an earlier step's files into dir.
func (l *LocalFiles) Staged(_ context.Context, c *job.Claimed, step, dir string) (bool, error) {
	from, err := l.Blobs.Path(StageKey(c.Job.ID, step))
	if err != nil {
		return false, err
	}
	if _, err := os.Stat(from); errors.Is(err, fs.ErrNotExist) {
		return false, nil
	}
	return true, linkTree(from, dir)
}

// Commit renames dir into the job's stage.
func (l *LocalFiles) Commit(_ context.Context, c *job.Claimed, step, dir string) error {
	return l.Blobs.CommitDir(dir, StageKey(c.Job.ID, step))
}

// Finalize renames the verified set into the outputs with one rename. Run
// again after a crash, it finds them already in place.
func (l *LocalFiles) Finalize(_ context.Context, c *job.Claimed) error {
	l.finalizing.Lock()
	defer l.finalizing.Unlock()
	verified, out := StageKey(c.Job.ID, StepVerified), OutputsKey(c.Job.ID)
	switch {
	case l.Blobs.Exists(verified):
		dir, err := l.Blobs.Path(verified)
		if err != nil {
			return err
		}
		if err := l.Blobs.CommitDir(dir, out); err != nil {
			return job.Userf(err, "could not move the outputs into place (is the disk full?)")
		}
	case l.Blobs.Exists(out):
		l.Log.Info("outputs were already published", "job_id", c.Job.ID)
	default:
		return job.Userf(nil, "the verified outputs are missing from storage; retry the job")
	}
	if err := l.Blobs.RemoveAll("jobs/" + c.Job.ID + "/stage"); err != nil {
		l.Log.Warn("remove staged files", "job_id", c.Job.ID, "err", err)
	}
	return nil
}

// RemoveOutputs removes a job's outputs from the disk.
func (l *LocalFiles) RemoveOutputs(_ context.Context, jobID string) error {
	return l.Blobs.RemoveAll(OutputsKey(jobID))
}

// PutFile links (or copies) a local file to key.
func (l *LocalFiles) PutFile(ctx context.Context, key, path string) error {
	return l.Blobs.PutFile(ctx, key, path)
}

// RemoveAll removes key and everything below it.
func (l *LocalFiles) RemoveAll(_ context.Context, key string) error {
	return l.Blobs.RemoveAll(key)
}

// linkTree hard-links every file under from into to (same file system), so
// assembling the verified set copies no bytes.
func linkTree(from, to string) error {
	return filepath.WalkDir(from, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, err := filepath.Rel(from, p)
		if err != nil {
			return err
		}
		dst := filepath.Join(to, rel)
		if d.IsDir() {
			return os.MkdirAll(dst, 0o755)
		}
		if err := os.Link(p, dst); err != nil { //nolint:gosec // G122: from is herd's own staging folder, which nothing else writes in
			return fmt.Errorf("link staged file: %w", err)
		}
		return nil
	})
}

// localObject is an open file as a blob.Object.
type localObject struct {
	*os.File
	info fs.FileInfo
}

func (o localObject) Size() int64        { return o.info.Size() }
func (o localObject) ModTime() time.Time { return o.info.ModTime() }

// Open opens a stored file (not a folder).
func (l *LocalFiles) Open(_ context.Context, key string) (blob.Object, error) {
	f, err := l.Blobs.Open(key)
	if err != nil {
		return nil, err
	}
	info, err := f.Stat()
	if err != nil || info.IsDir() {
		_ = f.Close()
		return nil, fmt.Errorf("%s: %w", key, blob.ErrNotFound)
	}
	return localObject{File: f, info: info}, nil
}

// PresignGet returns "": local files come through the server.
func (l *LocalFiles) PresignGet(context.Context, string, time.Duration) (string, error) {
	return "", nil
}

// StagedFiles lists the files of a committed step.
func (l *LocalFiles) StagedFiles(ctx context.Context, jobID, step string) (string, []protocol.StagedFile, bool, error) {
	prefix, ok, err := l.StagePrefix(ctx, jobID, step)
	if !ok || err != nil {
		return "", nil, false, err
	}
	root, err := l.Blobs.Path(prefix)
	if err != nil {
		return "", nil, false, err
	}
	files, err := ListFiles(root)
	return prefix, files, err == nil, err
}

// AttemptFiles lists the step's files as committed. A commit here replaces
// the step whole, so these are the running attempt's files once it
// committed; before that, an earlier attempt's (checked files of this job
// all the same).
func (l *LocalFiles) AttemptFiles(ctx context.Context, c *job.Claimed, step string) ([]protocol.StagedFile, bool, error) {
	_, files, ok, err := l.StagedFiles(ctx, c.Job.ID, step)
	return files, ok, err
}

// StagePrefix is the folder a committed step renamed into place.
func (l *LocalFiles) StagePrefix(_ context.Context, jobID, step string) (string, bool, error) {
	prefix := StageKey(jobID, step)
	return prefix, l.Blobs.Exists(prefix), nil
}

// Check verifies the blob folder is writable.
func (l *LocalFiles) Check(context.Context) error { return l.Blobs.Check() }
