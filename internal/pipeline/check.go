package pipeline

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"maps"
	"os"
	"path/filepath"

	"github.com/herdhq/herd/internal/job"
	"github.com/herdhq/herd/internal/media"
	"github.com/herdhq/herd/internal/safefs"
)

// WithLibraries lets the executor run the health checks of these
// libraries (name → folder on this machine): it reads their files in
// place, and its workers claim those checks (job.LibraryNeed).
func (e *Executor) WithLibraries(dirs map[string]string) *Executor {
	e.libraries = maps.Clone(dirs)
	return e
}

// check decodes a library's file where it lies (a health check), changing
// nothing, and says what it found (job.CheckResult).
func (e *Executor) check(ctx context.Context, c *job.Claimed, report func(job.Progress)) (job.Result, error) {
	src := c.Job.Source
	dir, ok := e.libraries[src.Library]
	if !ok || src.Library == "" {
		// Claimed by a worker without the capability: another one may have it.
		return job.Result{}, fmt.Errorf("this worker does not read library %q (start it with --library %s=PATH)", src.Library, src.Library)
	}
	root, err := os.OpenRoot(dir)
	if err != nil {
		return job.Result{}, fmt.Errorf("library %s: open %s (is it mounted?): %w", src.Library, dir, err)
	}
	defer root.Close()
	name := filepath.FromSlash(src.Name)
	if !filepath.IsLocal(name) {
		return job.Result{}, job.Permanent("bad_path", job.Userf(nil, "%q is not a path inside library %s", src.Name, src.Library))
	}
	var damage string
	err = safefs.WithPath(root, name, func(p string) (err error) {
		damage, err = e.media.CheckDecode(ctx, p, e.limits, func(f float64) { report(job.Progress{Progress: f}) })
		return err
	})
	var res job.CheckResult
	switch {
	case errors.Is(err, fs.ErrNotExist):
		// Gone, or this worker mounts another folder under the library's
		// name: not permanent, another worker may find it (and the library
		// forgets a file that went at its next scan).
		return job.Result{}, job.Userf(err, "%s is not in library %s as this worker mounts it (%s): has the file gone, or is --library %s= another folder?", src.Name, src.Library, dir, src.Library)
	case errors.Is(err, safefs.ErrNotRegular):
		return job.Result{}, job.Permanent("bad_path", job.Userf(err, "%s in library %s is not a regular file", src.Name, src.Library))
	case errors.Is(err, media.ErrNotChecked):
		res = job.CheckResult{State: job.CheckSkipped, Note: err.Error()}
	case err != nil:
		return job.Result{}, err
	case damage != "":
		res = job.CheckResult{State: job.CheckDamaged, Note: damage}
	default:
		res = job.CheckResult{State: job.CheckOK}
	}
	data, err := json.Marshal(res)
	if err != nil {
		return job.Result{}, err
	}
	return job.Result{Data: data}, nil
}
