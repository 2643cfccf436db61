package pipeline

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"time"

	"github.com/herdhq/herd/internal/blob"
	"github.com/herdhq/herd/internal/job"
	"github.com/herdhq/herd/internal/protocol"
)

// Storage is where the server keeps job files: Files for its in-process
// workers, plus what the worker routes need to hand files to remote ones.
type Storage interface {
	Files
	// Open opens a stored file: a source, a staged file or an output.
	Open(ctx context.Context, key string) (blob.Object, error)
	// PresignGet returns a URL anyone may GET key from without
	// credentials until ttl passes, or "" when the bytes must come
	// through the server.
	PresignGet(ctx context.Context, key string, ttl time.Duration) (string, error)
	// StagedFiles lists what an earlier step of the job committed and the
	// key they are under; ok is false when it committed nothing.
	StagedFiles(ctx context.Context, jobID, step string) (prefix string, files []protocol.StagedFile, ok bool, err error)
	// StagePrefix is StagedFiles' key alone, without listing the files (one
	// staged file is served per request, hundreds for a ladder).
	StagePrefix(ctx context.Context, jobID, step string) (prefix string, ok bool, err error)
	// AttemptFiles lists what the running attempt c committed as step
	// (StagedFiles names only a step whose task succeeded).
	AttemptFiles(ctx context.Context, c *job.Claimed, step string) (files []protocol.StagedFile, ok bool, err error)
	// Check verifies the storage is reachable and writable.
	Check(ctx context.Context) error
	// RemoveOutputs removes a job's outputs (a replaced job's, once no
	// player can still be reading them).
	RemoveOutputs(ctx context.Context, jobID string) error
	// PutFile stores the local file path at key, replacing what is there
	// (the live segments of a running encode, package live).
	PutFile(ctx context.Context, key, path string) error
	// RemoveAll removes key and everything below it.
	RemoveAll(ctx context.Context, key string) error
}

// DirectUploader is a Storage that workers upload to directly, so that
// media bytes do not pass through the server.
type DirectUploader interface {
	// PlanUploads presigns the requests that put files as the attempt's step.
	PlanUploads(ctx context.Context, c *job.Claimed, step string, files []protocol.StagedFile) ([]protocol.DirectUpload, error)
	// FinishUploads completes them, checks every file arrived whole, and
	// commits them as the step.
	FinishUploads(ctx context.Context, c *job.Claimed, step string, files []protocol.StagedFile, ups []protocol.DirectUpload) error
}

// PresignTTL is how long a presigned URL handed to a worker stays valid. A
// worker whose URL expired asks the server again.
const PresignTTL = time.Hour

// ObjectFiles keeps job files in an S3-compatible bucket. Each attempt
// writes a step's files, and last a manifest listing them, under a prefix of
// its own (task and fencing token). Readers take the prefix of the attempt
// the database recorded as the task's success, so files of an attempt that
// lost its lease are never read, however late they arrive.
type ObjectFiles struct {
	Blobs *blob.S3
	Cache *blob.Cache // downloaded sources
	Temp  *blob.Local // local scratch folders
	Log   *slog.Logger
	// Tasks lists a job's tasks (the store's): which attempt of a step won.
	Tasks func(ctx context.Context, jobID string) ([]job.Task, error)
}

type manifest struct {
	Prefix string                `json:"prefix"`
	Files  []protocol.StagedFile `json:"files"`
}

func attemptPrefix(jobID, step, taskID string, fence int64) string {
	return StageKey(jobID, step) + "/" + taskID + "-" + strconv.FormatInt(fence, 10)
}

func claimPrefix(c *job.Claimed, step string) string {
	return attemptPrefix(c.Job.ID, step, c.Task.ID, c.Lease.Fence)
}

// committed is the prefix of the attempt whose task succeeded for step:
// the last such task, for a step made again later in the job (a quality
// gate's re-encode and its verify write the encode and verified steps a
// second time, and what follows must read theirs).
func (o *ObjectFiles) committed(ctx context.Context, jobID, step string) (string, bool, error) {
	tasks, err := o.Tasks(ctx, jobID)
	if err != nil {
		return "", false, err
	}
	for _, t := range slices.Backward(tasks) {
		if Writes(t, step) && t.State == job.TaskSucceeded {
			return attemptPrefix(jobID, step, t.ID, t.Fence), true, nil
		}
	}
	return "", false, nil
}

// Source downloads the job's source into the local cache (job.Files).
func (o *ObjectFiles) Source(ctx context.Context, c *job.Claimed) (string, error) {
	p, err := o.Cache.Get(ctx, c.Job.Source.SHA256, func(ctx context.Context, part string) error {
		return o.Blobs.GetFile(ctx, c.Job.AssetKey, part)
	})
	if errors.Is(err, blob.ErrNotFound) {
		return "", job.Permanent("source_missing", job.Userf(err, "the uploaded source file is missing from the bucket; submit it again"))
	}
	return p, err
}

// Subtitle downloads a subtitle file given with the job's source into
// the local cache.
func (o *ObjectFiles) Subtitle(ctx context.Context, c *job.Claimed, id string) (string, error) {
	p, err := o.Cache.Get(ctx, id, func(ctx context.Context, part string) error {
		return o.Blobs.GetFile(ctx, job.SubtitleKey(id), part)
	})
	if errors.Is(err, blob.ErrNotFound) {
		return "", job.Permanent("source_missing", job.Userf(err, "a subtitle file given with the source is missing from the bucket; submit the file again"))
	}
	return p, err
}

// Scratch makes a local scratch folder.
func (o *ObjectFiles) Scratch(step string) (string, error) { return o.Temp.TempDir(step) }

// Discard removes a scratch folder.
func (o *ObjectFiles) Discard(dir string) { _ = os.RemoveAll(dir) }

// Staged downloads an earlier step's files into dir.
func (o *ObjectFiles) Staged(ctx context.Context, c *job.Claimed, step, dir string) (bool, error) {
	prefix, files, ok, err := o.StagedFiles(ctx, c.Job.ID, step)
	if !ok || err != nil {
		return false, err
	}
	for _, f := range files {
		dst := filepath.Join(dir, filepath.FromSlash(f.Path))
		if err := os.MkdirAll(filepath.Dir(dst), 0o750); err != nil {
			return false, err
		}
		if err := o.Blobs.GetFile(ctx, prefix+"/"+f.Path, dst); err != nil {
			return false, err
		}
	}
	return true, nil
}

// Commit uploads dir under the attempt's prefix, then writes the manifest.
func (o *ObjectFiles) Commit(ctx context.Context, c *job.Claimed, step, dir string) error {
	defer os.RemoveAll(dir)
	prefix := claimPrefix(c, step)
	files, err := ListFiles(dir)
	if err != nil {
		return err
	}
	for _, f := range files {
		if err := o.Blobs.PutFile(ctx, prefix+"/"+f.Path, filepath.Join(dir, filepath.FromSlash(f.Path))); err != nil {
			return err
		}
	}
	return o.writeManifest(ctx, manifest{Prefix: prefix, Files: files})
}

// ListFiles lists the files under dir with slash paths relative to it.
func ListFiles(dir string) ([]protocol.StagedFile, error) {
	files := []protocol.StagedFile{}
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		rel, err := filepath.Rel(dir, p)
		if err != nil {
			return err
		}
		info, err := d.Info()
		if err != nil {
			return err
		}
		files = append(files, protocol.StagedFile{Path: filepath.ToSlash(rel), Size: info.Size()})
		return nil
	})
	return files, err
}

func (o *ObjectFiles) writeManifest(ctx context.Context, m manifest) error {
	data, err := json.Marshal(m)
	if err != nil {
		return err
	}
	return o.Blobs.PutBytes(ctx, m.Prefix+".json", data)
}

// StagePrefix is the key of the step's successful attempt.
func (o *ObjectFiles) StagePrefix(ctx context.Context, jobID, step string) (string, bool, error) {
	return o.committed(ctx, jobID, step)
}

// StagedFiles reads the manifest of the step's successful attempt.
func (o *ObjectFiles) StagedFiles(ctx context.Context, jobID, step string) (string, []protocol.StagedFile, bool, error) {
	prefix, ok, err := o.committed(ctx, jobID, step)
	if !ok || err != nil {
		return "", nil, false, err
	}
	return o.readManifest(ctx, prefix, step)
}

// AttemptFiles reads the manifest the running attempt c committed as step.
func (o *ObjectFiles) AttemptFiles(ctx context.Context, c *job.Claimed, step string) ([]protocol.StagedFile, bool, error) {
	_, files, ok, err := o.readManifest(ctx, claimPrefix(c, step), step)
	return files, ok, err
}

func (o *ObjectFiles) readManifest(ctx context.Context, prefix, step string) (string, []protocol.StagedFile, bool, error) {
	data, err := o.Blobs.ReadBytes(ctx, prefix+".json")
	if errors.Is(err, blob.ErrNotFound) {
		return "", nil, false, nil
	}
	if err != nil {
		return "", nil, false, err
	}
	var m manifest
	if err := json.Unmarshal(data, &m); err != nil {
		return "", nil, false, fmt.Errorf("read the %s manifest: %w", step, err)
	}
	return m.Prefix, m.Files, true, nil
}

// Finalize copies the verified files to the job's outputs inside the bucket,
// then removes the staged ones. The manifests go first, so a run after a
// crash either copies everything again or finds the outputs in place.
func (o *ObjectFiles) Finalize(ctx context.Context, c *job.Claimed) error {
	prefix, files, ok, err := o.StagedFiles(ctx, c.Job.ID, StepVerified)
	if err != nil {
		return err
	}
	out := OutputsKey(c.Job.ID)
	if ok {
		for _, f := range files {
			if err := o.Blobs.Copy(ctx, prefix+"/"+f.Path, out+"/"+f.Path); err != nil {
				return job.Userf(err, "could not copy the outputs into place in the bucket")
			}
		}
	} else if have, err := o.Blobs.List(ctx, out); err != nil {
		return err
	} else if len(have) == 0 {
		return job.Userf(nil, "the verified outputs are missing from the bucket; retry the job")
	} else {
		o.Log.Info("outputs were already published", "job_id", c.Job.ID)
	}
	if ok {
		// The manifest first: a run after a crash then finds the outputs in place.
		if err := o.Blobs.RemoveAll(ctx, prefix+".json"); err != nil {
			o.Log.Warn("remove staged manifest", "job_id", c.Job.ID, "err", err)
			return nil
		}
	}
	if err := o.Blobs.RemoveAll(ctx, "jobs/"+c.Job.ID+"/stage"); err != nil {
		o.Log.Warn("remove staged files", "job_id", c.Job.ID, "err", err)
	}
	return nil
}

// Open opens a stored file.
func (o *ObjectFiles) Open(ctx context.Context, key string) (blob.Object, error) {
	return o.Blobs.Open(ctx, key)
}

// PresignGet presigns a download.
func (o *ObjectFiles) PresignGet(ctx context.Context, key string, ttl time.Duration) (string, error) {
	return o.Blobs.PresignGet(ctx, key, ttl)
}

// RemoveOutputs removes a job's outputs from the bucket.
func (o *ObjectFiles) RemoveOutputs(ctx context.Context, jobID string) error {
	return o.Blobs.RemoveAll(ctx, OutputsKey(jobID))
}

// PutFile uploads a local file to key.
func (o *ObjectFiles) PutFile(ctx context.Context, key, path string) error {
	return o.Blobs.PutFile(ctx, key, path)
}

// RemoveAll removes key and everything below it from the bucket.
func (o *ObjectFiles) RemoveAll(ctx context.Context, key string) error {
	return o.Blobs.RemoveAll(ctx, key)
}

// Check verifies the bucket is reachable.
func (o *ObjectFiles) Check(ctx context.Context) error { return o.Blobs.Check(ctx) }

// PlanUploads presigns the uploads of an attempt's step.
func (o *ObjectFiles) PlanUploads(ctx context.Context, c *job.Claimed, step string, files []protocol.StagedFile) ([]protocol.DirectUpload, error) {
	prefix := claimPrefix(c, step)
	ups := make([]protocol.DirectUpload, 0, len(files))
	for _, f := range files {
		up, err := o.Blobs.PlanUpload(ctx, prefix+"/"+f.Path, f.Size, PresignTTL)
		if err != nil {
			return nil, err
		}
		up.Path = f.Path
		ups = append(ups, up)
	}
	return ups, nil
}

// FinishUploads completes an attempt's direct uploads and commits the step.
func (o *ObjectFiles) FinishUploads(ctx context.Context, c *job.Claimed, step string, files []protocol.StagedFile, ups []protocol.DirectUpload) error {
	prefix := claimPrefix(c, step)
	byPath := make(map[string]protocol.DirectUpload, len(ups))
	for _, u := range ups {
		byPath[u.Path] = u
	}
	for _, f := range files {
		if err := o.Blobs.FinishUpload(ctx, prefix+"/"+f.Path, byPath[f.Path], f.Size); err != nil {
			return err
		}
	}
	return o.writeManifest(ctx, manifest{Prefix: prefix, Files: files})
}

var (
	_ Storage        = (*LocalFiles)(nil)
	_ Storage        = (*ObjectFiles)(nil)
	_ DirectUploader = (*ObjectFiles)(nil)
)
